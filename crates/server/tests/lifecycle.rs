//! The server's lifecycle in-process (through the library, no child process, no ffmpeg): a
//! restart while a webhook receiver holds every delivery loses none of them. Pictures are made
//! from a recorded clip published straight into the hub.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use livesnap::callbacks::CONCURRENCY;
use livesnap::config::Settings;
use media::stream::{PublisherInfo, StreamKey, StreamWriter};
use serde_json::Value;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/720p.h264");
/// Pictures the first run stores.
const PICTURES: u64 = 10;
/// Longest wait for work the server does in the background.
const WAIT: Duration = Duration::from_secs(60);

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Got {
    /// Path and query.
    path: String,
    delivery: String,
    body: String,
}

/// A webhook receiver (axum) that records every POST and, while `open` is false, never
/// answers: the deliveries stay in flight until the sender gives up on them.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    open: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |uri: Uri, headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    let path = uri
                        .path_and_query()
                        .map_or_else(|| uri.path().to_string(), |p| p.to_string());
                    let delivery = headers
                        .get("x-livesnap-delivery")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = String::from_utf8_lossy(&body).to_string();
                    me.got.lock().unwrap().push(Got {
                        path,
                        delivery,
                        body,
                    });
                    if !me.open.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let give_up = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < give_up, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settings(dir: &std::path::Path, hook: &str) -> Settings {
    Settings {
        http: "127.0.0.1:0".parse().unwrap(),
        rtmp: "127.0.0.1:0".parse().unwrap(),
        rtsp: "127.0.0.1:0".parse().unwrap(),
        rtsp_udp_ports: "any".into(),
        webrtc_udp: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        callback_url: Some(hook.to_string()),
        callback_backoff_ms: 50,
        shutdown_timeout_s: 5,
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_no_queued_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let hook = receiver.start().await;

    let first = livesnap::start(settings(dir.path(), &hook)).await.unwrap();
    let auto = first.state().auto.clone();
    // Each event goes to the template's URL and the global one.
    let template = serde_json::from_value(serde_json::json!({
        "name": "t", "every_n_frames": 25, "format": "jpg", "width": 160,
        "modes": ["sequence"], "callback_url": format!("{hook}?template"),
    }))
    .unwrap();
    auto.put_template(template, true).await.unwrap();
    let binding = serde_json::from_str(r#"{"app":"live","template":"t"}"#).unwrap();
    auto.put_binding(binding, false).await.unwrap();

    // Ten rounds of the one-GOP clip: every 25th frame is due, ten pictures. Each round waits
    // for its picture, as a real-time stream would: pictures that fall behind are coalesced.
    let data = std::fs::read(CLIP).unwrap();
    let (config, frames) = media::avc::annexb_to_frames(&data).unwrap();
    let key = StreamKey::new("_default", "live", "cam").unwrap();
    let info = PublisherInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        protocol: "rtmp",
    };
    let mut w = first.state().hub.start(key, info).ok().unwrap();
    w.config(config.into());
    for round in 0..PICTURES as i64 {
        for f in &frames {
            let mut f = f.clone();
            f.dts_ms += round * 1000;
            f.pts_ms += round * 1000;
            w.frame(f);
        }
        wait_for("the round's picture stored", || {
            (auto.counters.stored.load(Ordering::Relaxed) > round as u64).then_some(())
        })
        .await;
    }
    assert_eq!(auto.counters.missed.load(Ordering::Relaxed), 0);
    drop(w);
    // As many deliveries as the sender tries at once are held by the receiver; the rest wait in
    // the sender's queue behind them. Once the receiver holds that many, the first run sends
    // nothing more, so nothing it sent can arrive after the restart.
    wait_for(
        "the receiver holds every delivery the sender may try at once",
        || (receiver.got().len() >= CONCURRENCY).then_some(()),
    )
    .await;
    let rows = auto.index().list(&Default::default()).await.unwrap().0;
    assert_eq!(rows.len() as u64, PICTURES);
    let report = first.shutdown().await;
    assert!(report.clean, "{report:?}");
    // (published + ten stored + unpublished) x two URLs, none delivered.
    let deliveries = (PICTURES as usize + 2) * 2;
    assert!(
        deliveries > CONCURRENCY,
        "no queue behind the held deliveries"
    );
    assert_eq!(report.callbacks_left, deliveries as u64, "{report:?}");
    let before = receiver.got();
    assert!(
        before.iter().all(|g| !g.delivery.is_empty()),
        "a POST without a delivery id"
    );

    receiver.open.store(true, Ordering::SeqCst);
    let second = livesnap::start(settings(dir.path(), &hook)).await.unwrap();
    let stored_ids: HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    let after = wait_for("every stored picture's event after the restart", || {
        let got = receiver.got();
        let events: Vec<Value> = got[before.len()..]
            .iter()
            .map(|g| serde_json::from_str(&g.body).unwrap())
            .collect();
        let seen = |url_end: &str| -> HashSet<String> {
            got[before.len()..]
                .iter()
                .zip(&events)
                .filter(|(g, e)| e["event"] == "snapshot.stored" && g.path.ends_with(url_end))
                .map(|(_, e)| e["data"]["id"].as_str().unwrap().to_string())
                .collect()
        };
        let ends = events
            .iter()
            .filter(|e| e["event"] == "stream.unpublished")
            .count()
            == 2;
        let seen_both = seen("/hook") == stored_ids && seen("/hook?template") == stored_ids;
        (seen_both && ends).then(|| got[before.len()..].to_vec())
    })
    .await;
    // What was in flight before the restart comes again with the same delivery id and body.
    let again: HashMap<&str, &str> = after
        .iter()
        .map(|g| (g.delivery.as_str(), g.body.as_str()))
        .collect();
    for g in &before {
        assert_eq!(
            again.get(g.delivery.as_str()).copied(),
            Some(g.body.as_str()),
            "delivery {} was not sent again as it was",
            g.delivery
        );
    }
    let ids: HashSet<&str> = after.iter().map(|g| g.delivery.as_str()).collect();
    assert_eq!(
        ids.len(),
        after.len(),
        "a delivery was sent twice after the restart"
    );
    assert_eq!(
        ids.len(),
        deliveries,
        "not every queued delivery was sent after the restart"
    );
    let index = second.state().auto.index().clone();
    let give_up = tokio::time::Instant::now() + WAIT;
    while index.queued_delivery_count().await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the callback queue stays full"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(second.shutdown().await.clean);
}
