//! Memory abuse against the real binary, bounded in count and time, loopback only:
//! - GOP floods: publishers whose GOPs together pass `ingest_memory_bytes` get their largest
//!   GOPs trimmed to the keyframe; the server's RSS stays within the budget plus a margin, and an
//!   honest publisher's picture is still its own frame (PSNR);
//! - partial-message floods: connections that handshake and begin 16 MiB messages before they
//!   publish are ended at once, holding nothing.

mod common;

use std::io::Write;

use common::*;

/// The ingest budget of these tests: 24 MiB.
const BUDGET: u64 = 24 << 20;
/// RSS a running server may take beyond its ingest budget here: code, runtime, decoders,
/// pictures, the cache (a debug build).
const MARGIN: u64 = 160 << 20;

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .expect("VmRSS")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("livesnap_{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// A legacy AVC video tag of `n` bytes of one length-prefixed NAL unit.
fn avc_tag(keyframe: bool, n: usize, seed: u64) -> Vec<u8> {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    let nal_len = n - 4;
    body.extend_from_slice(&(nal_len as u32).to_be_bytes());
    body.push(if keyframe { 0x65 } else { 0x41 });
    body.extend(pseudo_random(seed, nal_len - 1));
    body
}

#[test]
fn gop_floods_are_trimmed_within_the_ingest_budget() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "honest", SourceSpec::testsrc(320, 180, 4.0, 25));
    let budget = BUDGET.to_string();
    let server = Server::start_with(
        &[],
        &[
            "--ingest-memory-bytes",
            &budget,
            "--max-gop-bytes",
            "16777216",
        ],
    );
    let mut honest = Publisher::start(&src.path, &server.rtmp_url("live", "honest"));
    server.wait_keyframes("live", "honest", None, 1);
    let idle = rss(server.pid());

    // Six flooders, each a keyframe then 1 MiB frames up to 12 MiB of GOP: 72 MiB asked of a
    // 24 MiB budget. The AVC configuration comes from the honest source's sequence header.
    let header = rtmp::flv_tags(&src.path)
        .into_iter()
        .find(|t| t.is_video() && t.is_sequence_header())
        .expect("a sequence header");
    let mut flooders = vec![];
    for i in 0..6u64 {
        let mut p = rtmp::Publisher::start(&server.rtmp, "flood", &format!("f{i}"));
        p.video(&header.data, 0).unwrap();
        p.video(&avc_tag(true, 64 << 10, i), 0).unwrap();
        for k in 1..12u32 {
            p.video(&avc_tag(false, 1 << 20, i * 100 + u64::from(k)), k * 40)
                .unwrap();
        }
        flooders.push(p);
    }
    let trims = poll(WAIT, "the budget to trim GOPs", || {
        let t = metric(&server, "ingest_gop_trims_total");
        (t > 0.0).then_some(t)
    });
    let held = metric(&server, "ingest_memory_bytes");
    assert!(held <= BUDGET as f64, "ingest holds {held} of {BUDGET}");
    let peak = rss(server.pid());
    assert!(
        peak <= idle + BUDGET + MARGIN,
        "RSS {} MiB with an idle {} MiB and a {} MiB budget",
        peak >> 20,
        idle >> 20,
        BUDGET >> 20
    );
    eprintln!(
        "trims {trims}, ingest holds {} KiB, RSS idle {} MiB -> {} MiB",
        held as u64 >> 10,
        idle >> 20,
        peak >> 20
    );

    // The honest stream still pictures its own current frame.
    let kf = server.get("/v1/streams/live/honest").json()["keyframes"]
        .as_u64()
        .unwrap();
    server.wait_keyframes("live", "honest", None, kf + 1);
    check_keyframe_snapshot(&server, &src, "live", "honest", "");
    honest.assert_running();
    drop(flooders);
    poll(WAIT, "the flooders' GOPs to be given back", || {
        (metric(&server, "ingest_memory_bytes") < (4 << 20) as f64).then_some(())
    });
}

#[test]
fn partial_message_floods_before_publishing_are_ended() {
    let server = Server::start();
    let idle = rss(server.pid());
    let mut conns = vec![];
    for _ in 0..20 {
        let mut s = rtmp::connect(&server.rtmp);
        rtmp::handshake(&mut s).unwrap();
        // Two messages announcing 16 MiB each, then 60 KiB of their bytes.
        for csid in [6u8, 7] {
            let _ = s.write_all(&[csid, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
            let _ = s.write_all(&pseudo_random(u64::from(csid), 30 << 10));
        }
        conns.push(s);
    }
    // Every one of them is closed by the server.
    for (i, s) in conns.iter_mut().enumerate() {
        assert!(
            rtmp::read_until_closed(s, WAIT),
            "flooding connection {i} was not closed"
        );
    }
    let after = rss(server.pid());
    assert!(
        after <= idle + (32 << 20),
        "RSS {} MiB after the flood, {} MiB idle",
        after >> 20,
        idle >> 20
    );
    assert_eq!(server.get("/healthz").status, 200);
}
