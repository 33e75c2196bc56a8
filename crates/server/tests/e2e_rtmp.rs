//! End-to-end: RTMP publishing rules and bad input. A second publisher of a live name is
//! refused alone, disconnect removes a stream, the publisher limit, and garbage, stalls and
//! truncated publishes on the RTMP port never disturb the server or other streams.

mod common;

use std::io::Write;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::json;

fn frames(server: &Server, app: &str, stream: &str) -> u64 {
    let r = server.get(&format!("/v1/streams/{app}/{stream}"));
    assert_eq!(
        r.status,
        200,
        "{app}/{stream} is not live any more: {}",
        r.text()
    );
    r.json()["frames"].as_u64().unwrap()
}

/// The stream keeps receiving frames: the counter grows.
fn assert_flowing(server: &Server, app: &str, stream: &str) {
    let f0 = frames(server, app, stream);
    poll(
        WAIT,
        &format!("{app}/{stream} to receive more frames than {f0}"),
        || (frames(server, app, stream) > f0).then_some(()),
    );
}

#[test]
fn second_publisher_of_a_live_name_is_refused_alone() {
    let dir = workdir();
    let first = Source::generate(dir.path(), "first", SourceSpec::testsrc(320, 180, 4.0, 25));
    let mut spec = SourceSpec::testsrc(320, 180, 4.0, 25);
    spec.vf = "gblur=sigma=1.5,negate".into();
    let second = Source::generate(dir.path(), "second", spec);

    let server = Server::start();
    let url = server.rtmp_url("live", "taken");
    let mut p1 = Publisher::start(&first.path, &url);
    let info = server.wait_keyframes("live", "taken", None, 1);
    let publisher_addr = info["publisher"].clone();

    let mut p2 = Publisher::start(&second.path, &url);
    let status = p2.wait_exit(WAIT);
    assert!(
        !status.success(),
        "the second publisher of a live name exited with success; log:\n{}",
        p2.log_tail()
    );

    p1.assert_running();
    let info = server.get("/v1/streams/live/taken").json();
    assert_eq!(
        info["publisher"], publisher_addr,
        "the stream changed hands: {info}"
    );
    assert_flowing(&server, "live", "taken");
    // The picture is still the first publisher's.
    let shot = check_keyframe_snapshot(&server, &first, "live", "taken", "");
    let p = second.psnr_to(&shot.image, first.frame_index_at(shot.pts_ms));
    assert!(
        p < 25.0,
        "the picture looks like the refused publisher's ({p:.1} dB)"
    );
    let list = server.get("/v1/streams").json();
    assert_eq!(list["streams"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn disconnect_removes_the_stream_and_frees_the_name() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "d", SourceSpec::testsrc(320, 180, 4.0, 25));
    let server = Server::start();
    let url = server.rtmp_url("live", "bye");
    let mut p = Publisher::start(&src.path, &url);
    server.wait_keyframes("live", "bye", None, 1);
    check_keyframe_snapshot(&server, &src, "live", "bye", "");

    p.kill();
    server.wait_gone("live", "bye", None);
    let list = server.get("/v1/streams").json();
    assert_eq!(
        list["streams"].as_array().map(|a| a.len()),
        Some(0),
        "{list}"
    );
    let r = server.snapshot_post(&json!({"streamName": "bye"}));
    assert_eq!(
        r.status,
        404,
        "snapshot of a stream whose publisher left: {} {}",
        r.status,
        r.text()
    );
    let r = server.get("/v1/streams/live/bye/snapshot.png");
    assert_eq!(
        r.status, 404,
        "direct snapshot of a stream whose publisher left: {}",
        r.status
    );

    // A publish that ends normally (end of file: FCUnpublish/deleteStream) removes it too.
    let mut once = Publisher::start_once(&src.path, &server.rtmp_url("live", "once"));
    server.wait_keyframes("live", "once", None, 1);
    let st = once.wait_exit(WAIT);
    assert!(
        st.success(),
        "a 4 s publish did not end cleanly: {}",
        once.log_tail()
    );
    server.wait_gone("live", "once", None);

    // The name is free again.
    let _p2 = Publisher::start(&src.path, &url);
    server.wait_keyframes("live", "bye", None, 1);
    check_keyframe_snapshot(&server, &src, "live", "bye", "");
}

#[test]
fn publisher_limit_refuses_one_more() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "l", SourceSpec::testsrc(320, 180, 4.0, 25));
    let server = Server::start_env(&[("LIVESNAP_MAX_PUBLISHERS", "2")]);
    let mut a = Publisher::start(&src.path, &server.rtmp_url("live", "a"));
    let mut b = Publisher::start(&src.path, &server.rtmp_url("live", "b"));
    server.wait_keyframes("live", "a", None, 1);
    server.wait_keyframes("live", "b", None, 1);
    let mut c = Publisher::start(&src.path, &server.rtmp_url("live", "c"));
    let st = c.wait_exit(WAIT);
    assert!(
        !st.success(),
        "a third publisher with LIVESNAP_MAX_PUBLISHERS=2 was not refused"
    );
    let r = server.get("/v1/streams/live/c");
    assert_eq!(
        r.status,
        404,
        "the refused publisher is listed: {}",
        r.text()
    );
    a.assert_running();
    b.assert_running();
    assert_flowing(&server, "live", "a");
    assert_flowing(&server, "live", "b");

    // A freed slot can be used.
    a.kill();
    server.wait_gone("live", "a", None);
    let _c2 = Publisher::start(&src.path, &server.rtmp_url("live", "c"));
    server.wait_keyframes("live", "c", None, 1);
}

/// Garbage of every kind on the RTMP port while a good stream is live: the server keeps
/// answering, the good stream keeps producing the right pictures, broken publishers go away.
#[test]
fn garbage_stalls_and_truncation_leave_other_streams_alone() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "good", SourceSpec::testsrc(320, 180, 6.0, 25));
    let mut spec = SourceSpec::testsrc(320, 180, 6.0, 25);
    spec.vf = "gblur=sigma=1.5,negate".into();
    let cut_src = Source::generate(dir.path(), "cut", spec);

    let mut server = Server::start_env(&[("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS", "1500")]);
    let mut good = Publisher::start(&src.path, &server.rtmp_url("live", "good"));
    server.wait_keyframes("live", "good", None, 1);
    let before = check_keyframe_snapshot(&server, &src, "live", "good", "");
    let addr = server.rtmp.clone();

    let mut held = vec![];

    // 1. Random bytes, then close.
    {
        let mut s = rtmp::connect(&addr);
        let _ = s.write_all(&pseudo_random(1, 64 * 1024));
    }
    // 2. Random bytes starting with a valid version byte, kept open.
    {
        let mut s = rtmp::connect(&addr);
        let mut g = vec![3u8];
        g.extend(pseudo_random(2, 8 * 1024));
        let _ = s.write_all(&g);
        held.push(s);
    }
    // 3. An HTTP request on the RTMP port.
    {
        let mut s = rtmp::connect(&addr);
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        held.push(s);
    }
    // 4. A connection that stalls in the handshake (C0 and part of C1).
    {
        let mut s = rtmp::connect(&addr);
        let mut g = vec![3u8];
        g.extend(vec![0u8; 700]);
        s.write_all(&g).unwrap();
        held.push(s);
    }
    // 5. A connection that sends nothing at all.
    held.push(rtmp::connect(&addr));
    // 6. A valid handshake, then garbage chunks.
    {
        let mut s = rtmp::connect(&addr);
        rtmp::handshake(&mut s).unwrap();
        let _ = s.write_all(&pseudo_random(6, 32 * 1024));
        held.push(s);
    }
    // 7. A valid handshake, then a message header claiming a huge message, then a trickle.
    {
        let mut s = rtmp::connect(&addr);
        rtmp::handshake(&mut s).unwrap();
        let mut m = vec![0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
        m.extend(pseudo_random(7, 128));
        let _ = s.write_all(&m);
        held.push(s);
    }
    // 8. A valid publish, then a malformed AVC sequence header and malformed NAL units.
    {
        let mut s = rtmp::Publisher::start(&addr, "live", "badavc");
        let mut seq = vec![
            0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x40,
        ];
        seq.extend(pseudo_random(8, 20)); // the SPS is shorter than it claims
        let _ = s.video(&seq, 0);
        for ts in 0..10u32 {
            let mut nal = vec![0x17, 0x01, 0, 0, 0, 0x00, 0x00, 0x10, 0x00, 0x65];
            nal.extend(pseudo_random(80 + ts as u64, 300));
            let _ = s.video(&nal, ts * 40);
        }
        held.push(s.into_stream());
    }
    // 9. A valid publish that dies in the middle of a video message.
    {
        let mut s = rtmp::Publisher::start(&addr, "live", "truncraw");
        let mut nal = vec![0x17, 0x01, 0, 0, 0, 0x00, 0x00, 0x75, 0x30, 0x65];
        nal.extend(pseudo_random(9, 30_000 - 10));
        let msg = s.video_bytes(&nal, 0);
        let _ = s.stream().write_all(&msg[..msg.len() / 3]);
        server.wait_live("live", "truncraw", None);
        drop(s);
    }
    // 9b. A publish of real frames (decodable) that dies in the middle of the next keyframe.
    {
        let tags = rtmp::flv_tags(&cut_src.path);
        let first_gop: Vec<_> = tags.iter().filter(|t| t.ts < 1000).cloned().collect();
        let next_key = tags
            .iter()
            .find(|t| t.is_keyframe() && t.ts >= 1000)
            .expect("a second keyframe");
        let mut p = rtmp::Publisher::start(&addr, "live", "truncflv");
        p.send_tags(&first_gop).unwrap();
        server.wait_keyframes("live", "truncflv", None, 1);
        let shot = check_keyframe_snapshot(&server, &cut_src, "live", "truncflv", "");
        assert_eq!(cut_src.frame_index_at(shot.pts_ms), 0);
        let msg = p.video_bytes(&next_key.data, next_key.ts);
        p.stream().write_all(&msg[..msg.len() / 2]).unwrap();
        drop(p);
        server.wait_gone("live", "truncflv", None);
    }
    // 10. A real ffmpeg publish cut off mid-stream by a proxy.
    let proxy = CuttingProxy::start(&addr, 40_001);
    let mut cut = Publisher::start(&cut_src.path, &format!("rtmp://{}/live/cut", proxy.addr));
    server.wait_live("live", "cut", None);
    poll(WAIT, "the proxy to cut the ffmpeg publish", || {
        proxy.cut.load(Ordering::SeqCst).then_some(())
    });
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 40_001);
    let _ = cut.wait_exit(WAIT);

    // While the stalled and garbage connections are still open: the server answers, the good
    // stream keeps going and pictures its current content.
    server.assert_alive();
    assert_eq!(server.get("/healthz").status, 200);
    assert_flowing(&server, "live", "good");
    let kf = server.get("/v1/streams/live/good").json()["keyframes"]
        .as_u64()
        .unwrap();
    server.wait_keyframes("live", "good", None, kf + 1);
    let after = check_keyframe_snapshot(&server, &src, "live", "good", "");
    assert!(
        after.pts_ms > before.pts_ms,
        "good stream's keyframe did not move on ({} -> {})",
        before.pts_ms,
        after.pts_ms
    );
    let r = server.snapshot_post(&json!({"streamName": "good"}));
    assert_eq!(
        r.status,
        200,
        "WCS snapshot of the good stream: {}",
        r.text()
    );

    // Broken publishers that went away are removed.
    server.wait_gone("live", "truncraw", None);
    server.wait_gone("live", "cut", None);

    // The malformed stream gives no picture: 404 if it was dropped, else the timeout 500.
    let r = server.snapshot_post(&json!({"streamName": "live/badavc"}));
    assert!(
        r.status == 404 || r.status == 500,
        "snapshot of a malformed stream: {} {}",
        r.status,
        r.text()
    );

    // Close everything still open; the server stays healthy and the good stream live.
    drop(held);
    server.assert_alive();
    assert_eq!(server.get("/healthz").status, 200);
    server.wait_gone("live", "badavc", None);
    good.assert_running();
    assert_flowing(&server, "live", "good");
    let list = server.get("/v1/streams").json();
    assert_eq!(
        list["streams"].as_array().map(|a| a.len()),
        Some(1),
        "only the good stream should be left: {list}"
    );
}
