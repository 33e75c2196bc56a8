//! End-to-end: the Flashphoner WCS-compatible `POST /rest-api/stream/snapshot`, the timeout
//! error body, name resolution (bare, app/stream, domain/app/stream, ambiguous), settings.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// POSTs a snapshot request that must succeed and checks the picture against the keyframes
/// the stream had between a direct snapshot taken just before and one just after.
fn post_and_match(
    server: &Server,
    src: &Source,
    body: Value,
    app: &str,
    stream: &str,
    domain: Option<&str>,
    min_db: f64,
) -> Image {
    let q = domain.map(|d| format!("domain={d}")).unwrap_or_default();
    let before = server.snapshot_get(app, stream, "png", &q);
    let r = server.snapshot_post(&body);
    let after = server.snapshot_get(app, stream, "png", &q);
    assert_eq!(r.status, 200, "POST {body}: {} {}", r.status, r.text());
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "POST {body}: content-type {ct:?}"
    );
    let v = r.json();
    let data = v["data"]
        .as_str()
        .unwrap_or_else(|| panic!("POST {body}: no \"data\" string in {}", r.text()));
    let img = decode_image(&decode_base64(data));
    let candidates = src.keyframes_between(before.pts_ms, after.pts_ms);
    assert!(
        !candidates.is_empty(),
        "no source keyframe between pts {} and {}",
        before.pts_ms,
        after.pts_ms
    );
    let best = candidates
        .iter()
        .map(|&i| (i, src.psnr_to(&img, i)))
        .fold((usize::MAX, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    src.assert_matches(&img, best.0, min_db, 6.0, &format!("POST {body}"));
    img
}

#[test]
fn wcs_snapshot_post() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "wcs", SourceSpec::testsrc(640, 360, 10.0, 50));
    let server = Server::start();
    let _p = Publisher::start(&src.path, &server.rtmp_url("live", "cam1"));
    server.wait_keyframes("live", "cam1", None, 1);

    // PNG by default, for every accepted spelling of the name.
    for name in ["cam1", "live/cam1", "_default/live/cam1"] {
        let img = post_and_match(
            &server,
            &src,
            json!({ "streamName": name }),
            "live",
            "cam1",
            None,
            30.0,
        );
        assert_eq!(
            img.kind,
            ImageKind::Png,
            "{name}: default format must be PNG"
        );
        assert_eq!((img.width, img.height), (640, 360));
    }
    let img = post_and_match(
        &server,
        &src,
        json!({"streamName": "cam1", "format": "png"}),
        "live",
        "cam1",
        None,
        30.0,
    );
    assert_eq!(img.kind, ImageKind::Png);

    // JPEG scaled: width only keeps the aspect ratio.
    let img = post_and_match(
        &server,
        &src,
        json!({"streamName": "cam1", "format": "jpg", "width": 320}),
        "live",
        "cam1",
        None,
        JPEG_SCALED_DB,
    );
    assert_eq!(img.kind, ImageKind::Jpeg);
    assert_eq!((img.width, img.height), (320, 180));
    let img = post_and_match(
        &server,
        &src,
        json!({"streamName": "cam1", "format": "jpg", "height": 180, "quality": 90}),
        "live",
        "cam1",
        None,
        JPEG_SCALED_DB,
    );
    assert_eq!(
        (img.kind, img.width, img.height),
        (ImageKind::Jpeg, 320, 180)
    );

    // Not live: 404 with a JSON error.
    for name in ["nosuch", "other/cam1", "example.com/live/cam1", "live/cam2"] {
        let r = server.snapshot_post(&json!({ "streamName": name }));
        assert_eq!(
            r.status,
            404,
            "streamName {name}: {} {}",
            r.status,
            r.text()
        );
        assert!(
            r.json()["error"].is_string(),
            "404 body without an error: {}",
            r.text()
        );
    }

    // Bad requests: 400 with a JSON error, quickly (not after the snapshot timeout).
    let bad: [(&str, String); 6] = [
        ("bad JSON", "{\"streamName\": ".to_string()),
        ("not JSON at all", "streamName=cam1".to_string()),
        (
            "format gif",
            json!({"streamName": "cam1", "format": "gif"}).to_string(),
        ),
        (
            "width 100000",
            json!({"streamName": "cam1", "width": 100000}).to_string(),
        ),
        (
            "height 100000",
            json!({"streamName": "cam1", "height": 100000}).to_string(),
        ),
        (
            "negative width",
            json!({"streamName": "cam1", "width": -5}).to_string(),
        ),
    ];
    for (what, body) in bad {
        let r = server.post("/rest-api/stream/snapshot", &body);
        assert_eq!(r.status, 400, "{what} ({body}): {} {}", r.status, r.text());
        assert!(
            serde_json::from_slice::<Value>(&r.body)
                .map(|v| v.is_object())
                .unwrap_or(false),
            "{what}: 400 body is not a JSON object: {:?}",
            r.text()
        );
    }

    // The stream is unharmed.
    check_keyframe_snapshot(&server, &src, "live", "cam1", "");
}

/// The same name in two apps and two domains: a bare name is ambiguous (409 with the
/// candidates), qualified names pick the right stream.
#[test]
fn wcs_ambiguous_names_and_domains() {
    let dir = workdir();
    let a = Source::generate(dir.path(), "a", SourceSpec::testsrc(320, 180, 4.0, 25));
    let mut spec = SourceSpec::testsrc(320, 180, 4.0, 25);
    spec.vf = "gblur=sigma=1.5,negate".into();
    let b = Source::generate(dir.path(), "b", spec);
    let mut spec = SourceSpec::testsrc(320, 180, 4.0, 25);
    spec.vf = "gblur=sigma=1.5,hflip".into();
    let c = Source::generate(dir.path(), "c", spec);

    let server = Server::start();
    let _pa = Publisher::start(&a.path, &server.rtmp_url("live", "dup"));
    let _pb = Publisher::start(&b.path, &server.rtmp_url("other", "dup"));
    let _pc = Publisher::start(
        &c.path,
        &format!("{}?domain=example.com", server.rtmp_url("live", "dup")),
    );
    server.wait_keyframes("live", "dup", None, 1);
    server.wait_keyframes("other", "dup", None, 1);
    let info = server.wait_keyframes("live", "dup", Some("example.com"), 1);
    assert_eq!(info["domain"], "example.com", "{info}");
    assert_eq!(
        info["stream"], "dup",
        "the query string must not be part of the stream name: {info}"
    );

    let r = server.snapshot_post(&json!({"streamName": "dup"}));
    assert_eq!(
        r.status,
        409,
        "bare ambiguous name: {} {}",
        r.status,
        r.text()
    );
    let v = r.json();
    assert!(v["error"].is_string(), "409 without an error: {v}");
    let cands = v["candidates"]
        .as_array()
        .unwrap_or_else(|| panic!("409 without candidates: {v}"));
    assert_eq!(cands.len(), 3, "three streams are named dup: {v}");
    let text = v["candidates"].to_string();
    for part in ["other", "example.com", "_default"] {
        assert!(
            text.contains(part),
            "candidates do not mention {part}: {text}"
        );
    }

    post_and_match(
        &server,
        &b,
        json!({"streamName": "other/dup"}),
        "other",
        "dup",
        None,
        30.0,
    );
    post_and_match(
        &server,
        &a,
        json!({"streamName": "_default/live/dup"}),
        "live",
        "dup",
        None,
        30.0,
    );
    post_and_match(
        &server,
        &c,
        json!({"streamName": "example.com/live/dup"}),
        "live",
        "dup",
        Some("example.com"),
        30.0,
    );
    let shot = check_keyframe_snapshot(&server, &c, "live", "dup", "domain=example.com");
    let p = a.psnr_to(&shot.image, c.frame_index_at(shot.pts_ms));
    assert!(
        p < 25.0,
        "?domain=example.com pictured the _default stream ({p:.1} dB)"
    );
}

fn assert_timeout_body(r: &Resp, what: &str) {
    assert_eq!(r.status, 500, "{what}: {} {}", r.status, r.text());
    let v = r.json();
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: body is not an object: {v}"));
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "error",
            "exception",
            "message",
            "path",
            "reason",
            "status",
            "timestamp"
        ],
        "{what}: the timeout body must have exactly the WCS keys: {v}"
    );
    assert_eq!(
        v["exception"], "com.flashphoner.rest.server.exception.InternalErrorException",
        "{v}"
    );
    assert_eq!(v["path"], "/rest-api/stream/snapshot", "{v}");
    assert_eq!(v["error"], "Internal Server Error", "{v}");
    assert_eq!(v["message"], "Snapshot response timeout", "{v}");
    assert_eq!(v["status"], 500, "{v}");
    assert!(v["reason"].is_string(), "{v}");
    let ts = v["timestamp"]
        .as_f64()
        .unwrap_or_else(|| panic!("timestamp is not a number: {v}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        (now - ts).abs() < 120_000.0,
        "timestamp {ts} is not milliseconds since the epoch (now {now})"
    );
}

/// An audio-only stream never has a picture: 500 with the WCS body after the interval
/// (set by environment variable).
#[test]
fn audio_only_stream_times_out_with_wcs_body() {
    let server = Server::start_env(&[("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS", "1500")]);
    let url = server.rtmp_url("live", "audio");
    let mut p = Publisher::start_args(
        &[
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-c:a",
            "aac",
            "-f",
            "flv",
            &url,
        ],
        &url,
    );
    server.wait_live("live", "audio", None);
    p.assert_running();
    let r = server.snapshot_post(&json!({"streamName": "audio"}));
    assert_timeout_body(&r, "audio-only stream");
    assert!(
        r.elapsed >= Duration::from_millis(1400),
        "the timeout answer came after {:?}, before snapshot_taking_interval_ms=1500",
        r.elapsed
    );
    // The publisher is not disturbed by a failed snapshot.
    p.assert_running();
    server.wait_live("live", "audio", None);
}

/// A stream that is published but sends nothing yet: the request waits, then 500. The
/// interval comes from the TOML config file (longer than the default, so a config that is
/// ignored is seen). Domains from LIVESNAP_DOMAINS: a tcUrl host that is a configured domain names
/// the domain, other hosts fall back to `_default`.
#[test]
fn config_file_interval_and_tcurl_domains() {
    let dir = workdir();
    let cfg = dir.path().join("livesnap.toml");
    std::fs::write(&cfg, "snapshot_taking_interval_ms = 3600\n").unwrap();
    let server = Server::start_with(
        &[("LIVESNAP_DOMAINS", "cam.example,other.test")],
        &["--config", cfg.to_str().unwrap()],
    );

    let mut conns = vec![];
    for (tc_host, name) in [
        (server.rtmp.clone(), "silent"),
        ("cam.example".to_string(), "viadomain"),
        ("other.example".to_string(), "notconfigured"),
        ("localhost".to_string(), "vialocalhost"),
    ] {
        let tc_url = format!("rtmp://{tc_host}/live");
        let p = rtmp::Publisher::try_start(&server.rtmp, &tc_url, "live", name)
            .unwrap_or_else(|why| panic!("publish of {name} (tcUrl host {tc_host}): {why}"));
        conns.push(p);
    }
    let v = server.wait_live("live", "viadomain", Some("cam.example"));
    assert_eq!(v["domain"], "cam.example", "{v}");
    for name in ["silent", "notconfigured", "vialocalhost"] {
        let v = server.wait_live("live", name, None);
        assert_eq!(v["domain"], "_default", "{name}: {v}");
    }

    let r = server.snapshot_post(&json!({"streamName": "live/silent"}));
    assert_timeout_body(&r, "published stream without media");
    assert!(
        r.elapsed >= Duration::from_millis(3500),
        "answered after {:?}; the config file says snapshot_taking_interval_ms = 3600",
        r.elapsed
    );
    drop(conns);
    server.wait_gone("live", "silent", None);
}

/// A request that arrives before the stream's first keyframe waits for it and answers with
/// that keyframe's picture. The interval is given twice: 1000 ms by environment variable and
/// 10000 ms by flag; the flag wins, so the request outlives the 2 s before media is sent.
#[test]
fn request_before_first_keyframe_waits_for_it() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "late", SourceSpec::testsrc(320, 180, 2.0, 25));
    let server = Server::start_with(
        &[("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS", "1000")],
        &["--snapshot-taking-interval-ms", "10000"],
    );
    let mut publisher = rtmp::Publisher::start(&server.rtmp, "live", "late");
    server.wait_live("live", "late", None);

    // Only the first second: the sequence header and one GOP, whose only keyframe is frame 0.
    let tags: Vec<_> = rtmp::flv_tags(&src.path)
        .into_iter()
        .filter(|t| t.ts < 1000)
        .collect();
    assert!(tags.iter().any(|t| t.is_keyframe() && t.is_sequence_header()));

    let url = server.url("/rest-api/stream/snapshot");
    let waiting =
        std::thread::spawn(move || http_post(&url, &json!({"streamName": "late"}).to_string()));
    // Ordering only (not an assertion): let the request reach the server before any media.
    std::thread::sleep(Duration::from_millis(2000));
    publisher.send_tags(&tags).expect("send the first GOP");

    let r = waiting.join().unwrap().expect("POST");
    assert_eq!(
        r.status,
        200,
        "a request waiting for the first keyframe (interval 10000 ms by flag, 1000 ms by env) got {} {}",
        r.status,
        r.text()
    );
    let data = r.json()["data"].as_str().expect("data").to_string();
    let img = decode_image(&decode_base64(&data));
    src.assert_matches(&img, 0, 30.0, 6.0, "the first keyframe of a late stream");
    drop(publisher);
    server.wait_gone("live", "late", None);
}
