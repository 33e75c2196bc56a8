//! End-to-end: automatic snapshots with the real `livesnap` binary, ffmpeg publishers and the
//! local storage location: interval sequences (counted over a window, compared with the source
//! by PSNR), overwrite in place, both modes, binding precedence and `apply_to_live`, sequence
//! numbers across republish and restart, retention, the snapshot files API and bad input.

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::collections::HashSet;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use auto::*;
use common::*;
use serde_json::{json, Value};

const DEFAULT_OVERWRITE: &str = "snapshot/{Date}/{SourceID}/{AppName}/{StreamName}.{Format}";
const DEFAULT_SEQUENCE: &str =
    "snapshot/{Date}/{SourceID}/{AppName}/{StreamName}/{SnapshotTime}.{Format}";

/// The default sequence key of a row: `snapshot/{Date}/_default/{app}/{stream}/{SnapshotTime}.{fmt}`.
fn default_sequence_key(row: &Value) -> String {
    let ms = row["time_ms"].as_i64().unwrap();
    format!(
        "snapshot/{}/_default/{}/{}/{}.{}",
        date_var(ms),
        row["app"].as_str().unwrap(),
        row["stream"].as_str().unwrap(),
        snapshot_time_var(ms),
        row["format"].as_str().unwrap()
    )
}

fn default_overwrite_key(row: &Value) -> String {
    let ms = row["time_ms"].as_i64().unwrap();
    format!(
        "snapshot/{}/_default/{}/{}.{}",
        date_var(ms),
        row["app"].as_str().unwrap(),
        row["stream"].as_str().unwrap(),
        row["format"].as_str().unwrap()
    )
}

/// The stored object of a row in the `local` location: exists, has the row's size, and is what
/// GET /v1/snapshots/{id}/image answers.
fn check_local_object(s: &Server, row: &Value) -> Vec<u8> {
    let key = row["key"].as_str().unwrap();
    let path = s.local_root().join(key);
    let bytes =
        fs::read(&path).unwrap_or_else(|e| panic!("row {row}: no file {}: {e}", path.display()));
    assert_eq!(
        bytes.len() as u64,
        row["size"].as_u64().unwrap(),
        "row {row}: file size differs"
    );
    let api = s.image(row["id"].as_str().unwrap());
    assert!(
        api == bytes,
        "row {row}: GET image differs from the stored file"
    );
    let (_, w, h) = image_info(&bytes);
    assert_eq!(
        (w as u64, h as u64),
        (
            row["width"].as_u64().unwrap(),
            row["height"].as_u64().unwrap()
        ),
        "row {row}: picture size differs"
    );
    bytes
}

#[test]
fn auto_interval_sequence_counts_paths_and_psnr() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 5);
    let s = Server::start_in(work.path(), &[], &[], None);

    let t = s.create_template(json!({"name": "t1", "interval_s": 1, "format": "png"}));
    // Defaults are filled in and echoed.
    assert_eq!(t["name"], "t1");
    assert_eq!(t["interval_s"], 1);
    assert_eq!(t["format"], "png");
    assert_eq!(t["storage"], "local");
    assert_eq!(t["modes"], json!(["sequence"]));
    assert_eq!(t["overwrite_path"], DEFAULT_OVERWRITE);
    assert_eq!(t["sequence_path"], DEFAULT_SEQUENCE);
    let got = s.expect(s.get("/v1/templates/t1"), 200, "GET /v1/templates/t1");
    assert_eq!(got, t, "GET answers what POST echoed");
    let all = s.expect(s.get("/v1/templates"), 200, "GET /v1/templates");
    assert_eq!(all["templates"], json!([t]));
    let b = s.bind(json!({"app": "live", "template": "t1"}));
    assert_eq!(b["domain"], "_default");
    assert_eq!(b["app"], "live");
    assert_eq!(b["stream"], "*");
    assert_eq!(b["template"], "t1");
    let bl = s.expect(s.get("/v1/bindings"), 200, "GET /v1/bindings");
    assert_eq!(bl["bindings"].as_array().unwrap().len(), 1, "{bl}");

    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_keyframes("live", "cam1", None, 1);
    let q = "app=live&stream=cam1";
    s.wait_rows(q, 1, "the first interval picture");

    // Count the pictures made over a window of about 5 s: one a second, with slack.
    let n0 = s.rows(q).len();
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(5));
    let n1 = s.rows(q).len();
    let secs = t0.elapsed().as_secs_f64();
    let made = n1 - n0;
    eprintln!("{made} pictures in {secs:.2} s");
    assert!(
        (made as f64) >= (secs - 2.0).floor() && (made as f64) <= (secs + 2.0).ceil(),
        "interval_s = 1 made {made} pictures in {secs:.2} s (want about one a second)"
    );
    let st = s.stream("live", "cam1").expect("cam1 is live");
    assert_eq!(st["template"], "t1", "stream detail: {st}");
    assert!(
        st["auto_triggered"].as_u64().unwrap() >= n1 as u64,
        "auto_triggered {} < {n1} pictures: {st}",
        st["auto_triggered"]
    );
    p.assert_running();
    p.kill();
    s.wait_gone("live", "cam1", None);

    let rows = s.settled_rows(q, Duration::from_millis(1500));
    // Newest first.
    let times: Vec<i64> = rows
        .iter()
        .map(|r| r["time_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "list is not newest first: {times:?}"
    );
    let mut rows = rows;
    rows.sort_by_key(|r| r["sequence"].as_u64().unwrap());
    assert_contiguous(&sequences(&rows), 1, "interval pictures");
    let gaps: Vec<i64> = rows
        .windows(2)
        .map(|w| w[1]["time_ms"].as_i64().unwrap() - w[0]["time_ms"].as_i64().unwrap())
        .collect();
    eprintln!("{} pictures, gaps between them (ms): {gaps:?}", rows.len());
    for w in rows.windows(2) {
        let dt = w[1]["time_ms"].as_i64().unwrap() - w[0]["time_ms"].as_i64().unwrap();
        assert!(
            dt >= 900,
            "two pictures {dt} ms apart with interval_s = 1: {} / {}",
            w[0],
            w[1]
        );
    }
    let mut keys = HashSet::new();
    for r in &rows {
        check_row_shape(r);
        assert_eq!(r["domain"], "_default", "{r}");
        assert_eq!(r["app"], "live", "{r}");
        assert_eq!(r["stream"], "cam1", "{r}");
        assert_eq!(r["job"], "t1", "{r}");
        assert_eq!(r["mode"], "sequence", "{r}");
        assert_eq!(r["storage"], "local", "{r}");
        assert_eq!(r["format"], "png", "{r}");
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(320), Some(180))
        );
        assert_eq!(
            r["key"],
            default_sequence_key(r),
            "default sequence path shape"
        );
        assert!(
            keys.insert(r["key"].as_str().unwrap().to_string()),
            "key reused: {r}"
        );
        let one = s.expect(
            s.get(&format!("/v1/snapshots/{}", r["id"].as_str().unwrap())),
            200,
            "GET /v1/snapshots/{id}",
        );
        for (k, v) in r.as_object().unwrap() {
            assert_eq!(&one[k], v, "GET /v1/snapshots/{{id}} field {k}");
        }
        assert!(
            one["url"].as_str().unwrap_or("").ends_with(&format!(
                "/v1/snapshots/{}/image",
                r["id"].as_str().unwrap()
            )),
            "url of {one}"
        );
        check_local_object(&s, r);
    }
    // Every file under the location is a row, and the other way round.
    let files: HashSet<String> = files_under(&s.local_root())
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, keys, "files under data/snapshots vs rows");

    // The pictures are the source: the second and the last, each one second of content.
    for r in [&rows[1], &rows[rows.len() - 1]] {
        let bytes = s.image(r["id"].as_str().unwrap());
        let img = assert_shows_source(&src, &bytes, 30.0, &format!("sequence {}", r["sequence"]));
        assert_eq!(img.kind, ImageKind::Png);
    }
}

#[test]
fn auto_every_n_frames_counts_and_psnr() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s = Server::start_in(work.path(), &[], &[], None);
    // Every 10th frame at 25 fps: 2.5 pictures a second, most of them not keyframes (the
    // server decodes on from the keyframe).
    s.create_template(json!({"name": "n10", "every_n_frames": 10, "format": "png"}));
    s.bind(json!({"app": "live", "stream": "cam1", "template": "n10"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    let q = "stream=cam1";
    s.wait_rows(q, 1, "the first every-N-frames picture");
    let n0 = s.rows(q).len();
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(4));
    let n1 = s.rows(q).len();
    let secs = t0.elapsed().as_secs_f64();
    let made = (n1 - n0) as f64;
    let st = s.stream("live", "cam1").expect("cam1 is live");
    let auto = s.automation();
    eprintln!("{made} pictures in {secs:.2} s; stream {st}; automation {auto}");
    assert!(
        made >= (2.5 * secs - 3.0).floor() && made <= (2.5 * secs + 3.0).ceil(),
        "every_n_frames = 10 at 25 fps made {made} pictures in {secs:.2} s (want about 2.5 a second); \
         auto_triggered {}, counters {}",
        st["auto_triggered"],
        auto["counters"]
    );
    p.assert_running();
    p.kill();
    s.wait_gone("live", "cam1", None);
    let mut rows = s.settled_rows(q, Duration::from_millis(1500));
    rows.sort_by_key(|r| r["sequence"].as_u64().unwrap());
    assert_contiguous(&sequences(&rows), 1, "every-N-frames pictures");
    let auto = s.automation();
    assert_eq!(
        auto["counters"]["failed"],
        0,
        "pictures failed: {auto}\nserver log:\n{}",
        s.log_tail(20)
    );
    // Every stored picture is in the lag window, and none took anywhere near a second.
    let lag = &auto["lag_ms"];
    assert_eq!(
        lag["count"].as_u64(),
        auto["counters"]["stored"].as_u64(),
        "{auto}"
    );
    let (p50, max) = (lag["p50"].as_f64().unwrap(), lag["max"].as_f64().unwrap());
    assert!(
        p50 <= lag["p99"].as_f64().unwrap() && max < 5_000.0,
        "{auto}"
    );
    for r in rows.iter().skip(1).take(3) {
        let bytes = check_local_object(&s, r);
        assert_shows_source(
            &src,
            &bytes,
            30.0,
            &format!("every-N-frames sequence {}", r["sequence"]),
        );
    }
}

#[test]
fn auto_overwrite_in_place_and_both_modes() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 5);
    let s = Server::start_in(work.path(), &[], &[], None);
    s.create_template(json!({"name": "ow", "interval_s": 1, "modes": ["overwrite"]}));
    s.create_template(json!({"name": "both", "interval_s": 1, "modes": ["overwrite", "sequence"]}));
    s.bind(json!({"app": "live", "stream": "cam1", "template": "ow"}));
    s.bind(json!({"app": "live", "stream": "cam2", "template": "both"}));
    let mut p1 = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    let mut p2 = Publisher::start(&src.path, &s.rtmp_url("live", "cam2"));

    // Overwrite: one row, updated in place (same id and key; time and size change).
    let first = s.wait_rows("stream=cam1", 1, "the first overwrite picture")[0].clone();
    assert_eq!(first["mode"], "overwrite", "{first}");
    assert_eq!(first["job"], "ow");
    assert_eq!(first["format"], "jpg", "default format");
    assert_eq!(
        first["key"],
        default_overwrite_key(&first),
        "default overwrite path"
    );
    let mut times = HashSet::new();
    let mut sizes = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while times.len() < 4 || sizes.len() < 2 {
        let rows = s.rows("stream=cam1");
        assert_eq!(rows.len(), 1, "overwrite mode must keep one row: {rows:?}");
        let r = &rows[0];
        assert_eq!(r["id"], first["id"], "the overwrite row changed id: {r}");
        assert_eq!(r["key"], first["key"]);
        assert!(r["time_ms"].as_i64() >= first["time_ms"].as_i64());
        times.insert(r["time_ms"].as_i64().unwrap());
        sizes.insert(r["size"].as_u64().unwrap());
        let files: Vec<_> = files_under(&s.local_root())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("cam1"))
            .collect();
        assert_eq!(
            files.len(),
            1,
            "overwrite mode must keep one file for cam1: {files:?}"
        );
        assert_eq!(files[0].to_string_lossy(), first["key"].as_str().unwrap());
        // Whenever it is read, the overwritten picture is whole (never half-written).
        let b = fs::read(s.local_root().join(&files[0])).unwrap();
        assert!(
            b.starts_with(&[0xFF, 0xD8]) && b.ends_with(&[0xFF, 0xD9]),
            "the overwrite file was read half-written ({} bytes)",
            b.len()
        );
        assert!(
            Instant::now() < deadline,
            "the overwrite row did not change 4 times with 2 sizes in {WAIT:?}: times {times:?}, sizes {sizes:?}"
        );
        thread::sleep(Duration::from_millis(300));
    }
    p1.assert_running();
    p1.kill();
    s.wait_gone("live", "cam1", None);
    let rows = s.settled_rows("stream=cam1", Duration::from_millis(1500));
    assert_eq!(rows.len(), 1);
    let bytes = check_local_object(&s, &rows[0]);
    assert_shows_source(&src, &bytes, 28.0, "overwrite picture (JPEG)");

    // Both modes: one overwrite row beside a growing sequence.
    s.wait_rows("stream=cam2&mode=sequence", 3, "cam2 sequence pictures");
    p2.assert_running();
    p2.kill();
    s.wait_gone("live", "cam2", None);
    let rows = s.settled_rows("stream=cam2", Duration::from_millis(1500));
    let ow: Vec<&Value> = rows.iter().filter(|r| r["mode"] == "overwrite").collect();
    let mut seq: Vec<&Value> = rows.iter().filter(|r| r["mode"] == "sequence").collect();
    assert_eq!(ow.len(), 1, "both modes: one overwrite row: {rows:?}");
    assert!(seq.len() >= 3, "both modes: sequence rows: {rows:?}");
    seq.sort_by_key(|r| r["sequence"].as_u64().unwrap());
    assert_contiguous(
        &seq.iter()
            .map(|r| r["sequence"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        1,
        "both modes",
    );
    assert_eq!(ow[0]["key"], default_overwrite_key(ow[0]));
    assert_eq!(ow[0]["job"], "both");
    for r in &seq {
        assert_eq!(r["key"], default_sequence_key(r));
        assert_eq!(r["job"], "both");
        check_local_object(&s, r);
    }
    // The overwrite picture is the newest sequence picture.
    let last = seq.last().unwrap();
    assert_eq!(
        ow[0]["time_ms"], last["time_ms"],
        "overwrite {} vs newest {}",
        ow[0], last
    );
    let ow_bytes = check_local_object(&s, ow[0]);
    assert!(
        ow_bytes == s.image(last["id"].as_str().unwrap()),
        "the overwrite picture differs from the newest sequence picture"
    );
    let cam2_files = files_under(&s.local_root())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/cam2"))
        .count();
    assert_eq!(
        cam2_files,
        seq.len() + 1,
        "files of cam2: the sequence plus one overwrite"
    );
}

#[test]
fn auto_binding_precedence_and_apply_to_live() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s = Server::start_in(work.path(), &[], &[], None);
    for name in ["tdom", "tapp", "tstream", "tnew"] {
        s.create_template(json!({"name": name, "interval_s": 1, "width": 160}));
    }
    s.bind(json!({"domain": "_default", "app": "*", "stream": "*", "template": "tdom"}));
    s.bind(json!({"app": "live", "template": "tapp"}));
    s.bind(json!({"app": "live", "stream": "cam1", "template": "tstream"}));
    let _p1 = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    let _p2 = Publisher::start(&src.path, &s.rtmp_url("live", "cam2"));
    let mut p3 = Publisher::start(&src.path, &s.rtmp_url("other", "cam3"));

    // Most specific wins: stream > app > domain.
    for (app, stream, want) in [
        ("live", "cam1", "tstream"),
        ("live", "cam2", "tapp"),
        ("other", "cam3", "tdom"),
    ] {
        s.wait_template(app, stream, Some(want));
        let rows = s.wait_rows(
            &format!("app={app}&stream={stream}"),
            2,
            &format!("{app}/{stream}"),
        );
        for r in &rows {
            assert_eq!(
                r["job"], want,
                "{app}/{stream} row made with the wrong template: {r}"
            );
            assert_eq!(r["width"], 160);
        }
    }

    // A new binding without apply_to_live does not touch the live stream...
    s.bind(json!({"app": "other", "stream": "cam3", "template": "tnew"}));
    let mark = now_ms();
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(s.stream("other", "cam3").unwrap()["template"], "tdom");
    let after: Vec<Value> = s
        .rows("app=other&stream=cam3")
        .into_iter()
        .filter(|r| r["time_ms"].as_i64().unwrap() > mark)
        .collect();
    assert!(!after.is_empty(), "cam3 stopped making pictures");
    assert!(
        after.iter().all(|r| r["job"] == "tdom"),
        "cam3 switched template without apply_to_live: {after:?}"
    );
    assert!(s.rows("app=other&stream=cam3&job=tnew").is_empty());
    // ...until it is published again.
    p3.kill();
    s.wait_gone("other", "cam3", None);
    let _p3 = Publisher::start(&src.path, &s.rtmp_url("other", "cam3"));
    s.wait_template("other", "cam3", Some("tnew"));
    s.wait_rows(
        "app=other&stream=cam3&job=tnew",
        1,
        "cam3 pictures with tnew after republish",
    );

    // apply_to_live switches a live stream at once.
    let before = now_ms();
    s.bind(json!({"app": "live", "stream": "cam2", "template": "tnew", "apply_to_live": true}));
    let st = s.stream("live", "cam2").unwrap();
    assert_eq!(
        st["template"], "tnew",
        "apply_to_live did not switch at once: {st}"
    );
    let new_rows = s.wait_rows(
        "app=live&stream=cam2&job=tnew",
        2,
        "cam2 pictures with tnew",
    );
    for r in &new_rows {
        assert!(r["time_ms"].as_i64().unwrap() >= before - 1000, "{r}");
    }
    // No tapp picture is taken once the switch is a second old.
    let cut = now_ms() + 1000;
    thread::sleep(Duration::from_millis(2500));
    let late: Vec<Value> = s
        .rows("app=live&stream=cam2&job=tapp")
        .into_iter()
        .filter(|r| r["time_ms"].as_i64().unwrap() > cut)
        .collect();
    assert!(late.is_empty(), "cam2 still makes tapp pictures: {late:?}");
    // cam1 keeps its stream binding through all that.
    assert_eq!(s.stream("live", "cam1").unwrap()["template"], "tstream");

    // Deleting the stream binding with apply_to_live falls back to the app binding at once.
    let r = s.delete("/v1/bindings?domain=_default&app=live&stream=cam1&apply_to_live=true");
    assert_eq!(r.status, 204, "DELETE binding: {}", r.text());
    let st = s.stream("live", "cam1").unwrap();
    assert_eq!(st["template"], "tapp", "after deleting its binding: {st}");
    let bl = s.expect(s.get("/v1/bindings"), 200, "GET /v1/bindings");
    let names: HashSet<String> = bl["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{}/{}/{}={}",
                b["domain"].as_str().unwrap(),
                b["app"].as_str().unwrap(),
                b["stream"].as_str().unwrap(),
                b["template"].as_str().unwrap()
            )
        })
        .collect();
    let want: HashSet<String> = [
        "_default/*/*=tdom",
        "_default/live/*=tapp",
        "_default/other/cam3=tnew",
        "_default/live/cam2=tnew",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, want, "bindings: {bl}");
}

#[test]
fn auto_republish_and_restart_continue_the_sequence() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s = Server::start_in(work.path(), &[], &[], None);
    s.create_template(json!({
        "name": "seq", "interval_s": 1,
        "sequence_path": "seq/{AppName}/{StreamName}/{Sequence}.{Format}"
    }));
    s.bind(json!({"app": "live", "template": "seq"}));

    let round = |s: &Server, more: usize, what: &str| -> Vec<Value> {
        let had = s.seq_rows("live", "cam1", "seq").len();
        let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
        s.wait_rows("stream=cam1", had + more, what);
        p.assert_running();
        p.kill();
        s.wait_gone("live", "cam1", None);
        s.settled_rows("stream=cam1", Duration::from_millis(1500));
        let rows = s.seq_rows("live", "cam1", "seq");
        assert_contiguous(&sequences(&rows), 1, what);
        for r in &rows {
            assert_eq!(
                r["key"],
                format!("seq/live/cam1/{}.jpg", r["sequence"]),
                "{{Sequence}} in the key"
            );
            assert!(
                s.local_root().join(r["key"].as_str().unwrap()).is_file(),
                "{r}"
            );
        }
        rows
    };
    let r1 = round(&s, 3, "first publish");
    let n1 = r1.len() as u64;
    let r2 = round(&s, 2, "republish");
    let n2 = r2.len() as u64;
    assert!(n2 >= n1 + 2);
    // The first rows are untouched; the new ones continue after them.
    assert_eq!(
        &r2[..r1.len()],
        &r1[..],
        "rows of the first publish changed"
    );

    // A restart on the same data dir keeps templates, bindings, rows and the counters.
    s.stop();
    let s = Server::start_in(work.path(), &[], &[], None);
    let t = s.expect(s.get("/v1/templates/seq"), 200, "template after restart");
    assert_eq!(t["interval_s"], 1);
    let bl = s.expect(s.get("/v1/bindings"), 200, "bindings after restart");
    assert_eq!(bl["bindings"].as_array().unwrap().len(), 1, "{bl}");
    assert_eq!(s.seq_rows("live", "cam1", "seq"), r2, "rows after restart");
    let r3 = round(&s, 2, "publish after restart");
    assert!(r3.len() as u64 >= n2 + 2);
    assert_eq!(&r3[..r2.len()], &r2[..], "rows before the restart changed");
    let keys: HashSet<&str> = r3.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), r3.len(), "a key was reused");
}

#[test]
fn auto_retention_keep_last_and_max_age() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s = Server::start_in(
        work.path(),
        &[("LIVESNAP_RETENTION_SWEEP_S", "1")],
        &[],
        None,
    );
    s.create_template(json!({
        "name": "keep", "every_n_frames": 10, "retention": {"keep_last": 2},
        "sequence_path": "k/{StreamName}/{Sequence}.{Format}"
    }));
    s.create_template(json!({
        "name": "age", "interval_s": 1, "retention": {"max_age_s": 2},
        "sequence_path": "a/{StreamName}/{Sequence}.{Format}"
    }));
    s.bind(json!({"app": "live", "stream": "a", "template": "keep"}));
    s.bind(json!({"app": "live", "stream": "b", "template": "age"}));
    let mut pa = Publisher::start(&src.path, &s.rtmp_url("live", "a"));
    let mut pb = Publisher::start(&src.path, &s.rtmp_url("live", "b"));

    // keep_last = 2: old pictures go as new ones come (one more may be in flight).
    poll(
        WAIT,
        "keep_last to delete the first 3 pictures of live/a",
        || {
            let rows = s.seq_rows("live", "a", "keep");
            assert!(
                rows.len() <= 3,
                "keep_last = 2 but {} rows: {rows:?}",
                rows.len()
            );
            let lowest = rows
                .first()
                .map(|r| r["sequence"].as_u64().unwrap())
                .unwrap_or(0);
            (lowest >= 4).then_some(())
        },
    );
    pa.assert_running();
    pa.kill();
    s.wait_gone("live", "a", None);
    let rows = s.settled_rows("stream=a", Duration::from_millis(1500));
    let mut seqs = sequences(&rows);
    seqs.sort();
    assert_eq!(rows.len(), 2, "keep_last = 2 leaves 2 rows: {rows:?}");
    assert_eq!(seqs[1], seqs[0] + 1, "the 2 newest are kept: {seqs:?}");
    let files: Vec<String> = files_under(&s.local_root().join("k/a"))
        .into_iter()
        .map(|p| format!("k/a/{}", p.to_string_lossy()))
        .collect();
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(
        files, keys,
        "keep_last = 2 leaves the 2 files of the 2 rows"
    );
    assert!(files
        .iter()
        .all(|f| f.ends_with(&format!("/{}.jpg", seqs[0]))
            || f.ends_with(&format!("/{}.jpg", seqs[1]))));
    let auto = s.automation();
    assert!(
        auto["counters"]["retention_deleted"].as_u64().unwrap() >= seqs[0] - 1,
        "retention_deleted: {auto}"
    );

    // max_age_s = 2 with a sweep every second: pictures older than ~3 s are gone.
    poll(
        WAIT,
        "max_age_s to delete the first pictures of live/b",
        || {
            let rows = s.seq_rows("live", "b", "age");
            let lowest = rows
                .first()
                .map(|r| r["sequence"].as_u64().unwrap())
                .unwrap_or(0);
            (lowest > 2).then_some(())
        },
    );
    let now = now_ms();
    for r in s.seq_rows("live", "b", "age") {
        let age = now - r["time_ms"].as_i64().unwrap();
        assert!(
            age <= 2000 + 1000 + 1500,
            "row {age} ms old with max_age_s = 2: {r}"
        );
    }
    pb.assert_running();
    pb.kill();
    s.wait_gone("live", "b", None);
    // Once nothing new comes, everything ages out: rows and files.
    poll(WAIT, "every picture of live/b to age out", || {
        (s.rows("stream=b").is_empty() && files_under(&s.local_root().join("a/b")).is_empty())
            .then_some(())
    });
    // keep_last pictures are not touched by the sweeper.
    assert_eq!(s.rows("stream=a").len(), 2);
}

#[test]
fn auto_snapshot_files_api_and_batch_delete() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let s = Server::start_in(work.path(), &[], &[], None);
    s.create_template(json!({"name": "t", "every_n_frames": 10}));
    s.bind(json!({"app": "live", "stream": "cam1", "template": "t"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_rows("stream=cam1", 10, "10 pictures");
    p.assert_running();
    p.kill();
    s.wait_gone("live", "cam1", None);
    let rows = s.settled_rows("stream=cam1", Duration::from_millis(1500));
    let n = rows.len();

    // Pages of 3, newest first, together the whole list.
    let mut paged = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/v1/snapshots?stream=cam1&limit=3".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let v = s.expect(s.get(&path), 200, &path);
        let items = v["items"].as_array().unwrap().clone();
        assert!(items.len() <= 3);
        pages += 1;
        paged.extend(items);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages <= n, "pagination does not end");
    }
    assert_eq!(paged, rows, "pages of 3 vs the whole list");
    assert!(pages >= n.div_ceil(3));
    let times: Vec<i64> = rows
        .iter()
        .map(|r| r["time_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    // Time range: between the 3rd and 4th newest, up to between the 7th and 8th.
    let from = (times[7] + times[6]) / 2;
    let to = (times[3] + times[2]) / 2;
    assert!(
        times[6] > times[7] && times[2] > times[3],
        "pictures at the same ms: {times:?}"
    );
    let ranged = s.rows(&format!(
        "stream=cam1&from={}&to={}",
        enc(&rfc3339(from)),
        enc(&rfc3339(to))
    ));
    assert_eq!(ranged, rows[3..=6].to_vec(), "from/to");
    // Filters that match nothing.
    assert!(s.rows("stream=cam1&job=other").is_empty());
    assert!(s.rows("stream=cam1&mode=overwrite").is_empty());
    assert!(s.rows("app=nope").is_empty());
    assert_eq!(
        s.rows("domain=_default&app=live&stream=cam1&job=t&mode=sequence"),
        rows
    );

    // Batch delete: three rows and one unknown id, a result per id in order.
    let del: Vec<String> = [0, 4, 8]
        .iter()
        .map(|&i| rows[i]["id"].as_str().unwrap().to_string())
        .collect();
    let ids = vec![
        del[0].clone(),
        "no-such-snapshot".to_string(),
        del[1].clone(),
        del[2].clone(),
    ];
    let v = s.expect(
        s.post_json("/v1/snapshots/batch-delete", &json!({"ids": ids})),
        200,
        "batch-delete",
    );
    let results = v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {v}"));
    assert_eq!(results.len(), 4, "{v}");
    for (res, id) in results.iter().zip(&ids) {
        assert_eq!(&res["id"], id, "{v}");
        let want = id != "no-such-snapshot";
        assert_eq!(res["deleted"], want, "{res}");
        if !want {
            assert!(
                res["error"].is_string(),
                "an unknown id has an error: {res}"
            );
        }
    }
    for (i, id) in [0, 4, 8].iter().zip(&del) {
        assert_eq!(s.get(&format!("/v1/snapshots/{id}")).status, 404);
        assert_eq!(s.get(&format!("/v1/snapshots/{id}/image")).status, 404);
        let f = s.local_root().join(rows[*i]["key"].as_str().unwrap());
        assert!(
            !f.exists(),
            "{} still exists after batch delete",
            f.display()
        );
    }
    let left = s.rows("stream=cam1");
    assert_eq!(left.len(), n - 3);
    for r in &left {
        check_local_object(&s, r);
    }
    // The same ids again: nothing left to delete.
    let v = s.expect(
        s.post_json("/v1/snapshots/batch-delete", &json!({"ids": del})),
        200,
        "again",
    );
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["deleted"] == false),
        "{v}"
    );

    // More than 200 ids: 400, and nothing is deleted.
    let mut many: Vec<String> = left
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    while many.len() < 201 {
        many.push(format!("unknown-{}", many.len()));
    }
    let r = s.post_json("/v1/snapshots/batch-delete", &json!({"ids": many}));
    assert_eq!(r.status, 400, "201 ids: {}", r.text());
    assert_eq!(
        s.rows("stream=cam1").len(),
        n - 3,
        "a refused batch deleted rows"
    );
    // Exactly 200 is fine.
    many.truncate(200);
    let v = s.expect(
        s.post_json("/v1/snapshots/batch-delete", &json!({"ids": many})),
        200,
        "200 ids",
    );
    assert_eq!(v["results"].as_array().unwrap().len(), 200);
    assert!(
        s.rows("stream=cam1").is_empty(),
        "200 ids including every row"
    );
    assert!(
        files_under(&s.local_root()).is_empty(),
        "files left after deleting every row: {:?}",
        files_under(&s.local_root())
    );
}

#[test]
fn auto_single_delete() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 3);
    let s = Server::start_in(work.path(), &[], &[], None);
    s.create_template(
        json!({"name": "t", "every_n_frames": 25, "modes": ["overwrite", "sequence"]}),
    );
    s.bind(json!({"app": "live", "template": "t"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_rows("stream=cam1&mode=sequence", 2, "pictures");
    p.kill();
    s.wait_gone("live", "cam1", None);
    let rows = s.settled_rows("stream=cam1", Duration::from_millis(1500));
    for r in &rows {
        let id = r["id"].as_str().unwrap();
        let f = s.local_root().join(r["key"].as_str().unwrap());
        assert!(f.is_file());
        let resp = s.delete(&format!("/v1/snapshots/{id}"));
        assert_eq!(resp.status, 204, "DELETE {id}: {}", resp.text());
        assert!(!f.exists(), "{} left after DELETE", f.display());
        assert_eq!(s.get(&format!("/v1/snapshots/{id}")).status, 404);
        assert_eq!(
            s.delete(&format!("/v1/snapshots/{id}")).status,
            404,
            "second DELETE"
        );
    }
    assert!(s.rows("stream=cam1").is_empty());
}

/// POSTs a template that must be refused with 400 naming `field`.
fn refused(s: &Server, body: Value, fields: &[&str]) {
    let r = s.post_json("/v1/templates", &body);
    assert_eq!(
        r.status,
        400,
        "POST /v1/templates {body}: {} {}",
        r.status,
        r.text()
    );
    let v = r.json();
    assert_eq!(v["status"], 400, "{v}");
    let err = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text: {v}"));
    let field = v["field"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}: no field in {v}"));
    assert!(
        fields.contains(&field),
        "{body}: field {field:?}, want one of {fields:?}: {v}"
    );
    assert!(
        err.starts_with(&format!("{field}: ")),
        "{body}: error {err:?} does not start with the field"
    );
}

#[test]
fn auto_bad_input() {
    let work = workdir();
    let s = Server::start_in(work.path(), &[], &[], None);
    let ok = |f: Value| template_json("t", f);
    for (body, fields) in [
        (json!({"name": "", "interval_s": 5}), &["name"][..]),
        (json!({"name": "../t", "interval_s": 5}), &["name"]),
        (json!({"name": "a b", "interval_s": 5}), &["name"]),
        (json!({"name": "x".repeat(65), "interval_s": 5}), &["name"]),
        (ok(json!({})), &["interval_s", "every_n_frames"]),
        (ok(json!({"interval_s": 0})), &["interval_s"]),
        (ok(json!({"interval_s": 86401})), &["interval_s"]),
        (
            ok(json!({"interval_s": 5, "every_n_frames": 3})),
            &["interval_s", "every_n_frames"],
        ),
        (ok(json!({"every_n_frames": 0})), &["every_n_frames"]),
        (ok(json!({"interval_s": 5, "format": "gif"})), &["format"]),
        (ok(json!({"interval_s": 5, "quality": 0})), &["quality"]),
        (ok(json!({"interval_s": 5, "quality": 101})), &["quality"]),
        (ok(json!({"interval_s": 5, "width": 0})), &["width"]),
        (ok(json!({"interval_s": 5, "width": 99999})), &["width"]),
        (ok(json!({"interval_s": 5, "height": 0})), &["height"]),
        (
            ok(json!({"interval_s": 5, "storage": "nowhere"})),
            &["storage"],
        ),
        (
            ok(json!({"interval_s": 5, "storage": "../x"})),
            &["storage"],
        ),
        (ok(json!({"interval_s": 5, "modes": []})), &["modes"]),
        (ok(json!({"interval_s": 5, "modes": ["both"]})), &["modes"]),
        (
            ok(json!({"interval_s": 5, "modes": ["sequence", "sequence"]})),
            &["modes"],
        ),
        (
            ok(json!({"interval_s": 5, "modes": ["overwrite"], "overwrite_path": "../x.jpg"})),
            &["overwrite_path"],
        ),
        (
            ok(
                json!({"interval_s": 5, "modes": ["overwrite"], "overwrite_path": "/abs/{StreamName}.jpg"}),
            ),
            &["overwrite_path"],
        ),
        (
            ok(json!({"interval_s": 5, "modes": ["overwrite"], "overwrite_path": "a\\b.jpg"})),
            &["overwrite_path"],
        ),
        (
            ok(json!({"interval_s": 5, "modes": ["overwrite"], "overwrite_path": "a//b.jpg"})),
            &["overwrite_path"],
        ),
        (
            ok(json!({"interval_s": 5, "modes": ["overwrite"], "overwrite_path": "x/{Nope}.jpg"})),
            &["overwrite_path"],
        ),
        (
            ok(
                json!({"interval_s": 5, "modes": ["overwrite"], "overwrite_path": "x/{StreamName.jpg"}),
            ),
            &["overwrite_path"],
        ),
        (
            ok(json!({"interval_s": 5, "modes": ["overwrite"], "overwrite_path": ""})),
            &["overwrite_path"],
        ),
        (
            ok(json!({"interval_s": 5, "sequence_path": "s/{StreamName}.jpg"})),
            &["sequence_path"],
        ),
        (
            ok(json!({"interval_s": 5, "sequence_path": "s/../{Sequence}.jpg"})),
            &["sequence_path"],
        ),
        (
            ok(json!({"interval_s": 5, "retention": {"keep_last": 0}})),
            &["retention.keep_last"],
        ),
        (
            ok(json!({"interval_s": 5, "retention": {"max_age_s": 0}})),
            &["retention.max_age_s"],
        ),
        (
            ok(json!({"interval_s": 5, "callback_url": "ftp://example.com/x"})),
            &["callback_url"],
        ),
        (
            ok(json!({"interval_s": 5, "callback_url": "not a url"})),
            &["callback_url"],
        ),
    ] {
        refused(&s, body, fields);
    }
    // Unknown fields, wrong types and broken JSON: 400 too.
    for body in [
        r#"{"name":"t","interval_s":5,"colour":"red"}"#,
        r#"{"name":"t","interval_s":5,"retention":{"keep":1}}"#,
        r#"{"name":"t","interval_s":"5"}"#,
        r#"{"name":"t","interval_s":-1}"#,
        r#"{"name":"t","interval_s":5,"quality":300}"#,
        r#"{"name":"t","interval_s":5,"modes":"sequence"}"#,
        r#"{"name":"t","interval_s":5"#,
        r#"[]"#,
        "",
    ] {
        let r = s.post("/v1/templates", body);
        assert_eq!(
            r.status,
            400,
            "POST /v1/templates {body}: {} {}",
            r.status,
            r.text()
        );
        let v = r.json();
        assert!(v["error"].is_string(), "{body}: {v}");
    }
    let v = s.expect(s.get("/v1/templates"), 200, "templates");
    assert_eq!(
        v["templates"],
        json!([]),
        "a refused template was saved: {v}"
    );

    // A good one; a second with the same name is a conflict.
    s.create_template(json!({"name": "t", "interval_s": 5}));
    let r = s.post_json("/v1/templates", &json!({"name": "t", "interval_s": 6}));
    assert_eq!(
        r.status,
        409,
        "duplicate template: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(s.get("/v1/templates/nope").status, 404);
    // PUT replaces (fields not given go back to defaults), refuses bad values and other names.
    let v = s.expect(
        s.put(
            "/v1/templates/t",
            &json!({"name": "t", "every_n_frames": 50, "format": "png"}),
        ),
        200,
        "PUT",
    );
    assert_eq!(v["every_n_frames"], 50);
    assert!(
        v.get("interval_s").is_none() || v["interval_s"].is_null(),
        "{v}"
    );
    assert_eq!(
        s.expect(s.get("/v1/templates/t"), 200, "GET")["format"],
        "png"
    );
    let r = s.put(
        "/v1/templates/t",
        &json!({"name": "t", "every_n_frames": 0}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "every_n_frames");
    assert_eq!(
        s.expect(s.get("/v1/templates/t"), 200, "GET")["every_n_frames"],
        50,
        "a refused PUT changed the template"
    );
    let r = s.put(
        "/v1/templates/t",
        &json!({"name": "other", "interval_s": 5}),
    );
    assert_eq!(r.status, 400, "PUT with another name: {}", r.text());
    let r = s.put("/v1/templates/nope", &json!({"interval_s": 5}));
    assert_eq!(r.status, 404, "PUT of an unknown template: {}", r.text());

    // Bindings.
    for (body, field) in [
        (json!({"app": "live", "template": "nope"}), Some("template")),
        (
            json!({"app": "*", "stream": "cam1", "template": "t"}),
            Some("stream"),
        ),
        (json!({"app": "a/b", "template": "t"}), Some("app")),
        (json!({"app": "live"}), None),
        (json!({"app": "live", "template": "t", "extra": 1}), None),
    ] {
        let r = s.post_json("/v1/bindings", &body);
        assert_eq!(
            r.status,
            400,
            "POST /v1/bindings {body}: {} {}",
            r.status,
            r.text()
        );
        if let Some(f) = field {
            assert_eq!(r.json()["field"], f, "{body}: {}", r.text());
        }
    }
    assert_eq!(
        s.expect(s.get("/v1/bindings"), 200, "bindings")["bindings"],
        json!([])
    );
    s.bind(json!({"app": "live", "template": "t"}));
    let r = s.delete("/v1/templates/t");
    assert_eq!(
        r.status,
        409,
        "deleting a template in use: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(s.get("/v1/templates/t").status, 200);
    assert_eq!(s.delete("/v1/bindings?app=live&stream=nope").status, 404);
    assert_eq!(s.delete("/v1/bindings?app=live&stream=*").status, 204);
    assert_eq!(s.delete("/v1/templates/t").status, 204);
    assert_eq!(s.get("/v1/templates/t").status, 404);
    assert_eq!(s.delete("/v1/templates/t").status, 404);

    // The snapshot list refuses what it cannot read.
    for q in [
        "from=yesterday",
        "to=2024-13-01T00:00:00Z",
        "from=2024-01-01",
        "cursor=not-a-cursor",
        "cursor=%00%01",
        "limit=0",
        "limit=1000000",
        "limit=-1",
        "mode=both",
        "colour=red",
    ] {
        let r = s.get(&format!("/v1/snapshots?{q}"));
        assert_eq!(
            r.status,
            400,
            "GET /v1/snapshots?{q}: {} {}",
            r.status,
            r.text()
        );
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(
        s.get("/v1/snapshots?from=2024-01-01T00:00:00%2B02:00")
            .status,
        200
    );
    assert_eq!(s.get("/v1/snapshots/nope").status, 404);
    assert_eq!(s.get("/v1/snapshots/nope/image").status, 404);
    assert_eq!(s.delete("/v1/snapshots/nope").status, 404);
    for body in [r#"{"id":["x"]}"#, r#"{"ids":"x"}"#, "nope"] {
        let r = s.post("/v1/snapshots/batch-delete", body);
        assert_eq!(
            r.status,
            400,
            "batch-delete {body}: {} {}",
            r.status,
            r.text()
        );
    }
}
