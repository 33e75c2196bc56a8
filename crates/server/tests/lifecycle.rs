//! The server's lifecycle in-process (through the library, no child process, no ffmpeg): a
//! restart while a webhook receiver holds every delivery loses none of them. Pictures are made
//! from a recorded clip published straight into the hub.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use livesnap::config::Settings;
use media::stream::{PublisherInfo, StreamKey, StreamWriter};
use serde_json::Value;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/720p.h264");
/// Longest wait for work the server does in the background.
const WAIT: Duration = Duration::from_secs(60);

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Got {
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
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    let delivery = headers
                        .get("x-livesnap-delivery")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = String::from_utf8_lossy(&body).to_string();
                    me.got.lock().unwrap().push(Got { delivery, body });
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
    let template = serde_json::from_str(
        r#"{"name":"t","every_n_frames":25,"format":"jpg","width":160,"modes":["sequence"]}"#,
    )
    .unwrap();
    auto.put_template(template, true).await.unwrap();
    let binding = serde_json::from_str(r#"{"app":"live","template":"t"}"#).unwrap();
    auto.put_binding(binding, false).await.unwrap();

    // Five rounds of the one-GOP clip: every 25th frame is due, five pictures.
    let data = std::fs::read(CLIP).unwrap();
    let (config, frames) = media::avc::annexb_to_frames(&data).unwrap();
    let key = StreamKey::new("_default", "live", "cam").unwrap();
    let info = PublisherInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        protocol: "rtmp",
    };
    let mut w = first.state().hub.start(key, info).ok().unwrap();
    w.config(config.into());
    for round in 0..5i64 {
        for f in &frames {
            let mut f = f.clone();
            f.dts_ms += round * 1000;
            f.pts_ms += round * 1000;
            w.frame(f);
        }
    }
    wait_for("five pictures stored", || {
        (auto.counters.stored.load(Ordering::Relaxed) >= 5).then_some(())
    })
    .await;
    // Some deliveries are held by the receiver, the rest wait behind them.
    wait_for("the receiver holds a delivery", || {
        (!receiver.got().is_empty()).then_some(())
    })
    .await;
    drop(w);
    let rows = auto.index().list(&Default::default()).await.unwrap().0;
    assert_eq!(rows.len(), 5);
    let report = first.shutdown().await;
    assert!(report.clean, "{report:?}");
    // published + 5 stored + unpublished, none delivered.
    assert_eq!(report.callbacks_left, 7, "{report:?}");
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
        let seen: HashSet<String> = events
            .iter()
            .filter(|e| e["event"] == "snapshot.stored")
            .map(|e| e["data"]["id"].as_str().unwrap().to_string())
            .collect();
        let ends = events.iter().any(|e| e["event"] == "stream.unpublished");
        (seen == stored_ids && ends).then(|| got[before.len()..].to_vec())
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
    // At least once: a delivery held before the restart may also arrive late from the first
    // run (sent before its connection was cut); any other is sent once.
    let held: HashSet<&str> = before.iter().map(|g| g.delivery.as_str()).collect();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for g in &after {
        *times.entry(g.delivery.as_str()).or_default() += 1;
    }
    for (id, n) in times {
        let most = if held.contains(id) { 2 } else { 1 };
        assert!(
            n <= most,
            "delivery {id} was sent {n} times after the restart"
        );
    }
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
