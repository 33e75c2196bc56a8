//! The whole server, started from its settings and stopped as one: [`start`] opens the index,
//! the storage locations and the spool, starts the front ends (RTMP, RTSP), automatic
//! snapshots, pull jobs, callbacks and the HTTP API, and hands back a [`RunningServer`] with the bound addresses.
//!
//! Shutdown runs in two phases, each on its own [`Lifecycle`]:
//! 1. the front: the listeners stop accepting, publishers are ended (their streams leave the
//!    hub, which tells the callbacks), HTTP requests in flight are answered, and the pictures
//!    in the making are stored or spooled; the spool and the retention sweeper stop;
//! 2. the back: callbacks still waiting are written to the index's queue for the next start.
//!
//! Then the index is closed. The whole takes at most `shutdown_timeout_s`; what is abandoned
//! at the deadline is named in the log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ingest::frontend::{ConnectionStats, FrontEnd};
use ingest::rtmp::server::{Playback, RtmpConfig, RtmpFrontEnd};
use ingest::rtsp::server::{RtspConfig, RtspFrontEnd};
use ingest::whip::{WhipConfig, WhipFrontEnd, WhipHandle};
use livesnap_core::auto::{AutoConfig, Automation};
use livesnap_core::clock::{Clock, SystemClock};
use livesnap_core::hub::{Hub, HubConfig, HubSink};
use livesnap_core::jobs::{Jobs, JobsConfig};
use livesnap_core::lifecycle::Lifecycle;
use livesnap_core::snapshot::{SnapshotConfig, Snapshotter};
use livesnap_core::template::{Retention, TemplateSpec};
use livesnap_store::index::Index;
use livesnap_store::location::Location;
use livesnap_store::spool::Spool;
use media::budget::MemoryBudget;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::callbacks::{CallbackConfig, Callbacks};
use crate::config::{self, Settings};
use crate::metrics::{Metrics, Sources};
use crate::pull::PullOpener;
use ingest::rtmp::client::PullConfig;

/// Why the server could not start. Each names the setting or resource to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder could not be created.
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr} (setting {setting}): {source}")]
    Listen {
        /// HTTP, RTMP or RTSP.
        what: &'static str,
        /// The setting that names the address.
        setting: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The index could not be opened (the URL's password is never shown).
    #[error("index (setting index): {0}")]
    Index(#[source] livesnap_store::Error),
    /// A storage location is unusable.
    #[error("storage location {name:?}: {source}")]
    Storage {
        /// The location's name.
        name: String,
        /// Why.
        #[source]
        source: livesnap_store::Error,
    },
    /// The spool folder is unusable.
    #[error("spool (setting spool_dir): {0}")]
    Spool(#[source] livesnap_store::Error),
    /// A setting's value cannot work.
    #[error("setting {setting}: {reason}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// Saved templates and bindings could not be loaded.
    #[error("automatic snapshots: {0}")]
    Automation(#[from] livesnap_core::auto::ConfigError),
}

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The HTTP API's address (the port is the real one when the setting asked for 0).
    pub http: SocketAddr,
    /// The RTMP listener's address.
    pub rtmp: SocketAddr,
    /// The RTSP listener's address.
    pub rtsp: SocketAddr,
    /// The WebRTC (WHIP) UDP socket's address.
    pub webrtc: SocketAddr,
    /// Whether the HTTP port speaks HTTPS.
    pub tls: bool,
    /// Every front end's listener.
    pub front_ends: Vec<FrontEndInfo>,
    state: AppState,
    front: Lifecycle,
    back: Lifecycle,
    index: Arc<Index>,
    shutdown_timeout: Duration,
}

/// A front end the server runs.
#[derive(Debug, Clone)]
pub struct FrontEndInfo {
    /// `rtmp`, `rtsp`, `whip`.
    pub protocol: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its connections.
    pub stats: Arc<ConnectionStats>,
}

/// Binds every front end the settings ask for, each on its own listener setting; WHIP's
/// handle is what the HTTP routes hand offers to.
async fn bind_front_ends(
    settings: &Settings,
    budget: &Arc<MemoryBudget>,
    publish_auth: &ingest::publish_auth::PublishAuth,
    hub: &Arc<Hub>,
) -> Result<(Vec<Box<dyn FrontEnd>>, WhipHandle), StartError> {
    let rtmp_config = RtmpConfig {
        domains: settings.domains.clone(),
        limits: settings.rtmp_limits(),
        handshake_timeout: Duration::from_secs(settings.rtmp_handshake_timeout_s),
        idle_timeout: Duration::from_secs(settings.rtmp_idle_timeout_s.max(1)),
        max_access_unit_bytes: settings.max_access_unit_bytes,
        merge_read: Duration::from_millis(settings.rtmp_merge_read_ms),
        budget: budget.clone(),
        publish_auth: publish_auth.clone(),
        playback: Playback(
            settings
                .rtmp_play
                .then(|| Arc::new(HubSink(hub.clone())) as Arc<dyn media::stream::StreamSource>),
        ),
        max_players: settings.rtmp_max_players,
        ..RtmpConfig::default()
    };
    let rtmp = RtmpFrontEnd::bind(settings.rtmp, rtmp_config)
        .await
        .map_err(|source| StartError::Listen {
            what: "RTMP",
            setting: "rtmp",
            addr: settings.rtmp,
            source,
        })?;
    let rtsp_config = RtspConfig {
        domains: settings.domains.clone(),
        // RTSP publishers share the RTMP listener's limits, each listener counting its own.
        limits: settings.rtmp_limits(),
        handshake_timeout: Duration::from_secs(settings.rtmp_handshake_timeout_s),
        idle_timeout: Duration::from_secs(settings.rtmp_idle_timeout_s.max(1)),
        // Checked by `Settings::validate`.
        udp_ports: settings.rtsp_udp_ports().unwrap_or((0, 0)),
        publish_auth: publish_auth.clone(),
        ..RtspConfig::default()
    };
    let rtsp = RtspFrontEnd::bind(settings.rtsp, rtsp_config)
        .await
        .map_err(|source| StartError::Listen {
            what: "RTSP",
            setting: "rtsp",
            addr: settings.rtsp,
            source,
        })?;
    let whip_config = WhipConfig {
        domains: settings.domains.clone(),
        candidates: webrtc_candidates(settings)?,
        limits: settings.whip_limits(),
        connect_timeout: Duration::from_secs(settings.webrtc_connect_timeout_s),
        idle_timeout: Duration::from_secs(settings.webrtc_idle_timeout_s),
        max_access_unit_bytes: settings.max_access_unit_bytes,
        keyframe_fir: settings.webrtc_keyframe_fir,
        codecs: [
            media::Codec::H265,
            media::Codec::Vp8,
            media::Codec::Vp9,
            media::Codec::Av1,
        ]
        .into_iter()
        .filter(|c| media::decode::cannot_decode(*c).is_none())
        .collect(),
        publish_auth: publish_auth.clone(),
        ..WhipConfig::default()
    };
    let (whip, whip_handle) = WhipFrontEnd::bind(settings.webrtc_udp, whip_config)
        .await
        .map_err(|source| StartError::Listen {
            what: "WebRTC (WHIP)",
            setting: "webrtc_udp",
            addr: settings.webrtc_udp,
            source,
        })?;
    Ok((
        vec![Box::new(rtmp), Box::new(rtsp), Box::new(whip)],
        whip_handle,
    ))
}

/// The ICE candidates WHIP publishers are given: `webrtc_candidates`, else `webrtc_udp`'s
/// address if specific, else the HTTP listener's if specific, else this machine's addresses
/// of `webrtc_udp`'s family. A port of 0 is `webrtc_udp`'s port.
fn webrtc_candidates(settings: &Settings) -> Result<Vec<SocketAddr>, StartError> {
    let named = settings
        .webrtc_candidates()
        .map_err(|reason| StartError::Setting {
            setting: "webrtc_candidates",
            reason,
        })?;
    let udp = settings.webrtc_udp;
    if !named.is_empty() || !udp.ip().is_unspecified() {
        return Ok(named);
    }
    let http = settings.http.ip();
    if !http.is_unspecified() && http.is_ipv4() == udp.is_ipv4() {
        return Ok(vec![SocketAddr::new(http, 0)]);
    }
    let ips: Vec<std::net::IpAddr> = crate::netif::addresses()
        .into_iter()
        // An IPv6 socket takes both families; an IPv4 one only its own.
        .filter(|ip| udp.is_ipv6() || ip.is_ipv4())
        .collect();
    Ok(ingest::whip::advertised(&ips, 0))
}

/// What a shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every task ended before the deadline.
    pub clean: bool,
    /// Tasks still running at the deadline (their work is lost, or in the spool).
    pub abandoned_tasks: usize,
    /// Callback deliveries left in the index's queue for the next start.
    pub callbacks_left: u64,
}

/// Starts the server: binds its listeners, opens what it keeps, starts every task.
pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    start_with_clock(settings, Arc::new(SystemClock::default())).await
}

/// [`start`] on another clock: every time the server reads (frame arrival, picture timeouts,
/// schedules, lag, retention, spool and callback backoff, event times) comes from `clock`.
pub async fn start_with_clock(
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    if media::decode::default_decoder_name() == "openh264" {
        warn!(
            "this build decodes with openh264 and encodes JPEG from RGB: a picture costs about twice \
             what it does with libavcodec and libjpeg-turbo. scripts/run builds the fast server \
             (cargo build --release --features full, with libavcodec-dev, clang, cmake and nasm)"
        );
    }
    let front = Lifecycle::new();
    let back = Lifecycle::new();

    let budget = MemoryBudget::new(settings.ingest_memory());
    info!(bytes = budget.limit(), "ingest memory budget");
    let hub = Hub::with_clock(
        HubConfig {
            max_streams: settings.max_publishers,
            max_gop_bytes: settings.max_gop_bytes,
            budget: budget.clone(),
        },
        clock.clone(),
    );
    let snapshots = Snapshotter::with_clock(
        SnapshotConfig {
            workers: settings.workers(),
            interval: settings.interval(),
            attempts: settings.snapshot_taking_attempts,
            cache_entries: settings.cache_entries,
            cache_bytes: settings.cache_bytes,
            memory: settings.picture_memory_bytes,
            keyframe_request_after: Duration::from_millis(settings.keyframe_request_after_ms),
        },
        clock.clone(),
    );
    let listen = |what, setting, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen {
                what,
                setting,
                addr,
                source,
            })
    };
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            Some(Arc::new(crate::tls::Tls::load(cert, key).map_err(|e| {
                StartError::Setting {
                    setting: "tls_cert",
                    reason: e.to_string(),
                }
            })?))
        }
        _ => None,
    };
    let http = listen("HTTP", "http", settings.http).await?;
    let http_addr = http.local_addr().map_err(|source| StartError::Listen {
        what: "HTTP",
        setting: "http",
        addr: settings.http,
        source,
    })?;
    // One for every front end: accounts change its domains' secrets as they change.
    let publish_auth = ingest::publish_auth::PublishAuth::new(settings.publish_secret.as_deref());
    let (front_ends, whip) = bind_front_ends(&settings, &budget, &publish_auth, &hub).await?;
    let rtmp_addr = front_ends
        .iter()
        .find(|f| f.protocol() == ingest::rtmp::server::PROTOCOL)
        .map_or(settings.rtmp, |f| f.local_addr());
    let rtsp_addr = front_ends
        .iter()
        .find(|f| f.protocol() == ingest::rtsp::server::PROTOCOL)
        .map_or(settings.rtsp, |f| f.local_addr());
    let webrtc_addr = front_ends
        .iter()
        .find(|f| f.protocol() == ingest::whip::PROTOCOL)
        .map_or(settings.webrtc_udp, |f| f.local_addr());
    let public_url = settings.public_url.clone().unwrap_or_else(|| {
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{http_addr}")
    });

    let index = open_index(&settings).await?;
    let accounts: Arc<livesnap_core::accounts::Accounts> = {
        let publish_auth = publish_auth.clone();
        livesnap_core::accounts::Accounts::start(
            index.clone(),
            clock.clone(),
            Box::new(move |secrets| publish_auth.set_domain_secrets(secrets)),
            &back,
        )
        .await
        .map_err(StartError::Index)?
    };
    let callbacks = Callbacks::start(
        CallbackConfig {
            global_url: settings.callback_url.clone(),
            secret: settings.callback_secret.clone(),
            max_attempts: settings.callback_max_attempts.max(1),
            first_backoff: Duration::from_millis(settings.callback_backoff_ms),
            public_url: public_url.clone(),
            clock: clock.clone(),
        },
        index.clone(),
        &back,
    )
    .await
    .map_err(StartError::Index)?;
    let auto = start_automation(
        &settings,
        hub.clone(),
        snapshots.clone(),
        index.clone(),
        callbacks.clone(),
        &front,
    )
    .await?;

    if accounts.any() && settings.admin_key.is_none() {
        warn!("accounts exist but admin_key is not set: the API is open to anyone and account keys scope nothing; set admin_key");
    }
    {
        let accounts = accounts.clone();
        hub.set_quota(Arc::new(move |domain: &str| {
            let account = accounts.owner_of(domain)?;
            let max = accounts.max_streams_of(&account)?;
            Some((account, max))
        }));
    }
    let sink: Arc<dyn media::stream::StreamSink> = Arc::new(HubSink(hub.clone()));
    let jobs = Jobs::start(
        index.clone(),
        auto.clone(),
        hub.clone(),
        sink.clone(),
        Arc::new(PullOpener::new(PullConfig {
            max_video_bytes: settings.max_access_unit_bytes,
            ..PullConfig::default()
        })),
        callbacks.clone(),
        JobsConfig {
            max_jobs: settings.max_jobs,
            public_url: public_url.clone(),
        },
        &front,
    )
    .await
    .map_err(StartError::Index)?;

    let listening: Vec<FrontEndInfo> = front_ends
        .iter()
        .map(|f| FrontEndInfo {
            protocol: f.protocol(),
            addr: f.local_addr(),
            stats: f.stats(),
        })
        .collect();
    for f in front_ends {
        front.spawn(f.serve(sink.clone(), front.token.clone(), front.tracker.clone()));
    }

    let http_stats = Arc::new(ConnectionStats::default());
    let metrics = Arc::new(Metrics::new(Sources {
        hub: hub.clone(),
        snapshots: snapshots.clone(),
        auto: auto.clone(),
        callbacks: callbacks.clone(),
        jobs: jobs.clone(),
        front_ends: listening
            .iter()
            .map(|f| (f.protocol, f.stats.clone()))
            .collect(),
        http: http_stats.clone(),
    }));
    let picture_rate = Arc::new(crate::rate::PictureRate::new(
        settings.picture_requests_per_s,
        hub.clock().clone(),
    ));
    let state = AppState {
        metrics,
        hub,
        snapshots,
        max_request_bytes: settings.max_request_bytes,
        request_timeout: Duration::from_secs(settings.request_timeout_s),
        body_timeout: Duration::from_secs(settings.http_body_timeout_s),
        auto,
        callbacks,
        jobs,
        auth: Arc::new(
            crate::auth::Auth::new(
                settings.admin_key.as_deref(),
                settings.metrics_public,
                settings.auth_failures_per_minute,
                clock.clone(),
            )
            .with_accounts(accounts.clone()),
        ),
        accounts,
        publish: Arc::new(crate::publish_api::PublishUrlMaker {
            secret: settings.publish_secret.clone(),
            host: settings
                .public_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_string)),
            rtmp_port: rtmp_addr.port(),
            rtsp_port: rtsp_addr.port(),
            public_url: public_url.clone(),
        }),
        public_url,
        whip,
        cors_origins: Arc::new(settings.cors_origins.clone()),
        picture_rate,
    };
    if settings.admin_key.is_none() && !http_addr.ip().is_loopback() {
        warn!(http = %http_addr, "the HTTP API is open to anyone who can reach it: set admin_key (LIVESNAP_ADMIN_KEY) to require an API key");
    }
    let app = api::app(state.clone());
    let http_config = crate::http::HttpConfig {
        limits: settings.http_limits(),
        header_timeout: Duration::from_secs(settings.http_header_timeout_s),
        stats: http_stats,
        tls: tls.clone(),
    };
    // Always, and caught before the listeners serve: without TLS a SIGHUP must not end the
    // server either.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(hangups) => {
                front.spawn_until_cancelled(reload_on_hangup(tls.clone(), hangups));
            }
            Err(e) => {
                warn!(error = %e, "SIGHUP cannot be caught: the certificate is read at start only")
            }
        }
    }
    front.spawn(crate::http::serve(
        http,
        app,
        http_config,
        front.token.clone(),
        front.tracker.clone(),
    ));
    warn_if_over_open_files(&settings);
    info!(http = %http_addr, rtmp = %rtmp_addr, rtsp = %rtsp_addr, webrtc = %webrtc_addr, data_dir = %settings.data_dir.display(), workers = settings.workers(), io_threads = settings.io_threads(), decoder = media::decode::default_decoder_name(), jpeg = media::picture::jpeg_encoder_name(), "livesnap ready");
    Ok(RunningServer {
        http: http_addr,
        rtmp: rtmp_addr,
        rtsp: rtsp_addr,
        webrtc: webrtc_addr,
        tls: settings.tls_cert.is_some(),
        front_ends: listening,
        state,
        front,
        back,
        index,
        shutdown_timeout: settings.shutdown_timeout(),
    })
}

impl RunningServer {
    /// What the API's handlers see: the hub, the snapshot service, automation, callbacks.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Waits for SIGTERM or SIGINT (or for the server's own end), then shuts down.
    pub async fn run_until_signal(self) -> ShutdownReport {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = self.front.token.cancelled() => {}
        }
        self.shutdown().await
    }

    /// Shuts down gracefully within `shutdown_timeout_s` (see the module's doc).
    pub async fn shutdown(self) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        // The back phase (writing the callback queue to the index) is quick; it gets a fifth.
        let front_deadline = deadline - self.shutdown_timeout / 5;
        info!(timeout_s = self.shutdown_timeout.as_secs(), "shutting down");
        let mut abandoned = 0;
        for (phase, life, until) in [
            (
                "front ends, pictures in flight",
                &self.front,
                front_deadline,
            ),
            ("callbacks", &self.back, deadline),
        ] {
            life.token.cancel();
            life.tracker.close();
            if tokio::time::timeout_at(until, life.tracker.wait())
                .await
                .is_err()
            {
                let left = life.tracker.len();
                abandoned += left;
                warn!(
                    phase,
                    tasks = left,
                    "shutdown: tasks still running at the deadline were abandoned (pictures not yet written are lost or in the spool; callbacks not yet delivered stay in the index's queue)"
                );
            }
        }
        let callbacks_left = self
            .state
            .callbacks
            .counters
            .left_for_next_start
            .load(std::sync::atomic::Ordering::Relaxed);
        self.index.close().await;
        info!(callbacks_left, "livesnap stopped");
        ShutdownReport {
            clean: abandoned == 0,
            abandoned_tasks: abandoned,
            callbacks_left,
        }
    }
}

/// Warns when the connection limits together exceed the open-file limit: past it accepts fail
/// (survived, but every listener is refused alike) before any limit refuses one address.
fn warn_if_over_open_files(settings: &Settings) {
    let Some(files) = crate::fdlimit::current() else {
        return;
    };
    let wanted = (settings.max_connections + settings.http_max_connections) as u64
        + crate::fdlimit::RESERVED;
    if wanted > files {
        warn!(
            open_files = files,
            max_connections = settings.max_connections,
            http_max_connections = settings.http_max_connections,
            "the connection limits exceed the open-file limit: lower them or raise `ulimit -n`"
        );
    }
}

/// Reads the certificate and key again at each SIGHUP; files that do not load leave the one in
/// use (and say why).
#[cfg(unix)]
async fn reload_on_hangup(
    tls: Option<Arc<crate::tls::Tls>>,
    mut hangups: tokio::signal::unix::Signal,
) {
    while hangups.recv().await.is_some() {
        let Some(tls) = tls.clone() else {
            info!("SIGHUP: nothing to read again (no tls_cert)");
            continue;
        };
        // File reads off the async threads.
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(())) => info!("SIGHUP: TLS certificate and key read again"),
            Ok(Err(e)) => {
                warn!(error = %e, "SIGHUP: TLS certificate not reloaded; the one in use stays")
            }
            Err(e) => warn!(error = %e, "SIGHUP: the reload did not finish"),
        }
    }
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
}

async fn open_index(settings: &Settings) -> Result<Arc<Index>, StartError> {
    let url = settings
        .index
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", settings.data_dir.join("index.db").display()));
    let index = Index::open(&url).await.map_err(StartError::Index)?;
    info!(index = index.backend(), "index open");
    Ok(Arc::new(index))
}

/// Opens the storage locations and the spool, and starts automatic snapshots on `life`
/// (templates and bindings come from the index; `automation.json` is imported once).
async fn start_automation(
    settings: &Settings,
    hub: Arc<Hub>,
    snapshots: Arc<Snapshotter>,
    index: Arc<Index>,
    callbacks: Arc<Callbacks>,
    life: &Lifecycle,
) -> Result<Arc<Automation>, StartError> {
    let data = &settings.data_dir;
    let storage = |name: &str, source| StartError::Storage {
        name: name.to_string(),
        source,
    };
    let mut locations: HashMap<String, Arc<Location>> = HashMap::new();
    let local =
        Location::local("local", &data.join("snapshots")).map_err(|e| storage("local", e))?;
    locations.insert("local".into(), Arc::new(local));
    for (name, cfg) in &settings.storage {
        let location = Location::new(name, cfg).map_err(|e| storage(name, e))?;
        info!(storage = %name, at = %location.describe(), "storage location");
        locations.insert(name.clone(), Arc::new(location));
    }
    let fallback = if settings.snapshot_auto_enabled {
        let dir = settings
            .snapshot_auto_dir
            .clone()
            .unwrap_or_else(|| data.join("snapshot-auto"));
        let location = Location::local(config::WCS_AUTO_STORAGE, &dir)
            .map_err(|e| storage(config::WCS_AUTO_STORAGE, e))?;
        locations.insert(config::WCS_AUTO_STORAGE.into(), Arc::new(location));
        let folder = if settings.snapshot_auto_naming == "mediaSessionId" {
            "{MediaSessionId}"
        } else {
            "{StreamName}"
        };
        let spec = TemplateSpec {
            name: config::WCS_AUTO_STORAGE.into(),
            interval_s: None,
            every_n_frames: Some(settings.snapshot_auto_rate),
            format: "png".into(),
            quality: media::picture::DEFAULT_JPEG_QUALITY,
            width: None,
            height: None,
            storage: config::WCS_AUTO_STORAGE.into(),
            modes: vec!["sequence".into()],
            overwrite_path: livesnap_core::path::DEFAULT_OVERWRITE_PATH.into(),
            sequence_path: format!("{folder}/{{Sequence}}.png"),
            retention: Retention {
                keep_last: (settings.snapshot_auto_retention > 0)
                    .then_some(settings.snapshot_auto_retention),
                max_age_s: None,
            },
            callback_url: None,
        };
        let template = spec.check().map_err(|e| StartError::Setting {
            setting: "snapshot_auto_enabled",
            reason: e.to_string(),
        })?;
        info!(dir = %dir.display(), rate = settings.snapshot_auto_rate, "WCS automatic snapshots on");
        Some(Arc::new(template))
    } else {
        None
    };
    let spool_dir = settings
        .spool_dir
        .clone()
        .unwrap_or_else(|| data.join("spool"));
    let spool = Spool::open(&spool_dir, settings.spool_max_bytes).map_err(StartError::Spool)?;
    Ok(Automation::start(
        hub,
        snapshots,
        index,
        spool,
        locations,
        callbacks,
        AutoConfig {
            import_path: Some(data.join("automation.json")),
            source_ids: settings.source_ids.clone(),
            fallback,
            sweep_every: Duration::from_secs(settings.retention_sweep_s),
        },
        life,
    )
    .await?)
}
