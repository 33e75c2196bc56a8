//! WebRTC publish (WHIP) from a client that is not a browser: aiortc (Python; its own ICE, DTLS,
//! SRTP and libx264 through PyAV), driven by `tests/peers/whip_client.py`.
//!
//! aiortc's ICE, like most non-browser stacks, never offers a loopback candidate, so the client
//! runs inside a network namespace this test makes, joined to the host by a veth pair
//! (10.231.a.b/30: the host end `.b+1`, the namespace end `.b+2`). The server listens for HTTP
//! and WebRTC on the host end's address only; the client reaches it over the veth, the one path
//! there is. The namespace and the veth pair are removed when the test ends, panic or not.
//!
//! Checks: the stream is live as `whip`/`h264` at the camera's size, published from the
//! namespace's address; its pictures (the newest keyframe, the newest frame, and a fresh
//! keyframe the server asked aiortc for with a PLI) show the camera's picture (PSNR); a second
//! publish of the same name is refused (409) and the client says so and exits non-zero; the
//! client's DELETE ends the stream.
//!
//! Needs root (network namespaces), iproute2, ffmpeg, and a Python with aiortc: the one named by
//! `LIVESNAP_TEST_AIORTC_PYTHON`, else the venv scripts/test makes in
//! `<target>/tmp/whip-aiortc-venv`, else `python3` on PATH. Missing any of them is a failure
//! that says what to install, never a skip.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/whip_client.py");
/// Where scripts/test makes the venv with aiortc (CARGO_TARGET_TMPDIR is `<target>/tmp`).
const VENV_PYTHON: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/whip-aiortc-venv/bin/python3");

// ---------------------------------------------------------------------------------------------
// the network namespace

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run `ip` ({e}): iproute2 is needed (apt-get install iproute2)")
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_or_panic(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// A network namespace joined to the host by a veth pair; removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    fn create() -> Netns {
        let out = Command::new("ip").arg("-V").output().unwrap_or_else(|e| {
            panic!("cannot run `ip` ({e}): iproute2 is needed (apt-get install iproute2)")
        });
        assert!(out.status.success(), "`ip -V` failed: iproute2 is needed");
        let in_use = String::from_utf8_lossy(&run(Command::new("ip").args(["-4", "-o", "addr"])))
            .into_owned();
        let pid = std::process::id();
        let mut last_error = String::new();
        for k in 0..16u32 {
            // A /30 of 10.231.0.0/16 from the process id: 16384 of them.
            let c = (pid.wrapping_add(k.wrapping_mul(7919))) % 16384;
            let (a, b) = (c / 64, (c % 64) * 4);
            let host_ip = format!("10.231.{a}.{}", b + 1);
            let ns_ip = format!("10.231.{a}.{}", b + 2);
            if in_use.contains(&format!(" 10.231.{a}.")) {
                continue;
            }
            let name = format!("livesnap-whip-{pid}-{k}");
            if let Err(e) = ip(&["netns", "add", &name]) {
                last_error = e;
                continue;
            }
            // From here on, dropping it cleans up whatever was made.
            let ns = Netns {
                name,
                host_if: format!("lsw{pid}h{k}"),
                host_ip,
                ns_ip,
            };
            let ns_if = format!("lsw{pid}n{k}");
            if let Err(e) = ip(&[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ]) {
                last_error = e;
                continue;
            }
            ip_or_panic(&["link", "set", &ns_if, "netns", &ns.name]);
            ip_or_panic(&[
                "addr",
                "add",
                &format!("{}/30", ns.host_ip),
                "dev",
                &ns.host_if,
            ]);
            ip_or_panic(&["link", "set", &ns.host_if, "up"]);
            ip_or_panic(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{}/30", ns.ns_ip),
                "dev",
                &ns_if,
            ]);
            ip_or_panic(&["-n", &ns.name, "link", "set", &ns_if, "up"]);
            ip_or_panic(&["-n", &ns.name, "link", "set", "lo", "up"]);
            eprintln!(
                "network namespace {}: {} ({}) <-> {} ({ns_if})",
                ns.name, ns.host_ip, ns.host_if, ns.ns_ip
            );
            return ns;
        }
        panic!(
            "cannot make a network namespace with a veth pair (this test must run as root, \
             with CAP_NET_ADMIN and CAP_SYS_ADMIN): {last_error}"
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the host's.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

// ---------------------------------------------------------------------------------------------
// the server, on the veth's host address

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `livesnap serve` with HTTP and WebRTC on `ip` (the harness's `launch` binds 127.0.0.1, which
/// the namespace cannot reach, and the binary refuses a second `--webrtc-udp`).
struct VethServer {
    child: Child,
    http: String,
    webrtc: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl VethServer {
    fn start(ip: &str) -> VethServer {
        require_ffmpeg();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--http",
            &format!("{ip}:0"),
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "127.0.0.1:0",
            "--rtsp-udp-ports",
            "any",
            "--webrtc-udp",
            &format!("{ip}:0"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).expect("log file"));
        for (k, _) in std::env::vars() {
            if k.starts_with("LIVESNAP_") {
                cmd.env_remove(k);
            }
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
            for _ in lines {}
        });
        let line = rx.recv_timeout(WAIT).ok();
        let mut s = VethServer {
            child,
            http: String::new(),
            webrtc: String::new(),
            log,
            _dir: dir,
        };
        let line = line.unwrap_or_else(|| {
            panic!(
                "livesnap serve printed no listening line within {WAIT:?}; stderr:\n{}",
                tail(&s.log, 60)
            )
        });
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("first stdout line is not JSON ({e}): {line}"));
        assert_eq!(v["event"], "listening", "{line}");
        s.http = v["http"].as_str().unwrap_or_default().to_string();
        s.webrtc = v["webrtc"].as_str().unwrap_or_default().to_string();
        for (what, addr) in [("http", &s.http), ("webrtc", &s.webrtc)] {
            assert!(
                addr.starts_with(&format!("{ip}:")) && !addr.ends_with(":0"),
                "{what} listens on {addr:?}, not on {ip}: {line}"
            );
        }
        let r = request("GET", &s.url("/healthz"), None)
            .unwrap_or_else(|e| panic!("/healthz on {}: {e}", s.http));
        assert_eq!(r.status, 200, "/healthz: {}", r.text());
        s
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    fn get(&self, path: &str) -> Resp {
        request("GET", &self.url(path), None)
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", tail(&self.log, 30)))
    }

    /// GET /v1/streams/{app}/{stream}: Some(JSON) when live.
    fn stream(&self, app: &str, stream: &str) -> Option<Value> {
        let r = self.get(&format!("/v1/streams/{app}/{stream}"));
        (r.status == 200).then(|| r.json())
    }

    /// A picture of the stream; panics unless 200 with an image.
    fn picture(&self, path: &str) -> (Resp, Image) {
        let r = self.get(path);
        assert_eq!(
            r.status,
            200,
            "GET {path}: {}\nserver log:\n{}",
            r.text(),
            tail(&self.log, 30)
        );
        let img = decode_image(&r.body);
        (r, img)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for VethServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- livesnap stderr (last 60 lines) ----\n{}\n----",
                tail(&self.log, 60)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the aiortc client, in the namespace

/// A Python that imports aiortc: `LIVESNAP_TEST_AIORTC_PYTHON`, the venv scripts/test makes,
/// or `python3` on PATH.
fn aiortc_python() -> String {
    let works = |py: &str| {
        Command::new(py)
            .args(["-c", "import aiortc, av"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if let Ok(py) = std::env::var("LIVESNAP_TEST_AIORTC_PYTHON") {
        assert!(
            works(&py),
            "LIVESNAP_TEST_AIORTC_PYTHON={py} cannot `import aiortc, av`"
        );
        return py;
    }
    for py in [VENV_PYTHON, "python3"] {
        if works(py) {
            return py.to_string();
        }
    }
    panic!(
        "the non-browser WHIP test needs a Python with aiortc, and neither {VENV_PYTHON} nor \
         python3 on PATH has it. scripts/test makes that venv: \
         `python3 -m venv {venv} && {venv}/bin/pip install aiortc==1.16.0` \
         (Debian: apt-get install python3-venv), or set LIVESNAP_TEST_AIORTC_PYTHON",
        venv = VENV_PYTHON.trim_end_matches("/bin/python3"),
    )
}

/// `tests/peers/whip_client.py` running in the namespace; killed on drop.
struct Client {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Client {
    fn start(
        ns: &Netns,
        python: &str,
        url: &str,
        video: &Path,
        seconds: u32,
        log: PathBuf,
    ) -> Client {
        let (video, seconds) = (video.to_str().expect("UTF-8 path"), seconds.to_string());
        Client::start_with(
            ns,
            &[python, "-u", CLIENT, url, video, &seconds],
            log,
            format!("the aiortc WHIP client publishing to {url}"),
        )
    }

    /// `argv` run in the namespace, its stdout and stderr in `log`.
    fn start_with(ns: &Netns, argv: &[&str], log: PathBuf, what: String) -> Client {
        let out = fs::File::create(&log).expect("client log");
        let err = out.try_clone().expect("client log");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        Client { child, log, what }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with its output) when the client has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); its output:\n{}",
                self.what,
                self.log_text()
            );
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {} to exit; its output:\n{}",
                    self.what,
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM: the client stops sending and DELETEs its session.
    fn ask_to_stop(&self) {
        let pid = self.child.id().to_string();
        run(Command::new("kill").args(["-TERM", &pid]));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("---- {} ----\n{}\n----", self.what, self.log_text());
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn assert_shows_camera(img: &Image, reference: &[u8], what: &str) {
    assert_eq!((img.width, img.height), (640, 480), "{what}: size");
    let db = psnr(&img.rgb, reference);
    eprintln!("{what}: PSNR {db:.2} dB against the camera's picture");
    assert!(
        db > 30.0,
        "{what} does not show the camera's picture: PSNR {db:.1} dB (want > 30)"
    );
}

#[test]
fn aiortc_publishes_over_whip_from_a_network_namespace() {
    let python = aiortc_python();
    let work = workdir();
    let (clip, reference) = bars_camera(work.path());
    let ns = Netns::create();
    let s = VethServer::start(&ns.host_ip);
    let url = s.url("/whip/live/cam1");

    // At most 120 s: the test stops it sooner, with SIGTERM, once it has checked the pictures.
    let mut client = Client::start(
        &ns,
        &python,
        &url,
        &clip,
        120,
        work.path().join("client.log"),
    );
    let live = poll(WAIT, "live/cam1 to be live with a keyframe", || {
        client.assert_running();
        let st = s.stream("live", "cam1")?;
        (st["keyframes"].as_u64()? >= 1).then_some(st)
    });
    assert_eq!(live["protocol"], "whip", "{live}");
    assert_eq!(live["codec"], "h264", "{live}");
    assert_eq!(
        (live["width"].as_u64(), live["height"].as_u64()),
        (Some(640), Some(480)),
        "{live}"
    );
    let publisher = live["publisher"].as_str().unwrap_or_default();
    assert!(
        publisher.starts_with(&format!("{}:", ns.ns_ip)),
        "published from {publisher:?}, not from the namespace's {}: {live}",
        ns.ns_ip
    );
    let log = client.log_text();
    let answer_line = log
        .lines()
        .find(|l| l.contains("201 Created"))
        .unwrap_or_else(|| panic!("the client did not report its 201: {log}"));
    let port = s.webrtc.rsplit(':').next().unwrap();
    assert!(
        answer_line.contains(&format!("{} {port} typ host", ns.host_ip)),
        "the answer's candidate is not the server's veth address {}: {answer_line}",
        s.webrtc
    );

    // The newest keyframe, and the newest frame decoded on from it.
    let (_, img) = s.picture("/v1/streams/live/cam1/snapshot.png");
    assert_shows_camera(&img, &reference, "the keyframe picture");
    let (_, img) = s.picture("/v1/streams/live/cam1/snapshot.png?precision=latest");
    assert_shows_camera(&img, &reference, "the newest-frame picture");

    // aiortc's x264 makes a keyframe every 250 frames (8.3 s): once the newest is older than
    // keyframe_request_after_ms (1 s), a picture asks aiortc for one (PLI) and is of that one.
    poll(WAIT, "the newest keyframe to be older than 1.5 s", || {
        client.assert_running();
        let st = s.stream("live", "cam1")?;
        (st["last_keyframe_age_ms"].as_u64()? > 1500).then_some(())
    });
    let (r, img) = s.picture("/v1/streams/live/cam1/snapshot.png");
    let age: f64 = r
        .header("x-livesnap-frame-age-ms")
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no X-Livesnap-Frame-Age-Ms: {:?}", r.headers));
    assert!(
        age < 1000.0,
        "the picture is of an old keyframe ({age} ms): aiortc sent none when asked"
    );
    assert_shows_camera(&img, &reference, "the picture of the keyframe asked for");
    let st = s.stream("live", "cam1").expect("still live");
    assert!(
        st["keyframe_requests"].as_u64().unwrap_or(0) >= 1,
        "no keyframe request counted: {st}"
    );

    // A second publish of the same name is refused; the client says why and fails.
    let mut second = Client::start(&ns, &python, &url, &clip, 5, work.path().join("second.log"));
    let status = second.wait_exit(WAIT);
    let out = second.log_text();
    assert!(
        !status.success() && out.contains("status 409"),
        "a second publish of live/cam1: the client exited {status}, want a failure naming the \
         409; its output:\n{out}"
    );
    client.assert_running();

    // The first client stops: its DELETE ends the stream.
    client.ask_to_stop();
    let status = client.wait_exit(WAIT);
    let out = client.log_text();
    eprintln!("---- the aiortc client's output ----\n{out}----");
    assert!(
        status.success(),
        "the client exited {status}; its output:\n{out}"
    );
    assert!(out.contains("DELETE 200"), "{out}");
    poll(WAIT, "live/cam1 to end after the client's DELETE", || {
        s.stream("live", "cam1").is_none().then_some(())
    });
    assert!(
        s.log_text().contains("deleted by its publisher"),
        "{}",
        tail(&s.log, 20)
    );
}

// ---------------------------------------------------------------------------------------------
// H.265 from GStreamer's webrtcbin

const GST_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/gst_whip_client.py"
);

/// The system Python with GStreamer's introspection bindings and the elements the client uses;
/// a failure naming the packages when any is missing.
fn gst_python() -> &'static str {
    const PY: &str = "/usr/bin/python3";
    let ok = Command::new(PY)
        .args([
            "-c",
            "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstWebRTC','1.0'); \
             gi.require_version('GstSdp','1.0'); from gi.repository import Gst; Gst.init(None); \
             missing=[e for e in ('webrtcbin','nicesrc','dtlssrtpenc','srtpenc','x265enc',\
             'rtph265pay','x264enc','rtph264pay','pngdec','imagefreeze') \
             if Gst.ElementFactory.find(e) is None]; \
             assert not missing, missing",
        ])
        .stdin(Stdio::null())
        .output();
    match ok {
        Ok(out) if out.status.success() => PY,
        Ok(out) => panic!(
            "the H.265 WHIP test needs GStreamer's webrtcbin with Python bindings: \
             apt-get install python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-nice \
             gstreamer1.0-plugins-bad gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run {PY} ({e}): the H.265 WHIP test needs python3-gi"),
    }
}

/// H.265 over WHIP from a real software client: GStreamer's webrtcbin with x265, from the
/// network namespace (libnice, like aiortc, offers no loopback candidate). The stream is live as
/// `h265`; its keyframe and newest-frame pictures show the camera (PSNR); a picture of a stale
/// keyframe asks x265 for a fresh one (PLI, turned into a GstForceKeyUnit the client counts);
/// the client's DELETE ends the stream. Needs the `ffmpeg` feature (H.265 decoding) and
/// `webrtc-openssl` (webrtcbin's DTLS certificate is RSA).
#[cfg(all(feature = "ffmpeg", feature = "webrtc-openssl"))]
#[test]
fn gstreamer_publishes_h265_over_whip() {
    let python = gst_python();
    let work = workdir();
    let (clip, reference) = bars_camera(work.path());
    let still = clip.with_file_name("bars.png");
    assert!(still.is_file(), "bars_camera made no {}", still.display());
    let ns = Netns::create();
    let s = VethServer::start(&ns.host_ip);
    let url = s.url("/whip/live/hevc");

    let mut client = Client::start_with(
        &ns,
        &[
            python,
            "-u",
            GST_CLIENT,
            &url,
            still.to_str().unwrap(),
            "120",
            "h265",
        ],
        work.path().join("gst-client.log"),
        format!("the GStreamer WHIP client publishing H.265 to {url}"),
    );
    let live = poll(WAIT, "live/hevc to be live with a keyframe", || {
        client.assert_running();
        let st = s.stream("live", "hevc")?;
        (st["keyframes"].as_u64()? >= 1).then_some(st)
    });
    assert_eq!(live["protocol"], "whip", "{live}");
    assert_eq!(live["codec"], "h265", "{live}");
    assert_eq!(
        (live["width"].as_u64(), live["height"].as_u64()),
        (Some(640), Some(480)),
        "{live}"
    );
    let log = client.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("201 Created") && l.contains("H265/90000")),
        "the answer did not choose H.265: {log}"
    );

    let (_, img) = s.picture("/v1/streams/live/hevc/snapshot.png");
    assert_shows_camera(&img, &reference, "the H.265 keyframe picture");
    let (_, img) = s.picture("/v1/streams/live/hevc/snapshot.png?precision=latest");
    assert_shows_camera(&img, &reference, "the H.265 newest-frame picture");

    // x265 makes a keyframe every 10 s here: a picture once the newest is 1.5 s old asks for one.
    poll(WAIT, "the newest keyframe to be older than 1.5 s", || {
        client.assert_running();
        let st = s.stream("live", "hevc")?;
        (st["last_keyframe_age_ms"].as_u64()? > 1500).then_some(())
    });
    let asked = |c: &Client| {
        c.log_text()
            .matches("the encoder was asked for a keyframe")
            .count()
    };
    let asked_before = asked(&client);
    let (r, img) = s.picture("/v1/streams/live/hevc/snapshot.png");
    let age: f64 = r
        .header("x-livesnap-frame-age-ms")
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no X-Livesnap-Frame-Age-Ms: {:?}", r.headers));
    assert!(
        age < 1000.0,
        "the picture is of an old keyframe ({age} ms): x265 sent none when asked"
    );
    assert_shows_camera(&img, &reference, "the H.265 keyframe asked for");
    assert!(
        asked(&client) > asked_before,
        "the server's PLI for the stale keyframe never reached the encoder: {}",
        client.log_text()
    );

    client.ask_to_stop();
    let status = client.wait_exit(WAIT);
    let out = client.log_text();
    eprintln!("---- the GStreamer client's output ----\n{out}----");
    assert!(
        status.success(),
        "the client exited {status}; its output:\n{out}"
    );
    assert!(out.contains("DELETE 200"), "{out}");
    poll(WAIT, "live/hevc to end after the client's DELETE", || {
        s.stream("live", "hevc").is_none().then_some(())
    });
}

/// Without `webrtc-openssl`, str0m's DTLS takes ECDSA certificates only, and webrtcbin's is RSA:
/// the publish fails, and the server says why at once (the session ends naming DTLS, with the
/// hint to build with `webrtc-openssl`) instead of waiting out its connect timeout.
#[cfg(not(feature = "webrtc-openssl"))]
#[test]
fn gstreamer_rsa_certificate_is_refused_with_its_reason() {
    let python = gst_python();
    let work = workdir();
    let (clip, _) = bars_camera(work.path());
    let still = clip.with_file_name("bars.png");
    let ns = Netns::create();
    let s = VethServer::start(&ns.host_ip);
    let url = s.url("/whip/live/rsa");
    let mut client = Client::start_with(
        &ns,
        &[
            python,
            "-u",
            GST_CLIENT,
            &url,
            still.to_str().unwrap(),
            "10",
            "h264",
        ],
        work.path().join("gst-client.log"),
        format!("the GStreamer WHIP client publishing H.264 to {url}"),
    );
    let status = client.wait_exit(WAIT);
    let out = client.log_text();
    assert!(
        !status.success() && out.contains("201 Created") && out.contains("not connected"),
        "the GStreamer client exited {status}: want its offer answered, then no connection; its \
         output:\n{out}"
    );
    let ended = poll(WAIT, "the server to end the session naming DTLS", || {
        let log = s.log_text();
        log.lines()
            .find(|l| l.contains("WHIP session ended") && l.contains("DTLS failed"))
            .map(str::to_string)
    });
    assert!(ended.contains("connected=false"), "{ended}");
    let log = s.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WebRTC DTLS failed") && l.contains("webrtc-openssl")),
        "no DTLS failure with its hint in the server log:\n{}",
        tail(&s.log, 20)
    );
    assert!(s.stream("live", "rsa").is_none(), "live/rsa is still live");
}
