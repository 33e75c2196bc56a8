//! Settings: defaults, then a TOML file (`--config`), then `LIVESNAP_<KEY>` environment
//! variables, then flags; each later source overrides the earlier ones.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
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
    /// Log filter (`info`, `debug`, `livesnap_ingest=debug,info`, ...); RUST_LOG wins.
    pub log: String,
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
            cache_entries: 256,
            cache_bytes: 64 * 1024 * 1024,
            max_publishers: 1000,
            max_connections: 2000,
            max_gop_bytes: 32 * 1024 * 1024,
            max_access_unit_bytes: 8 * 1024 * 1024,
            max_request_bytes: 64 * 1024,
            rtmp_idle_timeout_s: 30,
            log: "info".to_string(),
        }
    }
}

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
    /// Log filter [default: info].
    #[arg(long, env = "LIVESNAP_LOG")]
    pub log: Option<String>,
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
            cache_entries,
            cache_bytes,
            max_publishers,
            max_connections,
            max_gop_bytes,
            max_access_unit_bytes,
            max_request_bytes,
            rtmp_idle_timeout_s,
            log
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
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// The on-demand timeout.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.snapshot_taking_interval_ms)
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
    fn refuses_zero_interval() {
        let args = ServeArgs {
            snapshot_taking_interval_ms: Some(0),
            ..Default::default()
        };
        assert!(args.settings().is_err());
    }
}
