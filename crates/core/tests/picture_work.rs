//! Picture work stays within its limits whoever gives up: at most `workers` decodes run, a
//! request's whole time is bounded by the interval, on-demand pictures go ahead of scheduled
//! ones, and scheduled pictures that fall behind are coalesced per stream and counted as missed.
//! The decoder is the real one behind a gate the test opens, so "a decode is running" is a fact
//! the test controls, not a race it hopes to win.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use livesnap_core::auto::{AutoConfig, Automation, NoEvents};
use livesnap_core::clock::{ManualClock, MANUAL_EPOCH};
use livesnap_core::hub::{Hub, HubConfig, HubWriter};
use livesnap_core::lifecycle::Lifecycle;
use livesnap_core::snapshot::{
    DecoderFactory, Precision, SnapshotConfig, SnapshotRequest, Snapshotter,
};
use livesnap_core::work::Priority;
use livesnap_core::Error;
use livesnap_store::index::Index;
use livesnap_store::location::Location;
use livesnap_store::spool::Spool;
use livesnap_store::ListFilter;
use media::decode::{Decoder, Picture};
use media::picture::{EncodeOptions, ImageFormat};
use media::stream::{PublisherInfo, StreamKey, StreamWriter};
use media::{Frame, VideoConfig};

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/720p.h264");
/// A guard on waits for the service's own work (never a pause the test relies on).
const GUARD: Duration = Duration::from_secs(30);

/// Decodes start only when the test allows them; counts what ran.
#[derive(Default)]
struct DecodeGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default, Debug, Clone, Copy)]
struct GateState {
    allowed: usize,
    started: usize,
    running: usize,
    max_running: usize,
}

impl DecodeGate {
    fn allow(&self, n: usize) {
        self.state.lock().unwrap().allowed += n;
        self.changed.notify_all();
    }

    fn now(&self) -> GateState {
        *self.state.lock().unwrap()
    }

    /// Waits (real time, bounded) until `ok` holds.
    fn wait_for(&self, what: &str, ok: impl Fn(&GateState) -> bool) {
        let deadline = Instant::now() + GUARD;
        let mut s = self.state.lock().unwrap();
        while !ok(&s) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("timed out waiting for {what}: {:?}", *s));
            s = self.changed.wait_timeout(s, left).unwrap().0;
        }
    }
}

struct Gated {
    inner: Box<dyn Decoder>,
    gate: Arc<DecodeGate>,
}

impl Decoder for Gated {
    fn decode_into(
        &mut self,
        config: &VideoConfig,
        frames: &[Frame],
        display: (u32, u32),
        out: &mut Picture,
    ) -> media::Result<()> {
        {
            let mut s = self.gate.state.lock().unwrap();
            s.started += 1;
            s.running += 1;
            s.max_running = s.max_running.max(s.running);
            self.gate.changed.notify_all();
            // Bounded, so that a failed test ends instead of waiting on its decodes for ever.
            let deadline = Instant::now() + GUARD;
            while s.allowed == 0 {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    return Err(media::Error::Decode(
                        "the test never allowed this decode".into(),
                    ));
                };
                s = self.gate.changed.wait_timeout(s, left).unwrap().0;
            }
            s.allowed -= 1;
        }
        let r = self.inner.decode_into(config, frames, display, out);
        self.gate.state.lock().unwrap().running -= 1;
        self.gate.changed.notify_all();
        r
    }
}

fn gated_service(workers: usize, interval: Duration) -> (Arc<Snapshotter>, Arc<DecodeGate>) {
    let gate = Arc::new(DecodeGate::default());
    let g = gate.clone();
    let factory: DecoderFactory = Arc::new(move || {
        Ok(Box::new(Gated {
            inner: media::decode::default_decoder()?,
            gate: g.clone(),
        }) as Box<dyn Decoder>)
    });
    let config = SnapshotConfig {
        workers,
        interval,
        attempts: 3,
        cache_entries: 64,
        cache_bytes: 64 << 20,
        ..SnapshotConfig::default()
    };
    (Snapshotter::with_factory(config, factory), gate)
}

fn clip() -> (VideoConfig, Vec<Frame>) {
    let (config, frames) = media::avc::annexb_to_frames(&std::fs::read(CLIP).unwrap()).unwrap();
    (config.into(), frames)
}

fn publish(hub: &Arc<Hub>, name: &str) -> HubWriter {
    let key = StreamKey::new("_default", "live", name).unwrap();
    let info = PublisherInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        protocol: "test",
    };
    hub.start(key, info).ok().unwrap()
}

/// A JPEG of `width`: each width is its own cache entry, so its own decode.
fn jpeg(width: u32) -> SnapshotRequest {
    SnapshotRequest {
        options: EncodeOptions {
            width: Some(width),
            ..EncodeOptions::new(ImageFormat::Jpeg)
        },
        precision: Precision::Keyframe,
    }
}

async fn until(what: &str, ok: impl Fn() -> bool) {
    tokio::time::timeout(GUARD, async {
        while !ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Ten requests for ten sizes, all abandoned by their clients while two decode and eight wait:
/// the two decodes finish (and free their slots), the eight never start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_never_run_more_than_workers_decodes() {
    let hub = Hub::new(HubConfig::default());
    let mut w = publish(&hub, "a");
    let (config, frames) = clip();
    w.config(config);
    w.frame(frames[0].clone());
    let (snap, gate) = gated_service(2, Duration::from_secs(60));
    let stream = w.stream().clone();
    let requests: Vec<_> = (0..10u32)
        .map(|i| {
            let (snap, stream) = (snap.clone(), stream.clone());
            tokio::spawn(async move { snap.take(&stream, jpeg(100 + i * 10)).await })
        })
        .collect();
    gate.wait_for("two decodes to start", |s| s.started == 2);
    until("eight to wait", || snap.load().waiting_on_demand == 8).await;
    for r in &requests {
        r.abort();
    }
    for r in requests {
        assert!(r.await.unwrap_err().is_cancelled());
    }
    assert_eq!(
        snap.load().waiting_on_demand,
        0,
        "aborted waiters left the queue"
    );
    assert_eq!(
        snap.load().running,
        2,
        "the two decodes still hold their slots"
    );
    gate.allow(100);
    until("the slots to be free", || snap.load().running == 0).await;
    let s = gate.now();
    assert_eq!((s.started, s.max_running), (2, 2), "{s:?}");

    // The service is whole afterwards: a new request is pictured.
    let shot = snap.take(&stream, jpeg(320)).await.unwrap();
    assert_eq!((shot.width, shot.height), (320, 180));
}

/// With every worker busy, a request ends at the interval with a timeout that says so, and
/// leaves nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_behind_busy_workers_ends_at_the_interval() {
    let hub = Hub::new(HubConfig::default());
    let mut w = publish(&hub, "a");
    let (config, frames) = clip();
    w.config(config);
    w.frame(frames[0].clone());
    let (snap, gate) = gated_service(1, Duration::from_millis(300));
    let stream = w.stream().clone();
    let (s2, st2) = (snap.clone(), stream.clone());
    let first = tokio::spawn(async move { s2.take(&st2, jpeg(200)).await });
    gate.wait_for("the first decode", |s| s.started == 1);
    match snap.take(&stream, jpeg(300)).await {
        Err(Error::Timeout(why)) => assert!(why.contains("busy"), "{why}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(snap.load().waiting_on_demand, 0);
    // The first request's own time ran out too, during its decode, which goes on, ends and
    // frees the worker.
    assert!(matches!(first.await.unwrap(), Err(Error::Timeout(_))));
    assert_eq!(snap.counters.timed_out_busy.load(Ordering::Relaxed), 2);
    assert_eq!(snap.load().running, 1);
    gate.allow(10);
    until("the worker to be free", || snap.load().running == 0).await;
    assert_eq!(gate.now().started, 1);
}

/// One worker, busy: a scheduled picture asks first, an on-demand one second; the on-demand one
/// is made first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_pictures_go_ahead_of_scheduled_ones() {
    let hub = Hub::new(HubConfig::default());
    let mut w = publish(&hub, "a");
    let (config, frames) = clip();
    w.config(config);
    w.frame(frames[0].clone());
    let (snap, gate) = gated_service(1, Duration::from_secs(60));
    let stream = w.stream().clone();
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();

    let (s, st, tx) = (snap.clone(), stream.clone(), done_tx.clone());
    tokio::spawn(async move {
        s.take(&st, jpeg(100)).await.unwrap();
        tx.send("first").unwrap();
    });
    gate.wait_for("the first decode", |s| s.started == 1);

    let view = stream.gop(false).expect("a keyframe is buffered");
    let (s, st, tx) = (snap.clone(), stream.clone(), done_tx.clone());
    tokio::spawn(async move {
        s.picture(&st, view, jpeg(200), Priority::Scheduled, None)
            .await
            .unwrap();
        tx.send("scheduled").unwrap();
    });
    until("the scheduled one to wait", || {
        snap.load().waiting_scheduled == 1
    })
    .await;
    let (s, st, tx) = (snap.clone(), stream.clone(), done_tx);
    tokio::spawn(async move {
        s.take(&st, jpeg(300)).await.unwrap();
        tx.send("on demand").unwrap();
    });
    until("the on-demand one to wait", || {
        snap.load().waiting_on_demand == 1
    })
    .await;

    gate.allow(100);
    let mut order = vec![];
    for _ in 0..3 {
        order.push(
            tokio::time::timeout(GUARD, done.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(order, ["first", "on demand", "scheduled"]);
    assert_eq!(gate.now().max_running, 1);
}

/// A template due every second on a stream whose pictures cannot be made (the one worker is
/// held): the first picture decodes, and of the three due while it does, only the newest waits;
/// the two older ones are counted as missed. Once the worker is free, two pictures are stored:
/// the first and the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_pictures_that_fall_behind_are_coalesced_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let hub = Hub::with_clock(HubConfig::default(), clock.clone());
    let (snap, gate) = gated_service(1, Duration::from_secs(60));
    let index = Arc::new(
        Index::open(&format!(
            "sqlite://{}",
            dir.path().join("index.db").display()
        ))
        .await
        .unwrap(),
    );
    let spool = Spool::open(dir.path().join("spool"), 1 << 30).unwrap();
    let local = Arc::new(Location::local("local", &dir.path().join("pictures")).unwrap());
    let life = Lifecycle::new();
    let auto = Automation::start(
        hub.clone(),
        snap.clone(),
        index.clone(),
        spool,
        HashMap::from([("local".to_string(), local)]),
        Arc::new(NoEvents),
        AutoConfig {
            import_path: None,
            source_ids: HashMap::new(),
            fallback: None,
            sweep_every: Duration::from_secs(3600),
        },
        &life,
    )
    .await
    .unwrap();
    let t = serde_json::from_str(r#"{"name":"t","interval_s":1,"width":320}"#).unwrap();
    auto.put_template(t, true).await.unwrap();
    let b = serde_json::from_str(r#"{"app":"live","template":"t"}"#).unwrap();
    auto.put_binding(b, false).await.unwrap();

    let mut w = publish(&hub, "cam");
    let (config, frames) = clip();
    w.config(config);
    let keyframe = |second: i64| {
        let mut f = frames[0].clone();
        f.dts_ms += second * 1000;
        f.pts_ms += second * 1000;
        f
    };
    w.frame(keyframe(0));
    gate.wait_for("the first picture to decode", |s| s.started == 1);
    for second in 1..=3 {
        clock.advance(Duration::from_secs(1));
        w.frame(keyframe(second));
        until("the newest to wait", || {
            snap.load().waiting_scheduled == 1
                && auto.counters.missed.load(Ordering::Relaxed) == second as u64 - 1
        })
        .await;
    }
    assert_eq!(gate.now().started, 1);
    gate.allow(100);
    until("two pictures stored", || {
        auto.counters.stored.load(Ordering::Relaxed) == 2
    })
    .await;
    let rows = index.list(&ListFilter::default()).await.unwrap().0;
    let mut times: Vec<i64> = rows.iter().map(|r| r.time_ms).collect();
    times.sort();
    let at = |s: u64| (MANUAL_EPOCH + Duration::from_secs(s)).as_millis() as i64;
    assert_eq!(times, vec![at(0), at(3)], "the first and the newest");
    assert_eq!(auto.counters.missed.load(Ordering::Relaxed), 2);
    assert_eq!(auto.counters.failed.load(Ordering::Relaxed), 0);
    assert_eq!(w.stream().stats().auto_missed, 2);
    let s = gate.now();
    assert_eq!((s.started, s.max_running), (2, 1), "{s:?}");
    life.stop().await;
}
