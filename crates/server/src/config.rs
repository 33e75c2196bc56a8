//! Settings: defaults, then a TOML file (`--config`), then `LIVESNAP_<KEY>` environment
//! variables, then flags; each later source overrides the earlier ones.
//!
//! Each setting is declared once, in the [`settings!`] call below, with its type, its default
//! (the named constant the code uses), the default as the docs show it, and its doc. The TOML
//! key, the `LIVESNAP_*` variable and the `--flag` are derived from that one declaration, and a
//! test holds the README's settings table to it. Checks that span settings are in
//! [`Settings::validate`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use livesnap_store::location::LocationConfig;
use serde::Deserialize;

/// One setting as the docs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingDoc {
    /// The TOML key (the flag is `--` and the key with dashes).
    pub key: &'static str,
    /// The environment variable (`None`: TOML only).
    pub env: Option<&'static str>,
    /// The default as the docs show it.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// A flag's help: its doc without the space a doc comment starts with.
fn help_text(doc: &'static str) -> &'static str {
    doc.trim_start()
}

/// Declares the settings. Four kinds: `value` (a plain setting), `optional` (none by default),
/// `list` (comma-separated in the environment and flags), `table` (TOML only).
macro_rules! settings {
    (
        value { $( $(#[doc = $vdoc:literal])* $vname:ident ($venv:literal): $vty:ty = $vdefault:expr, $vshown:literal; )* }
        optional { $( $(#[doc = $odoc:literal])* $oname:ident ($oenv:literal): $oty:ty, $oshown:literal; )* }
        list { $( $(#[doc = $ldoc:literal])* $lname:ident ($lenv:literal): $lty:ty = $ldefault:expr, $lshown:literal; )* }
        table { $( $(#[doc = $tdoc:literal])* $tname:ident: $tty:ty, $tshown:literal; )* }
    ) => {
        /// Every setting of `livesnap serve`, as the TOML file spells them.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Settings {
            $( $(#[doc = $vdoc])* pub $vname: $vty, )*
            $( $(#[doc = $odoc])* pub $oname: Option<$oty>, )*
            $( $(#[doc = $ldoc])* pub $lname: $lty, )*
            $( $(#[doc = $tdoc])* pub $tname: $tty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings {
                    $( $vname: $vdefault, )*
                    $( $oname: None, )*
                    $( $lname: $ldefault, )*
                    $( $tname: Default::default(), )*
                }
            }
        }

        /// The flags of `livesnap serve`; each also reads its `LIVESNAP_<NAME>` variable.
        #[derive(Debug, Args, Default)]
        pub struct ServeArgs {
            /// TOML file with any of the settings below (snake_case keys).
            #[arg(long, env = "LIVESNAP_CONFIG")]
            pub config: Option<PathBuf>,
            $( $(#[doc = $vdoc])*
               #[arg(long, env = $venv, help = help_text(concat!($($vdoc,)* " [default: ", $vshown, "]")))] pub $vname: Option<$vty>, )*
            $( $(#[doc = $odoc])*
               #[arg(long, env = $oenv, help = help_text(concat!($($odoc,)* " [default: ", $oshown, "]")))] pub $oname: Option<$oty>, )*
            $( $(#[doc = $ldoc])*
               #[arg(long, env = $lenv, value_delimiter = ',', help = help_text(concat!($($ldoc,)* " [default: ", $lshown, "]")))] pub $lname: Option<$lty>, )*
        }

        /// Every setting, in declaration order, as the docs show it.
        pub const SETTINGS: &[SettingDoc] = &[
            $( SettingDoc { key: stringify!($vname), env: Some($venv), default: $vshown, doc: concat!($($vdoc),*) }, )*
            $( SettingDoc { key: stringify!($oname), env: Some($oenv), default: $oshown, doc: concat!($($odoc),*) }, )*
            $( SettingDoc { key: stringify!($lname), env: Some($lenv), default: $lshown, doc: concat!($($ldoc),*) }, )*
            $( SettingDoc { key: stringify!($tname), env: None, default: $tshown, doc: concat!($($tdoc),*) }, )*
        ];

        impl ServeArgs {
            /// Puts every flag or variable given over `s`.
            fn apply(self, s: &mut Settings) {
                $( if let Some(v) = self.$vname { s.$vname = v; } )*
                $( if self.$oname.is_some() { s.$oname = self.$oname; } )*
                $( if let Some(v) = self.$lname { s.$lname = v; } )*
            }
        }
    };
}

settings! {
    value {
        /// HTTP API address (the WCS REST port).
        http ("LIVESNAP_HTTP"): SocketAddr = DEFAULT_HTTP, "0.0.0.0:8081";
        /// RTMP ingest address.
        rtmp ("LIVESNAP_RTMP"): SocketAddr = DEFAULT_RTMP, "0.0.0.0:1935";
        /// Where livesnap keeps its data.
        data_dir ("LIVESNAP_DATA_DIR"): PathBuf = PathBuf::from(DEFAULT_DATA_DIR), "./data";
        /// How long an on-demand snapshot may wait for a picture, in ms (WCS setting).
        snapshot_taking_interval_ms ("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS"): u64 =
            snapshot::DEFAULT_INTERVAL.as_millis() as u64, "3000";
        /// How many keyframes an on-demand snapshot may try (WCS setting).
        snapshot_taking_attempts ("LIVESNAP_SNAPSHOT_TAKING_ATTEMPTS"): u32 =
            snapshot::DEFAULT_ATTEMPTS, "30";
        /// Decodes at once (and decoders kept); 0 means one per CPU core.
        workers ("LIVESNAP_WORKERS"): usize = 0, "0";
        /// Threads of the async runtime (ingest, HTTP, storage, callbacks); decoding runs on the
        /// `workers` threads besides. 0 means one per CPU core.
        io_threads ("LIVESNAP_IO_THREADS"): usize = DEFAULT_IO_THREADS, "0";
        /// Pictures kept in the snapshot cache.
        cache_entries ("LIVESNAP_CACHE_ENTRIES"): usize = snapshot::DEFAULT_CACHE_ENTRIES, "256";
        /// Bytes of pictures kept in the snapshot cache.
        cache_bytes ("LIVESNAP_CACHE_BYTES"): usize = snapshot::DEFAULT_CACHE_BYTES, "67108864";
        /// Memory all picture work at once may take (decoders' pictures and output buffers, as
        /// estimated per picture); work past it waits, a picture that alone needs more is
        /// refused. At least one 1080p picture's worth.
        picture_memory_bytes ("LIVESNAP_PICTURE_MEMORY_BYTES"): u64 =
            snapshot::DEFAULT_PICTURE_MEMORY_BYTES, "1073741824";
        /// Most live streams at once.
        max_publishers ("LIVESNAP_MAX_PUBLISHERS"): usize = hub::DEFAULT_MAX_STREAMS, "1000";
        /// Most RTMP connections at once.
        max_connections ("LIVESNAP_MAX_CONNECTIONS"): usize = rtmp::DEFAULT_MAX_CONNECTIONS, "2000";
        /// Most bytes buffered per stream for its current GOP.
        max_gop_bytes ("LIVESNAP_MAX_GOP_BYTES"): usize = hub::DEFAULT_MAX_GOP_BYTES, "33554432";
        /// Memory all ingest may hold at once (every stream's GOP and every publisher's partial
        /// messages); past it the largest GOPs are trimmed to their keyframe. 0 means an eighth of
        /// the machine's memory, within 256 MiB..8 GiB.
        ingest_memory_bytes ("LIVESNAP_INGEST_MEMORY_BYTES"): u64 = 0, "0";
        /// Largest video access unit accepted, in bytes.
        max_access_unit_bytes ("LIVESNAP_MAX_ACCESS_UNIT_BYTES"): usize =
            rtmp::DEFAULT_MAX_ACCESS_UNIT_BYTES, "8388608";
        /// Largest HTTP request body, in bytes.
        max_request_bytes ("LIVESNAP_MAX_REQUEST_BYTES"): usize = DEFAULT_MAX_REQUEST_BYTES, "65536";
        /// Seconds a connected publisher may send nothing before it is dropped.
        rtmp_idle_timeout_s ("LIVESNAP_RTMP_IDLE_TIMEOUT_S"): u64 =
            rtmp::DEFAULT_IDLE_TIMEOUT.as_secs(), "30";
        /// Merged read for publishers, in ms: a publishing socket is read on the ticks of one
        /// process-wide clock of this period (fewer wakeups; 0 = read as bytes arrive).
        rtmp_merge_read_ms ("LIVESNAP_RTMP_MERGE_READ_MS"): u64 =
            rtmp::DEFAULT_MERGE_READ.as_millis() as u64, "0";
        /// Seconds from an RTMP connection's accept to its publish accepted, however slowly its
        /// bytes trickle in; then it is closed.
        rtmp_handshake_timeout_s ("LIVESNAP_RTMP_HANDSHAKE_TIMEOUT_S"): u64 =
            rtmp::DEFAULT_HANDSHAKE_TIMEOUT.as_secs(), "10";
        /// Most connections from one address (an IPv6 /64) on each listener (RTMP, HTTP).
        max_connections_per_address ("LIVESNAP_MAX_CONNECTIONS_PER_ADDRESS"): usize =
            frontend::DEFAULT_MAX_PER_ADDRESS, "100";
        /// Most connections on each listener that have not yet published (RTMP) or sent a whole
        /// request head (HTTP); one address may hold an eighth of them.
        max_pending_connections ("LIVESNAP_MAX_PENDING_CONNECTIONS"): usize =
            frontend::DEFAULT_MAX_PENDING, "256";
        /// Most HTTP connections at once; more are answered 503 and closed.
        http_max_connections ("LIVESNAP_HTTP_MAX_CONNECTIONS"): usize =
            http::DEFAULT_MAX_CONNECTIONS, "1024";
        /// Seconds an HTTP connection may take to send a request head, from its accept or the
        /// end of its previous request (so also how long an idle keep-alive connection stays).
        http_header_timeout_s ("LIVESNAP_HTTP_HEADER_TIMEOUT_S"): u64 =
            http::DEFAULT_HEADER_TIMEOUT.as_secs(), "10";
        /// Seconds an HTTP request body may take to arrive whole, from its head; then 408.
        http_body_timeout_s ("LIVESNAP_HTTP_BODY_TIMEOUT_S"): u64 =
            http::DEFAULT_BODY_TIMEOUT.as_secs(), "10";
        /// Log filter (`info`, `debug`, `livesnap_ingest=debug,info`, ...); RUST_LOG wins.
        log ("LIVESNAP_LOG"): String = "info".to_string(), "info";
        /// Log lines as `text` or `json` (one object per line).
        log_format ("LIVESNAP_LOG_FORMAT"): String = "text".to_string(), "text";
        /// Seconds a shutdown may take: pictures in flight are finished and callbacks queued in
        /// the index before the server gives up on them and exits.
        shutdown_timeout_s ("LIVESNAP_SHUTDOWN_TIMEOUT_S"): u64 = DEFAULT_SHUTDOWN_TIMEOUT_S, "10";
        /// Seconds an HTTP request may take before it is answered 408.
        request_timeout_s ("LIVESNAP_REQUEST_TIMEOUT_S"): u64 = DEFAULT_REQUEST_TIMEOUT_S, "60";
        /// Most bytes the spool holds before it drops pictures.
        spool_max_bytes ("LIVESNAP_SPOOL_MAX_BYTES"): u64 =
            livesnap_store::spool::DEFAULT_MAX_BYTES, "268435456";
        /// Seconds between retention sweeps.
        retention_sweep_s ("LIVESNAP_RETENTION_SWEEP_S"): u64 = DEFAULT_RETENTION_SWEEP_S, "10";
        /// Tries per callback delivery.
        callback_max_attempts ("LIVESNAP_CALLBACK_MAX_ATTEMPTS"): u32 =
            DEFAULT_CALLBACK_MAX_ATTEMPTS, "6";
        /// Milliseconds before the first callback retry (doubled each time).
        callback_backoff_ms ("LIVESNAP_CALLBACK_BACKOFF_MS"): u64 = DEFAULT_CALLBACK_BACKOFF_MS, "1000";
        /// WCS: automatic snapshots of every stream no binding matches.
        snapshot_auto_enabled ("LIVESNAP_SNAPSHOT_AUTO_ENABLED"): bool = false, "false";
        /// WCS: folder per stream named by `streamName` or `mediaSessionId`.
        snapshot_auto_naming ("LIVESNAP_SNAPSHOT_AUTO_NAMING"): String =
            "streamName".to_string(), "streamName";
        /// WCS: a picture every this many frames.
        snapshot_auto_rate ("LIVESNAP_SNAPSHOT_AUTO_RATE"): u32 = DEFAULT_WCS_AUTO_RATE, "30";
        /// WCS: keep the last this many pictures per stream (0 keeps all).
        snapshot_auto_retention ("LIVESNAP_SNAPSHOT_AUTO_RETENTION"): u64 = 0, "0";
    }
    optional {
        /// The index: `sqlite://PATH` or `postgres://...`.
        index ("LIVESNAP_INDEX"): String, "sqlite://<data_dir>/index.db";
        /// Where pictures wait while storage is down.
        spool_dir ("LIVESNAP_SPOOL_DIR"): PathBuf, "<data_dir>/spool";
        /// Receives every event, besides templates' own callback URLs.
        callback_url ("LIVESNAP_CALLBACK_URL"): String, "none";
        /// HMAC-SHA256 key for the X-Livesnap-Signature header of callbacks.
        callback_secret ("LIVESNAP_CALLBACK_SECRET"): String, "none";
        /// Base URL of this server as others reach it, for links in callbacks.
        public_url ("LIVESNAP_PUBLIC_URL"): String, "http://<http>";
        /// WCS: where automatic snapshots go.
        snapshot_auto_dir ("LIVESNAP_SNAPSHOT_AUTO_DIR"): PathBuf, "<data_dir>/snapshot-auto";
    }
    list {
        /// Host names that are domains when they appear in an RTMP tcUrl (comma-separated in
        /// the environment and flags).
        domains ("LIVESNAP_DOMAINS"): Vec<String> = Vec::new(), "[]";
    }
    table {
        /// Named storage locations (`[storage.NAME]` tables); `local` exists by default.
        storage: HashMap<String, LocationConfig>, "local";
        /// Domain -> SourceID for path patterns (`[source_ids]`); a domain not listed is its own.
        source_ids: HashMap<String, String>, "none";
    }
}

use crate::http;
use ingest::frontend;
use ingest::rtmp::server as rtmp;
use livesnap_core::{hub, snapshot};

/// The HTTP API's address by default.
pub const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081);
/// The RTMP listener's address by default.
pub const DEFAULT_RTMP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 1935);
/// The data folder by default.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Largest HTTP request body by default.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Seconds between retention sweeps by default.
pub const DEFAULT_RETENTION_SWEEP_S: u64 = 10;
/// Tries per callback delivery by default.
pub const DEFAULT_CALLBACK_MAX_ATTEMPTS: u32 = 6;
/// First callback retry delay by default.
pub const DEFAULT_CALLBACK_BACKOFF_MS: u64 = 1000;
/// WCS automatic snapshots: a picture every this many frames by default.
pub const DEFAULT_WCS_AUTO_RATE: u32 = 30;
/// The default number of async runtime threads: 0, one per core. One thread reads hundreds of
/// publishers (ingest only, 720p: a few hundredths of a percent of a core per stream), and with
/// 24 publishers it made 2.5x fewer context switches than two, but the server's CPU was the same
/// within the noise of this machine (docs/performance.md, session 7), so the default stays with
/// tokio's.
pub const DEFAULT_IO_THREADS: usize = 0;
/// Most async runtime threads accepted.
pub const MAX_IO_THREADS: usize = 256;

/// Seconds a shutdown may take by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 10;
/// Longest shutdown_timeout_s accepted.
pub const MAX_SHUTDOWN_TIMEOUT_S: u64 = 3600;
/// Seconds an HTTP request may take by default: well above the longest picture wait
/// (`snapshot_taking_interval_ms`, at most [`MAX_INTERVAL_MS`]).
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 60;

/// The storage location of WCS automatic snapshots (rooted at `snapshot_auto_dir`).
pub const WCS_AUTO_STORAGE: &str = "wcs-auto";

/// Largest snapshot_taking_interval_ms accepted (ten minutes).
pub const MAX_INTERVAL_MS: u64 = 600_000;

impl ServeArgs {
    /// The flags when `livesnap` runs with no command: only the environment applies.
    pub fn parse_from_env() -> ServeArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        <Only as clap::Parser>::parse_from(["livesnap"]).args
    }

    /// Builds the settings: defaults < file < environment and flags (clap reads both).
    pub fn settings(self) -> Result<Settings, String> {
        let mut s = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .map_err(|e| format!("config {}: {e}", path.display()))?
            }
            None => Settings::default(),
        };
        self.apply(&mut s);
        s.validate()?;
        Ok(s)
    }
}

impl Settings {
    /// Refuses values that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.snapshot_taking_interval_ms == 0
            || self.snapshot_taking_interval_ms > MAX_INTERVAL_MS
        {
            return Err(format!(
                "snapshot_taking_interval_ms must be 1..={MAX_INTERVAL_MS}"
            ));
        }
        if !matches!(
            self.snapshot_auto_naming.as_str(),
            "streamName" | "mediaSessionId"
        ) {
            return Err("snapshot_auto_naming must be streamName or mediaSessionId".into());
        }
        if self.snapshot_auto_rate == 0 {
            return Err("snapshot_auto_rate must be at least 1".into());
        }
        if self.retention_sweep_s == 0 {
            return Err("retention_sweep_s must be at least 1".into());
        }
        for (name, cfg) in &self.storage {
            livesnap_core::template::check_identifier("storage", name)
                .map_err(|e| format!("[storage.{name}]: {e}"))?;
            if name == WCS_AUTO_STORAGE {
                return Err(format!(
                    "[storage.{name}]: the name is reserved for WCS automatic snapshots"
                ));
            }
            let _ = cfg;
        }
        let max_merge = ingest::rtmp::server::MAX_MERGE_READ.as_millis() as u64;
        if self.rtmp_merge_read_ms > max_merge {
            return Err(format!(
                "rtmp_merge_read_ms must be at most {max_merge} (it delays every frame that much)"
            ));
        }
        if self.io_threads > MAX_IO_THREADS {
            return Err(format!("io_threads must be at most {MAX_IO_THREADS}"));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log_format must be text or json, got {:?}",
                self.log_format
            ));
        }
        if self.shutdown_timeout_s == 0 || self.shutdown_timeout_s > MAX_SHUTDOWN_TIMEOUT_S {
            return Err(format!(
                "shutdown_timeout_s must be 1..={MAX_SHUTDOWN_TIMEOUT_S}"
            ));
        }
        if self.request_timeout_s.saturating_mul(1000) <= self.snapshot_taking_interval_ms {
            return Err(format!(
                "request_timeout_s must be longer than snapshot_taking_interval_ms ({} ms)",
                self.snapshot_taking_interval_ms
            ));
        }
        let max_handshake = rtmp::MAX_HANDSHAKE_TIMEOUT.as_secs();
        for (name, v, max) in [
            (
                "rtmp_handshake_timeout_s",
                self.rtmp_handshake_timeout_s,
                max_handshake,
            ),
            (
                "http_header_timeout_s",
                self.http_header_timeout_s,
                http::MAX_TIMEOUT_S,
            ),
            (
                "http_body_timeout_s",
                self.http_body_timeout_s,
                http::MAX_TIMEOUT_S,
            ),
        ] {
            if v == 0 || v > max {
                return Err(format!("{name} must be 1..={max}"));
            }
        }
        if self.snapshot_taking_attempts == 0 {
            return Err("snapshot_taking_attempts must be at least 1".into());
        }
        if self.ingest_memory_bytes != 0 && self.ingest_memory_bytes < self.max_gop_bytes as u64 {
            return Err(format!(
                "ingest_memory_bytes must be 0 (from the machine's memory) or at least max_gop_bytes ({})",
                self.max_gop_bytes
            ));
        }
        let one_1080p = snapshot::work_bytes((1920, 1080), (1920, 1080));
        if self.picture_memory_bytes < one_1080p {
            return Err(format!(
                "picture_memory_bytes must be at least {one_1080p} (one 1080p picture)"
            ));
        }
        for (name, v) in [
            ("cache_entries", self.cache_entries),
            ("cache_bytes", self.cache_bytes),
            ("max_publishers", self.max_publishers),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("max_pending_connections", self.max_pending_connections),
            ("http_max_connections", self.http_max_connections),
            ("max_gop_bytes", self.max_gop_bytes),
            ("max_access_unit_bytes", self.max_access_unit_bytes),
            ("max_request_bytes", self.max_request_bytes),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The ingest memory budget, resolving 0 to an eighth of the machine's memory within
    /// [`MIN_AUTO_INGEST_MEMORY`]..[`MAX_AUTO_INGEST_MEMORY`].
    pub fn ingest_memory(&self) -> u64 {
        if self.ingest_memory_bytes > 0 {
            return self.ingest_memory_bytes;
        }
        media::budget::machine_memory()
            .map_or(MIN_AUTO_INGEST_MEMORY, |m| m / 8)
            .clamp(MIN_AUTO_INGEST_MEMORY, MAX_AUTO_INGEST_MEMORY)
    }

    /// Decode workers, resolving 0 to the core count.
    pub fn workers(&self) -> usize {
        or_cores(self.workers)
    }

    /// Async runtime threads, resolving 0 to the core count.
    pub fn io_threads(&self) -> usize {
        or_cores(self.io_threads)
    }

    /// How long a graceful shutdown may take.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_s)
    }

    /// The connection limits of the RTMP listener.
    pub fn rtmp_limits(&self) -> frontend::Limits {
        frontend::Limits::new(
            self.max_connections,
            self.max_connections_per_address,
            self.max_pending_connections,
        )
    }

    /// The connection limits of the HTTP listener.
    pub fn http_limits(&self) -> frontend::Limits {
        frontend::Limits::new(
            self.http_max_connections,
            self.max_connections_per_address,
            self.max_pending_connections,
        )
    }

    /// The on-demand timeout.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.snapshot_taking_interval_ms)
    }
}

/// Least ingest budget chosen from the machine's memory.
pub const MIN_AUTO_INGEST_MEMORY: u64 = 256 * 1024 * 1024;
/// Most ingest budget chosen from the machine's memory.
pub const MAX_AUTO_INGEST_MEMORY: u64 = 8 * 1024 * 1024 * 1024;

/// `n`, or the number of CPU cores for 0.
fn or_cores(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_is_one_key_one_variable_one_flag() {
        let mut keys = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(keys.insert(s.key), "{} declared twice", s.key);
            if let Some(env) = s.env {
                assert_eq!(
                    env,
                    format!("LIVESNAP_{}", s.key.to_uppercase()),
                    "{}",
                    s.key
                );
            }
            assert!(!s.doc.trim().is_empty(), "{} has no doc", s.key);
        }
        // Every flag clap knows is a declared setting (or --config).
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        for arg in Only::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "config" || id == "help" {
                continue;
            }
            let s = SETTINGS
                .iter()
                .find(|s| s.key == id)
                .unwrap_or_else(|| panic!("flag {id} is not declared"));
            assert_eq!(arg.get_long(), Some(&*id.replace('_', "-")));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), s.env);
        }
    }

    #[test]
    fn the_defaults_the_docs_show_are_the_defaults() {
        let default = format!("{:?}", Settings::default());
        // `<data_dir>/...`, `none`: an optional setting, unset by default.
        let unset = |s: &&SettingDoc| s.default.contains('<') || s.default == "none";
        for s in SETTINGS.iter().filter(|s| s.env.is_some() && !unset(s)) {
            // The shown default as a TOML value (a number, a bool, a list, or else a string).
            let parsed = [s.default.to_string(), format!("{:?}", s.default)]
                .iter()
                .find_map(|v| toml::from_str::<Settings>(&format!("{} = {v}", s.key)).ok());
            let p = parsed.unwrap_or_else(|| panic!("{}: {:?} is not a value", s.key, s.default));
            assert_eq!(
                format!("{p:?}"),
                default,
                "{}: the docs say {}",
                s.key,
                s.default
            );
        }
    }

    #[test]
    fn the_readme_settings_table_is_the_declaration() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n## Settings")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a Settings section");
        let mut rows = std::collections::BTreeMap::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let key = cells[0].trim_start_matches("| ").trim_matches('`');
            assert!(
                rows.insert(key, cells[1]).is_none(),
                "README lists {key} twice"
            );
        }
        for s in SETTINGS {
            let cell = rows
                .remove(s.key)
                .unwrap_or_else(|| panic!("README's settings table has no row for {}", s.key));
            assert!(
                cell.starts_with(&format!("`{}`", s.default)),
                "README shows the default of {} as {cell:?}, the code says {:?}",
                s.key,
                s.default
            );
        }
        assert!(
            rows.is_empty(),
            "README lists settings that do not exist: {rows:?}"
        );
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "snapshot_taking_interval_ms = 1500\nmax_publishers = 7\ndomains = [\"a.example\"]\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            max_publishers: Some(9),
            ..Default::default()
        };
        let s = args.settings().unwrap();
        assert_eq!(s.snapshot_taking_interval_ms, 1500);
        assert_eq!(s.max_publishers, 9);
        assert_eq!(s.domains, vec!["a.example".to_string()]);
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .settings()
        .unwrap_err();
        assert!(err.contains("no_such_key"), "{err}");
    }

    #[test]
    fn merged_read_defaults_off_and_is_bounded() {
        let s = ServeArgs::default().settings().unwrap();
        assert_eq!(s.rtmp_merge_read_ms, 0);
        let on = ServeArgs {
            rtmp_merge_read_ms: Some(40),
            ..Default::default()
        };
        assert_eq!(on.settings().unwrap().rtmp_merge_read_ms, 40);
        let err = ServeArgs {
            rtmp_merge_read_ms: Some(5000),
            ..Default::default()
        }
        .settings()
        .unwrap_err();
        assert!(err.contains("rtmp_merge_read_ms"), "{err}");
    }

    #[test]
    fn io_threads_default_to_one_per_core_and_are_bounded() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let s = ServeArgs::default().settings().unwrap();
        assert_eq!(s.io_threads(), cores);
        let one = ServeArgs {
            io_threads: Some(1),
            ..Default::default()
        };
        assert_eq!(one.settings().unwrap().io_threads(), 1);
        let err = ServeArgs {
            io_threads: Some(100_000),
            ..Default::default()
        }
        .settings()
        .unwrap_err();
        assert!(err.contains("io_threads"), "{err}");
    }

    #[test]
    fn refuses_zero_interval() {
        let args = ServeArgs {
            snapshot_taking_interval_ms: Some(0),
            ..Default::default()
        };
        assert!(args.settings().is_err());
    }
}
