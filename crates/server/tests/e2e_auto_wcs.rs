//! End-to-end: the WCS automatic-snapshot settings (`snapshot_auto_*`): PNGs numbered 1, 2, 3...
//! in a folder per stream (or per media session), every N frames, keep-last retention, numbering
//! that continues when the stream is published again, pictures that are the stream (PSNR). And
//! hostile app and stream names published over RTMP: no stored key leaves its storage root.

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use auto::*;
use common::*;
use serde_json::json;

/// The numbers n of the `<n>.png` files in `dir`; panics on any other file.
fn numbers(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = files_under(dir)
        .iter()
        .map(|p| {
            let name = p.to_string_lossy();
            name.strip_suffix(".png")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected file {name:?} in {}", dir.display()))
        })
        .collect();
    out.sort();
    out
}

/// Polls until the files of `dir` are the same twice 1.5 s apart.
fn settled_numbers(dir: &Path) -> Vec<u64> {
    poll(
        WAIT,
        &format!("files in {} to settle", dir.display()),
        || {
            let a = numbers(dir);
            thread::sleep(Duration::from_millis(1500));
            (numbers(dir) == a).then_some(a)
        },
    )
}

#[test]
fn auto_wcs_numbering_retention_and_content() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 4);
    let dir = work.path().join("wcs");
    let s = Server::start_in(
        work.path(),
        &[
            ("LIVESNAP_SNAPSHOT_AUTO_ENABLED", "true"),
            ("LIVESNAP_SNAPSHOT_AUTO_RATE", "10"),
            ("LIVESNAP_SNAPSHOT_AUTO_RETENTION", "4"),
            ("LIVESNAP_SNAPSHOT_AUTO_DIR", dir.to_str().unwrap()),
        ],
        &[],
        None,
    );
    // A stream a binding matches is not a WCS automatic stream.
    s.create_template(json!({"name": "bound", "interval_s": 5}));
    s.bind(json!({"app": "live", "stream": "bound", "template": "bound"}));
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    let _pb = Publisher::start(&src.path, &s.rtmp_url("live", "bound"));
    let folder = dir.join("cam1");

    // Every 10 frames at 25 fps: 2.5 pictures a second, counted over a window.
    poll(WAIT, "the first WCS picture", || {
        numbers(&folder).last().copied()
    });
    let n0 = *numbers(&folder).last().unwrap();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(4);
    while Instant::now() < deadline {
        let ns = numbers(&folder);
        // keep last 4 (one more may be in flight)
        assert!(
            ns.len() <= 5,
            "snapshot_auto_retention = 4 but {} files: {ns:?}",
            ns.len()
        );
        thread::sleep(Duration::from_millis(200));
    }
    let n1 = *numbers(&folder).last().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let made = (n1 - n0) as f64;
    eprintln!("{made} WCS pictures in {secs:.2} s");
    assert!(
        made >= (2.5 * secs - 4.0).floor() && made <= (2.5 * secs + 4.0).ceil(),
        "snapshot_auto_rate = 10 at 25 fps made {made} pictures in {secs:.2} s (want about 2.5 a second)"
    );
    p.assert_running();
    p.kill();
    s.wait_gone("live", "cam1", None);
    let ns = settled_numbers(&folder);
    let max = *ns.last().unwrap();
    assert!(max >= 8, "{ns:?}");
    assert_eq!(
        ns,
        (max - 3..=max).collect::<Vec<_>>(),
        "the 4 newest are kept"
    );
    for n in &ns {
        let bytes = fs::read(folder.join(format!("{n}.png"))).unwrap();
        let img = assert_shows_source(&src, &bytes, 30.0, &format!("WCS {n}.png"));
        assert_eq!(img.kind, ImageKind::Png);
        assert_eq!((img.width, img.height), (320, 180));
    }
    // The bound stream went by its binding, not into the WCS folder.
    assert!(
        !dir.join("bound").exists(),
        "a bound stream got WCS pictures"
    );
    let bound = s.wait_rows("stream=bound", 1, "pictures of the bound stream");
    assert!(bound.iter().all(|r| r["job"] == "bound"), "{bound:?}");

    // Published again: the numbering goes on from max + 1.
    let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    poll(WAIT, "the numbering to continue after republish", || {
        numbers(&folder)
            .last()
            .is_some_and(|&n| n >= max + 5)
            .then_some(())
    });
    p.assert_running();
    p.kill();
    s.wait_gone("live", "cam1", None);
    let ns2 = settled_numbers(&folder);
    let max2 = *ns2.last().unwrap();
    assert_eq!(
        ns2,
        (max2 - 3..=max2).collect::<Vec<_>>(),
        "after republish: {ns2:?}"
    );
    assert!(
        ns2[0] > max,
        "numbers after republish {ns2:?} do not continue after {max}"
    );
    let bytes = fs::read(folder.join(format!("{max2}.png"))).unwrap();
    assert_shows_source(&src, &bytes, 30.0, "WCS picture after republish");
}

#[test]
fn auto_wcs_media_session_folders() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 3);
    let hook = Receiver::start(vec![], 200);
    let s = Server::start_in(
        work.path(),
        &[
            ("LIVESNAP_SNAPSHOT_AUTO_ENABLED", "true"),
            ("LIVESNAP_SNAPSHOT_AUTO_RATE", "25"),
            ("LIVESNAP_SNAPSHOT_AUTO_NAMING", "mediaSessionId"),
            ("LIVESNAP_CALLBACK_URL", &hook.url("/")),
        ],
        &[],
        None,
    );
    // The default folder: <data_dir>/snapshot-auto.
    let dir = s.data.join("snapshot-auto");
    let folders = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut sessions = vec![];
    for round in 1..=2 {
        let mut p = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
        poll(WAIT, "a picture in a new media session folder", || {
            (folders(&dir).len() == round && folders(&dir).iter().all(|f| !numbers(f).is_empty()))
                .then_some(())
        });
        let ev = hook.wait_event("stream.published", None, "stream.published");
        let _ = ev;
        p.assert_running();
        p.kill();
        s.wait_gone("live", "cam1", None);
        let published = hook.events("stream.published");
        assert_eq!(published.len(), round);
        sessions.push(
            published[round - 1].json()["data"]["media_session_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let names: HashSet<String> = folders(&dir)
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_ne!(
        sessions[0], sessions[1],
        "two publishes, one media session id"
    );
    assert_eq!(
        names,
        sessions.iter().cloned().collect::<HashSet<_>>(),
        "folders vs media session ids of the two publishes"
    );
    assert!(!names.contains("cam1"));
    for f in folders(&dir) {
        let ns = numbers(&f);
        assert!(
            !ns.is_empty() && ns.iter().all(|&n| n >= 1),
            "{}: {ns:?}",
            f.display()
        );
        let bytes = fs::read(f.join(format!("{}.png", ns[0]))).unwrap();
        assert_shows_source(&src, &bytes, 30.0, "media-session WCS picture");
    }
}

/// What a key may not contain if it is to stay under its root.
fn assert_safe_key(key: &str) {
    assert!(!key.is_empty() && !key.starts_with('/'), "key {key:?}");
    assert!(!key.contains('\\'), "key {key:?} holds a backslash");
    assert!(
        !key.chars().any(|c| c.is_control()),
        "key {key:?} holds a control character"
    );
    for seg in key.split('/') {
        assert!(
            seg != "." && seg != ".." && !seg.is_empty(),
            "key {key:?} has segment {seg:?}"
        );
        assert!(
            seg.len() <= 255,
            "key {key:?} has a segment longer than a file name may be"
        );
    }
}

#[test]
fn auto_hostile_names_stay_under_the_storage_root() {
    let work = workdir();
    let src = per_second_source(work.path(), "src", 3);
    let root = work.path().join("a/b/c/root");
    let config = format!(
        "[storage.deep]\nkind = \"local\"\nroot = \"{}\"\n",
        root.display()
    );
    let mut s = Server::start_in(work.path(), &[], &[], Some(&config));
    s.create_template(json!({
        "name": "h", "every_n_frames": 25, "width": 64, "storage": "deep",
        "modes": ["overwrite", "sequence"],
        "overwrite_path": "{AppName}/{StreamName}.{Format}",
        "sequence_path": "{AppName}/{StreamName}/{Sequence}-{JobId}.{Format}"
    }));
    s.bind(json!({"app": "*", "template": "h"}));
    let before: HashSet<PathBuf> = files_under(work.path()).into_iter().collect();

    let long128 = "x".repeat(128);
    let long129 = "y".repeat(129);
    // (app, stream, must): Some(true) must be accepted, Some(false) must be refused, None either.
    let cases: Vec<(&str, &str, Option<bool>)> = vec![
        ("live", "..", None),
        ("live", ".", None),
        ("live", "a\\b", None),
        ("live", "..\\..\\..\\..\\x", None),
        ("..", "cam", None),
        ("live", "ctl\u{1}\u{7f}x", None),
        ("live", "nul\0x", None),
        ("live", "a/b", Some(false)),
        ("live", "../../../../x", Some(false)),
        ("live", long129.as_str(), Some(false)),
        ("live", "%2e%2e", Some(true)),
        ("live", "...", Some(true)),
        ("live", " .. ", Some(true)),
        ("live", "..%2f..%2f..%2fetc", Some(true)),
        ("live", long128.as_str(), Some(true)),
        ("%2e%2e", "cam", Some(true)),
        ("live", "é..ü~$*", Some(true)),
    ];
    let mut live: Vec<(String, String)> = vec![];
    let mut feeders = vec![];
    for (app, stream, must) in &cases {
        let tc_url = format!("rtmp://{}/{app}", s.rtmp);
        match rtmp::Publisher::try_start(&s.rtmp, &tc_url, app, stream) {
            Ok(publisher) => {
                assert_ne!(
                    *must,
                    Some(false),
                    "publish of {app:?}/{stream:?} was accepted"
                );
                feeders.push(publisher.feed_looped(rtmp::flv_tags(&src.path)));
                live.push((app.to_string(), stream.to_string()));
            }
            Err(why) => {
                assert_ne!(
                    *must,
                    Some(true),
                    "publish of {app:?}/{stream:?} was refused: {why}"
                );
                eprintln!("{app:?}/{stream:?} refused: {why}");
            }
        }
    }
    // A real client too: ffmpeg with an escaped name in its URL.
    let ff_name = "%2e%2e%5c%2e%2e";
    let mut ff = Publisher::start(&src.path, &s.rtmp_url("live", ff_name));
    eprintln!("accepted: {live:?}");

    // Every accepted stream gets pictures, all inside the root.
    let mut want: Vec<(String, String)> = live.clone();
    let ff_stream = poll(WAIT, "the ffmpeg publisher's stream to be live", || {
        let v = s.expect(s.get("/v1/streams"), 200, "GET /v1/streams");
        let list = v["streams"]
            .as_array()
            .cloned()
            .or_else(|| v.as_array().cloned())
            .unwrap_or_default();
        list.iter()
            .find(|x| {
                x["app"] == "live"
                    && x["stream"].as_str().is_some_and(|n| n.contains("2e"))
                    && x["stream"] != "%2e%2e"
            })
            .map(|x| x["stream"].as_str().unwrap().to_string())
    });
    want.push(("live".into(), ff_stream));
    for (app, stream) in &want {
        s.wait_rows(
            &format!("app={}&stream={}&mode=sequence", enc(app), enc(stream)),
            2,
            &format!("pictures of {app:?}/{stream:?}"),
        );
    }
    for f in &mut feeders {
        f.stop();
    }
    ff.assert_running();
    ff.kill();
    s.settled_rows("", Duration::from_millis(1500));
    s.assert_alive();

    let rows = s.rows("");
    let canon_root = fs::canonicalize(&root).unwrap();
    for (app, stream) in &want {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r["app"] == app.as_str() && r["stream"] == stream.as_str())
            .collect();
        assert!(
            mine.iter().any(|r| r["mode"] == "overwrite"),
            "{app:?}/{stream:?}: no overwrite row"
        );
        assert!(mine.iter().filter(|r| r["mode"] == "sequence").count() >= 2);
    }
    let mut keys = HashSet::new();
    for r in &rows {
        let key = r["key"].as_str().unwrap();
        assert_safe_key(key);
        let path = root.join(key);
        let canon = fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("row {r}: no file {}: {e}", path.display()));
        assert!(
            canon.starts_with(&canon_root),
            "{} is outside the root",
            canon.display()
        );
        assert!(
            keys.insert(key.to_string()),
            "two rows share the key {key:?}"
        );
        assert_eq!(
            s.image(r["id"].as_str().unwrap()),
            fs::read(&canon).unwrap()
        );
    }
    // The names that the contract sanitizes show up with `_`, and distinct streams never
    // share a folder.
    let mut folders: HashSet<String> = HashSet::new();
    for (app, stream) in &want {
        let seq: Vec<_> = rows
            .iter()
            .filter(|r| {
                r["app"] == app.as_str()
                    && r["stream"] == stream.as_str()
                    && r["mode"] == "sequence"
            })
            .collect();
        let key = seq[0]["key"].as_str().unwrap();
        let folder = key.rsplit_once('/').unwrap().0.to_string();
        eprintln!("{app:?}/{stream:?} -> {folder:?}");
        assert!(
            folders.insert(folder.clone()),
            "{app:?}/{stream:?} shares folder {folder:?} with another stream"
        );
        if stream == ".." || stream == "." {
            assert!(folder.ends_with("/_"), "{stream:?} gives folder {folder:?}");
        }
        if stream.contains('\\') {
            assert!(
                folder.ends_with(&stream.replace('\\', "_")),
                "{stream:?} gives folder {folder:?}"
            );
        }
    }

    // Nothing new anywhere in the work dir but under the root and the server's own data.
    let after: Vec<PathBuf> = files_under(work.path())
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    for p in &after {
        let ok = p.starts_with("a/b/c/root")
            || p.starts_with("data")
            || (p.components().count() == 1 && p.to_string_lossy().starts_with("server"));
        assert!(
            ok,
            "a file appeared outside the storage root: {}",
            p.display()
        );
        if p.starts_with("data") {
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(
                ext != "jpg" && ext != "png",
                "a picture in the data dir: {}",
                p.display()
            );
        }
    }
    assert!(files_under(&s.local_root()).is_empty());

    // The server is fine: a normal stream still gets pictures.
    let _ok = Publisher::start(&src.path, &s.rtmp_url("live", "ok"));
    s.wait_rows(
        "app=live&stream=ok&mode=sequence",
        2,
        "a normal stream after the hostile ones",
    );
    s.assert_alive();
    assert_eq!(s.get("/healthz").status, 200);
}
