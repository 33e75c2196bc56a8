//! End-to-end: pull jobs in the real binary, pulling from a third-party RTSP server (GStreamer's
//! gst-rtsp-server, tests/peers/gst_rtsp_server.py). A job submitted through the API pictures
//! its camera on its template's schedule with IMS's own path patterns, answers on-demand
//! pictures, shows its stream in `/v1/streams`; when the camera goes away it retries and comes
//! back running, pictures resuming; it resumes by itself after a restart of livesnap and stays
//! stopped once stopped; `max_jobs + 1` is refused with 429; its usage has today's row in CSV;
//! each state change is a signed `job.state_changed` callback. A camera that refuses the
//! credentials, or has no such stream, fails the job with the reason. An `rtmp://` job plays
//! from ffmpeg serving RTMP (`-listen 1`).

#[path = "common/auto.rs"]
mod auto;
mod common;
#[path = "common/rtmp_peer.rs"]
mod rtmp_peer;
#[path = "common/rtsp_peer.rs"]
mod rtsp_peer;

use std::time::{Duration, Instant};

use auto::*;
use common::*;
use rtmp_peer::FfmpegRtmpServer;
use rtsp_peer::{reference, GstRtspServer};
use serde_json::{json, Value};

const SECRET: &str = "e2e-jobs-secret";

fn job(s: &Server, id: &str) -> Value {
    s.expect(s.get(&format!("/v1/jobs/{id}")), 200, "GET /v1/jobs/{id}")
}

/// Polls the job until it is in `state`.
fn wait_state(s: &Server, id: &str, state: &str) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        last = job(s, id);
        if last["state"] == state {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "job {id} never became {state}: {last}\nserver log:\n{}",
        s.log_tail(30)
    );
}

/// The job's sequence rows, by sequence.
fn seq_rows(s: &Server, id: &str) -> Vec<Value> {
    let mut rows = s.rows(&format!("job={id}&mode=sequence"));
    rows.sort_by_key(|r| r["sequence"].as_u64().unwrap_or(0));
    rows
}

/// Waits for a sequence picture of the job taken after `after_ms` and checks it against the
/// pattern the camera serves.
fn wait_new_picture(s: &Server, id: &str, after_ms: i64, reference: &Image, what: &str) -> Value {
    let row = poll(Duration::from_secs(60), what, || {
        seq_rows(s, id)
            .into_iter()
            .find(|r| r["time_ms"].as_i64().unwrap_or(0) > after_ms)
    });
    let img = decode_image(&s.image(row["id"].as_str().unwrap()));
    let db = psnr(&img.rgb, &reference.rgb);
    assert!(
        db > 27.0,
        "{what}: {db:.1} dB against GStreamer's rendering"
    );
    row
}

/// The `job.state_changed` events the receiver got for `id`, as (previous, state).
fn changes(hooks: &Receiver, id: &str) -> Vec<(String, String)> {
    hooks
        .events("job.state_changed")
        .iter()
        .map(|r| {
            verify_signature(r, SECRET);
            r.json()
        })
        .filter(|v| v["data"]["id"] == id)
        .map(|v| {
            (
                v["data"]["previous_state"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["data"]["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Whether `want` appears in `seen` in order (other changes may come between).
fn in_order(seen: &[(String, String)], want: &[(&str, &str)]) -> bool {
    let mut it = seen.iter();
    want.iter().all(|(a, b)| it.any(|(x, y)| x == a && y == b))
}

#[test]
fn a_pull_job_pictures_its_camera_retries_resumes_after_a_restart_and_counts_its_usage() {
    let work = workdir();
    let reference = reference(work.path());
    let camera = GstRtspServer::start(None);
    let port = camera.port;
    let hooks = Receiver::start(vec![], 200);
    let env = [
        ("LIVESNAP_CALLBACK_SECRET", SECRET),
        ("LIVESNAP_CALLBACK_BACKOFF_MS", "100"),
        ("LIVESNAP_MAX_JOBS", "1"),
    ];
    let s = Server::start_in(work.path(), &env, &[], None);
    // IMS's template: overwrite snapshot/{JobId}.jpg, real time
    // snapshot/{JobId}/{Sequence}/{UnixTimestamp}.jpg.
    s.create_template(json!({
        "name": "ims", "interval_s": 1, "format": "jpg", "modes": ["overwrite", "sequence"],
        "overwrite_path": "snapshot/{JobId}.jpg",
        "sequence_path": "snapshot/{JobId}/{Sequence}/{UnixTimestamp}.jpg",
    }));
    let url = camera.url("", "/test");

    // Refused submissions name the field.
    for (body, field) in [
        (
            json!({"name": "x", "input_url": "http://127.0.0.1/x", "template": "ims"}),
            "input_url",
        ),
        (
            json!({"name": "x", "input_url": url, "template": "nope"}),
            "template",
        ),
        (
            json!({"name": "x", "input_url": url, "template": "ims", "storage": "nope"}),
            "storage",
        ),
        (
            json!({"name": "", "input_url": url, "template": "ims"}),
            "name",
        ),
    ] {
        let v = s.expect(s.post_json("/v1/jobs", &body), 400, &format!("POST {body}"));
        assert_eq!(v["field"], field, "{v}");
    }
    let bad = s.post("/v1/jobs", r#"{"name": "x", "input_url": 5}"#);
    assert_eq!(bad.status, 400, "{}", bad.text());

    let submitted = s.expect(
        s.post_json(
            "/v1/jobs",
            &json!({"name": "gate camera", "input_url": url, "template": "ims",
                    "callback_url": hooks.url("/job")}),
        ),
        201,
        "POST /v1/jobs",
    );
    let submitted_at = Instant::now();
    let id = submitted["id"].as_str().unwrap().to_string();
    assert_eq!(submitted["state"], "pending", "{submitted}");
    assert_eq!(submitted["input_url"], url.as_str());
    assert!(is_rfc3339(submitted["created_at"].as_str().unwrap()));
    let running = wait_state(&s, &id, "running");
    assert!(
        is_rfc3339(running["started_at"].as_str().unwrap_or("")),
        "{running}"
    );
    let metrics = s.get("/metrics").text();
    for line in [
        "livesnap_jobs{state=\"running\"} 1",
        "livesnap_jobs{state=\"failed\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in /metrics"
        );
    }

    // The job's stream in /v1/streams, with its protocol, job and source.
    let streams = s.expect(s.get("/v1/streams"), 200, "GET /v1/streams");
    let stream = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["job"] == id.as_str())
        .unwrap_or_else(|| panic!("the job's stream is not listed: {streams}"))
        .clone();
    assert_eq!(stream["protocol"], "rtsp-pull", "{stream}");
    assert_eq!(stream["source"], url.as_str(), "{stream}");
    assert_eq!(stream["transport"], "tcp", "{stream}");
    assert_eq!(stream["template"], "ims", "{stream}");

    // On demand, through the same path and headers as a pushed stream's.
    let r = s.get(&format!("/v1/jobs/{id}/snapshot.jpg"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-livesnap-frame-time").is_some());
    let img = decode_image(&r.body);
    assert_eq!((img.width, img.height), (320, 240));
    let db = psnr(&img.rgb, &reference.rgb);
    assert!(db > 27.0, "on-demand picture of the job: {db:.1} dB");
    let png = s.get(&format!("/v1/jobs/{id}/snapshot.png?width=160"));
    assert_eq!(png.status, 200, "{}", png.text());
    assert_eq!(image_info(&png.body), (ImageKind::Png, 160, 120));
    assert_eq!(s.get("/v1/jobs/0000/snapshot.jpg").status, 404);

    // Pictures on the template's schedule, named as IMS names them, rows carrying the job id.
    let first = wait_new_picture(&s, &id, 0, &reference, "the job's first picture");
    let rows = s.wait_rows(
        &format!("job={id}&mode=sequence"),
        2,
        "two pictures of the job",
    );
    for r in &rows {
        let key = r["key"].as_str().unwrap();
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 4, "{key}");
        assert_eq!((parts[0], parts[1]), ("snapshot", id.as_str()), "{key}");
        assert_eq!(parts[2], r["sequence"].to_string(), "{key}");
        let unix = r["time_ms"].as_i64().unwrap() / 1000;
        assert_eq!(parts[3], format!("{unix}.jpg"), "{key}");
        assert_eq!(r["job"], id.as_str());
        assert_eq!(r["domain"], "_jobs");
    }
    assert_contiguous(&sequences(&seq_rows(&s, &id)), 1, "the job's sequence");
    assert!(s.local_root().join(format!("snapshot/{id}.jpg")).is_file());
    let j = job(&s, &id);
    assert!(j["counters"]["pictures"].as_u64().unwrap() >= 2, "{j}");
    assert!(j["counters"]["keyframes"].as_u64().unwrap() >= 1, "{j}");
    assert!(
        j["counters"]["frames"].as_u64() >= j["counters"]["keyframes"].as_u64(),
        "{j}"
    );
    let last = &j["last_snapshot"];
    assert!(
        last["url"]
            .as_str()
            .unwrap_or("")
            .contains("/v1/snapshots/"),
        "{j}"
    );
    let _ = first;

    // max_jobs is 1: a second job is refused, naming the limit.
    let refused = s.post_json(
        "/v1/jobs",
        &json!({"name": "second", "input_url": url, "template": "ims"}),
    );
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.text().contains("max_jobs"), "{}", refused.text());

    // The camera goes away: retrying, with the error; back on the same port: running again,
    // and pictures resume.
    drop(camera);
    let retrying = wait_state(&s, &id, "retrying");
    assert!(retrying["error"]["message"].is_string(), "{retrying}");
    assert_eq!(s.get(&format!("/v1/jobs/{id}/snapshot.jpg")).status, 503);
    let camera = GstRtspServer::start_on(None, port);
    let back = wait_state(&s, &id, "running");
    assert!(
        back["counters"]["reconnects"].as_u64().unwrap() >= 1,
        "{back}"
    );
    assert!(
        back["error"]["message"].is_string(),
        "the last error is kept: {back}"
    );
    let back_ms = now_ms();
    wait_new_picture(
        &s,
        &id,
        back_ms,
        &reference,
        "a picture after the camera came back",
    );

    // A restart of livesnap: the job resumes by itself.
    s.stop();
    let restarted_ms = now_ms();
    let s = Server::start_in(work.path(), &env, &[], None);
    wait_state(&s, &id, "running");
    wait_new_picture(
        &s,
        &id,
        restarted_ms,
        &reference,
        "a picture after livesnap restarted",
    );
    let listed = s.expect(s.get("/v1/jobs?state=running"), 200, "GET /v1/jobs");
    assert_eq!(listed["jobs"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(s.get("/v1/jobs?state=bogus").status, 400);

    // Stopped, it stays stopped, across a restart too; its pictures stop.
    let stopped = s.expect(s.post(&format!("/v1/jobs/{id}/stop"), ""), 200, "POST stop");
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let before = s.settled_rows(&format!("job={id}"), Duration::from_millis(2500));
    s.stop();
    let s = Server::start_in(work.path(), &env, &[], None);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(job(&s, &id)["state"], "stopped");
    assert_eq!(s.rows(&format!("job={id}")).len(), before.len());
    let streams = s.expect(s.get("/v1/streams"), 200, "GET /v1/streams");
    assert!(
        !streams.to_string().contains(&id),
        "a stopped job's stream is live: {streams}"
    );

    // Usage: today's row for the job, in JSON and CSV.
    let today = rfc3339(now_ms())[..10].to_string();
    let usage = s.expect(s.get("/v1/usage"), 200, "GET /v1/usage");
    assert_eq!(usage["from"], today.as_str(), "{usage}");
    let mine = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["job"] == id.as_str())
        .unwrap_or_else(|| panic!("no usage row for the job: {usage}"))
        .clone();
    let ran = mine["running_s"].as_f64().unwrap();
    // It ran at least the second it took to make two pictures 1 s apart, and at most the time
    // since it was submitted.
    assert!(
        ran >= 1.0 && ran <= submitted_at.elapsed().as_secs_f64(),
        "{mine}"
    );
    assert_eq!(mine["job_name"], "gate camera");
    let csv = s.get(&format!("/v1/usage?from={today}&to={today}&format=csv"));
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let text = csv.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("day,job,job_name,running_s"));
    let row = lines
        .find(|l| l.starts_with(&format!("{today},{id},gate camera,")))
        .unwrap_or_else(|| panic!("no CSV row for the job today:\n{text}"));
    let secs: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
    assert!((secs - ran).abs() < 1.0, "{row} vs {mine}");
    assert_eq!(s.get("/v1/usage?from=2026-12-09&to=2026-12-01").status, 400);
    assert_eq!(s.get("/v1/usage?from=yesterday").status, 400);

    // Every state change was told, signed, to the job's callback URL.
    poll(Duration::from_secs(20), "the job's state changes", || {
        let seen = changes(&hooks, &id);
        in_order(
            &seen,
            &[
                ("pending", "running"),
                ("running", "retrying"),
                ("retrying", "running"),
                ("pending", "running"),
                ("running", "stopped"),
            ],
        )
        .then_some(())
    });

    // Started again, then deleted: its pictures stay.
    let started = s.expect(s.post(&format!("/v1/jobs/{id}/start"), ""), 200, "start");
    assert_eq!(started["state"], "pending");
    wait_state(&s, &id, "running");
    assert_eq!(s.delete(&format!("/v1/jobs/{id}")).status, 204);
    assert_eq!(s.get(&format!("/v1/jobs/{id}")).status, 404);
    assert!(s.rows(&format!("job={id}")).len() >= before.len());
    drop(camera);
    s.stop();
}

#[test]
fn a_job_whose_camera_refuses_it_fails_with_the_reason() {
    let work = workdir();
    let camera = GstRtspServer::start(Some(("cam", "s3cret")));
    let s = Server::start_in(work.path(), &[], &[], None);
    s.create_template(json!({"name": "t", "interval_s": 5}));
    let submit = |name: &str, url: String| {
        let v = s.expect(
            s.post_json(
                "/v1/jobs",
                &json!({"name": name, "input_url": url, "template": "t"}),
            ),
            201,
            "POST /v1/jobs",
        );
        v["id"].as_str().unwrap().to_string()
    };
    let wrong = submit("wrong password", camera.url("cam:wrong@", "/test"));
    let missing = submit("no such stream", camera.url("cam:s3cret@", "/nothing"));
    let right = submit(
        "right password, over UDP",
        camera.url("cam:s3cret@", "/test?transport=udp"),
    );

    let failed = wait_state(&s, &wrong, "failed");
    let why = failed["error"]["message"].as_str().unwrap();
    assert!(why.contains("401"), "{failed}");
    assert!(!why.contains("wrong"), "the password is shown: {failed}");
    assert_eq!(failed["input_url"], camera.url("cam:***@", "/test"));
    // Not found is tried a few times (a camera rebooting), then fails.
    let failed = wait_state(&s, &missing, "failed");
    assert!(
        failed["error"]["message"].as_str().unwrap().contains("404"),
        "{failed}"
    );
    assert!(
        failed["counters"]["reconnects"].as_u64().unwrap() >= 4,
        "{failed}\n{}",
        s.log_tail(40)
    );
    wait_state(&s, &right, "running");
    let streams = s.expect(s.get("/v1/streams"), 200, "GET /v1/streams");
    let stream = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["job"] == right.as_str())
        .unwrap_or_else(|| panic!("the job's stream is not listed: {streams}"))
        .clone();
    assert_eq!(stream["transport"], "udp", "{stream}");
    assert_eq!(
        stream["source"],
        camera.url("cam:***@", "/test?transport=udp"),
        "{stream}"
    );
    // A failed job counts against nothing and can be started again.
    let again = s.expect(s.post(&format!("/v1/jobs/{wrong}/start"), ""), 200, "start");
    assert_eq!(again["state"], "pending");
    wait_state(&s, &wrong, "failed");
    s.stop();
}

#[test]
fn a_pull_job_pictures_an_rtmp_source() {
    require_ffmpeg();
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let server = FfmpegRtmpServer::start_with(
        &src.path,
        work.path(),
        "rtmp",
        &["-re", "-stream_loop", "-1"],
    );
    let s = Server::start_in(work.path(), &[], &[], None);
    s.create_template(json!({"name": "t", "interval_s": 1}));
    let v = s.expect(
        s.post_json(
            "/v1/jobs",
            &json!({"name": "rtmp", "input_url": server.url, "template": "t"}),
        ),
        201,
        "POST /v1/jobs",
    );
    let id = v["id"].as_str().unwrap().to_string();
    wait_state(&s, &id, "running");
    let streams = s.expect(s.get("/v1/streams"), 200, "GET /v1/streams");
    let stream = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["job"] == id.as_str())
        .unwrap_or_else(|| panic!("the job's stream is not listed: {streams}"))
        .clone();
    assert_eq!(stream["protocol"], "rtmp-pull", "{stream}");
    assert_eq!(stream["source"], server.url.as_str(), "{stream}");
    let r = s.get(&format!("/v1/jobs/{id}/snapshot.jpg"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_shows_source(&src, &r.body, 30.0, "on-demand picture of the RTMP job");
    let rows = s.wait_rows(&format!("job={id}"), 1, "a picture of the RTMP job");
    let stored = s.image(rows[0]["id"].as_str().unwrap());
    assert_shows_source(&src, &stored, 30.0, "stored picture of the RTMP job");
    // ffmpeg serves one play: once it is gone the job retries.
    drop(server);
    let retrying = wait_state(&s, &id, "retrying");
    assert!(retrying["error"]["message"].is_string(), "{retrying}");
    s.stop();
}
