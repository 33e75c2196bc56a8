//! End-to-end: automatic snapshots into a real S3 endpoint (s3s-fs served in-process on
//! 127.0.0.1:0) — objects in the bucket, the image API answering the object's bytes, deletes
//! removing objects — and storage outages: the endpoint is stopped mid-stream, pictures wait in
//! the spool, and once it is back they are stored in order and indexed, also across a restart
//! of livesnap.

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::fs;
use std::time::{Duration, Instant};

use auto::*;
use common::*;
use serde_json::{json, Value};

const PREFIX: &str = "lsp";

/// The object behind a row: in the bucket under the prefix, with the row's size, and exactly
/// what GET /v1/snapshots/{id}/image answers.
fn check_s3_object(s: &Server, s3: &S3Server, row: &Value) -> Vec<u8> {
    assert_eq!(row["storage"], "s3", "{row}");
    let key = row["key"].as_str().unwrap();
    let file = s3.object_file(&format!("{PREFIX}/{key}"));
    let bytes = fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "row {row}: no object {PREFIX}/{key} in the bucket ({}): {e}; bucket holds {:?}",
            file.display(),
            files_under(&s3.root.join(S3_BUCKET))
        )
    });
    assert_eq!(
        bytes.len() as u64,
        row["size"].as_u64().unwrap(),
        "row {row}: object size"
    );
    let api = s.image(row["id"].as_str().unwrap());
    assert!(
        api == bytes,
        "row {row}: GET image differs from the object in the bucket"
    );
    bytes
}

fn spool(s: &Server) -> Value {
    s.automation()["spool"].clone()
}

#[test]
fn auto_s3_storage_objects_and_deletes() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s3 = S3Server::start(&work.path().join("s3"));
    let s = Server::start_in(
        work.path(),
        &[],
        &[],
        Some(&s3.config_table("s3", Some(PREFIX))),
    );
    let t = s.create_template(json!({
        "name": "s3t", "interval_s": 1, "format": "png", "storage": "s3",
        "modes": ["overwrite", "sequence"],
        "overwrite_path": "{AppName}/{StreamName}/latest.{Format}",
        "sequence_path": "{AppName}/{StreamName}/{Sequence}.{Format}"
    }));
    assert_eq!(t["storage"], "s3");
    s.bind(json!({"app": "live", "template": "s3t"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_rows("stream=cam1&mode=sequence", 3, "pictures in S3");
    p.assert_running();
    p.kill();
    s.wait_gone("live", "cam1", None);
    let rows = s.settled_rows("stream=cam1", Duration::from_millis(1500));
    let seq: Vec<&Value> = {
        let mut v: Vec<&Value> = rows.iter().filter(|r| r["mode"] == "sequence").collect();
        v.sort_by_key(|r| r["sequence"].as_u64().unwrap());
        v
    };
    let ow: Vec<&Value> = rows.iter().filter(|r| r["mode"] == "overwrite").collect();
    assert_eq!(ow.len(), 1, "{rows:?}");
    assert_contiguous(
        &seq.iter()
            .map(|r| r["sequence"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        1,
        "S3 sequence",
    );
    for r in &seq {
        assert_eq!(r["key"], format!("live/cam1/{}.png", r["sequence"]));
        check_s3_object(&s, &s3, r);
    }
    assert_eq!(ow[0]["key"], "live/cam1/latest.png");
    check_s3_object(&s, &s3, ow[0]);
    // Nothing went to the local folder; the bucket holds exactly the rows' objects.
    assert!(
        files_under(&s.local_root()).is_empty(),
        "{:?}",
        files_under(&s.local_root())
    );
    let mut objects: Vec<String> = files_under(&s3.root.join(S3_BUCKET).join(PREFIX))
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".png"))
        .collect();
    objects.sort();
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(objects, keys, "objects in the bucket vs rows");
    // The picture is the stream.
    let bytes = s.image(seq[1]["id"].as_str().unwrap());
    assert_shows_source(&src, &bytes, 30.0, "picture stored in S3");

    // Deleting removes the object too, one at a time and in a batch.
    let gone = seq[0];
    assert_eq!(
        s.delete(&format!("/v1/snapshots/{}", gone["id"].as_str().unwrap()))
            .status,
        204
    );
    assert!(!s3
        .object_file(&format!("{PREFIX}/{}", gone["key"].as_str().unwrap()))
        .exists());
    let v = s.expect(
        s.post_json(
            "/v1/snapshots/batch-delete",
            &json!({"ids": [seq[1]["id"], seq[2]["id"]]}),
        ),
        200,
        "batch-delete",
    );
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["deleted"] == true),
        "{v}"
    );
    for r in &seq[..3] {
        assert!(
            !s3.object_file(&format!("{PREFIX}/{}", r["key"].as_str().unwrap()))
                .exists(),
            "object of deleted row {r} is still in the bucket"
        );
        assert_eq!(
            s.get(&format!("/v1/snapshots/{}", r["id"].as_str().unwrap()))
                .status,
            404
        );
    }
    assert_eq!(s.rows("stream=cam1").len(), rows.len() - 3);
}

/// Waits until the spool is empty, returning the automation status.
fn wait_drained(s: &Server, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let a = s.automation();
        if a["spool"]["queued"] == 0 {
            return a;
        }
        if Instant::now() >= deadline {
            panic!(
                "the spool did not drain in {timeout:?}: {a}\nserver log:\n{}",
                s.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every sequence row has its object; sequences are 1..=N; objects were written in order.
fn check_all_stored_in_order(s: &Server, s3: &S3Server, job: &str) -> Vec<Value> {
    let rows = s.seq_rows("live", "cam1", job);
    assert_contiguous(&sequences(&rows), 1, "pictures through the outage");
    let mut last_mtime = None;
    for r in &rows {
        assert_eq!(r["key"], format!("o/cam1/{}.jpg", r["sequence"]), "{r}");
        check_s3_object(s, s3, r);
        let m = fs::metadata(s3.object_file(&format!("{PREFIX}/{}", r["key"].as_str().unwrap())))
            .unwrap()
            .modified()
            .unwrap();
        if let Some(prev) = last_mtime {
            assert!(
                m >= prev,
                "object of sequence {} was written before the one before it",
                r["sequence"]
            );
        }
        last_mtime = Some(m);
    }
    rows
}

#[test]
fn auto_s3_outage_spools_then_drains_in_order() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s3 = S3Server::start(&work.path().join("s3"));
    let s = Server::start_in(
        work.path(),
        &[],
        &[],
        Some(&s3.config_table("s3", Some(PREFIX))),
    );
    s.create_template(json!({
        "name": "o", "interval_s": 1, "storage": "s3",
        "sequence_path": "o/{StreamName}/{Sequence}.{Format}"
    }));
    s.bind(json!({"app": "live", "template": "o"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_rows("stream=cam1", 2, "pictures before the outage");
    let a = s.automation();
    assert_eq!(a["counters"]["spooled"], 0, "{a}");

    // Storage down: pictures go to the spool, none is indexed, none is lost.
    s3.stop();
    let down_rows = s.rows("stream=cam1").len();
    let a = poll(WAIT, "3 pictures to be spooled while S3 is down", || {
        let a = s.automation();
        (a["counters"]["spooled"].as_u64().unwrap() >= 3
            && a["spool"]["queued"].as_u64().unwrap() >= 3)
            .then_some(a)
    });
    eprintln!("during the outage: {a}");
    assert!(a["spool"]["bytes"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["counters"]["failed"], 0, "{a}");
    assert!(
        s.rows("stream=cam1").len() <= down_rows + 1,
        "pictures indexed while storage is down"
    );
    p.assert_running();

    // Storage back on the same port: the spool drains in order and every picture is indexed.
    s3.restart();
    let a = wait_drained(&s, Duration::from_secs(60));
    eprintln!("after the outage: {a}");
    // New pictures are stored directly again.
    let n = s.rows("stream=cam1").len();
    s.wait_rows("stream=cam1", n + 2, "pictures after the outage");
    p.kill();
    s.wait_gone("live", "cam1", None);
    s.settled_rows("stream=cam1", Duration::from_millis(1500));
    let a = wait_drained(&s, WAIT);
    let rows = check_all_stored_in_order(&s, &s3, "o");
    let c = &a["counters"];
    let sp = &a["spool"];
    assert_eq!(c["failed"], 0, "{a}");
    assert_eq!(sp["dropped"], 0, "{a}");
    assert!(sp["retries"].as_u64().unwrap() >= 1, "{a}");
    assert_eq!(
        sp["stored"], c["spooled"],
        "every spooled picture was stored: {a}"
    );
    assert_eq!(
        c["stored"].as_u64().unwrap(),
        rows.len() as u64,
        "stored counter vs rows: {a}"
    );
    assert_eq!(sp["bytes"], 0, "{a}");
    assert_eq!(a["index"], "sqlite");
}

#[test]
fn auto_spool_survives_a_restart() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s3 = S3Server::start(&work.path().join("s3"));
    let config = s3.config_table("s3", Some(PREFIX));
    let s = Server::start_in(work.path(), &[], &[], Some(&config));
    s.create_template(json!({
        "name": "o", "interval_s": 1, "storage": "s3",
        "sequence_path": "o/{StreamName}/{Sequence}.{Format}"
    }));
    s.bind(json!({"app": "live", "template": "o"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_rows("stream=cam1", 1, "a picture before the outage");
    s3.stop();
    poll(WAIT, "3 pictures to be spooled", || {
        (spool(&s)["queued"].as_u64().unwrap() >= 3).then_some(())
    });
    p.kill();
    s.wait_gone("live", "cam1", None);
    // Let the last picture in flight reach the spool.
    let queued = poll(WAIT, "the spool to stop growing", || {
        let a = spool(&s)["queued"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let b = spool(&s)["queued"].as_u64().unwrap();
        (a == b).then_some(b)
    });
    let rows_before = s.rows("stream=cam1");
    let t = Instant::now();
    s.stop();
    eprintln!("livesnap stopped in {:?} with storage down", t.elapsed());

    // Restarted with storage still down: the spooled pictures are still there.
    let s = Server::start_in(work.path(), &[], &[], Some(&config));
    let sp = spool(&s);
    assert_eq!(
        sp["queued"].as_u64().unwrap(),
        queued,
        "spool after a restart: {sp}"
    );
    assert_eq!(s.rows("stream=cam1"), rows_before);
    s3.restart();
    wait_drained(&s, Duration::from_secs(60));
    let rows = check_all_stored_in_order(&s, &s3, "o");
    assert_eq!(
        rows.len(),
        rows_before.len() + queued as usize,
        "every spooled picture is indexed after the restart"
    );
    let a = s.automation();
    assert_eq!(a["spool"]["dropped"], 0, "{a}");
}
