//! End-to-end test harness: one launcher of the real `livesnap` binary ([`launch`], wrapped by
//! [`Server`]), one HTTP client ([`request`]), publishers (a real ffmpeg, and the test publisher
//! of `livesnap-testkit` for what ffmpeg cannot send), and pictures compared with the source
//! decoded by ffmpeg (PSNR).
//!
//! Every wait is a poll with a deadline; nothing here asserts timing by sleeping.
//! ffmpeg/ffprobe are required: a test panics (never skips) when they are missing.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_livesnap");

/// How long a test waits for the server, a stream or a state change before failing.
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// tools

/// Panics with a clear message when ffmpeg or ffprobe is not on PATH (tests never skip).
pub fn require_ffmpeg() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        for tool in ["ffmpeg", "ffprobe"] {
            let ok = Command::new(tool)
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "`{tool}` is required by the end-to-end tests but was not found on PATH \
                 (scripts/test installs it: apt-get install ffmpeg)"
            );
        }
    });
}

/// Runs a command to completion; panics with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "command failed ({}): {cmd:?}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn ffmpeg_cmd() -> Command {
    require_ffmpeg();
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    c
}

/// Deterministic pseudo-random bytes (xorshift), so garbage is reproducible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP (reqwest on one shared runtime, so tests stay plain #[test] functions): the harness's
// one runtime and one client

/// The harness's runtime: HTTP requests, database set-up.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        // No idle connections kept: a server closing an idle keep-alive connection (its
        // header timeout) races the next request on it, which then fails to send; and a pooled
        // connection must never carry a request to the next server of the same test binary.
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client")
    })
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response (status {}) is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request with any method; `Err` only when no answer came.
pub fn request(method: &str, url: &str, body: Option<&str>) -> Result<Resp, String> {
    request_with(method, url, body, &[])
}

/// [`request`] with extra headers.
pub fn request_with(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .unwrap_or_else(|e| panic!("bad method {method:?}: {e}"));
    let body = body.map(str::to_string);
    runtime().block_on(async {
        let start = Instant::now();
        let mut rb = client().request(method.clone(), url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                rb = rb.header("content-type", "application/json");
            }
            rb = rb.body(b);
        }
        let r = rb
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Ok(Resp {
            status,
            headers,
            body,
            elapsed: start.elapsed(),
        })
    })
}

pub fn http_get(url: &str) -> Result<Resp, String> {
    request("GET", url, None)
}

pub fn http_post(url: &str, body: &str) -> Result<Resp, String> {
    request("POST", url, Some(body))
}

// ---------------------------------------------------------------------------------------------
// the server

/// A `livesnap serve` that has said it listens.
pub struct Launched {
    pub child: Child,
    pub http: String,
    pub rtmp: String,
    pub rtsp: String,
    /// The WebRTC (WHIP) UDP socket.
    pub webrtc: String,
}

/// The one launcher of the real binary: `livesnap serve` on port 0 with its data in `data`,
/// stderr in `log`, `config` as its TOML file when given, `env` (the test's own `LIVESNAP_*`
/// are removed first) and extra flags. Waits for its `{"event":"listening",...}` line on stdout
/// and checks `/healthz` agrees.
pub fn launch(
    data: &Path,
    log: &Path,
    config: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Launched {
    launch_under(&[], data, log, config, env, args)
}

/// [`launch`] under a wrapper command (`prefix`, e.g. `prlimit --nofile=64:64`) that runs the
/// binary with the arguments that follow it.
pub fn launch_under(
    prefix: &[&str],
    data: &Path,
    log: &Path,
    config: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Launched {
    require_ffmpeg();
    let mut cmd = match prefix.split_first() {
        None => Command::new(BIN),
        Some((wrapper, wrapper_args)) => {
            let mut c = Command::new(wrapper);
            c.args(wrapper_args).arg(BIN);
            c
        }
    };
    cmd.args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--rtmp",
        "127.0.0.1:0",
        "--rtsp",
        "127.0.0.1:0",
        "--rtsp-udp-ports",
        "any",
        "--webrtc-udp",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(data);
    if let Some(path) = config {
        cmd.arg("--config").arg(path);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(log).expect("log file"));
    for (k, _) in std::env::vars() {
        if k.starts_with("LIVESNAP_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(WAIT) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "livesnap serve printed no listening line on stdout within {WAIT:?}; stderr:\n{}",
                tail(log, 60)
            );
        }
    };
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!(
            "first stdout line of livesnap serve is not JSON ({e}): {line:?}\nstderr:\n{}",
            tail(log, 60)
        )
    });
    assert_eq!(
        v["event"], "listening",
        "unexpected first stdout line: {line}"
    );
    let addr = |k: &str| {
        let a = v[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} address in {line}"))
            .to_string();
        assert!(
            a.starts_with("127.0.0.1:") && !a.ends_with(":0"),
            "bad {k} address {a}"
        );
        a
    };
    let (http, rtmp, rtsp, webrtc) = (addr("http"), addr("rtmp"), addr("rtsp"), addr("webrtc"));
    if v["tls"] == true {
        // HTTPS: the test that asked for it checks /healthz with its own certificate.
        return Launched {
            child,
            http,
            rtmp,
            rtsp,
            webrtc,
        };
    }
    // The contract says it is ready when it prints the line; /healthz must agree.
    let r = http_get(&format!("http://{http}/healthz"))
        .unwrap_or_else(|e| panic!("/healthz right after the listening line: {e}"));
    assert_eq!(
        r.status,
        200,
        "/healthz right after the listening line: {}",
        r.text()
    );
    Launched {
        child,
        http,
        rtmp,
        rtsp,
        webrtc,
    }
}

static SERVER_N: AtomicU64 = AtomicU64::new(0);

/// The real `livesnap serve` on port 0, started by [`launch`], with its data in `<work>/data`;
/// stopping it and starting another on the same `work` dir is a restart.
pub struct Server {
    child: Child,
    pub http: String,
    pub rtmp: String,
    pub rtsp: String,
    pub webrtc: String,
    /// Data, logs and config files; a restart starts another server on it.
    pub work: PathBuf,
    pub data: PathBuf,
    log: PathBuf,
    /// The work dir, when the server made its own (removed after the server is dropped).
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[], &[])
    }

    pub fn start_env(env: &[(&str, &str)]) -> Server {
        Server::start_with(env, &[])
    }

    /// Starts with `env` and extra flags in a work dir of its own.
    pub fn start_with(env: &[(&str, &str)], extra_args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in(tmp.path(), env, extra_args, None);
        s._tmp = Some(tmp);
        s
    }

    /// Starts with extra flags under a wrapper command (see [`launch_under`]), in a work dir of
    /// its own.
    pub fn start_under(prefix: &[&str], extra_args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in_under(prefix, tmp.path(), &[], extra_args, None);
        s._tmp = Some(tmp);
        s
    }

    /// Starts in `work` with `env` (`LIVESNAP_*` of the test's own environment are removed
    /// first), extra flags, and `config` as the TOML file when given.
    pub fn start_in(
        work: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        config: Option<&str>,
    ) -> Server {
        Server::start_in_under(&[], work, env, args, config)
    }

    fn start_in_under(
        prefix: &[&str],
        work: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        config: Option<&str>,
    ) -> Server {
        let n = SERVER_N.fetch_add(1, Ordering::Relaxed);
        let data = work.join("data");
        let log = work.join(format!("server{n}.log"));
        let config_path = config.map(|text| {
            let path = work.join(format!("config{n}.toml"));
            fs::write(&path, text).unwrap();
            path
        });
        let Launched {
            child,
            http,
            rtmp,
            rtsp,
            webrtc,
        } = launch_under(prefix, &data, &log, config_path.as_deref(), env, args);
        Server {
            child,
            http,
            rtmp,
            rtsp,
            webrtc,
            work: work.to_path_buf(),
            data,
            log,
            _tmp: None,
        }
    }

    /// SIGTERM: a graceful shutdown, which must end with exit status 0 within
    /// `shutdown_timeout_s` (10 s by default; 20 s allowed here).
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "livesnap exited with {status} on SIGTERM; log:\n{}",
                    self.log_tail(40)
                );
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "livesnap did not exit within 20 s of SIGTERM; log:\n{}",
            self.log_tail(40)
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn rtmp_url(&self, app: &str, stream: &str) -> String {
        format!("rtmp://{}/{}/{}", self.rtmp, app, stream)
    }

    pub fn rtsp_url(&self, app: &str, stream: &str) -> String {
        format!("rtsp://{}/{}/{}", self.rtsp, app, stream)
    }

    /// Where the default `local` storage location keeps its objects.
    pub fn local_root(&self) -> PathBuf {
        self.data.join("snapshots")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's whole log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Panics when the server process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("livesnap exited ({status}); stderr:\n{}", self.log_tail(60));
        }
    }

    pub fn try_get(&self, path: &str) -> Result<Resp, String> {
        http_get(&self.url(path))
    }

    /// Any method; panics (with the server's log) only when there is no answer.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        request(method, &self.url(path), body)
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", self.log_tail(30)))
    }
    pub fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }
    pub fn post(&self, path: &str, body: &str) -> Resp {
        self.call("POST", path, Some(body))
    }
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.post(path, &body.to_string())
    }
    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.call("PUT", path, Some(&body.to_string()))
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None)
    }

    /// Asserts the status and returns the JSON body (Null for an empty body).
    pub fn expect(&self, r: Resp, status: u16, what: &str) -> Value {
        assert_eq!(
            r.status,
            status,
            "{what}: status {} (want {status}), body {}\nserver log:\n{}",
            r.status,
            r.text(),
            self.log_tail(20)
        );
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        }
    }

    pub fn snapshot_post(&self, body: &Value) -> Resp {
        self.post_json("/rest-api/stream/snapshot", body)
    }

    /// GET /v1/streams/{app}/{stream}: Some(JSON) when live.
    pub fn stream(&self, app: &str, stream: &str) -> Option<Value> {
        let r = self.get(&Server::stream_path(app, stream, None));
        (r.status == 200).then(|| r.json())
    }

    pub fn stream_path(app: &str, stream: &str, domain: Option<&str>) -> String {
        match domain {
            Some(d) => format!("/v1/streams/{app}/{stream}?domain={d}"),
            None => format!("/v1/streams/{app}/{stream}"),
        }
    }

    /// Waits until the stream is listed (200 on /v1/streams/{app}/{stream}), with or
    /// without a keyframe.
    pub fn wait_live(&self, app: &str, stream: &str, domain: Option<&str>) -> Value {
        let path = Server::stream_path(app, stream, domain);
        poll(WAIT, &format!("{path} to answer 200"), || {
            match self.try_get(&path) {
                Ok(r) if r.status == 200 => Some(r.json()),
                _ => None,
            }
        })
    }

    /// Waits until the stream is live and has had at least `min_keyframes` keyframes.
    pub fn wait_keyframes(
        &self,
        app: &str,
        stream: &str,
        domain: Option<&str>,
        min_keyframes: u64,
    ) -> Value {
        let path = Server::stream_path(app, stream, domain);
        let mut last = String::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = self.try_get(&path) {
                if r.status == 200 {
                    let v = r.json();
                    if v["keyframes"].as_u64().unwrap_or(0) >= min_keyframes {
                        return v;
                    }
                }
                last = format!("{} {}", r.status, r.text());
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {path} to have {min_keyframes} keyframe(s); last answer: {last}\nserver log:\n{}",
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a stream that was live to disappear (404).
    pub fn wait_gone(&self, app: &str, stream: &str, domain: Option<&str>) {
        let path = Server::stream_path(app, stream, domain);
        poll(
            WAIT,
            &format!("{path} to answer 404 after the publisher went away"),
            || match self.try_get(&path) {
                Ok(r) if r.status == 404 => Some(()),
                _ => None,
            },
        )
    }

    /// GET a direct snapshot; panics unless it is 200 with an image.
    pub fn snapshot_get(&self, app: &str, stream: &str, ext: &str, query: &str) -> Shot {
        let path = format!("/v1/streams/{app}/{stream}/snapshot.{ext}?{query}");
        let r = self.get(&path);
        assert_eq!(
            r.status,
            200,
            "GET {path}: {} {}\nserver log:\n{}",
            r.status,
            r.text(),
            self.log_tail(30)
        );
        Shot::from_resp(&path, r)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- livesnap {} stderr (last 80 lines) ----\n{}\n----",
                self.log.display(),
                self.log_tail(80)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// a picture answered by the server

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
}

/// Kind and size from the PNG IHDR or the JPEG SOFn marker.
pub fn image_info(b: &[u8]) -> (ImageKind, u32, u32) {
    if b.len() >= 24 && b.starts_with(b"\x89PNG\r\n\x1a\n") && &b[12..16] == b"IHDR" {
        let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
        return (ImageKind::Png, w, h);
    }
    if b.len() > 4 && b[0] == 0xFF && b[1] == 0xD8 {
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xFF {
                i += 1;
                continue;
            }
            let m = b[i + 1];
            if m == 0xD8 || m == 0x01 || (0xD0..=0xD7).contains(&m) || m == 0xFF {
                i += if m == 0xFF { 1 } else { 2 };
                continue;
            }
            let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            if matches!(m, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
                let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
                let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
                return (ImageKind::Jpeg, w, h);
            }
            i += 2 + len;
        }
        panic!("JPEG without a SOF marker ({} bytes)", b.len());
    }
    panic!(
        "not a PNG or JPEG image ({} bytes, starts {:02x?})",
        b.len(),
        &b[..b.len().min(16)]
    );
}

pub struct Image {
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn scratch_dir() -> &'static Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// Decodes a PNG/JPEG to rgb24 with ffmpeg.
pub fn decode_image(bytes: &[u8]) -> Image {
    let (kind, width, height) = image_info(bytes);
    let ext = if kind == ImageKind::Png { "png" } else { "jpg" };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = scratch_dir().join(format!("img{n}.{ext}"));
    fs::write(&path, bytes).unwrap();
    let rgb = run(ffmpeg_cmd().arg("-i").arg(&path).args([
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]));
    let _ = fs::remove_file(&path);
    assert_eq!(
        rgb.len(),
        (width * height * 3) as usize,
        "decoded {ext} has {} bytes, header says {width}x{height}",
        rgb.len()
    );
    Image {
        kind,
        width,
        height,
        rgb,
    }
}

/// PSNR in dB of two rgb24 pictures of the same size (100 when identical).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "PSNR of pictures of different sizes");
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        100.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// A direct snapshot and its headers.
pub struct Shot {
    pub path: String,
    pub resp: Resp,
    pub image: Image,
    pub pts_ms: i64,
    pub keyframe: bool,
    pub age_ms: f64,
    pub cache: String,
}

impl Shot {
    fn from_resp(path: &str, resp: Resp) -> Shot {
        let h = |n: &str| {
            resp.header(n)
                .unwrap_or_else(|| {
                    panic!(
                        "GET {path}: header {n} missing; headers: {:?}",
                        resp.headers
                    )
                })
                .to_string()
        };
        let pts_ms: i64 = h("x-livesnap-frame-pts-ms")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("X-Livesnap-Frame-Pts-Ms not an integer: {e}"));
        let keyframe = match h("x-livesnap-keyframe").as_str() {
            "true" => true,
            "false" => false,
            other => panic!("X-Livesnap-Keyframe must be true|false, got {other:?}"),
        };
        let age_ms: f64 = h("x-livesnap-frame-age-ms")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("X-Livesnap-Frame-Age-Ms not a number: {e}"));
        assert!(age_ms >= 0.0, "negative frame age {age_ms}");
        let time = h("x-livesnap-frame-time");
        assert!(
            is_rfc3339(&time),
            "X-Livesnap-Frame-Time is not RFC 3339: {time:?}"
        );
        let cache = h("x-livesnap-cache");
        assert!(
            cache == "hit" || cache == "miss",
            "X-Livesnap-Cache must be hit|miss, got {cache:?}"
        );
        let lm = h("last-modified");
        assert!(
            lm.ends_with("GMT"),
            "Last-Modified is not an HTTP date: {lm:?}"
        );
        let image = decode_image(&resp.body);
        let ct = resp.header("content-type").unwrap_or("").to_string();
        let want_ct = if image.kind == ImageKind::Png {
            "image/png"
        } else {
            "image/jpeg"
        };
        assert!(
            ct.starts_with(want_ct),
            "GET {path}: content-type {ct:?}, body is {:?}",
            image.kind
        );
        Shot {
            path: path.to_string(),
            resp,
            image,
            pts_ms,
            keyframe,
            age_ms,
            cache,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit());
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    let rest = &s[i..];
    rest == "Z"
        || rest == "z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":")
}

pub fn decode_base64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("\"data\" is not base64: {e}"))
}

// ---------------------------------------------------------------------------------------------
// source videos

/// How the source's YUV must be turned into RGB (what ffmpeg does with the same tags).
#[derive(Debug, Clone, Copy)]
pub struct Colour {
    pub matrix: &'static str, // bt601 | bt709
    pub range: &'static str,  // tv | pc
}

pub const BT601_TV: Colour = Colour {
    matrix: "bt601",
    range: "tv",
};
pub const BT709_TV: Colour = Colour {
    matrix: "bt709",
    range: "tv",
};
pub const BT601_PC: Colour = Colour {
    matrix: "bt601",
    range: "pc",
};

pub struct SourceSpec {
    /// lavfi source, e.g. `testsrc2=size=640x360:rate=25`
    pub lavfi: String,
    /// extra filters after the source (content transforms)
    pub vf: String,
    pub seconds: f64,
    pub gop: u32,
    pub bframes: u32,
    /// extra encoder / output arguments (colour tags, pix_fmt)
    pub extra: Vec<String>,
    pub colour: Colour,
    /// `flv` or `h264` (Annex-B)
    pub container: &'static str,
}

impl SourceSpec {
    /// A High-profile stream with B-frames whose content changes every frame. The blur keeps
    /// the chroma smooth so that a correct decoder scores well whatever its chroma upsampling.
    pub fn testsrc(width: u32, height: u32, seconds: f64, gop: u32) -> SourceSpec {
        SourceSpec {
            lavfi: format!("testsrc2=size={width}x{height}:rate=25"),
            vf: "gblur=sigma=1.5".into(),
            seconds,
            gop,
            bframes: 3,
            extra: vec![],
            colour: BT601_TV,
            container: "flv",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub pts_ms: i64,
    pub key: bool,
}

/// A source file and its timeline as ffmpeg publishes it (`-c copy -f flv`, looped).
pub struct Source {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub colour: Colour,
    /// Frames of the first loop in presentation order with their RTMP pts.
    pub frames: Vec<FrameInfo>,
    /// How much each `-stream_loop` pass adds to the timestamps.
    pub period_ms: i64,
    cache: Mutex<HashMap<(usize, u32, u32, &'static str), Arc<Vec<u8>>>>,
}

fn probe_packets(path: &Path) -> Vec<(i64, bool)> {
    require_ffmpeg();
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path));
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split(',');
            let pts = it
                .next()
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("ffprobe pts line {l:?}"));
            let key = it.next().unwrap_or("").contains('K');
            (pts, key)
        })
        .collect()
}

impl Source {
    pub fn generate(dir: &Path, name: &str, spec: SourceSpec) -> Source {
        let path = dir.join(format!("{name}.{}", spec.container));
        let mut vf = spec.vf.clone();
        let mut cmd = ffmpeg_cmd();
        cmd.args(["-f", "lavfi", "-i", &spec.lavfi]);
        if vf.is_empty() {
            vf = "null".into();
        }
        cmd.args([
            "-vf",
            &vf,
            "-t",
            &spec.seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-bf",
            &spec.bframes.to_string(),
            "-g",
            &spec.gop.to_string(),
            "-keyint_min",
            &spec.gop.to_string(),
            "-sc_threshold",
            "0",
        ]);
        let has_pix_fmt = spec.extra.iter().any(|a| a == "-pix_fmt");
        if !has_pix_fmt {
            cmd.args(["-pix_fmt", "yuv420p"]);
        }
        cmd.args(&spec.extra);
        if spec.container == "h264" {
            cmd.args(["-bsf:v", "h264_mp4toannexb", "-f", "h264"]);
        } else {
            cmd.args(["-f", "flv"]);
        }
        cmd.arg(&path);
        run(&mut cmd);

        // Dimensions and frame rate.
        let out = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(&path));
        let s = String::from_utf8_lossy(&out);
        let mut it = s.trim().split(',');
        let width: u32 = it.next().unwrap().parse().unwrap();
        let height: u32 = it.next().unwrap().parse().unwrap();
        let fps = spec
            .lavfi
            .split(':')
            .find_map(|p| p.strip_prefix("rate="))
            .map(|r| r.parse::<f64>().unwrap())
            .unwrap_or(25.0);

        // The timeline as ffmpeg publishes it: copy twice-looped into FLV and read the packets.
        let (frames, period_ms) = if spec.container == "flv" {
            let n = probe_packets(&path).len();
            let probe = dir.join(format!("{name}.probe.flv"));
            run(ffmpeg_cmd()
                .args(["-stream_loop", "1", "-i"])
                .arg(&path)
                .args(["-c", "copy", "-f", "flv"])
                .arg(&probe));
            let pk = probe_packets(&probe);
            assert!(
                pk.len() >= 2 * n,
                "looped probe has {} packets, source {n}",
                pk.len()
            );
            let period = pk[n].0 - pk[0].0;
            let mut frames: Vec<FrameInfo> = pk[..n]
                .iter()
                .map(|&(pts_ms, key)| FrameInfo { pts_ms, key })
                .collect();
            frames.sort_by_key(|f| f.pts_ms);
            (frames, period)
        } else {
            (vec![], 0)
        };
        Source {
            path,
            width,
            height,
            fps,
            colour: spec.colour,
            frames,
            period_ms,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// The presentation index (0-based, first loop) of the frame with this RTMP pts.
    pub fn frame_index_at(&self, pts_ms: i64) -> usize {
        assert!(
            !self.frames.is_empty(),
            "no timeline for {}",
            self.path.display()
        );
        let first = self.frames[0].pts_ms;
        let loops = (pts_ms - first).div_euclid(self.period_ms);
        let rel = pts_ms - loops * self.period_ms;
        match self.frames.iter().position(|f| f.pts_ms == rel) {
            Some(i) => i,
            None => {
                let near: Vec<i64> = self
                    .frames
                    .iter()
                    .map(|f| f.pts_ms)
                    .filter(|p| (p - rel).abs() <= 100)
                    .collect();
                panic!(
                    "pts {pts_ms} ms (= {rel} ms in loop {loops}) is not the pts of any frame ffmpeg published from {}; \
                     nearby frame pts: {near:?} (frame 0 is at {first} ms, loop period {} ms)",
                    self.path.display(),
                    self.period_ms
                )
            }
        }
    }

    pub fn is_keyframe(&self, index: usize) -> bool {
        self.frames[index].key
    }

    /// Indices of the keyframes whose (unlooped) pts lies in `lo..=hi`.
    pub fn keyframes_between(&self, lo: i64, hi: i64) -> Vec<usize> {
        let first = self.frames[0].pts_ms;
        let mut out = vec![];
        let mut loops = (lo - first).div_euclid(self.period_ms);
        loop {
            let base = loops * self.period_ms;
            if base + first > hi {
                break;
            }
            for (i, f) in self.frames.iter().enumerate() {
                let p = f.pts_ms + base;
                if f.key && p >= lo && p <= hi && !out.contains(&i) {
                    out.push(i);
                }
            }
            loops += 1;
        }
        out
    }

    /// Frame `index` (presentation order) decoded by ffmpeg, converted with the source's
    /// colour matrix and range, scaled to `w`x`h`, as rgb24.
    pub fn reference(&self, index: usize, w: u32, h: u32) -> Arc<Vec<u8>> {
        self.reference_with(index, w, h, self.colour)
    }

    pub fn reference_with(&self, index: usize, w: u32, h: u32, colour: Colour) -> Arc<Vec<u8>> {
        let key = (
            index,
            w,
            h,
            if colour.matrix == "bt709" {
                if colour.range == "pc" {
                    "709pc"
                } else {
                    "709tv"
                }
            } else if colour.range == "pc" {
                "601pc"
            } else {
                "601tv"
            },
        );
        if let Some(v) = self.cache.lock().unwrap().get(&key) {
            return v.clone();
        }
        // Convert to RGB at full size first, then resize in RGB: swscale's one-step
        // YUV-resize-to-RGB path handles chroma differently enough (about 28 dB against
        // any RGB-domain resampler) to hide real differences.
        let mut vf = format!(
            "select=eq(n\\,{index}),scale=in_color_matrix={}:in_range={},format=rgb24",
            colour.matrix, colour.range
        );
        if (w, h) != (self.width, self.height) {
            vf.push_str(&format!(",scale=w={w}:h={h}:flags=bicubic"));
        }
        let rgb = run(ffmpeg_cmd().arg("-i").arg(&self.path).args([
            "-vf",
            &vf,
            "-fps_mode",
            "passthrough",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ]));
        assert_eq!(
            rgb.len(),
            (w * h * 3) as usize,
            "reference frame {index} of {}: wrong size",
            self.path.display()
        );
        let v = Arc::new(rgb);
        self.cache.lock().unwrap().insert(key, v.clone());
        v
    }

    /// PSNR of `img` against source frame `index` (scaled to the image's size).
    pub fn psnr_to(&self, img: &Image, index: usize) -> f64 {
        let r = self.reference(index, img.width, img.height);
        psnr(&img.rgb, &r)
    }

    /// Asserts that `img` is the source frame `index`: PSNR above `min_db` against it, and at
    /// least `margin_db` lower against the frame `far` frames away (proves the content is
    /// that frame and not some other moment of the stream).
    pub fn assert_matches(
        &self,
        img: &Image,
        index: usize,
        min_db: f64,
        margin_db: f64,
        what: &str,
    ) -> f64 {
        let n = self.frame_count().max(1);
        let p = self.psnr_to(img, index);
        // A frame 2 s away (or half the source away when it is shorter than 4 s).
        let far = (index + ((2.0 * self.fps) as usize).min(n / 2).max(1)) % n;
        let p_far = self.psnr_to(img, far);
        eprintln!("{what}: frame {index}: {p:.2} dB; frame {far}: {p_far:.2} dB");
        if p <= min_db || p_far > p - margin_db {
            // Diagnose: which frame nearby does the picture look like?
            let mut best = (index, p);
            let lo = index.saturating_sub(8);
            let hi = (index + 8).min(n.saturating_sub(1));
            for i in lo..=hi {
                let q = self.psnr_to(img, i);
                if q > best.1 {
                    best = (i, q);
                }
            }
            panic!(
                "{what}: picture does not match source frame {index} of {}: PSNR {p:.2} dB (want > {min_db}); \
                 against frame {far} (2 s away) {p_far:.2} dB (want at least {margin_db} dB lower); \
                 best match within ±8 frames: frame {} at {:.2} dB",
                self.path.display(),
                best.0,
                best.1
            );
        }
        p
    }
}

/// The PSNR a downscaled JPEG must reach. Downscaling a 4:2:0 picture gives it full-resolution
/// chroma, which JPEG's own 4:2:0 subsampling then loses: even ffmpeg's best 4:2:0 JPEG of the
/// server's own scaled PNG scores only about 32 dB on this content (measured), so 30 dB would
/// fail a correct server. Another frame of the source scores about 16 dB.
pub const JPEG_SCALED_DB: f64 = 25.0;

/// A temporary directory for sources and logs, kept until the end of the test.
/// A camera for WebRTC publishers (Chromium's fake camera, the aiortc client): SMPTE colour
/// bars at 640x480 as one second of looping `.y4m`, and the picture as rgb24 the way a decoder
/// of that video gives it. Every frame is the same, so any picture of the stream matches it.
pub fn bars_camera(dir: &Path) -> (PathBuf, Vec<u8>) {
    let still = dir.join("bars.png");
    run(ffmpeg_cmd()
        .args([
            "-f",
            "lavfi",
            "-i",
            "smptehdbars=size=640x480:rate=30",
            "-frames:v",
            "1",
        ])
        .arg(&still));
    let clip = dir.join("camera.y4m");
    run(ffmpeg_cmd()
        .args(["-loop", "1", "-framerate", "30", "-i"])
        .arg(&still)
        .args(["-frames:v", "30", "-pix_fmt", "yuv420p"])
        .arg(&clip));
    let rgb = run(ffmpeg_cmd().arg("-i").arg(&clip).args([
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]));
    assert_eq!(rgb.len(), 640 * 480 * 3);
    (clip, rgb)
}

pub fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

// ---------------------------------------------------------------------------------------------
// publishing with ffmpeg

pub struct Publisher {
    child: Child,
    pub log: PathBuf,
    pub url: String,
}

static PUB_N: AtomicU64 = AtomicU64::new(0);

impl Publisher {
    /// `ffmpeg -re -stream_loop -1 -i SRC -c copy -f flv URL`
    pub fn start(src: &Path, url: &str) -> Publisher {
        Publisher::start_args(
            &[
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                src.to_str().unwrap(),
                "-c",
                "copy",
                "-f",
                "flv",
                url,
            ],
            url,
        )
    }

    /// Publishes once (no loop).
    pub fn start_once(src: &Path, url: &str) -> Publisher {
        Publisher::start_args(
            &[
                "-re",
                "-i",
                src.to_str().unwrap(),
                "-c",
                "copy",
                "-f",
                "flv",
                url,
            ],
            url,
        )
    }

    pub fn start_args(args: &[&str], url: &str) -> Publisher {
        require_ffmpeg();
        let n = PUB_N.fetch_add(1, Ordering::Relaxed);
        let log = scratch_dir().join(format!("publisher{n}.log"));
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ffmpeg: {e}"));
        Publisher {
            child,
            log,
            url: url.to_string(),
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("ffmpeg publishing to {} to exit", self.url);
        let log = self.log.clone();
        let child = &mut self.child;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; its log:\n{}",
                    tail(&log, 20)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn assert_running(&mut self) {
        if let Some(s) = self.exited() {
            panic!(
                "ffmpeg publishing to {} exited ({s}); its log:\n{}",
                self.url,
                self.log_tail()
            );
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 20)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Takes a keyframe snapshot (PNG) and checks it against the source frame at its pts.
pub fn check_keyframe_snapshot(
    server: &Server,
    src: &Source,
    app: &str,
    stream: &str,
    extra_query: &str,
) -> Shot {
    let q = if extra_query.is_empty() {
        "precision=keyframe".to_string()
    } else {
        format!("precision=keyframe&{extra_query}")
    };
    let shot = server.snapshot_get(app, stream, "png", &q);
    let idx = src.frame_index_at(shot.pts_ms);
    assert!(
        shot.keyframe,
        "{}: X-Livesnap-Keyframe is false with precision=keyframe",
        shot.path
    );
    assert!(
        src.is_keyframe(idx),
        "{}: pts {} is frame {idx}, which is not a keyframe of the source",
        shot.path,
        shot.pts_ms
    );
    src.assert_matches(&shot.image, idx, 30.0, 6.0, &shot.path);
    shot
}

// ---------------------------------------------------------------------------------------------
// the RTMP test publisher (names no URL can carry, media when the test says, cut messages)

#[allow(unused_imports)] // not every test binary publishes by hand
pub use livesnap_testkit::rtmp;

/// A TCP proxy for one connection that forwards at most `cutoff` bytes from the client to
/// `upstream`, then cuts both sides: a publish that dies in the middle of a message.
pub struct CuttingProxy {
    pub addr: String,
    pub forwarded: Arc<AtomicU64>,
    pub cut: Arc<std::sync::atomic::AtomicBool>,
}

impl CuttingProxy {
    pub fn start(upstream: &str, cutoff: u64) -> CuttingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let forwarded = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (fw, ct) = (forwarded.clone(), cut.clone());
        let upstream = upstream.to_string();
        thread::spawn(move || {
            let Ok((mut client, _)) = l.accept() else {
                return;
            };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = s2.read(&mut buf) {
                    if n == 0 || c2.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            let mut buf = [0u8; 8192];
            let mut total = 0u64;
            loop {
                let n = match client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let take = ((cutoff - total) as usize).min(n);
                if server.write_all(&buf[..take]).is_err() {
                    break;
                }
                total += take as u64;
                fw.store(total, Ordering::SeqCst);
                if total >= cutoff {
                    break;
                }
            }
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            ct.store(true, Ordering::SeqCst);
        });
        CuttingProxy {
            addr,
            forwarded,
            cut,
        }
    }
}

/// Runs `livesnap grab INPUT -o OUT [extra...]`.
pub fn grab(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("grab")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN} grab: {e}"))
}
