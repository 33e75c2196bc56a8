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
    /// For a number: the values accepted, inclusive (checked at start, naming the setting).
    pub range: Option<(u64, u64)>,
}

/// A flag's help: its doc without the space a doc comment starts with.
fn help_text(doc: &'static str) -> &'static str {
    doc.trim_start()
}

/// Declares the settings. Four kinds: `value` (a plain setting), `optional` (none by default),
/// `list` (comma-separated in the environment and flags), `table` (TOML only). A number's
/// `range(MIN, MAX)` (inclusive, as u64) is checked at start and shown in the README.
macro_rules! settings {
    (@range) => { None };
    (@range $min:expr, $max:expr) => { Some(($min, $max)) };
    (
        value { $( $(#[doc = $vdoc:literal])* $vname:ident ($venv:literal): $vty:ty = $vdefault:expr, $vshown:literal $(, range($vmin:expr, $vmax:expr))?; )* }
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
               #[arg(long, env = $venv, hide_env_values = true, help = help_text(concat!($($vdoc,)* " [default: ", $vshown, "]")))] pub $vname: Option<$vty>, )*
            $( $(#[doc = $odoc])*
               #[arg(long, env = $oenv, hide_env_values = true, help = help_text(concat!($($odoc,)* " [default: ", $oshown, "]")))] pub $oname: Option<$oty>, )*
            $( $(#[doc = $ldoc])*
               #[arg(long, env = $lenv, hide_env_values = true, value_delimiter = ',', help = help_text(concat!($($ldoc,)* " [default: ", $lshown, "]")))] pub $lname: Option<$lty>, )*
        }

        /// Every setting, in declaration order, as the docs show it.
        pub const SETTINGS: &[SettingDoc] = &[
            $( SettingDoc { key: stringify!($vname), env: Some($venv), default: $vshown, doc: concat!($($vdoc),*), range: settings!(@range $($vmin, $vmax)?) }, )*
            $( SettingDoc { key: stringify!($oname), env: Some($oenv), default: $oshown, doc: concat!($($odoc),*), range: None }, )*
            $( SettingDoc { key: stringify!($lname), env: Some($lenv), default: $lshown, doc: concat!($($ldoc),*), range: None }, )*
            $( SettingDoc { key: stringify!($tname), env: None, default: $tshown, doc: concat!($($tdoc),*), range: None }, )*
        ];

        impl Settings {
            /// Refuses a number outside its declared range, naming the setting.
            fn check_ranges(&self) -> Result<(), String> {
                $( $(
                    // Every numeric type here (u32, u64, usize) fits u64 on the platforms we build.
                    let v = u64::try_from(self.$vname).unwrap_or(u64::MAX);
                    if !($vmin..=$vmax).contains(&v) {
                        return Err(format!(
                            "{} must be {}..={}, got {v}", stringify!($vname), $vmin, $vmax
                        ));
                    }
                )? )*
                Ok(())
            }

            /// Sets a numeric setting by name (`false`: no such number, or `v` does not fit its
            /// type), for tests that try any value.
            #[cfg(test)]
            fn set_number(&mut self, key: &str, v: u64) -> bool {
                $( $(
                    if key == stringify!($vname) {
                        let _ = ($vmin, $vmax);
                        return match <$vty>::try_from(v) {
                            Ok(x) => {
                                self.$vname = x;
                                true
                            }
                            Err(_) => false,
                        };
                    }
                )? )*
                false
            }
        }

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
        /// RTSP ingest address (publishers push with ANNOUNCE/RECORD, RTP over TCP or UDP).
        rtsp ("LIVESNAP_RTSP"): SocketAddr = DEFAULT_RTSP, "0.0.0.0:8554";
        /// UDP ports for RTSP publishers' RTP and RTCP, `FIRST-LAST` (a pair per track, RTP
        /// on the even port), or `any` for whatever free ports the system gives.
        rtsp_udp_ports ("LIVESNAP_RTSP_UDP_PORTS"): String =
            format!("{}-{}", rtsp::DEFAULT_UDP_PORTS.0, rtsp::DEFAULT_UDP_PORTS.1), "30000-30999";
        /// UDP address of every WebRTC (WHIP) session: ICE-lite, one port for all publishers.
        webrtc_udp ("LIVESNAP_WEBRTC_UDP"): SocketAddr = DEFAULT_WEBRTC_UDP, "0.0.0.0:8189";
        /// Seconds a WHIP session may take from its offer to connected (ICE and DTLS); then it
        /// is dropped with its stream.
        webrtc_connect_timeout_s ("LIVESNAP_WEBRTC_CONNECT_TIMEOUT_S"): u64 =
            whip::DEFAULT_CONNECT_TIMEOUT.as_secs(), "10", range(1, MAX_TIMEOUT_S);
        /// Seconds a connected WHIP session may send no video before it is ended (a publisher
        /// that vanishes is also ended when ICE consent expires, after about 30 s).
        webrtc_idle_timeout_s ("LIVESNAP_WEBRTC_IDLE_TIMEOUT_S"): u64 =
            whip::DEFAULT_IDLE_TIMEOUT.as_secs(), "30", range(1, MAX_TIMEOUT_S);
        /// Most WHIP sessions at once, connected or not.
        webrtc_max_sessions ("LIVESNAP_WEBRTC_MAX_SESSIONS"): usize = whip::DEFAULT_MAX_SESSIONS,
            "500", range(1, MAX_COUNT);
        /// Most WHIP sessions at once that have not connected yet (one address may hold an
        /// eighth of them).
        webrtc_max_pending_sessions ("LIVESNAP_WEBRTC_MAX_PENDING_SESSIONS"): usize =
            whip::DEFAULT_MAX_PENDING_SESSIONS, "64", range(1, MAX_COUNT);
        /// Before an on-demand picture of a stream whose publisher can be asked (WHIP), ask it
        /// for a keyframe (RTCP PLI) when the newest is older than this many ms, and picture
        /// the keyframe that answers. 0 asks every time.
        keyframe_request_after_ms ("LIVESNAP_KEYFRAME_REQUEST_AFTER_MS"): u64 =
            snapshot::DEFAULT_KEYFRAME_REQUEST_AFTER.as_millis() as u64, "1000",
            range(0, MAX_INTERVAL_MS);
        /// Ask WHIP publishers for keyframes with FIR as well as PLI.
        webrtc_keyframe_fir ("LIVESNAP_WEBRTC_KEYFRAME_FIR"): bool = false, "false";
        /// Where livesnap keeps its data.
        data_dir ("LIVESNAP_DATA_DIR"): PathBuf = PathBuf::from(DEFAULT_DATA_DIR), "./data";
        /// How long an on-demand snapshot may wait for a picture, in ms (WCS setting).
        snapshot_taking_interval_ms ("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS"): u64 =
            snapshot::DEFAULT_INTERVAL.as_millis() as u64, "3000", range(1, MAX_INTERVAL_MS);
        /// How many keyframes an on-demand snapshot may try (WCS setting).
        snapshot_taking_attempts ("LIVESNAP_SNAPSHOT_TAKING_ATTEMPTS"): u32 =
            snapshot::DEFAULT_ATTEMPTS, "30", range(1, MAX_ATTEMPTS);
        /// Decodes at once (and decoders kept); 0 means one per CPU core.
        workers ("LIVESNAP_WORKERS"): usize = 0, "0", range(0, MAX_WORKERS);
        /// Threads of the async runtime (ingest, HTTP, storage, callbacks); decoding runs on the
        /// `workers` threads besides. 0 means one per CPU core.
        io_threads ("LIVESNAP_IO_THREADS"): usize = DEFAULT_IO_THREADS, "0", range(0, MAX_IO_THREADS);
        /// On-demand picture requests a second one client (an account, else an address) may
        /// make, cache hits included; past a second's burst they wait their turn, and past a
        /// second of waiting are refused 429. 0: no limit.
        picture_requests_per_s ("LIVESNAP_PICTURE_REQUESTS_PER_S"): u32 = 0, "0",
            range(0, MAX_PICTURE_REQUESTS_PER_S);
        /// Pictures kept in the snapshot cache.
        cache_entries ("LIVESNAP_CACHE_ENTRIES"): usize = snapshot::DEFAULT_CACHE_ENTRIES, "256",
            range(1, MAX_CACHE_ENTRIES);
        /// Bytes of pictures kept in the snapshot cache.
        cache_bytes ("LIVESNAP_CACHE_BYTES"): usize = snapshot::DEFAULT_CACHE_BYTES, "67108864",
            range(1, MAX_CACHE_BYTES);
        /// Memory all picture work at once may take (decoders' pictures and output buffers, as
        /// estimated per picture); work past it waits, a picture that alone needs more is
        /// refused. At least one 1080p picture's worth.
        picture_memory_bytes ("LIVESNAP_PICTURE_MEMORY_BYTES"): u64 =
            snapshot::DEFAULT_PICTURE_MEMORY_BYTES, "1073741824",
            range(MIN_PICTURE_MEMORY_BYTES, MAX_PICTURE_MEMORY_BYTES);
        /// Most live streams at once.
        max_publishers ("LIVESNAP_MAX_PUBLISHERS"): usize = hub::DEFAULT_MAX_STREAMS, "1000",
            range(1, MAX_COUNT);
        /// Most pull jobs running at once; one more is refused with 429.
        max_jobs ("LIVESNAP_MAX_JOBS"): usize = livesnap_core::jobs::DEFAULT_MAX_JOBS, "100",
            range(1, MAX_COUNT);
        /// Most RTMP connections at once.
        max_connections ("LIVESNAP_MAX_CONNECTIONS"): usize = rtmp::DEFAULT_MAX_CONNECTIONS, "2000",
            range(1, MAX_COUNT);
        /// Most bytes buffered per stream for its current GOP.
        max_gop_bytes ("LIVESNAP_MAX_GOP_BYTES"): usize = hub::DEFAULT_MAX_GOP_BYTES, "33554432",
            range(1, MAX_GOP_BYTES);
        /// Memory all ingest may hold at once (every stream's GOP and every publisher's partial
        /// messages); past it the largest GOPs are trimmed to their keyframe. 0 means an eighth of
        /// the machine's memory, within 256 MiB..8 GiB; at least `max_gop_bytes` is used.
        ingest_memory_bytes ("LIVESNAP_INGEST_MEMORY_BYTES"): u64 = 0, "0",
            range(0, MAX_INGEST_MEMORY_BYTES);
        /// Largest video access unit accepted, in bytes.
        max_access_unit_bytes ("LIVESNAP_MAX_ACCESS_UNIT_BYTES"): usize =
            rtmp::DEFAULT_MAX_ACCESS_UNIT_BYTES, "8388608", range(1, MAX_ACCESS_UNIT_BYTES);
        /// Largest HTTP request body, in bytes.
        max_request_bytes ("LIVESNAP_MAX_REQUEST_BYTES"): usize = DEFAULT_MAX_REQUEST_BYTES, "65536",
            range(1, MAX_REQUEST_BYTES);
        /// Seconds a connected publisher may send nothing before it is dropped.
        rtmp_idle_timeout_s ("LIVESNAP_RTMP_IDLE_TIMEOUT_S"): u64 =
            rtmp::DEFAULT_IDLE_TIMEOUT.as_secs(), "30", range(1, MAX_TIMEOUT_S);
        /// RTMP players (ffmpeg, VLC, another server's pull) may play live streams from the
        /// RTMP port; with publish_secret they need a signed URL, as publishers do.
        rtmp_play ("LIVESNAP_RTMP_PLAY"): bool = false, "false";
        /// Most RTMP players at once (with rtmp_play), so that they never take every
        /// connection slot from publishers; one more is refused.
        rtmp_max_players ("LIVESNAP_RTMP_MAX_PLAYERS"): usize = rtmp::DEFAULT_MAX_PLAYERS, "200",
            range(1, MAX_COUNT);
        /// Merged read for publishers, in ms: a publishing socket is read on the ticks of one
        /// process-wide clock of this period (fewer wakeups; 0 = read as bytes arrive).
        rtmp_merge_read_ms ("LIVESNAP_RTMP_MERGE_READ_MS"): u64 =
            rtmp::DEFAULT_MERGE_READ.as_millis() as u64, "0", range(0, MAX_MERGE_READ_MS);
        /// Seconds from an RTMP connection's accept to its publish accepted, however slowly its
        /// bytes trickle in; then it is closed.
        rtmp_handshake_timeout_s ("LIVESNAP_RTMP_HANDSHAKE_TIMEOUT_S"): u64 =
            rtmp::DEFAULT_HANDSHAKE_TIMEOUT.as_secs(), "10",
            range(1, rtmp::MAX_HANDSHAKE_TIMEOUT.as_secs());
        /// Most connections from one address (an IPv6 /64) on each listener (RTMP, HTTP).
        max_connections_per_address ("LIVESNAP_MAX_CONNECTIONS_PER_ADDRESS"): usize =
            frontend::DEFAULT_MAX_PER_ADDRESS, "100", range(1, MAX_COUNT);
        /// Most connections on each listener that have not yet published (RTMP) or sent a whole
        /// request head (HTTP); one address may hold an eighth of them.
        max_pending_connections ("LIVESNAP_MAX_PENDING_CONNECTIONS"): usize =
            frontend::DEFAULT_MAX_PENDING, "256", range(1, MAX_COUNT);
        /// Most HTTP connections at once; more are answered 503 and closed.
        http_max_connections ("LIVESNAP_HTTP_MAX_CONNECTIONS"): usize =
            http::DEFAULT_MAX_CONNECTIONS, "1024", range(1, MAX_COUNT);
        /// Seconds an HTTP connection may take to send a request head, from its accept or the
        /// end of its previous request (so also how long an idle keep-alive connection stays).
        http_header_timeout_s ("LIVESNAP_HTTP_HEADER_TIMEOUT_S"): u64 =
            http::DEFAULT_HEADER_TIMEOUT.as_secs(), "10", range(1, http::MAX_TIMEOUT_S);
        /// Seconds an HTTP request body may take to arrive whole, from its head; then 408.
        http_body_timeout_s ("LIVESNAP_HTTP_BODY_TIMEOUT_S"): u64 =
            http::DEFAULT_BODY_TIMEOUT.as_secs(), "10", range(1, http::MAX_TIMEOUT_S);
        /// Serve `/metrics` without an API key when `admin_key` is set (for a Prometheus that
        /// cannot send one).
        metrics_public ("LIVESNAP_METRICS_PUBLIC"): bool = false, "false";
        /// Wrong API keys one address may send per minute; past it the address is answered
        /// 429 until its minute is over.
        auth_failures_per_minute ("LIVESNAP_AUTH_FAILURES_PER_MINUTE"): u32 =
            crate::auth::DEFAULT_FAILURES_PER_MINUTE, "10", range(1, MAX_COUNT);
        /// Log filter (`info`, `debug`, `livesnap_ingest=debug,info`, ...); RUST_LOG wins.
        log ("LIVESNAP_LOG"): String = "info".to_string(), "info";
        /// Log lines as `text` or `json` (one object per line).
        log_format ("LIVESNAP_LOG_FORMAT"): String = "text".to_string(), "text";
        /// Seconds a shutdown may take: pictures in flight are finished and callbacks queued in
        /// the index before the server gives up on them and exits.
        shutdown_timeout_s ("LIVESNAP_SHUTDOWN_TIMEOUT_S"): u64 = DEFAULT_SHUTDOWN_TIMEOUT_S, "10",
            range(1, MAX_SHUTDOWN_TIMEOUT_S);
        /// Seconds an HTTP request may take before it is answered 408.
        request_timeout_s ("LIVESNAP_REQUEST_TIMEOUT_S"): u64 = DEFAULT_REQUEST_TIMEOUT_S, "60",
            range(1, MAX_TIMEOUT_S);
        /// Most bytes the spool holds before it drops pictures.
        spool_max_bytes ("LIVESNAP_SPOOL_MAX_BYTES"): u64 =
            livesnap_store::spool::DEFAULT_MAX_BYTES, "268435456", range(0, MAX_SPOOL_BYTES);
        /// Seconds between retention sweeps.
        retention_sweep_s ("LIVESNAP_RETENTION_SWEEP_S"): u64 = DEFAULT_RETENTION_SWEEP_S, "10",
            range(1, MAX_RETENTION_SWEEP_S);
        /// Tries per callback delivery.
        callback_max_attempts ("LIVESNAP_CALLBACK_MAX_ATTEMPTS"): u32 =
            DEFAULT_CALLBACK_MAX_ATTEMPTS, "6", range(1, MAX_CALLBACK_ATTEMPTS);
        /// Milliseconds before the first callback retry (doubled each time).
        callback_backoff_ms ("LIVESNAP_CALLBACK_BACKOFF_MS"): u64 = DEFAULT_CALLBACK_BACKOFF_MS, "1000",
            range(0, MAX_CALLBACK_BACKOFF_MS);
        /// WCS: automatic snapshots of every stream no binding matches.
        snapshot_auto_enabled ("LIVESNAP_SNAPSHOT_AUTO_ENABLED"): bool = false, "false";
        /// WCS: folder per stream named by `streamName` or `mediaSessionId`.
        snapshot_auto_naming ("LIVESNAP_SNAPSHOT_AUTO_NAMING"): String =
            "streamName".to_string(), "streamName";
        /// WCS: a picture every this many frames.
        snapshot_auto_rate ("LIVESNAP_SNAPSHOT_AUTO_RATE"): u32 = DEFAULT_WCS_AUTO_RATE, "30",
            range(1, template::MAX_EVERY_N_FRAMES as u64);
        /// WCS: keep the last this many pictures per stream (0 keeps all).
        snapshot_auto_retention ("LIVESNAP_SNAPSHOT_AUTO_RETENTION"): u64 = 0, "0",
            range(0, template::MAX_KEEP_LAST);
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
        /// The administrator's API key: with it set, every route but /healthz and /readyz
        /// (and /metrics with `metrics_public`) needs `Authorization: Bearer <key>`; without
        /// it the API is open to anyone who reaches it.
        admin_key ("LIVESNAP_ADMIN_KEY"): String, "none";
        /// With it, a publish (RTMP, RTSP) must carry `expires=<unix>&sign=<hex HMAC-SHA256 of
        /// "{app}/{stream}:{expires}">` in its URL's query; `POST /v1/publish-urls` mints them.
        publish_secret ("LIVESNAP_PUBLISH_SECRET"): String, "none";
        /// PEM certificate chain (leaf first): with `tls_key`, the HTTP port speaks HTTPS only;
        /// both files are read again on SIGHUP.
        tls_cert ("LIVESNAP_TLS_CERT"): PathBuf, "none";
        /// PEM private key of `tls_cert`.
        tls_key ("LIVESNAP_TLS_KEY"): PathBuf, "none";
        /// Base URL of this server as others reach it, for links in callbacks.
        public_url ("LIVESNAP_PUBLIC_URL"): String, "http://<http>";
        /// WCS: where automatic snapshots go.
        snapshot_auto_dir ("LIVESNAP_SNAPSHOT_AUTO_DIR"): PathBuf, "<data_dir>/snapshot-auto";
    }
    list {
        /// Host names that are domains when they appear in an RTMP tcUrl (comma-separated in
        /// the environment and flags).
        domains ("LIVESNAP_DOMAINS"): Vec<String> = Vec::new(), "[]";
        /// Addresses advertised to WHIP publishers as ICE candidates (`IP` or `IP:PORT`; the
        /// port defaults to `webrtc_udp`'s). Empty: `webrtc_udp`'s address if it is a specific
        /// one, else the HTTP listener's if specific, else this machine's addresses.
        webrtc_candidates ("LIVESNAP_WEBRTC_CANDIDATES"): Vec<String> = Vec::new(), "[]";
        /// Origins (`https://app.example`) whose pages may call the API from a browser while it
        /// is open (no `admin_key`), and publish over WHIP while publishes are unsigned (no
        /// `publish_secret`); `*` for any. Otherwise any origin may (with the key, the signature).
        cors_origins ("LIVESNAP_CORS_ORIGINS"): Vec<String> = Vec::new(), "[]";
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
use ingest::rtsp::server as rtsp;
use ingest::whip;
use livesnap_core::{hub, snapshot, template};

/// The HTTP API's address by default.
pub const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081);
/// The RTMP listener's address by default.
pub const DEFAULT_RTMP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 1935);
/// The RTSP listener's address by default.
pub const DEFAULT_RTSP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8554);
/// The WebRTC (WHIP) UDP address by default.
pub const DEFAULT_WEBRTC_UDP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8189);
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
pub const MAX_IO_THREADS: u64 = 256;
/// Most decode workers accepted.
pub const MAX_WORKERS: u64 = 256;
/// Most keyframes an on-demand snapshot may try.
pub const MAX_ATTEMPTS: u64 = 1000;
/// Most of anything counted (cached pictures, publishers, connections): far above what one
/// process serves, far below where a sum of two of them could overflow.
pub const MAX_COUNT: u64 = 1_000_000;
/// Largest snapshot cache.
pub const MAX_CACHE_ENTRIES: u64 = MAX_COUNT;
/// Largest snapshot cache in bytes (64 GiB).
pub const MAX_CACHE_BYTES: u64 = 64 << 30;
/// Smallest picture_memory_bytes: one 1080p picture's work (a test holds it to
/// `snapshot::work_bytes`).
pub const MIN_PICTURE_MEMORY_BYTES: u64 = 1920 * 1080 * (9 + 8);
/// Largest picture_memory_bytes (1 TiB).
pub const MAX_PICTURE_MEMORY_BYTES: u64 = 1 << 40;
/// Largest max_gop_bytes (1 GiB per stream).
pub const MAX_GOP_BYTES: u64 = 1 << 30;
/// Largest max_access_unit_bytes (256 MiB).
pub const MAX_ACCESS_UNIT_BYTES: u64 = 256 << 20;
/// Largest max_request_bytes (64 MiB).
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;
/// Highest picture_requests_per_s: a million a second is no limit at all.
const MAX_PICTURE_REQUESTS_PER_S: u64 = 1_000_000;
/// Longest rtmp_idle_timeout_s and request_timeout_s: an hour. Every timeout is bounded, so
/// that adding it to a clock reading can never overflow.
pub const MAX_TIMEOUT_S: u64 = 3600;
/// Longest rtmp_merge_read_ms (ingest's MAX_MERGE_READ).
pub const MAX_MERGE_READ_MS: u64 =
    rtmp::MAX_MERGE_READ.as_secs() * 1000 + rtmp::MAX_MERGE_READ.subsec_millis() as u64;
/// Largest spool (1 TiB; 0 spools nothing).
pub const MAX_SPOOL_BYTES: u64 = 1 << 40;
/// Longest time between retention sweeps: a day.
pub const MAX_RETENTION_SWEEP_S: u64 = 86_400;
/// Most tries per callback delivery.
pub const MAX_CALLBACK_ATTEMPTS: u64 = 100;
/// Longest first callback retry delay: the longest backoff between retries.
pub const MAX_CALLBACK_BACKOFF_MS: u64 = crate::callbacks::MAX_BACKOFF.as_secs() * 1000;

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
    /// Refuses values that cannot work: every number outside its declared range (so that no
    /// setting overflows where it is multiplied or added to a clock reading), and the checks
    /// that span settings.
    pub fn validate(&self) -> Result<(), String> {
        self.check_ranges()?;
        if let Some(key) = &self.admin_key {
            // A key a client cannot send (spaces are trimmed, non-ASCII is not a header
            // value) or guess-short would lock everyone out or in.
            let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
            if !(16..=crate::auth::MAX_KEY_LEN).contains(&key.len()) || !printable {
                return Err(format!(
                    "admin_key must be 16..={} printable ASCII characters without spaces",
                    crate::auth::MAX_KEY_LEN
                ));
            }
        }
        if let Some(secret) = &self.publish_secret {
            let min = livesnap_core::accounts::MIN_SECRET_LEN;
            if secret.len() < min {
                return Err(format!("publish_secret must be at least {min} bytes"));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together: give both, or neither".into());
        }
        if !matches!(
            self.snapshot_auto_naming.as_str(),
            "streamName" | "mediaSessionId"
        ) {
            return Err("snapshot_auto_naming must be streamName or mediaSessionId".into());
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
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log_format must be text or json, got {:?}",
                self.log_format
            ));
        }
        if self.request_timeout_s.saturating_mul(1000) <= self.snapshot_taking_interval_ms {
            return Err(format!(
                "request_timeout_s must be longer than snapshot_taking_interval_ms ({} ms)",
                self.snapshot_taking_interval_ms
            ));
        }
        self.rtsp_udp_ports()?;
        self.webrtc_candidates()?;
        Ok(())
    }

    /// `rtsp_udp_ports` as a range: `(0, 0)` for `any`.
    pub fn rtsp_udp_ports(&self) -> Result<(u16, u16), String> {
        let text = self.rtsp_udp_ports.trim();
        if text == "any" {
            return Ok((0, 0));
        }
        let range = text.split_once('-').and_then(|(a, b)| {
            let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
            (a >= 1 && b > a).then_some((a, b))
        });
        range.ok_or_else(|| {
            format!("rtsp_udp_ports must be FIRST-LAST (1..=65535, at least two ports) or any, got {text:?}")
        })
    }

    /// The ingest memory budget, resolving 0 to an eighth of the machine's memory within
    /// [`MIN_AUTO_INGEST_MEMORY`]..[`MAX_AUTO_INGEST_MEMORY`].
    /// A budget below one full GOP would trim every stream: at least `max_gop_bytes` is used.
    pub fn ingest_memory(&self) -> u64 {
        if self.ingest_memory_bytes > 0 {
            return self.ingest_memory_bytes.max(self.max_gop_bytes as u64);
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

    /// The session limits of the WHIP front end.
    pub fn whip_limits(&self) -> frontend::Limits {
        frontend::Limits::new(
            self.webrtc_max_sessions,
            self.max_connections_per_address,
            self.webrtc_max_pending_sessions,
        )
    }

    /// `webrtc_candidates` as addresses (port 0: `webrtc_udp`'s).
    pub fn webrtc_candidates(&self) -> Result<Vec<SocketAddr>, String> {
        self.webrtc_candidates
            .iter()
            .map(|c| {
                let c = c.trim();
                c.parse::<SocketAddr>()
                    .or_else(|_| {
                        c.parse::<std::net::IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 0))
                    })
                    .ok()
                    .filter(|a| !a.ip().is_unspecified())
                    .ok_or_else(|| {
                        format!("webrtc_candidates: {c:?} is not a specific IP address or IP:PORT")
                    })
            })
            .collect()
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

/// Largest ingest budget accepted.
pub const MAX_INGEST_MEMORY_BYTES: u64 = 1 << 40;
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
                cells.len() >= 4,
                "README's row for {key} has no range column"
            );
            assert!(
                rows.insert(key, (cells[1], cells[2])).is_none(),
                "README lists {key} twice"
            );
        }
        for s in SETTINGS {
            let (cell, range) = rows
                .remove(s.key)
                .unwrap_or_else(|| panic!("README's settings table has no row for {}", s.key));
            assert!(
                cell.starts_with(&format!("`{}`", s.default)),
                "README shows the default of {} as {cell:?}, the code says {:?}",
                s.key,
                s.default
            );
            let want = s
                .range
                .map_or("-".to_string(), |(min, max)| format!("`{min}..={max}`"));
            assert_eq!(range, want, "README's range of {}", s.key);
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
    fn the_smallest_picture_memory_is_one_1080p_picture() {
        assert_eq!(
            MIN_PICTURE_MEMORY_BYTES,
            snapshot::work_bytes((1920, 1080), (1920, 1080))
        );
        assert_eq!(MAX_MERGE_READ_MS, rtmp::MAX_MERGE_READ.as_millis() as u64);
    }

    #[test]
    fn rtsp_udp_ports_is_a_range_of_two_ports_or_more_or_any() {
        let with = |v: &str| Settings {
            rtsp_udp_ports: v.into(),
            ..Settings::default()
        };
        assert_eq!(Settings::default().rtsp_udp_ports(), Ok((30000, 30999)));
        assert_eq!(with("any").rtsp_udp_ports(), Ok((0, 0)));
        assert_eq!(with(" 40000 - 40001 ").rtsp_udp_ports(), Ok((40000, 40001)));
        for bad in ["", "0-10", "5-4", "7-7", "1-65536", "x", "30000", "-1-5"] {
            let err = with(bad).validate().unwrap_err();
            assert!(err.starts_with("rtsp_udp_ports"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn every_number_has_a_range_and_the_defaults_are_in_it() {
        let defaults = Settings::default();
        defaults.validate().unwrap();
        for s in SETTINGS.iter().filter(|s| s.range.is_some()) {
            let (min, max) = s.range.unwrap();
            assert!(min <= max, "{}", s.key);
            let mut t = defaults.clone();
            assert!(t.set_number(s.key, min), "{}", s.key);
        }
        // The numbers without a range: none (a bool or text is not a number).
        let numbers = [
            "webrtc_connect_timeout_s",
            "webrtc_idle_timeout_s",
            "webrtc_max_sessions",
            "webrtc_max_pending_sessions",
            "keyframe_request_after_ms",
            "snapshot_taking_interval_ms",
            "snapshot_taking_attempts",
            "workers",
            "io_threads",
            "picture_requests_per_s",
            "cache_entries",
            "cache_bytes",
            "picture_memory_bytes",
            "max_publishers",
            "max_jobs",
            "max_connections",
            "max_gop_bytes",
            "ingest_memory_bytes",
            "max_access_unit_bytes",
            "max_request_bytes",
            "rtmp_idle_timeout_s",
            "rtmp_max_players",
            "rtmp_merge_read_ms",
            "rtmp_handshake_timeout_s",
            "max_connections_per_address",
            "max_pending_connections",
            "http_max_connections",
            "http_header_timeout_s",
            "http_body_timeout_s",
            "auth_failures_per_minute",
            "shutdown_timeout_s",
            "request_timeout_s",
            "spool_max_bytes",
            "retention_sweep_s",
            "callback_max_attempts",
            "callback_backoff_ms",
            "snapshot_auto_rate",
            "snapshot_auto_retention",
        ];
        let ranged: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.range.is_some())
            .map(|s| s.key)
            .collect();
        assert_eq!(ranged, numbers);
    }

    #[test]
    fn the_values_that_would_overflow_are_refused_by_name() {
        for (key, v) in [
            ("retention_sweep_s", u64::MAX),
            ("callback_backoff_ms", u64::MAX),
            ("rtmp_idle_timeout_s", u64::MAX),
            ("request_timeout_s", u64::MAX),
            ("snapshot_auto_retention", u64::MAX),
            ("max_connections", u64::MAX),
            ("http_max_connections", u64::MAX),
            ("snapshot_auto_rate", 0),
            ("callback_max_attempts", 0),
        ] {
            let mut s = Settings::default();
            assert!(s.set_number(key, v));
            let err = s.validate().unwrap_err();
            assert!(err.starts_with(key), "{key} = {v}: {err}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Settings in which every number may take any value of its range: the one check that
        /// spans two numbers (request_timeout_s longer than snapshot_taking_interval_ms) holds
        /// for all of them.
        fn permissive() -> Settings {
            Settings {
                snapshot_taking_interval_ms: 1,
                request_timeout_s: MAX_TIMEOUT_S,
                ..Settings::default()
            }
        }

        fn any_value() -> impl Strategy<Value = u64> {
            prop_oneof![
                any::<u64>(),
                0u64..=2_000_000,
                Just(u64::MAX),
                Just(u64::from(u32::MAX) + 1),
            ]
        }

        proptest! {
            /// Any value of any numeric setting: accepted exactly when inside its declared
            /// range, else refused naming the setting; never a panic.
            #[test]
            fn numbers_are_accepted_exactly_in_their_range(
                which in 0..SETTINGS.iter().filter(|s| s.range.is_some()).count(),
                v in any_value(),
                edge in 0..4usize,
            ) {
                let doc = SETTINGS.iter().filter(|s| s.range.is_some()).nth(which).unwrap();
                let (min, max) = doc.range.unwrap();
                // Now and then the edges themselves and just past them.
                let v = match edge {
                    0 => min.saturating_sub(1),
                    1 => max.saturating_add(1),
                    _ => v,
                };
                let mut s = permissive();
                if s.set_number(doc.key, v) {
                    let checked = s.validate();
                    if (min..=max).contains(&v) {
                        prop_assert!(checked.is_ok(), "{} = {}: {:?}", doc.key, v, checked);
                    } else {
                        let err = checked.unwrap_err();
                        prop_assert!(err.starts_with(doc.key), "{} = {}: {}", doc.key, v, err);
                        prop_assert!(err.contains(&format!("{min}..={max}")), "{}", err);
                    }
                } else {
                    // Too large for its type: a TOML file, a flag or a variable cannot hold it
                    // either; the range must not reach past the type.
                    prop_assert!(v > max, "{} = {} fits the range but not the type", doc.key, v);
                }
            }
        }
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
