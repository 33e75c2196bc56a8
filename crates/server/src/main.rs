//! The `livesnap` binary: `serve` runs the server, `grab` takes one picture of a file.

mod api;
mod auto_api;
mod callbacks;
mod config;
mod error;
mod grab;
mod malloc;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ingest::rtmp::server::RtmpConfig;
use livesnap_core::auto::{AutoConfig, Automation};
use livesnap_core::hub::{Hub, HubConfig, HubSink};
use livesnap_core::snapshot::{SnapshotConfig, Snapshotter};
use livesnap_core::template::{Retention, TemplateSpec};
use livesnap_store::index::Index;
use livesnap_store::spool::Spool;
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
        // Colour only for a terminal: logs piped to a file or a journal stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> std::process::ExitCode {
    malloc::tune();
    let command = Cli::parse()
        .command
        .unwrap_or_else(|| Command::Serve(config::ServeArgs::parse_from_env()));
    // The settings come first: they size the runtime.
    let (command, io_threads) = match command {
        Command::Serve(args) => match args.settings() {
            Ok(settings) => {
                let threads = settings.io_threads();
                (Run::Serve(Box::new(settings)), threads)
            }
            Err(e) => return fail(&e),
        },
        Command::Grab(args) => (Run::Grab(args), 1),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match command {
            Run::Serve(settings) => serve(*settings).await,
            Run::Grab(args) => {
                init_logs("warn");
                grab::run(args).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// What `main` runs once the runtime is up.
enum Run {
    Serve(Box<config::Settings>),
    Grab(grab::GrabArgs),
}

fn fail(e: &str) -> std::process::ExitCode {
    eprintln!("livesnap: {e}");
    std::process::ExitCode::FAILURE
}

async fn serve(settings: config::Settings) -> Result<(), String> {
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
        merge_read: Duration::from_millis(settings.rtmp_merge_read_ms),
        ..RtmpConfig::default()
    };
    tokio::spawn(ingest::rtmp::server::serve(
        rtmp,
        Arc::new(HubSink(hub.clone())),
        rtmp_config,
    ));

    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let auto = start_automation(&settings, hub.clone(), snapshots.clone(), &public_url).await?;
    let state = api::AppState {
        hub,
        snapshots,
        max_request_bytes: settings.max_request_bytes,
        auto: auto.0,
        callbacks: auto.1,
        public_url,
    };
    info!(http = %http_addr, rtmp = %rtmp_addr, data_dir = %settings.data_dir.display(), workers = settings.workers(), io_threads = settings.io_threads(), decoder = media::decode::default_decoder_name(), jpeg = media::picture::jpeg_encoder_name(), "livesnap ready");
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

/// Opens the index, the storage locations and the spool, and starts automatic snapshots and
/// callbacks.
async fn start_automation(
    settings: &config::Settings,
    hub: Arc<Hub>,
    snapshots: Arc<Snapshotter>,
    public_url: &str,
) -> Result<(Arc<Automation>, Arc<callbacks::Callbacks>), String> {
    use livesnap_store::location::Location;
    let data = &settings.data_dir;
    let index_url = settings
        .index
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data.join("index.db").display()));
    let index = Index::open(&index_url)
        .await
        .map_err(|e| format!("index {index_url}: {e}"))?;
    info!(index = index.backend(), "index open");
    let mut locations: HashMap<String, Arc<Location>> = HashMap::new();
    let local = Location::local("local", &data.join("snapshots"))
        .map_err(|e| format!("storage local: {e}"))?;
    locations.insert("local".into(), Arc::new(local));
    for (name, cfg) in &settings.storage {
        let location = Location::new(name, cfg).map_err(|e| format!("[storage.{name}]: {e}"))?;
        info!(storage = %name, at = %location.describe(), "storage location");
        locations.insert(name.clone(), Arc::new(location));
    }
    let fallback = if settings.snapshot_auto_enabled {
        let dir = settings
            .snapshot_auto_dir
            .clone()
            .unwrap_or_else(|| data.join("snapshot-auto"));
        let location = Location::local(config::WCS_AUTO_STORAGE, &dir)
            .map_err(|e| format!("snapshot_auto_dir: {e}"))?;
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
        let template = spec
            .check()
            .map_err(|e| format!("WCS automatic snapshots: {e}"))?;
        info!(dir = %dir.display(), rate = settings.snapshot_auto_rate, "WCS automatic snapshots on");
        Some(Arc::new(template))
    } else {
        None
    };
    let spool_dir = settings
        .spool_dir
        .clone()
        .unwrap_or_else(|| data.join("spool"));
    let spool = Spool::open(&spool_dir, settings.spool_max_bytes)
        .map_err(|e| format!("spool {}: {e}", spool_dir.display()))?;
    let callbacks = callbacks::Callbacks::start(callbacks::CallbackConfig {
        global_url: settings.callback_url.clone(),
        secret: settings.callback_secret.clone(),
        max_attempts: settings.callback_max_attempts.max(1),
        first_backoff: Duration::from_millis(settings.callback_backoff_ms),
        public_url: public_url.to_string(),
    });
    let auto = Automation::start(
        hub,
        snapshots,
        Arc::new(index),
        spool,
        locations,
        callbacks.clone(),
        AutoConfig {
            save_path: Some(data.join("automation.json")),
            source_ids: settings.source_ids.clone(),
            fallback,
            sweep_every: Duration::from_secs(settings.retention_sweep_s),
        },
    )
    .map_err(|e| e.to_string())?;
    Ok((auto, callbacks))
}
