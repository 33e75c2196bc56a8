//! End-to-end: HTTPS with `tls_cert` and `tls_key`. The test makes a self-signed certificate
//! with openssl and speaks to the real binary with curl: the API answers over TLS (with the
//! admin key), plain HTTP on that port gets no answer, and after the files are replaced and the
//! server gets SIGHUP, new connections get the new certificate without a restart.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const KEY: &str = "e2e-tls-admin-key";

/// A self-signed certificate for 127.0.0.1 and localhost, with its key.
fn make_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// curl over HTTPS trusting `ca`: (exit success, HTTP status, body).
fn curl(ca: &Path, url: &str, key: Option<&str>) -> (bool, u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ])
    .arg(ca)
    .arg(url);
    if let Some(k) = key {
        cmd.args(["-H", &format!("Authorization: Bearer {k}")]);
    }
    let out = cmd.output().expect("curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.success(),
        code.trim().parse().unwrap_or(0),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn https_serves_the_api_and_takes_a_new_certificate_on_sighup() {
    let work = workdir();
    let dir = work.path();
    let (cert1, key1) = make_cert(dir, "first");
    let (cert2, key2) = make_cert(dir, "second");
    let live_cert = dir.join("live.crt");
    let live_key = dir.join("live.key");
    std::fs::copy(&cert1, &live_cert).unwrap();
    std::fs::copy(&key1, &live_key).unwrap();
    let s = Server::start_with(
        &[
            ("LIVESNAP_TLS_CERT", live_cert.to_str().unwrap()),
            ("LIVESNAP_TLS_KEY", live_key.to_str().unwrap()),
            ("LIVESNAP_ADMIN_KEY", KEY),
        ],
        &[],
    );
    let url = |path: &str| format!("https://{}{path}", s.http);
    let (ok, code, body) = curl(&cert1, &url("/healthz"), None);
    assert!(ok && code == 200 && body.starts_with("ok"), "{code} {body}");
    let (_, code, body) = curl(&cert1, &url("/v1/streams"), Some(KEY));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"streams\""), "{body}");
    let (_, code, _) = curl(&cert1, &url("/v1/streams"), None);
    assert_eq!(code, 401);
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    assert!(http_get(&format!("http://{}/healthz", s.http)).is_err());
    // The second certificate is not trusted for this server yet.
    let (ok, _, _) = curl(&cert2, &url("/healthz"), None);
    assert!(!ok, "curl trusted a certificate the server does not use");

    // Renewal: files replaced, SIGHUP, no restart.
    std::fs::copy(&cert2, &live_cert).unwrap();
    std::fs::copy(&key2, &live_key).unwrap();
    let pid = s.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    poll(
        Duration::from_secs(20),
        "the new certificate after SIGHUP",
        || {
            let (ok, code, _) = curl(&cert2, &url("/healthz"), None);
            (ok && code == 200).then_some(())
        },
    );
    let (ok, _, _) = curl(&cert1, &url("/healthz"), None);
    assert!(!ok, "the old certificate is still served");
    assert!(s.log_text().contains("TLS certificate and key read again"));

    // A broken file at the next SIGHUP leaves the certificate in use.
    std::fs::write(&live_cert, "not a certificate").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    poll(Duration::from_secs(20), "the failed reload said", || {
        s.log_text()
            .contains("TLS certificate not reloaded")
            .then_some(())
    });
    let (ok, code, _) = curl(&cert2, &url("/healthz"), None);
    assert!(ok && code == 200);
    s.stop();
}

#[test]
fn a_certificate_without_its_key_or_an_unreadable_one_stops_the_start() {
    let work = workdir();
    let (cert, _) = make_cert(work.path(), "only");
    let o = Command::new(env!("CARGO_BIN_EXE_livesnap"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "127.0.0.1:0",
            "--webrtc-udp",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("tls_cert and tls_key go together"), "{said}");
    let o = Command::new(env!("CARGO_BIN_EXE_livesnap"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "127.0.0.1:0",
            "--webrtc-udp",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(work.path().join("missing.key"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("tls_cert") && said.contains("missing.key"),
        "{said}"
    );
}

#[test]
fn a_sighup_without_tls_does_not_end_the_server() {
    let s = Server::start();
    let pid = s.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    poll(Duration::from_secs(20), "the SIGHUP said", || {
        s.log_text()
            .contains("SIGHUP: nothing to read again")
            .then_some(())
    });
    assert_eq!(s.get("/healthz").status, 200);
    s.stop();
}
