//! livesnap as a library: [`server::start`] runs the whole server from its
//! [`config::Settings`] and returns a [`server::RunningServer`] with its addresses and a
//! graceful `shutdown()`; [`api::app`] is the HTTP API as a router that tests call in-process.
//! The `livesnap` binary only parses its command line and runs this.

pub mod accounts_api;
pub mod api;
pub mod auth;
pub mod auto_api;
pub mod callbacks;
pub mod config;
pub mod console;
pub mod error;
pub mod fdlimit;
pub mod grab;
pub mod http;
pub mod jobs_api;
pub mod logs;
pub mod malloc;
pub mod metrics;
pub mod netif;
pub mod openapi;
pub mod publish_api;
pub mod pull;
pub mod rate;
pub mod server;
pub mod tls;
pub mod whip_api;

pub use server::{start, start_with_clock, RunningServer, ShutdownReport, StartError};
