//! Settings: defaults, then a TOML file (`--config`), then `LIVESNAP_<KEY>` environment
//! variables, then flags; each later source overrides the earlier ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use livesnap_store::location::LocationConfig;
use serde::Deserialize;

/// Every setting of `livesnap serve`, as the TOML file spells them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP API address (the WCS REST port).
    pub http: SocketAddr,
    /// RTMP ingest address.
    pub rtmp: SocketAddr,
    /// Where livesnap keeps its data.
    pub data_dir: PathBuf,
    /// Host names that are domains when they appear in an RTMP tcUrl.
    pub domains: Vec<String>,
    /// How long an on-demand snapshot may wait for a picture (WCS setting).
    pub snapshot_taking_interval_ms: u64,
    /// How many keyframes an on-demand snapshot may try (WCS setting).
    pub snapshot_taking_attempts: u32,
    /// Decodes at once (and decoders kept); 0 means one per CPU core.
    pub workers: usize,
    /// Threads of the async runtime (ingest, HTTP, storage, callbacks); decoding runs on the
    /// `workers` threads besides. 0 means one per CPU core.
    pub io_threads: usize,
    /// Pictures kept in the snapshot cache.
    pub cache_entries: usize,
    /// Bytes of pictures kept in the snapshot cache.
    pub cache_bytes: usize,
    /// Most live streams at once.
    pub max_publishers: usize,
    /// Most RTMP connections at once.
    pub max_connections: usize,
    /// Most bytes buffered per stream for its current GOP.
    pub max_gop_bytes: usize,
    /// Largest video access unit accepted.
    pub max_access_unit_bytes: usize,
    /// Largest HTTP request body.
    pub max_request_bytes: usize,
    /// Seconds a connected publisher may send nothing before it is dropped.
    pub rtmp_idle_timeout_s: u64,
    /// Merged read for publishers, in ms: a publishing socket is read on the ticks of one
    /// process-wide clock of this period (fewer wakeups; 0 = read as bytes arrive).
    pub rtmp_merge_read_ms: u64,
    /// Log filter (`info`, `debug`, `livesnap_ingest=debug,info`, ...); RUST_LOG wins.
    pub log: String,
    /// Log lines as `text` or `json` (one object per line).
    pub log_format: String,
    /// Seconds a shutdown may take: pictures in flight are finished and callbacks queued in
    /// the index before the server gives up on them and exits.
    pub shutdown_timeout_s: u64,
    /// Seconds an HTTP request may take before it is answered 408 (a picture request is
    /// bounded by `snapshot_taking_interval_ms` before that).
    pub request_timeout_s: u64,
    /// Named storage locations (`[storage.NAME]` tables); `local` exists by default.
    pub storage: HashMap<String, LocationConfig>,
    /// Domain -> SourceID for path patterns (`[source_ids]`); a domain not listed is its own.
    pub source_ids: HashMap<String, String>,
    /// The index: `sqlite://PATH` or `postgres://...` [default: sqlite under the data dir].
    pub index: Option<String>,
    /// Where pictures wait while storage is down [default: <data_dir>/spool].
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool holds before it drops pictures.
    pub spool_max_bytes: u64,
    /// Seconds between retention sweeps.
    pub retention_sweep_s: u64,
    /// Receives every event, besides templates' own callback URLs.
    pub callback_url: Option<String>,
    /// HMAC-SHA256 key for the X-Livesnap-Signature header of callbacks.
    pub callback_secret: Option<String>,
    /// Tries per callback delivery.
    pub callback_max_attempts: u32,
    /// Milliseconds before the first callback retry (doubled each time).
    pub callback_backoff_ms: u64,
    /// Base URL of this server as others reach it, for links in callbacks [default: http://<http>].
    pub public_url: Option<String>,
    /// WCS: automatic snapshots of every stream no binding matches.
    pub snapshot_auto_enabled: bool,
    /// WCS: where automatic snapshots go [default: <data_dir>/snapshot-auto].
    pub snapshot_auto_dir: Option<PathBuf>,
    /// WCS: folder per stream named by `streamName` or `mediaSessionId`.
    pub snapshot_auto_naming: String,
    /// WCS: a picture every this many frames.
    pub snapshot_auto_rate: u32,
    /// WCS: keep the last this many pictures per stream (0 keeps all).
    pub snapshot_auto_retention: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http: ([0, 0, 0, 0], 8081).into(),
            rtmp: ([0, 0, 0, 0], 1935).into(),
            data_dir: PathBuf::from("./data"),
            domains: Vec::new(),
            snapshot_taking_interval_ms: 3000,
            snapshot_taking_attempts: 30,
            workers: 0,
            io_threads: DEFAULT_IO_THREADS,
            cache_entries: 256,
            cache_bytes: 64 * 1024 * 1024,
            max_publishers: 1000,
            max_connections: 2000,
            max_gop_bytes: 32 * 1024 * 1024,
            max_access_unit_bytes: 8 * 1024 * 1024,
            max_request_bytes: 64 * 1024,
            rtmp_idle_timeout_s: 30,
            rtmp_merge_read_ms: ingest::rtmp::server::DEFAULT_MERGE_READ.as_millis() as u64,
            log: "info".to_string(),
            log_format: "text".to_string(),
            shutdown_timeout_s: DEFAULT_SHUTDOWN_TIMEOUT_S,
            request_timeout_s: DEFAULT_REQUEST_TIMEOUT_S,
            storage: HashMap::new(),
            source_ids: HashMap::new(),
            index: None,
            spool_dir: None,
            spool_max_bytes: livesnap_store::spool::DEFAULT_MAX_BYTES,
            retention_sweep_s: 10,
            callback_url: None,
            callback_secret: None,
            callback_max_attempts: 6,
            callback_backoff_ms: 1000,
            public_url: None,
            snapshot_auto_enabled: false,
            snapshot_auto_dir: None,
            snapshot_auto_naming: "streamName".to_string(),
            snapshot_auto_rate: 30,
            snapshot_auto_retention: 0,
        }
    }
}

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

/// The flags of `livesnap serve`; each also reads `LIVESNAP_<NAME>` from the environment.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "LIVESNAP_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP API address [default: 0.0.0.0:8081].
    #[arg(long, env = "LIVESNAP_HTTP")]
    pub http: Option<SocketAddr>,
    /// RTMP ingest address [default: 0.0.0.0:1935].
    #[arg(long, env = "LIVESNAP_RTMP")]
    pub rtmp: Option<SocketAddr>,
    /// Data directory [default: ./data].
    #[arg(long, env = "LIVESNAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Domains recognised from the RTMP tcUrl host (comma-separated).
    #[arg(long, env = "LIVESNAP_DOMAINS", value_delimiter = ',')]
    pub domains: Option<Vec<String>>,
    /// On-demand snapshot timeout in ms [default: 3000].
    #[arg(long, env = "LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS")]
    pub snapshot_taking_interval_ms: Option<u64>,
    /// Keyframes an on-demand snapshot may try [default: 30].
    #[arg(long, env = "LIVESNAP_SNAPSHOT_TAKING_ATTEMPTS")]
    pub snapshot_taking_attempts: Option<u32>,
    /// Decode workers; 0 = one per core [default: 0].
    #[arg(long, env = "LIVESNAP_WORKERS")]
    pub workers: Option<usize>,
    /// Async runtime threads (ingest, HTTP, storage); 0 = one per core [default: 0].
    #[arg(long, env = "LIVESNAP_IO_THREADS")]
    pub io_threads: Option<usize>,
    /// Snapshot cache entries [default: 256].
    #[arg(long, env = "LIVESNAP_CACHE_ENTRIES")]
    pub cache_entries: Option<usize>,
    /// Bytes of pictures in the snapshot cache [default: 67108864].
    #[arg(long, env = "LIVESNAP_CACHE_BYTES")]
    pub cache_bytes: Option<usize>,
    /// Most live streams [default: 1000].
    #[arg(long, env = "LIVESNAP_MAX_PUBLISHERS")]
    pub max_publishers: Option<usize>,
    /// Most RTMP connections [default: 2000].
    #[arg(long, env = "LIVESNAP_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most bytes buffered per stream GOP [default: 33554432].
    #[arg(long, env = "LIVESNAP_MAX_GOP_BYTES")]
    pub max_gop_bytes: Option<usize>,
    /// Largest video access unit in bytes [default: 8388608].
    #[arg(long, env = "LIVESNAP_MAX_ACCESS_UNIT_BYTES")]
    pub max_access_unit_bytes: Option<usize>,
    /// Largest HTTP request body in bytes [default: 65536].
    #[arg(long, env = "LIVESNAP_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Seconds before a silent publisher is dropped [default: 30].
    #[arg(long, env = "LIVESNAP_RTMP_IDLE_TIMEOUT_S")]
    pub rtmp_idle_timeout_s: Option<u64>,
    /// Merged read for RTMP publishers in ms, 0 = off [default: 0].
    #[arg(long, env = "LIVESNAP_RTMP_MERGE_READ_MS")]
    pub rtmp_merge_read_ms: Option<u64>,
    /// Log filter [default: info].
    #[arg(long, env = "LIVESNAP_LOG")]
    pub log: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "LIVESNAP_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Seconds a graceful shutdown may take [default: 10].
    #[arg(long, env = "LIVESNAP_SHUTDOWN_TIMEOUT_S")]
    pub shutdown_timeout_s: Option<u64>,
    /// Seconds an HTTP request may take [default: 60].
    #[arg(long, env = "LIVESNAP_REQUEST_TIMEOUT_S")]
    pub request_timeout_s: Option<u64>,
    /// Index URL: sqlite://PATH or postgres://... [default: sqlite://<data_dir>/index.db].
    #[arg(long, env = "LIVESNAP_INDEX")]
    pub index: Option<String>,
    /// Spool directory [default: <data_dir>/spool].
    #[arg(long, env = "LIVESNAP_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Spool size limit in bytes [default: 268435456].
    #[arg(long, env = "LIVESNAP_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Seconds between retention sweeps [default: 10].
    #[arg(long, env = "LIVESNAP_RETENTION_SWEEP_S")]
    pub retention_sweep_s: Option<u64>,
    /// Global callback URL.
    #[arg(long, env = "LIVESNAP_CALLBACK_URL")]
    pub callback_url: Option<String>,
    /// Callback signing secret.
    #[arg(long, env = "LIVESNAP_CALLBACK_SECRET")]
    pub callback_secret: Option<String>,
    /// Tries per callback [default: 6].
    #[arg(long, env = "LIVESNAP_CALLBACK_MAX_ATTEMPTS")]
    pub callback_max_attempts: Option<u32>,
    /// First callback retry delay in ms [default: 1000].
    #[arg(long, env = "LIVESNAP_CALLBACK_BACKOFF_MS")]
    pub callback_backoff_ms: Option<u64>,
    /// Public base URL for links in callbacks [default: http://<http address>].
    #[arg(long, env = "LIVESNAP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// WCS automatic snapshots on/off [default: false].
    #[arg(long, env = "LIVESNAP_SNAPSHOT_AUTO_ENABLED")]
    pub snapshot_auto_enabled: Option<bool>,
    /// WCS automatic snapshot folder [default: <data_dir>/snapshot-auto].
    #[arg(long, env = "LIVESNAP_SNAPSHOT_AUTO_DIR")]
    pub snapshot_auto_dir: Option<PathBuf>,
    /// WCS automatic snapshot folder naming: streamName or mediaSessionId [default: streamName].
    #[arg(long, env = "LIVESNAP_SNAPSHOT_AUTO_NAMING")]
    pub snapshot_auto_naming: Option<String>,
    /// WCS automatic snapshot every N frames [default: 30].
    #[arg(long, env = "LIVESNAP_SNAPSHOT_AUTO_RATE")]
    pub snapshot_auto_rate: Option<u32>,
    /// WCS automatic snapshots kept per stream, 0 = all [default: 0].
    #[arg(long, env = "LIVESNAP_SNAPSHOT_AUTO_RETENTION")]
    pub snapshot_auto_retention: Option<u64>,
}

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
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { s.$f = v; } )* };
        }
        over!(
            http,
            rtmp,
            data_dir,
            domains,
            snapshot_taking_interval_ms,
            snapshot_taking_attempts,
            workers,
            io_threads,
            cache_entries,
            cache_bytes,
            max_publishers,
            max_connections,
            max_gop_bytes,
            max_access_unit_bytes,
            max_request_bytes,
            rtmp_idle_timeout_s,
            rtmp_merge_read_ms,
            spool_max_bytes,
            retention_sweep_s,
            callback_max_attempts,
            callback_backoff_ms,
            snapshot_auto_enabled,
            snapshot_auto_naming,
            snapshot_auto_rate,
            snapshot_auto_retention,
            log,
            log_format,
            shutdown_timeout_s,
            request_timeout_s
        );
        macro_rules! over_opt {
            ($($f:ident),*) => { $( if self.$f.is_some() { s.$f = self.$f; } )* };
        }
        over_opt!(
            index,
            spool_dir,
            callback_url,
            callback_secret,
            public_url,
            snapshot_auto_dir
        );
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
        if self.snapshot_taking_attempts == 0 {
            return Err("snapshot_taking_attempts must be at least 1".into());
        }
        for (name, v) in [
            ("cache_entries", self.cache_entries),
            ("cache_bytes", self.cache_bytes),
            ("max_publishers", self.max_publishers),
            ("max_connections", self.max_connections),
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

    /// The on-demand timeout.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.snapshot_taking_interval_ms)
    }
}

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
