//! The `livesnap` binary: `serve` runs the server, `grab` takes one picture of a file.

mod api;
mod config;
mod error;
mod grab;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ingest::rtmp::server::RtmpConfig;
use livesnap_core::hub::{Hub, HubConfig, HubSink};
use livesnap_core::snapshot::{SnapshotConfig, Snapshotter};
use tokio::net::TcpListener;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "livesnap",
    version,
    about = "Live video streams in, still pictures out."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(config::ServeArgs),
    /// Take one picture of a local FLV or H.264 file.
    Grab(grab::GrabArgs),
}

fn init_logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli
        .command
        .unwrap_or(Command::Serve(config::ServeArgs::parse_from_env()))
    {
        Command::Serve(args) => serve(args).await,
        Command::Grab(args) => {
            init_logs("warn");
            grab::run(args).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livesnap: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: config::ServeArgs) -> Result<(), String> {
    let settings = args.settings()?;
    init_logs(&settings.log);
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        format!(
            "cannot create data dir {}: {e}",
            settings.data_dir.display()
        )
    })?;

    let hub = Hub::new(HubConfig {
        max_streams: settings.max_publishers,
        max_gop_bytes: settings.max_gop_bytes,
    });
    let snapshots = Snapshotter::new(SnapshotConfig {
        workers: settings.workers(),
        interval: settings.interval(),
        attempts: settings.snapshot_taking_attempts,
        cache_entries: settings.cache_entries,
        cache_bytes: settings.cache_bytes,
    });
    let http = TcpListener::bind(settings.http)
        .await
        .map_err(|e| format!("cannot listen for HTTP on {}: {e}", settings.http))?;
    let rtmp = TcpListener::bind(settings.rtmp)
        .await
        .map_err(|e| format!("cannot listen for RTMP on {}: {e}", settings.rtmp))?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let rtmp_addr = rtmp.local_addr().map_err(|e| e.to_string())?;

    let rtmp_config = RtmpConfig {
        domains: settings.domains.clone(),
        max_connections: settings.max_connections,
        idle_timeout: Duration::from_secs(settings.rtmp_idle_timeout_s.max(1)),
        max_access_unit_bytes: settings.max_access_unit_bytes,
        ..RtmpConfig::default()
    };
    tokio::spawn(ingest::rtmp::server::serve(
        rtmp,
        Arc::new(HubSink(hub.clone())),
        rtmp_config,
    ));

    let state = api::AppState {
        hub,
        snapshots,
        max_request_bytes: settings.max_request_bytes,
    };
    info!(http = %http_addr, rtmp = %rtmp_addr, data_dir = %settings.data_dir.display(), workers = settings.workers(), "livesnap ready");
    // One machine-readable line on stdout, for scripts and tests that bind port 0.
    println!(
        "{}",
        serde_json::json!({ "event": "listening", "http": http_addr.to_string(), "rtmp": rtmp_addr.to_string() })
    );
    let _ = std::io::stdout().flush();

    axum::serve(http, api::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("HTTP server: {e}"))?;
    info!("livesnap stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down");
}
