//! End-to-end: the picture path. Real `livesnap serve`, real ffmpeg publishing over RTMP,
//! and every picture compared by PSNR with the source frame ffmpeg decodes.

mod common;

use common::*;
use serde_json::Value;

fn stats_u64(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("stream field {key} is not a non-negative integer: {v}"))
}

fn stats_f64(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("stream field {key} is not a number: {v}"))
}

/// High profile, B-frames, content that changes every frame: the keyframe snapshot is the
/// frame at its reported pts (not another moment), `latest` is the frame at its own pts, and a
/// later snapshot shows later content.
#[test]
fn keyframe_and_latest_snapshots_show_the_current_frame() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "hp", SourceSpec::testsrc(640, 360, 10.0, 50));
    let server = Server::start();
    let mut publisher = Publisher::start(&src.path, &server.rtmp_url("live", "cam1"));
    server.wait_keyframes("live", "cam1", None, 1);

    let k1 = check_keyframe_snapshot(&server, &src, "live", "cam1", "");
    assert_eq!((k1.image.width, k1.image.height), (640, 360));

    // precision=latest: the newest frame, decoded on from the keyframe. Its pts is never older
    // than the keyframe just pictured, and the picture is exactly the frame at its pts.
    let mut non_key = None;
    for attempt in 0..6 {
        let st0 = server.get("/v1/streams/live/cam1").json();
        let l = server.snapshot_get("live", "cam1", "png", "precision=latest");
        let st1 = server.get("/v1/streams/live/cam1").json();
        assert!(
            l.pts_ms >= k1.pts_ms,
            "latest frame pts {} is older than the keyframe pictured before it ({})",
            l.pts_ms,
            k1.pts_ms
        );
        let idx = src.frame_index_at(l.pts_ms);
        assert_eq!(
            l.keyframe,
            src.is_keyframe(idx),
            "X-Livesnap-Keyframe={} but source frame {idx} (pts {}) keyframe={}",
            l.keyframe,
            l.pts_ms,
            src.is_keyframe(idx)
        );
        // It is the newest frame: of the g frames of the current GOP received (decode order)
        // the newest in presentation order is at least g-1 frames after the keyframe and at
        // most g-1 plus the B-frame reorder depth (3).
        if st0["keyframes"] == st1["keyframes"] {
            let g0 = stats_u64(&st0, "gop_frames") as usize;
            let g1 = stats_u64(&st1, "gop_frames") as usize;
            let key = (0..=idx).rev().find(|&i| src.is_keyframe(i)).unwrap();
            let offset = idx - key;
            assert!(
                offset + 1 >= g0 && offset <= g1 + 3,
                "precision=latest pictured frame {idx}, {offset} frames after its keyframe, but the GOP had \
                 {g0}..{g1} frames received: not the newest frame"
            );
        }
        src.assert_matches(
            &l.image,
            idx,
            30.0,
            6.0,
            &format!("precision=latest (attempt {attempt})"),
        );
        if !l.keyframe {
            non_key = Some(l);
            break;
        }
    }
    let latest = non_key
        .expect("6 precision=latest snapshots were all keyframes on a stream with a 50-frame GOP");

    // The picture follows the stream: wait for a newer keyframe and picture it.
    let before = server.get("/v1/streams/live/cam1").json();
    let kf = stats_u64(&before, "keyframes");
    server.wait_keyframes("live", "cam1", None, kf + 1);
    let k2 = check_keyframe_snapshot(&server, &src, "live", "cam1", "");
    assert!(
        k2.pts_ms > k1.pts_ms,
        "a later keyframe snapshot has pts {} <= {}",
        k2.pts_ms,
        k1.pts_ms
    );
    assert!(
        k2.pts_ms > latest.pts_ms,
        "a keyframe that arrived after the latest snapshot (pts {}) has pts {}",
        latest.pts_ms,
        k2.pts_ms
    );
    let same = psnr(&k1.image.rgb, &k2.image.rgb);
    assert!(
        same < 25.0,
        "two keyframe snapshots 2 s apart look alike ({same:.1} dB): the picture is stale"
    );
    publisher.assert_running();
}

/// The stream list and detail report what the publisher sends.
#[test]
fn stream_list_and_detail_report_the_stream() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "st", SourceSpec::testsrc(640, 360, 6.0, 25));
    let server = Server::start();
    let _p = Publisher::start(&src.path, &server.rtmp_url("live", "stats"));
    // Two keyframes so the keyframe interval is known.
    server.wait_keyframes("live", "stats", None, 3);

    let list = server.get("/v1/streams");
    assert_eq!(list.status, 200);
    let list = list.json();
    let streams = list["streams"]
        .as_array()
        .unwrap_or_else(|| panic!("no streams array: {list}"));
    assert_eq!(streams.len(), 1, "one publisher, list: {list}");
    let s = &streams[0];
    assert_eq!(s["domain"], "_default", "{s}");
    assert_eq!(s["app"], "live", "{s}");
    assert_eq!(s["stream"], "stats", "{s}");
    assert_eq!(s["codec"], "h264", "{s}");
    assert_eq!(s["profile"], "High", "{s}");
    assert!(!s["level"].is_null(), "level missing: {s}");
    assert_eq!(stats_u64(s, "width"), 640, "{s}");
    assert_eq!(stats_u64(s, "height"), 360, "{s}");
    let colour = s["colour"]
        .as_str()
        .unwrap_or_else(|| panic!("colour not a string: {s}"));
    assert!(
        colour.ends_with("/limited"),
        "an untagged yuv420p stream is limited range, got {colour}"
    );
    let fps = stats_f64(s, "fps");
    assert!((fps - 25.0).abs() < 1.0, "fps {fps}, source is 25");
    let ki = stats_f64(s, "keyframe_interval_ms");
    assert!(
        (ki - 1000.0).abs() <= 100.0,
        "keyframe_interval_ms {ki}, source has a keyframe every 25 frames at 25 fps"
    );
    assert!(stats_f64(s, "last_keyframe_age_ms") >= 0.0);
    assert!(stats_f64(s, "bitrate_kbps") > 0.0, "{s}");
    assert!(stats_u64(s, "gop_frames") >= 1, "{s}");
    assert!(stats_u64(s, "gop_bytes") > 0, "{s}");
    assert!(stats_u64(s, "frames") >= 50, "{s}");
    assert!(stats_u64(s, "keyframes") >= 3, "{s}");
    assert_eq!(stats_u64(s, "frames_dropped"), 0, "{s}");
    assert!(stats_u64(s, "bytes") > 0, "{s}");
    let publisher = s["publisher"]
        .as_str()
        .unwrap_or_else(|| panic!("publisher: {s}"));
    assert!(publisher.starts_with("127.0.0.1:"), "publisher {publisher}");
    assert_eq!(s["protocol"], "rtmp", "{s}");
    assert!(
        s["started_at"]
            .as_str()
            .map(|t| !t.is_empty())
            .unwrap_or(false),
        "started_at: {s}"
    );
    assert!(
        s["error"].is_null(),
        "error should be null on a healthy stream: {s}"
    );
    let snaps0 = stats_u64(s, "snapshots");

    let one = server.get("/v1/streams/live/stats");
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(one["stream"], "stats");
    assert_eq!(one["width"], 640);

    // Counters move.
    let frames0 = stats_u64(&one, "frames");
    poll(WAIT, "frames counter to grow", || {
        let v = server.get("/v1/streams/live/stats").json();
        (stats_u64(&v, "frames") > frames0).then_some(())
    });

    // A snapshot is counted.
    check_keyframe_snapshot(&server, &src, "live", "stats", "");
    let after = server.get("/v1/streams/live/stats").json();
    assert!(
        stats_u64(&after, "snapshots") > snaps0,
        "snapshots counter did not grow: {after}"
    );

    // Not live: 404 with a JSON error.
    for path in [
        "/v1/streams/live/nosuch",
        "/v1/streams/other/stats",
        "/v1/streams/live/stats?domain=example.com",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(
            r.json()["error"].is_string(),
            "{path}: 404 body has no error string: {}",
            r.text()
        );
    }
    let r = server.get("/v1/streams/live/nosuch/snapshot.jpg");
    assert_eq!(
        r.status,
        404,
        "snapshot of a stream that is not live: {}",
        r.text()
    );
}

/// The same frame, size and format asked twice is made once (cache hit); sizes and formats.
#[test]
fn cache_scaling_and_formats() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "cs", SourceSpec::testsrc(640, 360, 10.0, 50));
    let server = Server::start();
    let _p = Publisher::start(&src.path, &server.rtmp_url("live", "cache"));
    server.wait_keyframes("live", "cache", None, 1);

    // First picture of a size never asked before: a miss; the same again: a hit, as long as
    // the keyframe did not change in between.
    let mut checked = false;
    for attempt in 0..4 {
        let a = server.snapshot_get("live", "cache", "png", "precision=keyframe&width=300");
        if attempt == 0 {
            assert_eq!(
                a.cache, "miss",
                "the first picture of a new size cannot come from the cache"
            );
        }
        let b = server.snapshot_get("live", "cache", "png", "precision=keyframe&width=300");
        if a.pts_ms == b.pts_ms {
            assert_eq!(
                b.cache, "hit",
                "the same frame/size/format asked twice was not served from the cache"
            );
            assert_eq!(
                a.resp.body, b.resp.body,
                "a cache hit returned different bytes"
            );
            checked = true;
            break;
        }
    }
    assert!(
        checked,
        "could not get two snapshots of the same keyframe in 4 tries"
    );

    // width only: aspect kept (640x360 -> 320x180); height only likewise.
    let w = server.snapshot_get("live", "cache", "jpg", "width=320");
    assert_eq!(w.image.kind, ImageKind::Jpeg);
    assert_eq!(
        (w.image.width, w.image.height),
        (320, 180),
        "width=320 on 640x360"
    );
    src.assert_matches(
        &w.image,
        src.frame_index_at(w.pts_ms),
        JPEG_SCALED_DB,
        6.0,
        "jpg width=320",
    );
    let h = server.snapshot_get("live", "cache", "png", "height=90");
    assert_eq!(
        (h.image.width, h.image.height),
        (160, 90),
        "height=90 on 640x360"
    );
    src.assert_matches(
        &h.image,
        src.frame_index_at(h.pts_ms),
        30.0,
        6.0,
        "png height=90",
    );
    let both = server.snapshot_get("live", "cache", "png", "width=200&height=200");
    assert_eq!(
        (both.image.width, both.image.height),
        (200, 200),
        "width and height both given"
    );

    // JPEG quality changes the bytes: a low quality is smaller than a high one of the same frame.
    for _ in 0..4 {
        let lo = server.snapshot_get("live", "cache", "jpg", "quality=10");
        let hi = server.snapshot_get("live", "cache", "jpg", "quality=95");
        if lo.pts_ms == hi.pts_ms {
            assert!(
                lo.resp.body.len() < hi.resp.body.len(),
                "quality=10 gave {} bytes, quality=95 {} bytes",
                lo.resp.body.len(),
                hi.resp.body.len()
            );
            src.assert_matches(
                &hi.image,
                src.frame_index_at(hi.pts_ms),
                30.0,
                6.0,
                "jpg quality=95",
            );
            return;
        }
    }
    panic!("could not get two JPEGs of the same keyframe in 4 tries");
}

/// Output is cropped to the display size the SPS gives: 426x238 and 1920x1080 (coded 1088).
#[test]
fn sizes_not_multiple_of_16_are_exact() {
    let dir = workdir();
    let small = Source::generate(dir.path(), "s426", SourceSpec::testsrc(426, 238, 4.0, 25));
    let big = Source::generate(
        dir.path(),
        "s1080",
        SourceSpec::testsrc(1920, 1080, 4.0, 25),
    );
    let server = Server::start();
    let _a = Publisher::start(&small.path, &server.rtmp_url("live", "small"));
    let _b = Publisher::start(&big.path, &server.rtmp_url("live", "big"));
    for (name, src, w, h) in [("small", &small, 426u32, 238u32), ("big", &big, 1920, 1080)] {
        let info = server.wait_keyframes("live", name, None, 1);
        assert_eq!(stats_u64(&info, "width"), w as u64, "{info}");
        assert_eq!(stats_u64(&info, "height"), h as u64, "{info}");
        let shot = check_keyframe_snapshot(&server, src, "live", name, "");
        assert_eq!(
            (shot.image.width, shot.image.height),
            (w, h),
            "{name}: picture size"
        );
        let jpg = server.snapshot_get("live", name, "jpg", "");
        assert_eq!(
            (jpg.image.width, jpg.image.height),
            (w, h),
            "{name}: jpg size"
        );
    }
    let scaled = server.snapshot_get("live", "big", "jpg", "height=360");
    assert_eq!(
        (scaled.image.width, scaled.image.height),
        (640, 360),
        "1080p with height=360"
    );
    big.assert_matches(
        &scaled.image,
        big.frame_index_at(scaled.pts_ms),
        JPEG_SCALED_DB,
        6.0,
        "1080p scaled to 360",
    );
}

/// Colour conversion honours the VUI: BT.709, full range, and both; the stream reports them.
#[test]
fn colour_matrix_and_range_follow_the_vui() {
    let dir = workdir();
    let bt709_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mk = |name: &str, extra: Vec<String>, colour: Colour| {
        let mut spec = SourceSpec::testsrc(640, 360, 4.0, 25);
        spec.extra = extra;
        spec.colour = colour;
        Source::generate(dir.path(), name, spec)
    };
    let s709 = mk(
        "bt709",
        bt709_args(&[
            "-x264-params",
            "colorprim=bt709:transfer=bt709:colormatrix=bt709",
        ]),
        BT709_TV,
    );
    let sfull = mk("full", vec!["-pix_fmt".into(), "yuvj420p".into()], BT601_PC);
    let s709full = mk(
        "bt709full",
        bt709_args(&[
            "-pix_fmt",
            "yuvj420p",
            "-x264-params",
            "colorprim=bt709:transfer=bt709:colormatrix=bt709:fullrange=on",
        ]),
        Colour {
            matrix: "bt709",
            range: "pc",
        },
    );

    let server = Server::start();
    let _p1 = Publisher::start(&s709.path, &server.rtmp_url("live", "bt709"));
    let _p2 = Publisher::start(&sfull.path, &server.rtmp_url("live", "full"));
    let _p3 = Publisher::start(&s709full.path, &server.rtmp_url("live", "bt709full"));

    let cases: [(&str, &Source, Colour, &str); 3] = [
        ("bt709", &s709, BT601_TV, "bt709/limited"),
        ("full", &sfull, BT601_TV, "/full"),
        ("bt709full", &s709full, BT709_TV, "bt709/full"),
    ];
    for (name, src, wrong, colour) in cases {
        let info = server.wait_keyframes("live", name, None, 1);
        let c = info["colour"]
            .as_str()
            .unwrap_or_else(|| panic!("colour missing: {info}"));
        if colour.starts_with('/') {
            assert!(
                c.ends_with(colour),
                "{name}: colour {c:?}, want .../{colour}"
            );
        } else {
            assert_eq!(c, colour, "{name}: colour");
        }
        for ext in ["png", "jpg"] {
            let shot = server.snapshot_get("live", name, ext, "");
            let idx = src.frame_index_at(shot.pts_ms);
            let right = src.assert_matches(&shot.image, idx, 30.0, 6.0, &format!("{name}.{ext}"));
            let wrong_ref = src.reference_with(idx, shot.image.width, shot.image.height, wrong);
            let p_wrong = psnr(&shot.image.rgb, &wrong_ref);
            assert!(
                right >= p_wrong + 3.0,
                "{name}.{ext}: PSNR with the stream's own colour ({}/{}) {right:.2} dB is not clearly better than \
                 with {}/{} ({p_wrong:.2} dB): the conversion ignores the VUI",
                src.colour.matrix,
                src.colour.range,
                wrong.matrix,
                wrong.range
            );
        }
    }
}

/// Eight publishers at once, each different: each picture is its own stream's.
#[test]
fn many_publishers_each_picture_is_its_own() {
    let dir = workdir();
    let transforms = [
        "null",
        "hflip",
        "vflip",
        "hflip,vflip",
        "negate",
        "negate,hflip",
        "negate,vflip",
        "negate,hflip,vflip",
    ];
    let sources: Vec<Source> = transforms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut spec = SourceSpec::testsrc(320, 180, 4.0, 25);
            spec.vf = format!("gblur=sigma=1.5,{t}");
            Source::generate(dir.path(), &format!("m{i}"), spec)
        })
        .collect();
    let server = Server::start();
    let _pubs: Vec<Publisher> = (0..sources.len())
        .map(|i| Publisher::start(&sources[i].path, &server.rtmp_url("live", &format!("m{i}"))))
        .collect();
    for i in 0..sources.len() {
        server.wait_keyframes("live", &format!("m{i}"), None, 1);
    }
    let list = server.get("/v1/streams").json();
    assert_eq!(
        list["streams"].as_array().map(|a| a.len()),
        Some(sources.len()),
        "{list}"
    );

    // All at once.
    let shots: Vec<Shot> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..sources.len())
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    server.snapshot_get("live", &format!("m{i}"), "png", "precision=keyframe")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, shot) in shots.iter().enumerate() {
        let idx = sources[i].frame_index_at(shot.pts_ms);
        let own = sources[i].assert_matches(&shot.image, idx, 30.0, 6.0, &format!("stream m{i}"));
        for (j, other) in sources.iter().enumerate() {
            if j == i {
                continue;
            }
            let p = other.psnr_to(&shot.image, idx);
            assert!(
                p < own - 6.0,
                "stream m{i}'s picture matches source m{j} ({p:.1} dB vs own {own:.1} dB)"
            );
        }
    }
}

/// Streams nobody pictures are never decoded: several GOPs of two live streams leave the picture
/// service untouched (no decoder made, nothing decoded), and one request makes exactly one
/// picture. `GET /v1/pictures` also names the backends the binary was built with.
#[test]
fn ingested_streams_nobody_pictures_are_never_decoded() {
    let dir = workdir();
    let a = Source::generate(dir.path(), "ia", SourceSpec::testsrc(320, 180, 2.0, 10));
    let server = Server::start();
    let _p1 = Publisher::start(&a.path, &server.rtmp_url("live", "i1"));
    let _p2 = Publisher::start(&a.path, &server.rtmp_url("live", "i2"));
    server.wait_keyframes("live", "i1", None, 3);
    server.wait_keyframes("live", "i2", None, 3);
    let stats = server.get("/v1/pictures").json();
    let c = &stats["counters"];
    assert_eq!(c["pictures_made"], 0, "{stats}");
    assert_eq!(c["decoders_created"], 0, "{stats}");
    let want = if cfg!(feature = "ffmpeg") {
        "libavcodec"
    } else {
        "openh264"
    };
    assert_eq!(stats["decoder"], want, "{stats}");
    server.snapshot_get("live", "i1", "jpg", "");
    let stats = server.get("/v1/pictures").json();
    assert_eq!(stats["counters"]["pictures_made"], 1, "{stats}");
}

/// Merged reads (`rtmp_merge_read_ms`): a publisher's frames reach the hub in one burst per
/// period, none is lost, and pictures are still right.
#[test]
fn merged_reads_deliver_every_frame_in_bursts() {
    const PERIOD_MS: u64 = 500;
    let dir = workdir();
    let src = Source::generate(dir.path(), "mr", SourceSpec::testsrc(640, 360, 6.0, 25));
    let server = Server::start_env(&[("LIVESNAP_RTMP_MERGE_READ_MS", &PERIOD_MS.to_string())]);
    let mut publisher = Publisher::start(&src.path, &server.rtmp_url("live", "mr"));
    server.wait_keyframes("live", "mr", None, 3);

    // Poll the frame counter for 2 s: with a read per period it takes at most one new value per
    // period (two if a poll lands while a burst is being handed over); frame by frame it would
    // take about 50 (25 fps; measured with merging off: 51 values in 14,065 polls).
    let frames = || stats_u64(&server.get("/v1/streams/live/mr").json(), "frames");
    let start = std::time::Instant::now();
    let (mut polls, mut values) = (0u64, vec![frames()]);
    while start.elapsed() < std::time::Duration::from_secs(2) || polls < 100 {
        let f = frames();
        polls += 1;
        if Some(&f) != values.last() {
            values.push(f);
        }
    }
    let periods = start.elapsed().as_millis() as u64 / PERIOD_MS + 1;
    assert!(
        values.len() as u64 <= 2 * periods + 1,
        "{} distinct frame counts in {polls} polls over {periods} merge periods: frames are read \
         one by one, not merged ({values:?})",
        values.len()
    );

    let s = server.get("/v1/streams/live/mr").json();
    assert_eq!(stats_u64(&s, "frames_dropped"), 0, "{s}");
    let fps = stats_f64(&s, "fps");
    assert!((fps - 25.0).abs() < 1.0, "fps {fps}, source is 25: {s}");
    let k = check_keyframe_snapshot(&server, &src, "live", "mr", "");
    assert_eq!((k.image.width, k.image.height), (640, 360));
    publisher.assert_running();
}

/// `io_threads` sizes the async runtime: with a single thread for ingest, HTTP and storage the
/// whole picture path still works (the decode runs on its own threads), the ready line says how
/// many there are, and an absurd count is refused with the setting named before anything
/// listens.
#[test]
fn one_io_thread_serves_the_picture_path_and_absurd_counts_are_refused() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "io1", SourceSpec::testsrc(640, 360, 6.0, 25));
    let server = Server::start_env(&[("LIVESNAP_IO_THREADS", "1")]);
    let mut publisher = Publisher::start(&src.path, &server.rtmp_url("live", "io1"));
    server.wait_keyframes("live", "io1", None, 2);
    let k = check_keyframe_snapshot(&server, &src, "live", "io1", "");
    assert_eq!((k.image.width, k.image.height), (640, 360));
    publisher.assert_running();
    let log = server.log_tail(200);
    assert!(
        log.contains("io_threads=1"),
        "the ready line does not say io_threads=1:\n{log}"
    );

    let out = std::process::Command::new(BIN)
        .args(["serve", "--io-threads", "100000", "--http", "127.0.0.1:0"])
        .args([
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "127.0.0.1:0",
            "--webrtc-udp",
            "127.0.0.1:0",
            "--rtsp-udp-ports",
            "any",
            "--data-dir",
        ])
        .arg(dir.path().join("refused"))
        .output()
        .expect("run livesnap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "io_threads=100000 was accepted");
    assert!(
        stderr.contains("io_threads must be 0..=256, got 100000"),
        "unclear error for io_threads=100000: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "it printed a listening line: {out:?}"
    );
}
