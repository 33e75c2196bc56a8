//! End-to-end: signed publish URLs with ffmpeg. With `publish_secret`, a URL minted by
//! `POST /v1/publish-urls` publishes over RTMP and RTSP; an unsigned, tampered or expired one is
//! refused to that publisher alone (RTMP `NetStream.Publish.Unauthorized`, RTSP `401`), logged
//! with the reason and the peer, while the signed stream goes on.

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::time::Duration;

use auto::*;
use common::*;
use serde_json::json;

const SECRET: &str = "e2e-publish-secret";

fn rtsp_push(src: &Source, url: &str) -> Publisher {
    Publisher::start_args(
        &[
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            src.path.to_str().unwrap(),
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            "tcp",
            url,
        ],
        url,
    )
}

/// The URL's query signed here, independently of the server: HMAC-SHA256 of
/// "{app}/{stream}:{expires}".
fn signed_query(app: &str, stream: &str, expires: u64) -> String {
    let sign = hmac_sha256_hex(
        SECRET.as_bytes(),
        format!("{app}/{stream}:{expires}").as_bytes(),
    );
    format!("expires={expires}&sign={sign}")
}

/// A publisher refused: ffmpeg exits non-zero, the stream never goes live, and the log says why.
fn assert_refused(s: &Server, mut p: Publisher, app: &str, stream: &str, reason: &str) {
    let status = p.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{} was not refused", p.url);
    assert!(s.stream(app, stream).is_none(), "{app}/{stream} went live");
    let log = s.log_text();
    assert!(
        log.lines().any(|l| l.contains("publish refused")
            && l.contains(reason)
            && l.contains("127.0.0.1")),
        "no refusal saying {reason:?} for {}:\n{log}",
        p.url
    );
}

#[test]
fn publishes_must_carry_a_valid_signature() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s = Server::start_with(&[("LIVESNAP_PUBLISH_SECRET", SECRET)], &[]);

    let urls = s.expect(
        s.post_json(
            "/v1/publish-urls",
            &json!({"app": "live", "stream": "cam1", "ttl_s": 600}),
        ),
        200,
        "POST /v1/publish-urls",
    );
    assert_eq!(urls["signed"], true, "{urls}");
    let expires = urls["expires"].as_u64().unwrap();
    let now = (now_ms() / 1000) as u64;
    assert!((now + 590..=now + 610).contains(&expires), "{urls}");
    let rtmp = urls["rtmp"].as_str().unwrap().to_string();
    let (_, port) = s.rtmp.rsplit_once(':').unwrap();
    assert!(rtmp.contains(&format!(":{port}/live/cam1?")), "{rtmp}");
    // WHIP publishers (issue 17) post to /whip/{app}/{stream} with the same query.
    let whip = urls["whip"].as_str().unwrap();
    assert!(
        whip.starts_with("http://127.0.0.1:") && whip.contains("/whip/live/cam1?expires="),
        "{whip}"
    );
    // The server's signature is the one computed here.
    assert!(
        rtmp.ends_with(&signed_query("live", "cam1", expires)),
        "{rtmp}"
    );
    for bad in [
        json!({"app": "live", "stream": "a/b"}),
        json!({"app": "live", "stream": "x", "ttl_s": 0}),
    ] {
        assert_eq!(s.post_json("/v1/publish-urls", &bad).status, 400, "{bad}");
    }

    // Signed: RTMP publishes, and RTSP with its own URL.
    let mut signed = Publisher::start(&src.path, &rtmp);
    s.wait_live("live", "cam1", None);
    let rtsp_urls = s.expect(
        s.post_json(
            "/v1/publish-urls",
            &json!({"app": "live", "stream": "cam9"}),
        ),
        200,
        "POST /v1/publish-urls",
    );
    let mut rtsp_signed = rtsp_push(&src, rtsp_urls["rtsp"].as_str().unwrap());
    s.wait_live("live", "cam9", None);

    // Unsigned, tampered (cam1's signature on cam2), expired: each refused alone.
    let base = format!("rtmp://{}/live", s.rtmp);
    assert_refused(
        &s,
        Publisher::start(&src.path, &format!("{base}/cam2")),
        "live",
        "cam2",
        "not signed",
    );
    let tampered = rtmp.replace("/live/cam1?", "/live/cam2?");
    assert_refused(
        &s,
        Publisher::start(&src.path, &tampered),
        "live",
        "cam2",
        "does not match",
    );
    let expired = format!("{base}/cam3?{}", signed_query("live", "cam3", now - 10));
    assert_refused(
        &s,
        Publisher::start(&src.path, &expired),
        "live",
        "cam3",
        "expired",
    );
    let rtsp_unsigned = rtsp_push(&src, &s.rtsp_url("live", "cam4"));
    let rtsp_log = rtsp_unsigned.log.clone();
    assert_refused(&s, rtsp_unsigned, "live", "cam4", "not signed");
    let said = std::fs::read_to_string(rtsp_log).unwrap_or_default();
    assert!(said.contains("401"), "ffmpeg did not see a 401:\n{said}");

    // The signed streams went on through it all.
    signed.assert_running();
    rtsp_signed.assert_running();
    s.wait_keyframes("live", "cam1", None, 2);
    signed.kill();
    rtsp_signed.kill();
    s.stop();
}

#[test]
fn without_a_secret_publish_urls_are_plain_and_any_publish_goes() {
    let s = Server::start();
    let urls = s.expect(
        s.post_json(
            "/v1/publish-urls",
            &json!({"app": "live", "stream": "cam1", "domain": "cams.example.com"}),
        ),
        200,
        "POST /v1/publish-urls",
    );
    assert_eq!(urls["signed"], false, "{urls}");
    assert!(urls["expires"].is_null(), "{urls}");
    assert!(
        urls["rtmp"]
            .as_str()
            .unwrap()
            .ends_with("/live/cam1?domain=cams.example.com"),
        "{urls}"
    );
    s.stop();
}
