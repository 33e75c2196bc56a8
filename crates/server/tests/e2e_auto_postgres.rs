//! End-to-end: the snapshot index on PostgreSQL (`--index postgres://...`): templates, a binding,
//! pictures listed, filtered and paged, deleted, and the sequence going on across republish and a
//! restart, all against a fresh database on the server named by LIVESNAP_TEST_POSTGRES_URL.
//! Pull jobs are kept there too: a job resumes after a restart, and its usage is read back.
//! The test fails (never skips) when that variable is unset.

#[path = "common/auto.rs"]
mod auto;
mod common;
#[path = "common/rtsp_peer.rs"]
mod rtsp_peer;

use std::time::{Duration, Instant};

use auto::*;
use common::*;
use serde_json::{json, Value};

#[test]
fn auto_postgres_index_end_to_end() {
    let url = fresh_database("auto");
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s = Server::start_in(work.path(), &[], &["--index", &url], None);
    assert_eq!(s.automation()["index"], "postgres", "--index {url}");
    s.create_template(json!({
        "name": "pg", "every_n_frames": 10, "modes": ["overwrite", "sequence"],
        "sequence_path": "pg/{StreamName}/{Sequence}.{Format}",
        "overwrite_path": "pg/{StreamName}/latest.{Format}"
    }));
    s.bind(json!({"app": "live", "template": "pg"}));

    let round = |s: &Server, more: usize, what: &str| -> Vec<Value> {
        let had = s.seq_rows("live", "cam1", "pg").len();
        let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
        s.wait_rows("stream=cam1&mode=sequence", had + more, what);
        p.assert_running();
        p.kill();
        s.wait_gone("live", "cam1", None);
        s.settled_rows("stream=cam1", Duration::from_millis(1500));
        let rows = s.seq_rows("live", "cam1", "pg");
        assert_contiguous(&sequences(&rows), 1, what);
        for r in &rows {
            check_row_shape(r);
            assert_eq!(r["key"], format!("pg/cam1/{}.jpg", r["sequence"]));
            let f = s.local_root().join(r["key"].as_str().unwrap());
            assert!(f.is_file(), "{r}");
        }
        let ow = s.rows("stream=cam1&mode=overwrite");
        assert_eq!(ow.len(), 1, "one overwrite row on PostgreSQL: {ow:?}");
        rows
    };
    let r1 = round(&s, 4, "first publish");
    let r2 = round(&s, 3, "republish");
    assert_eq!(&r2[..r1.len()], &r1[..]);

    // Listing: pages, filters, time range, newest first.
    let all = s.rows("stream=cam1&mode=sequence");
    assert_eq!(all.len(), r2.len());
    let times: Vec<i64> = all.iter().map(|r| r["time_ms"].as_i64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let v = s.expect(
        s.get("/v1/snapshots?stream=cam1&mode=sequence&limit=2"),
        200,
        "page 1",
    );
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let c = v["next_cursor"]
        .as_str()
        .expect("a next_cursor")
        .to_string();
    let v2 = s.expect(
        s.get(&format!(
            "/v1/snapshots?stream=cam1&mode=sequence&limit=2&cursor={}",
            enc(&c)
        )),
        200,
        "page 2",
    );
    assert_eq!(v2["items"][0], all[2]);
    let mid = (times[2] + times[3]) / 2;
    assert_eq!(
        s.rows(&format!(
            "stream=cam1&mode=sequence&from={}",
            enc(&rfc3339(mid))
        )),
        all[..3].to_vec()
    );
    assert_eq!(
        s.rows(&format!(
            "stream=cam1&mode=sequence&to={}",
            enc(&rfc3339(mid))
        )),
        all[3..].to_vec()
    );
    assert!(s.rows("job=other").is_empty());
    let one = s.expect(
        s.get(&format!("/v1/snapshots/{}", all[0]["id"].as_str().unwrap())),
        200,
        "one",
    );
    assert_eq!(one["key"], all[0]["key"]);
    let bytes = s.image(all[0]["id"].as_str().unwrap());
    assert!(bytes == std::fs::read(s.local_root().join(all[0]["key"].as_str().unwrap())).unwrap());
    assert_shows_source(&src, &bytes, 28.0, "picture indexed in PostgreSQL");
    let r = s.get("/v1/snapshots?cursor=garbage");
    assert_eq!(r.status, 400, "bad cursor on PostgreSQL: {}", r.text());

    // Deleting on PostgreSQL: one, then a batch with an unknown id.
    let oldest = r2[0]["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/v1/snapshots/{oldest}")).status, 204);
    let v = s.expect(
        s.post_json(
            "/v1/snapshots/batch-delete",
            &json!({"ids": [r2[1]["id"], "unknown-id"]}),
        ),
        200,
        "batch-delete",
    );
    assert_eq!(v["results"][0]["deleted"], true, "{v}");
    assert_eq!(v["results"][1]["deleted"], false, "{v}");
    assert!(!s.local_root().join(r2[1]["key"].as_str().unwrap()).exists());
    let left = s.seq_rows("live", "cam1", "pg");
    assert_eq!(left, r2[2..].to_vec());

    // Restart on the same database: rows stay, the sequence goes on.
    s.stop();
    let s = Server::start_in(work.path(), &[], &["--index", &url], None);
    assert_eq!(s.seq_rows("live", "cam1", "pg"), left, "rows after restart");
    let had = left.last().unwrap()["sequence"].as_u64().unwrap();
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    let rows = poll(WAIT, "pictures after the restart", || {
        let rows = s.seq_rows("live", "cam1", "pg");
        (rows.last().unwrap()["sequence"].as_u64().unwrap() >= had + 2).then_some(rows)
    });
    p.kill();
    let seqs = sequences(&rows);
    assert_eq!(seqs[..left.len()], sequences(&left)[..], "old rows changed");
    assert_eq!(
        seqs[left.len()..].first(),
        Some(&(had + 1)),
        "after the restart the sequence does not continue from {had}: {seqs:?}"
    );
    assert_eq!(s.automation()["index"], "postgres");
}

/// A pull job on a PostgreSQL index: submitted, running, kept across a restart (it resumes by
/// itself), its usage read back from the database.
#[test]
fn a_pull_job_on_postgres_resumes_after_a_restart() {
    let url = fresh_database("jobs");
    let work = workdir();
    let camera = rtsp_peer::GstRtspServer::start(None);
    let s = Server::start_in(work.path(), &[], &["--index", &url], None);
    s.create_template(json!({"name": "pg", "interval_s": 1}));
    let job = s.expect(
        s.post_json(
            "/v1/jobs",
            &json!({"name": "pg job", "input_url": camera.url("", "/test"), "template": "pg"}),
        ),
        201,
        "POST /v1/jobs",
    );
    let id = job["id"].as_str().unwrap().to_string();
    let state = |s: &Server, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let j = s.expect(s.get(&format!("/v1/jobs/{id}")), 200, "GET job");
            if j["state"] == want {
                return j;
            }
            assert!(Instant::now() < deadline, "job never {want}: {j}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    state(&s, "running");
    s.wait_rows(&format!("job={id}"), 1, "a picture of the job");
    s.stop();
    let s = Server::start_in(work.path(), &[], &["--index", &url], None);
    let resumed = state(&s, "running");
    assert_eq!(resumed["name"], "pg job");
    assert!(
        resumed["counters"]["pictures"].as_u64().unwrap() >= 1,
        "{resumed}"
    );
    let usage = s.expect(s.get("/v1/usage"), 200, "GET /v1/usage");
    assert!(
        usage["usage"][0]["running_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{usage}"
    );
    s.stop();
}
