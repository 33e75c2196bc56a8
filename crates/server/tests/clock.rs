//! The whole automatic path on a manual clock, in-process (through the library), with a recorded
//! clip and no sleeping: a template's due time -> the keyframe that takes it -> the picture
//! stored in the local location -> its index row -> its `snapshot.stored` callback -> the
//! max-age retention sweep that deletes it, every time read from the one injected clock.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use livesnap::config::Settings;
use livesnap_core::clock::{Clock, ManualClock, MANUAL_EPOCH};
use livesnap_store::ListFilter;
use media::stream::{PublisherInfo, StreamKey, StreamWriter};
use serde_json::Value;
use tokio::sync::mpsc;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/720p.h264");
/// A guard on waits for the server's own work (real time, never a pause the test relies on).
const GUARD: Duration = Duration::from_secs(30);
/// One frame of the 25 fps clip.
const FRAME: Duration = Duration::from_millis(40);

/// A webhook receiver that hands every event to the test as it arrives.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// The next event of type `kind` (others are skipped).
async fn next_event(rx: &mut mpsc::UnboundedReceiver<Value>, kind: &str) -> Value {
    tokio::time::timeout(GUARD, async {
        loop {
            let e = rx.recv().await.expect("the receiver stopped");
            if e["event"] == kind {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} event"))
}

/// Wall-clock Unix ms of the manual clock at `at`.
fn unix_ms(at: Duration) -> i64 {
    (MANUAL_EPOCH + at).as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_to_retention_on_a_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, mut events) = receiver().await;
    let clock = Arc::new(ManualClock::default());
    let settings = Settings {
        http: "127.0.0.1:0".parse().unwrap(),
        rtmp: "127.0.0.1:0".parse().unwrap(),
        rtsp: "127.0.0.1:0".parse().unwrap(),
        rtsp_udp_ports: "any".into(),
        webrtc_udp: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        callback_url: Some(hook),
        retention_sweep_s: 1,
        ..Settings::default()
    };
    let server = livesnap::start_with_clock(settings, clock.clone())
        .await
        .unwrap();
    let auto = server.state().auto.clone();
    let template = serde_json::from_str(
        r#"{"name":"t","interval_s":1,"format":"jpg","width":320,"modes":["sequence"],
            "sequence_path":"{StreamName}/{UnixTimestampMs}.jpg","retention":{"max_age_s":3}}"#,
    )
    .unwrap();
    auto.put_template(template, true).await.unwrap();
    let binding = serde_json::from_str(r#"{"app":"live","template":"t"}"#).unwrap();
    auto.put_binding(binding, false).await.unwrap();

    let data = std::fs::read(CLIP).unwrap();
    let (config, frames) = media::avc::annexb_to_frames(&data).unwrap();
    let key = StreamKey::new("_default", "live", "cam").unwrap();
    let info = PublisherInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        protocol: "rtmp",
    };
    let mut w = server.state().hub.start(key, info).ok().unwrap();
    let published = next_event(&mut events, "stream.published").await;
    assert_eq!(published["time"], "2023-11-14T22:13:20.000Z", "{published}");
    w.config(config.into());

    // Five seconds of stream, a keyframe each second: each keyframe takes that second's due
    // time. The clock stands still until the picture is stored and announced, so its lag is 0.
    let local = dir.path().join("snapshots/cam");
    for second in 0..5u64 {
        for (i, f) in frames.iter().enumerate() {
            let mut f = f.clone();
            f.dts_ms += second as i64 * 1000;
            f.pts_ms += second as i64 * 1000;
            w.frame(f);
            if i == 0 {
                let e = next_event(&mut events, "snapshot.stored").await;
                let due = unix_ms(Duration::from_secs(second));
                assert_eq!(e["data"]["time_ms"], due, "second {second}: {e}");
                assert_eq!(e["data"]["sequence"], second + 1, "{e}");
                assert_eq!(
                    (e["data"]["width"].clone(), e["data"]["height"].clone()),
                    (320.into(), 180.into())
                );
                assert!(
                    local.join(format!("{due}.jpg")).is_file(),
                    "picture {due} not stored"
                );
            }
            clock.advance(FRAME);
        }
    }
    let lag = auto.lag.summary();
    assert_eq!((lag.count, lag.max), (5, Some(0.0)), "{lag:?}");
    let stats = w.stream().stats();
    assert_eq!((stats.auto_triggered, stats.auto_missed), (5, 0));
    assert_eq!(
        stats.last_keyframe_age_ms,
        Some(1000),
        "the last keyframe came 25 frames (1 s) ago"
    );

    // Now 6 s: pictures older than 3 s (those of 0, 1 and 2 s) go at the next sweep, which
    // runs on the same clock, and only they go. The sweeps are a second apart, but where they
    // fall depends on when the sweeper woke (one that wakes late starts again from then): one
    // runs at some time in (5 s, 6 s], whose cutoff in (2 s, 3 s] takes exactly those three.
    clock.advance(Duration::from_millis(1000));
    assert_eq!(clock.now(), Duration::from_millis(6000));
    tokio::time::timeout(GUARD, async {
        while auto
            .counters
            .retention_deleted
            .load(std::sync::atomic::Ordering::Relaxed)
            < 3
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the sweep did not delete the three oldest pictures");
    let rows = auto.index().list(&ListFilter::default()).await.unwrap().0;
    let mut times: Vec<i64> = rows.iter().map(|r| r.time_ms).collect();
    times.sort();
    assert_eq!(
        times,
        vec![
            unix_ms(Duration::from_secs(3)),
            unix_ms(Duration::from_secs(4))
        ]
    );
    for second in 0..5u64 {
        let due = unix_ms(Duration::from_secs(second));
        assert_eq!(
            local.join(format!("{due}.jpg")).exists(),
            second >= 3,
            "picture of second {second}"
        );
    }
    assert_eq!(
        auto.counters
            .retention_deleted
            .load(std::sync::atomic::Ordering::Relaxed),
        3,
        "a younger picture was deleted"
    );
    drop(w);
    let ended = next_event(&mut events, "stream.unpublished").await;
    assert_eq!(ended["time"], "2023-11-14T22:13:26.000Z", "{ended}");
    assert!(server.shutdown().await.clean);
}
