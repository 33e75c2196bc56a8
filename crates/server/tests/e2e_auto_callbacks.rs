//! End-to-end: callbacks. A receiver in the test records what livesnap POSTs: stream.published,
//! snapshot.stored (whose URL fetches the picture) and stream.unpublished, to the global URL and
//! the template's own; every request's X-Livesnap-Signature verifies with an HMAC-SHA256
//! computed here; failed deliveries are retried with backoff and logged.

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::time::Duration;

use auto::*;
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "e2e-callback-secret";

fn deliveries(s: &Server) -> Vec<Value> {
    let v = s.expect(
        s.get("/v1/callbacks/deliveries"),
        200,
        "GET /v1/callbacks/deliveries",
    );
    assert!(v["dropped"].is_u64(), "{v}");
    v["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .clone()
}

fn check_envelope(r: &Received, event: &str) -> Value {
    assert_eq!(r.method, "POST");
    assert!(
        r.headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type {:?}",
        r.headers.get("content-type")
    );
    verify_signature(r, SECRET);
    let v = r.json();
    assert_eq!(v["event"], event, "{v}");
    assert!(
        is_rfc3339(v["time"].as_str().unwrap_or("")),
        "event time: {v}"
    );
    assert!(v["data"].is_object(), "{v}");
    v
}

fn check_stream_event(v: &Value, stream: &str) {
    let d = &v["data"];
    assert_eq!(d["domain"], "_default", "{v}");
    assert_eq!(d["app"], "live", "{v}");
    assert_eq!(d["stream"], stream, "{v}");
    assert_eq!(d["protocol"], "rtmp", "{v}");
    assert!(
        d["publisher"]
            .as_str()
            .unwrap_or("")
            .starts_with("127.0.0.1:"),
        "{v}"
    );
    assert!(
        !d["media_session_id"].as_str().unwrap_or("").is_empty(),
        "{v}"
    );
}

#[test]
fn auto_callbacks_events_signatures_and_urls() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let global = Receiver::start(vec![], 200);
    let own = Receiver::start(vec![], 200);
    let s = Server::start_in(
        work.path(),
        &[
            ("LIVESNAP_CALLBACK_URL", &global.url("/global")),
            ("LIVESNAP_CALLBACK_SECRET", SECRET),
            ("LIVESNAP_CALLBACK_BACKOFF_MS", "100"),
        ],
        &[],
        None,
    );
    s.create_template(json!({
        "name": "cb", "interval_s": 1, "format": "png", "callback_url": own.url("/hook?x=1")
    }));
    s.bind(json!({"app": "live", "template": "cb"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));

    let published = global.wait_event("stream.published", Some("/global"), "stream.published");
    let pv = check_envelope(&published, "stream.published");
    check_stream_event(&pv, "cam1");

    // snapshot.stored reaches both the template's URL and the global one, with the same row.
    let mine = own.wait_event(
        "snapshot.stored",
        Some("/hook?x=1"),
        "snapshot.stored at the template URL",
    );
    let theirs = global.wait_event(
        "snapshot.stored",
        Some("/global"),
        "snapshot.stored at the global URL",
    );
    let mv = check_envelope(&mine, "snapshot.stored");
    let gv = check_envelope(&theirs, "snapshot.stored");
    let first_id = mv["data"]["id"].as_str().unwrap().to_string();
    assert!(
        global
            .events("snapshot.stored")
            .iter()
            .any(|r| r.json()["data"]["id"] == first_id.as_str()),
        "the global URL did not get the picture the template URL got"
    );
    let _ = gv;
    let d = &mv["data"];
    let row = s.expect(
        s.get(&format!("/v1/snapshots/{first_id}")),
        200,
        "the stored row",
    );
    for (k, v) in row.as_object().unwrap() {
        assert_eq!(&d[k], v, "snapshot.stored field {k}: event {mv}");
    }
    check_row_shape(d);
    assert_eq!(d["job"], "cb");
    let url = d["url"].as_str().unwrap_or_else(|| panic!("no url: {mv}"));
    let r = request("GET", url, None).unwrap();
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    assert!(
        r.body == std::fs::read(s.local_root().join(d["key"].as_str().unwrap())).unwrap(),
        "the callback's url answers other bytes than the stored file"
    );
    assert_shows_source(&src, &r.body, 30.0, "picture fetched from the callback url");

    // stream.unpublished with the same media session.
    p.assert_running();
    p.kill();
    s.wait_gone("live", "cam1", None);
    let gone = global.wait_event("stream.unpublished", Some("/global"), "stream.unpublished");
    let uv = check_envelope(&gone, "stream.unpublished");
    check_stream_event(&uv, "cam1");
    assert_eq!(
        uv["data"]["media_session_id"],
        pv["data"]["media_session_id"]
    );
    s.settled_rows("stream=cam1", Duration::from_millis(1500));

    // Every picture was announced once per URL, and every request verifies.
    let rows = s.rows("stream=cam1");
    poll(WAIT, "a snapshot.stored per picture at both URLs", || {
        (own.events("snapshot.stored").len() >= rows.len()
            && global.events("snapshot.stored").len() >= rows.len())
        .then_some(())
    });
    for rec in [&own, &global] {
        let mut ids: Vec<String> = rec
            .events("snapshot.stored")
            .iter()
            .map(|r| r.json()["data"]["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        let mut want: Vec<String> = rows
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(ids, want, "snapshot.stored events at {} vs rows", rec.base);
        for r in rec.all() {
            verify_signature(&r, SECRET);
        }
    }
    // One stream.published and one stream.unpublished (the template URL may get them too).
    assert_eq!(global.events("stream.published").len(), 1);
    assert_eq!(global.events("stream.unpublished").len(), 1);
    assert!(own.events("stream.published").len() <= 1);
    assert!(own.events("stream.unpublished").len() <= 1);

    // The delivery log.
    let log = poll(WAIT, "every delivery to be delivered", || {
        let log = deliveries(&s);
        log.iter().all(|d| d["state"] == "delivered").then_some(log)
    });
    assert_eq!(
        log.len(),
        global.all().len() + own.all().len(),
        "deliveries: {log:?}"
    );
    for d in &log {
        for f in [
            "id",
            "event",
            "url",
            "state",
            "attempts",
            "last_status",
            "last_error",
            "created_at",
            "body",
        ] {
            assert!(d.get(f).is_some(), "delivery without {f}: {d}");
        }
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["last_status"], 200, "{d}");
        assert!(is_rfc3339(d["created_at"].as_str().unwrap()), "{d}");
    }
}

#[test]
fn auto_callbacks_retry_with_backoff_then_fail() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let flaky = Receiver::flaky(2, 500);
    let broken = Receiver::start(vec![], 503);
    let s = Server::start_in(
        work.path(),
        &[
            ("LIVESNAP_CALLBACK_SECRET", SECRET),
            ("LIVESNAP_CALLBACK_BACKOFF_MS", "100"),
            ("LIVESNAP_CALLBACK_MAX_ATTEMPTS", "3"),
        ],
        &[],
        None,
    );
    s.create_template(json!({"name": "flaky", "interval_s": 5, "callback_url": flaky.url("/f")}));
    s.create_template(json!({"name": "broken", "interval_s": 5, "callback_url": broken.url("/b")}));
    s.bind(json!({"app": "live", "stream": "cam1", "template": "flaky"}));
    s.bind(json!({"app": "live", "stream": "cam2", "template": "broken"}));
    let _p1 = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    let _p2 = Publisher::start(&src.path, &s.rtmp_url("live", "cam2"));

    // 500, 500, then 200 for every delivery: three attempts each, delivered.
    let log = poll(
        WAIT,
        "2 deliveries to the flaky receiver to be delivered",
        || {
            let mine: Vec<Value> = deliveries(&s)
                .into_iter()
                .filter(|d| d["url"] == flaky.url("/f").as_str())
                .collect();
            (mine.len() >= 2 && mine.iter().all(|d| d["state"] == "delivered")).then_some(mine)
        },
    );
    for d in &log {
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["last_status"], 200, "{d}");
        assert!(d["last_error"].is_null(), "{d}");
    }
    assert!(
        log.iter().any(|d| d["event"] == "snapshot.stored"),
        "no snapshot.stored delivery to the template's callback_url: {log:?}"
    );
    let groups = flaky.by_body();
    for d in &log {
        let tries = groups
            .iter()
            .find(|g| g[0].json() == d["body"])
            .unwrap_or_else(|| panic!("delivery {d} never reached the receiver"));
        assert_eq!(
            tries.len(),
            3,
            "requests for delivery {}: {}",
            d["id"],
            tries.len()
        );
        let statuses: Vec<u16> = tries.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![500, 500, 200]);
        for r in tries {
            verify_signature(r, SECRET);
        }
        // Exponential backoff: 100 ms, then 200 ms.
        let gap1 = tries[1].at - tries[0].at;
        let gap2 = tries[2].at - tries[1].at;
        eprintln!("delivery {}: retry gaps {gap1:?}, {gap2:?}", d["id"]);
        assert!(
            gap1 >= Duration::from_millis(90),
            "first retry after {gap1:?}"
        );
        assert!(
            gap2 >= Duration::from_millis(180),
            "second retry after {gap2:?}"
        );
        assert!(gap2 > gap1, "backoff does not grow: {gap1:?} then {gap2:?}");
    }

    // Always 503: failed after max_attempts, with the last status.
    let failed = poll(WAIT, "a delivery to the broken receiver to fail", || {
        deliveries(&s)
            .into_iter()
            .find(|d| d["url"] == broken.url("/b").as_str() && d["state"] == "failed")
    });
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert_eq!(failed["last_status"], 503, "{failed}");
    assert!(failed["last_error"].is_string(), "{failed}");
    // Failing callbacks slow nothing down: pictures keep coming for both streams.
    s.wait_rows("stream=cam2", 2, "cam2 pictures while its callbacks fail");
    s.wait_rows("stream=cam1", 2, "cam1 pictures");
}
