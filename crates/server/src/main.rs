//! The `livesnap` binary: `serve` runs the server, `grab` takes one picture of a file or a stream. All the
//! work is in the library; this parses the command line, sizes the runtime and runs.

use std::io::Write;

use clap::{Parser, Subcommand};
use livesnap::{config, fdlimit, grab, logs, malloc, server};

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

// Parsed once at start: the size of the settings variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(config::ServeArgs),
    /// Take one picture of a local FLV, H.264 or H.265 file, or of an rtmp:// stream.
    Grab(grab::GrabArgs),
}

/// What `main` runs once the runtime is up.
enum Run {
    Serve(Box<config::Settings>),
    Grab(grab::GrabArgs),
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
                logs::init("warn", "text");
                grab::run(args).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &str) -> std::process::ExitCode {
    eprintln!("livesnap: {e}");
    std::process::ExitCode::FAILURE
}

async fn serve(settings: config::Settings) -> Result<(), String> {
    logs::init(&settings.log, &settings.log_format);
    // Every connection is a file descriptor: the soft limit (often 1024) is no server's limit.
    match fdlimit::raise() {
        Some((before, after)) => {
            tracing::info!(open_files = after, was = before, "open-file limit")
        }
        None => tracing::warn!("the open-file limit could not be read"),
    }
    let running = server::start(settings).await.map_err(|e| e.to_string())?;
    // One machine-readable line on stdout, for scripts and tests that bind port 0.
    println!(
        "{}",
        serde_json::json!({ "event": "listening", "http": running.http.to_string(), "rtmp": running.rtmp.to_string(), "rtsp": running.rtsp.to_string(), "webrtc": running.webrtc.to_string(), "tls": running.tls })
    );
    let _ = std::io::stdout().flush();
    running.run_until_signal().await;
    Ok(())
}
