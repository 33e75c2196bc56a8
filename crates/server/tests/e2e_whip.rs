//! WebRTC publish (WHIP) against the real binary.
//!
//! A real browser (headless Chromium with a fake camera playing a known picture) publishes
//! through the browser module (`/sdk/livesnap.js`) from a page on another origin; the
//! stream's pictures, taken through the module's `snapshot()` and its WCS-shaped
//! `createStream().snapshot()`, show the camera's picture (PSNR), and a picture taken when the
//! newest keyframe is old is of a fresh keyframe the server asked for (PLI).
//!
//! Without a browser: the offers the WHIP endpoint refuses (not SDP, no video, VP8 only, too
//! large, a name already live), its CORS preflight, PATCH and DELETE, garbage on the UDP port,
//! sessions that never connect (dropped after `webrtc_connect_timeout_s`), the pending-session
//! limit, API keys (not needed) and publish signatures (needed when `publish_secret` is set).
//! The offers are real Chromium offers recorded in `tests/peers/whip/`.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::UdpSocket;

use browser::Browser;
use common::*;
use serde_json::{json, Value};

const H264_OFFER: &str = include_str!("peers/whip/chromium-h264.sdp");
const VP8_OFFER: &str = include_str!("peers/whip/chromium-vp8.sdp");
const AUDIO_OFFER: &str = include_str!("peers/whip/chromium-audio.sdp");

/// A page on another origin than the server's: `http://127.0.0.1:{port}/` serves an empty
/// page (and no icon), as a customer's own site would host a page using the module.
fn page_server() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let body = "<!doctype html><title>a customer's page</title>";
            let answer = if head.starts_with("GET / ") {
                format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_string()
            };
            let _ = c.write_all(answer.as_bytes());
        }
    });
    port
}

/// POSTs an SDP offer to `path` with `headers`.
fn offer(s: &Server, path: &str, sdp: &str, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/sdp")];
    h.extend_from_slice(headers);
    request_with("POST", &s.url(path), Some(sdp), &h).expect("POST offer")
}

#[test]
fn a_browser_publishes_over_whip_and_its_pictures_show_the_camera() {
    let work = workdir();
    let (clip, reference) = bars_camera(work.path());
    // The page is on another origin than the server: the module and WHIP answer any origin,
    // the open API the origins of cors_origins.
    let page = format!("http://127.0.0.1:{}", page_server());
    let s = Server::start_with(&[], &["--cors-origins", &page]);
    let b = Browser::start(Some(&clip));
    b.goto(&format!("{page}/"));
    let server = format!("http://{}", s.http);
    let location = b.run(
        r#"
        const { Livesnap } = await import(args.server + "/sdk/livesnap.js");
        window.ls = new Livesnap({ server: args.server });
        const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
        window.pub = await window.ls.publish("live/cam1", media);
        return window.pub.location;
        "#,
        json!({ "server": server }),
    );
    let location = location.as_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{server}/whip/live/cam1/")),
        "{location}"
    );

    let live = s.wait_keyframes("live", "cam1", None, 1);
    assert_eq!(live["protocol"], "whip", "{live}");
    assert_eq!(live["codec"], "h264", "{live}");
    assert_eq!(
        (live["width"].as_u64(), live["height"].as_u64()),
        (Some(640), Some(480)),
        "{live}"
    );
    b.wait_for(
        "window.pub.pc.connectionState === 'connected'",
        "the peer connection",
    );

    // A browser sends a keyframe when asked (or every few minutes): once the newest is older
    // than keyframe_request_after_ms (1 s), a picture asks for one and is of that one.
    poll(WAIT, "the keyframe to be older than 1.5 s", || {
        let st = s.stream("live", "cam1")?;
        (st["last_keyframe_age_ms"].as_u64()? > 1500).then_some(())
    });
    let shot = b.run(
        r#"
        const shot = await window.ls.snapshot("live/cam1", { format: "png" });
        return { data: shot.data, ageMs: shot.ageMs, width: shot.width, height: shot.height,
                 frameTime: shot.frameTime && shot.frameTime.toISOString(), keyframe: shot.keyframe };
        "#,
        Value::Null,
    );
    assert_eq!(
        (shot["width"].as_u64(), shot["height"].as_u64()),
        (Some(640), Some(480)),
        "{shot}"
    );
    assert!(shot["frameTime"].is_string(), "{shot}");
    let age = shot["ageMs"].as_f64().unwrap();
    assert!(
        age < 1000.0,
        "the picture is of an old keyframe ({age} ms): no keyframe was asked for"
    );
    let requests = s.stream("live", "cam1").unwrap()["keyframe_requests"]
        .as_u64()
        .unwrap();
    assert!(requests >= 1, "no keyframe request counted");
    let img = decode_image(&decode_base64(shot["data"].as_str().unwrap()));
    assert_eq!((img.width, img.height), (640, 480));
    let db = psnr(&img.rgb, &reference);
    assert!(
        db > 30.0,
        "the picture does not show the camera: PSNR {db:.1} dB"
    );

    b.assert_no_console_errors("the publish page");

    // The same stream by its bare name, and the WCS-shaped call Flashphoner's demo uses.
    let wcs = b.run(
        r#"
        const { STREAM_STATUS } = await import(args.server + "/sdk/livesnap.js");
        const bare = await window.ls.snapshot("cam1", { format: "jpg", width: 320 });
        const take = (name) => new Promise((resolve) => {
            window.ls.createStream({ name })
                .on(STREAM_STATUS.SNAPSHOT_COMPLETE, (s) => resolve({ complete: s.getInfo() }))
                .on(STREAM_STATUS.FAILED, (s) => resolve({ failed: s.getInfo() }))
                .snapshot();
        });
        const good = await take("live/cam1");
        const bad = await take("live/nosuch");
        document.body.innerHTML = "";
        const img = document.createElement("img");
        img.alt = "snapshot of live/cam1";
        img.src = "data:image/png;base64," + good.complete;
        document.body.appendChild(img);
        await img.decode();
        return { bare: [bare.width, bare.height], good, bad };
        "#,
        json!({ "server": server }),
    );
    assert_eq!(wcs["bare"], json!([320, 240]), "{wcs}");
    let png = decode_image(&decode_base64(wcs["good"]["complete"].as_str().unwrap()));
    let db = psnr(&png.rgb, &reference);
    assert!(
        db > 30.0,
        "the WCS-shaped snapshot does not show the camera: PSNR {db:.1} dB"
    );
    assert!(
        wcs["bad"]["failed"]
            .as_str()
            .is_some_and(|r| r.contains("nosuch")),
        "{}",
        wcs["bad"]
    );
    b.screenshot("whip-browser-snapshot");
    // The one error: the 404 of the stream that is not live, asked for above on purpose.
    let errors = b.console_errors();
    assert!(
        errors.len() == 1
            && errors[0].contains("/rest-api/stream/snapshot")
            && errors[0].contains("404"),
        "{errors:#?}"
    );

    // The module's stop() deletes the session: the stream ends, and the resource is gone.
    b.run("await window.pub.stop(); return null;", Value::Null);
    s.wait_gone("live", "cam1", None);
    let again = request_with("DELETE", &location, None, &[]).unwrap();
    assert_eq!(again.status, 404, "{}", again.text());
    b.assert_no_console_errors("the publish page");
    assert!(
        s.log_text().contains("deleted by its publisher"),
        "{}",
        s.log_tail(20)
    );
}

#[test]
fn whip_refuses_bad_offers_and_garbage_alone() {
    let s = Server::start_with(&[], &["--cors-origins", "https://app.example"]);
    let path = "/whip/live/cam1";

    let r2 = request_with(
        "POST",
        &s.url(path),
        Some(H264_OFFER),
        &[("content-type", "text/plain")],
    )
    .unwrap();
    assert_eq!(r2.status, 415, "{}", r2.text());
    let r = offer(&s, path, "v=0\r\nthis is not SDP\r\n", &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("SDP"), "{}", r.text());
    let r = offer(&s, path, AUDIO_OFFER, &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no video"), "{}", r.text());
    // VP8 is pictured with libavcodec only (the ffmpeg feature; see the test below).
    let r = offer(&s, "/whip/live/vp8", VP8_OFFER, &[]);
    if cfg!(feature = "ffmpeg") {
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(s.delete(r.header("location").unwrap()).status, 200);
    } else {
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("H.264"), "{}", r.text());
    }
    let huge = format!(
        "{H264_OFFER}{}",
        "a=x-padding:0123456789abcdef\r\n".repeat(3000)
    );
    let r = offer(&s, path, &huge, &[]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        s.stream("live", "cam1").is_none(),
        "a refused offer went live"
    );

    // The open API and unsigned WHIP answer only the pages of cors_origins.
    let pre = request_with(
        "OPTIONS",
        &s.url("/v1/streams"),
        None,
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .unwrap();
    assert_eq!(
        pre.header("access-control-allow-origin"),
        None,
        "an open API answered a foreign page"
    );
    let pre = request_with(
        "OPTIONS",
        &s.url(path),
        None,
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .unwrap();
    assert_eq!(
        pre.header("access-control-allow-origin"),
        None,
        "unsigned WHIP answered a page outside cors_origins"
    );
    // A CORS preflight from a page elsewhere, with the headers a WHIP client sends.
    let pre = request_with(
        "OPTIONS",
        &s.url(path),
        None,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
    )
    .unwrap();
    assert!(
        pre.status == 200 || pre.status == 204,
        "preflight: {}",
        pre.status
    );
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    // A good offer: 201 with the answer, its resource and an ETag; ICE-lite on our UDP port.
    let r = offer(&s, path, H264_OFFER, &[("origin", "https://app.example")]);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let location = r.header("location").unwrap().to_string();
    assert!(location.starts_with("/whip/live/cam1/"), "{location}");
    assert!(r.header("etag").is_some_and(|e| e.starts_with('"')));
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        exposed.contains("location"),
        "Location not exposed to pages: {exposed}"
    );
    let answer = r.text();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    let port = s.webrtc.rsplit(':').next().unwrap();
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("a=candidate:")
                && l.contains(&format!("127.0.0.1 {port} typ host"))),
        "no candidate on {}: {answer}",
        s.webrtc
    );
    let live = s.wait_live("live", "cam1", None);
    assert_eq!(live["protocol"], "whip");

    // The same name again is refused while the first session holds it.
    let r = offer(&s, path, H264_OFFER, &[]);
    assert_eq!(r.status, 409, "{}", r.text());

    // Garbage on the UDP port: random bytes, a STUN header with nobody's username, DTLS and
    // RTP shapes. Dropped; the server and the session go on.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..500u64 {
        let mut d = pseudo_random(i, 20 + (i as usize * 7) % 1200);
        match i % 4 {
            0 => d[..2].copy_from_slice(&[0x00, 0x01]), // STUN binding request
            1 => d[0] = 22,                             // DTLS handshake
            2 => d[0] = 0x80,                           // RTP
            _ => {}
        }
        let _ = udp.send_to(&d, &s.webrtc);
    }
    assert_eq!(s.get("/healthz").status, 200);
    assert!(
        s.stream("live", "cam1").is_some(),
        "garbage ended the session"
    );

    // PATCH (trickle ICE) is not supported; DELETE of another session is 404, of this one 200.
    let r = request_with(
        "PATCH",
        &s.url(&location),
        Some("a=end-of-candidates"),
        &[("content-type", "application/trickle-ice-sdpfrag")],
    )
    .unwrap();
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(r.header("allow").is_some_and(|a| a.contains("DELETE")));
    let r = s.delete("/whip/live/cam1/00000000000000000000000000000000");
    assert_eq!(r.status, 404, "{}", r.text());
    let other = location.replace("/live/cam1/", "/live/cam2/");
    assert_eq!(
        s.delete(&other).status,
        404,
        "a session deleted by another stream's path"
    );
    assert_eq!(s.delete(&location).status, 200);
    s.wait_gone("live", "cam1", None);
    assert_eq!(s.delete(&location).status, 404);
    // The name is free again.
    let r = offer(&s, path, H264_OFFER, &[]);
    assert_eq!(r.status, 201, "{}", r.text());

    // A name with characters a URL gives meaning to: its Location is percent-encoded, and a
    // DELETE of it reaches the session.
    let r = offer(&s, "/whip/live/a%23b%20c", H264_OFFER, &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    let location = r.header("location").unwrap().to_string();
    assert!(location.starts_with("/whip/live/a%23b%20c/"), "{location}");
    assert!(s.stream("live", "a%23b%20c").is_some());
    assert_eq!(s.delete(&location).status, 200);
}

#[test]
fn sessions_that_never_connect_are_dropped_and_limited() {
    let s = Server::start_with(
        &[],
        &[
            "--webrtc-connect-timeout-s",
            "1",
            "--webrtc-max-pending-sessions",
            "8",
        ],
    );
    let r = offer(&s, "/whip/live/half", H264_OFFER, &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    s.wait_live("live", "half", None);
    // One address holds at most an eighth of the pending pool: one session here.
    let r = offer(&s, "/whip/live/other", H264_OFFER, &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    s.wait_gone("live", "half", None);
    assert!(
        s.log_text().contains("not connected within 1 s"),
        "{}",
        s.log_tail(20)
    );
    // Its slot is free again.
    let r = offer(&s, "/whip/live/other", H264_OFFER, &[]);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn whip_needs_a_publish_signature_not_an_api_key() {
    const SECRET: &str = "whip-e2e-publish-secret";
    const ADMIN: &str = "whip-e2e-admin-key-0123456789";
    let s = Server::start_with(
        &[
            ("LIVESNAP_PUBLISH_SECRET", SECRET),
            ("LIVESNAP_ADMIN_KEY", ADMIN),
        ],
        &[],
    );
    let admin = [("authorization", "Bearer whip-e2e-admin-key-0123456789")];
    let r = offer(&s, "/whip/live/cam1", H264_OFFER, &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").is_some());
    let r = offer(
        &s,
        "/whip/live/cam1?expires=9999999999&sign=00",
        H264_OFFER,
        &[],
    );
    assert_eq!(r.status, 401, "{}", r.text());

    let urls = request_with(
        "POST",
        &s.url("/v1/publish-urls"),
        Some(&json!({"app": "live", "stream": "cam1"}).to_string()),
        &admin,
    )
    .unwrap();
    assert_eq!(urls.status, 200, "{}", urls.text());
    let whip = urls.json()["whip"].as_str().unwrap().to_string();
    let query = whip.split_once('?').unwrap().1.to_string();
    // In the URL's query, with no API key: the signature is what lets it in.
    let r = offer(&s, &format!("/whip/live/cam1?{query}"), H264_OFFER, &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    // As the bearer token, the way OBS sends it.
    let urls = request_with(
        "POST",
        &s.url("/v1/publish-urls"),
        Some(&json!({"app": "live", "stream": "cam2"}).to_string()),
        &admin,
    )
    .unwrap();
    let whip = urls.json()["whip"].as_str().unwrap().to_string();
    let token = format!("Bearer {}", whip.split_once('?').unwrap().1);
    let r = offer(
        &s,
        "/whip/live/cam2",
        H264_OFFER,
        &[("authorization", &token)],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // A cam1 signature does not publish cam3.
    let r = offer(&s, &format!("/whip/live/cam3?{query}"), H264_OFFER, &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    // With publishes signed, any page may publish (the signature is what it needs)...
    let pre = request_with(
        "OPTIONS",
        &s.url("/whip/live/cam9"),
        None,
        &[
            ("origin", "https://elsewhere.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
    )
    .unwrap();
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://elsewhere.example")
    );
    // ... and with a key required, any page may call the API (the key is what it needs).
    let pre = request_with(
        "OPTIONS",
        &s.url("/v1/streams"),
        None,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
    )
    .unwrap();
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    // The API itself still needs the key.
    assert_eq!(s.get("/v1/streams").status, 401);
    let r = request_with("GET", &s.url("/v1/streams/live/cam1"), None, &admin).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["protocol"], "whip");
}

#[test]
fn the_browser_module_is_served_to_any_origin() {
    let s = Server::start_with(
        &[("LIVESNAP_ADMIN_KEY", "whip-e2e-admin-key-0123456789")],
        &[],
    );
    let r = request_with(
        "GET",
        &s.url("/sdk/livesnap.js"),
        None,
        &[("origin", "https://app.example")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/javascript")));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let js = r.text();
    for name in [
        "export class Livesnap",
        "createStream",
        "SNAPSHOT_COMPLETE",
        "publish",
    ] {
        assert!(js.contains(name), "the module has no {name}");
    }
}

/// VP8, VP9 and AV1 from the browser, pictured with libavcodec: each stream shows the camera.
#[cfg(feature = "ffmpeg")]
#[test]
fn a_browser_publishes_vp8_vp9_and_av1_and_each_is_pictured() {
    let work = workdir();
    let (clip, reference) = bars_camera(work.path());
    let s = Server::start();
    let b = Browser::start(Some(&clip));
    b.goto(&s.url("/healthz"));
    for codec in ["VP8", "VP9", "AV1"] {
        let stream = codec.to_lowercase();
        b.run(
            r#"
            const { Livesnap } = await import("/sdk/livesnap.js");
            window.ls = new Livesnap({});
            const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
            window.pub = await window.ls.publish("live/" + args.stream, media, { codec: args.codec });
            return null;
            "#,
            json!({ "codec": codec, "stream": stream }),
        );
        let live = s.wait_keyframes("live", &stream, None, 1);
        assert_eq!(live["codec"], stream.as_str(), "{live}");
        assert_eq!(
            (live["width"].as_u64(), live["height"].as_u64()),
            (Some(640), Some(480)),
            "{live}"
        );
        let shot = s.snapshot_get("live", &stream, "png", "");
        assert_eq!((shot.image.width, shot.image.height), (640, 480));
        let db = psnr(&shot.image.rgb, &reference);
        assert!(
            db > 30.0,
            "{codec}: the picture does not show the camera: PSNR {db:.1} dB"
        );
        b.run("await window.pub.stop(); return null;", Value::Null);
        s.wait_gone("live", &stream, None);
    }
    b.assert_no_console_errors("the publish page");
}

/// A publisher that vanishes (its browser killed: no DELETE, no DTLS close) ends its stream:
/// no video for `webrtc_idle_timeout_s`, or ICE consent expiring, whichever comes first. The
/// sessions show in /metrics as the `whip` front end's connections.
#[test]
fn a_publisher_that_vanishes_ends_its_stream() {
    let s = Server::start_with(&[], &["--webrtc-idle-timeout-s", "3"]);
    let b = Browser::start(None);
    b.goto(&s.url("/healthz"));
    b.run(
        r#"
        const { Livesnap } = await import("/sdk/livesnap.js");
        const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
        window.pub = await new Livesnap({}).publish("live/gone", media);
        return null;
        "#,
        Value::Null,
    );
    s.wait_keyframes("live", "gone", None, 1);
    let metrics = s.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("livesnap_connections{protocol=\"whip\"}") && l.ends_with(" 1")),
        "{metrics}"
    );
    drop(b);
    s.wait_gone("live", "gone", None);
    let log = s.log_text();
    assert!(
        log.contains("no video for 3 s") || log.contains("ICE consent expired"),
        "{}",
        s.log_tail(20)
    );
}
