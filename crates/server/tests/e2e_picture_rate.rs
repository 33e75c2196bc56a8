//! `picture_requests_per_s` against the real binary: one address asking for far more pictures
//! than its rate, all at once, gets a second's burst at once, a second's worth more after
//! waiting their turn, and `429` with `Retry-After` for the rest; another address (127.0.0.2,
//! through curl's `--interface`) asking meanwhile is not slowed or refused; the pictures served
//! are the stream's (PSNR against the source).

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use common::*;

/// `--picture-requests-per-s`.
const RATE: usize = 5;
/// Requests sent at once from 127.0.0.1: under the eighth of `max_pending_connections` (32) one
/// address may hold while its request heads arrive.
const AT_ONCE: usize = 24;

/// `curl --interface 127.0.0.2`: the status of a GET of `url` from another loopback address.
fn status_from_other_address(url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "--interface",
            "127.0.0.2",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl ({e}): apt-get install curl"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl said {:?}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_client_past_its_picture_rate_waits_then_is_refused_alone() {
    require_ffmpeg();
    let dir = workdir();
    let src = Source::generate(dir.path(), "rate", SourceSpec::testsrc(320, 240, 2.0, 1000));
    let s = Server::start_with(&[], &["--picture-requests-per-s", &RATE.to_string()]);
    let _p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_keyframes("live", "cam1", None, 1);
    let url = s.url("/v1/streams/live/cam1/snapshot.png");

    let barrier = Arc::new(Barrier::new(AT_ONCE + 1));
    let started = Instant::now();
    let requests: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let sent = Instant::now();
                let r = http_get(&url).expect("an answer");
                (r, sent.elapsed())
            })
        })
        .collect();
    barrier.wait();
    // Meanwhile, another address: never refused, never made to wait its turn behind them.
    let others: Vec<u16> = (0..3).map(|_| status_from_other_address(&url)).collect();
    let timed: Vec<(Resp, std::time::Duration)> =
        requests.into_iter().map(|t| t.join().unwrap()).collect();
    let answers: Vec<&Resp> = timed.iter().map(|(r, _)| r).collect();
    let elapsed = started.elapsed().as_secs_f64();

    assert_eq!(others, vec![200; 3], "127.0.0.2 was refused: {others:?}");
    let ok: Vec<&Resp> = answers
        .iter()
        .copied()
        .filter(|r| r.status == 200)
        .collect();
    let refused: Vec<&Resp> = answers
        .iter()
        .copied()
        .filter(|r| r.status == 429)
        .collect();
    assert_eq!(
        ok.len() + refused.len(),
        AT_ONCE,
        "answers other than 200 and 429: {:?}",
        answers
            .iter()
            .map(|r| (r.status, r.text()))
            .filter(|(s, _)| *s != 200 && *s != 429)
            .collect::<Vec<_>>()
    );
    // A second's burst at once (RATE), then a second's worth more that waited their turn; a few
    // more only as the clock moves on while they arrive.
    let most = 2 * RATE + (RATE as f64 * elapsed).ceil() as usize;
    assert!(
        ok.len() > RATE && ok.len() <= most,
        "{} of {AT_ONCE} answered in {elapsed:.1} s at {RATE}/s: want more than the burst \
         ({RATE}) and at most {most}",
        ok.len()
    );
    // Those past the burst waited their turn: the last of them most of a second (a slow
    // machine only makes the wait longer).
    let slowest = timed
        .iter()
        .filter(|(r, _)| r.status == 200)
        .map(|(_, t)| *t)
        .max()
        .unwrap();
    assert!(
        slowest >= std::time::Duration::from_millis(600),
        "the answers past the burst did not wait their turn: the slowest took {slowest:?}"
    );
    assert!(!refused.is_empty(), "nothing was refused at {RATE}/s");
    let r = refused[0];
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers));
    assert!(retry >= 1, "Retry-After {retry}");
    assert!(
        r.text().contains("picture_requests_per_s"),
        "the 429 does not name the setting: {}",
        r.text()
    );
    for r in ok.iter().take(3) {
        let img = decode_image(&r.body);
        let db = src.psnr_to(&img, 0);
        assert!(db > 30.0, "a paced picture is not the stream's: {db:.1} dB");
    }
}
