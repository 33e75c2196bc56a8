//! The crash suite against the real binary: cycles of `kill -9` while automatic pictures are
//! made five times a second (sequence and overwrite) and the template changes, each followed by
//! a restart on the same data. At the end: every index row has its object and every object its
//! row, no staging file is left, no sequence number is used twice, and every stored picture's
//! `snapshot.stored` was delivered (at least once, by its event id).

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use auto::*;
use common::*;
use serde_json::json;

/// Kill cycles (each a start, a publish, pictures, a template change, then SIGKILL).
const CYCLES: u64 = 20;

#[test]
fn kill_9_loses_nothing_accepted() {
    let work = workdir();
    let src = per_second_source(work.path(), "crash", 8);
    let hooks = Receiver::start(vec![], 200);
    let hook = hooks.url("/hook");
    let env = [("LIVESNAP_CALLBACK_URL", hook.as_str())];

    {
        let s = Server::start_in(work.path(), &env, &[], None);
        s.create_template(template_json(
            "fast",
            json!({"every_n_frames": 5, "width": 160, "modes": ["sequence", "overwrite"]}),
        ));
        s.bind(json!({"app": "live", "template": "fast"}));
    }
    for cycle in 0..CYCLES {
        let s = Server::start_in(work.path(), &env, &[], None);
        let _p = Publisher::start(&src.path, &s.rtmp_url("live", "cam"));
        let before = s.rows("job=fast").len();
        s.wait_rows("job=fast", before + 2, "pictures before the kill");
        // A template change in the middle of the writes.
        let width = 160 + 16 * (cycle % 4);
        let r = s.put(
            "/v1/templates/fast",
            &template_json(
                "fast",
                json!({"every_n_frames": 5, "width": width, "modes": ["sequence", "overwrite"]}),
            ),
        );
        s.expect(r, 200, "PUT the template");
        // Where in the picture path the kill lands is left to chance, differently each cycle:
        // a pause of 0 to 550 ms (ordering only, nothing is asserted about it).
        std::thread::sleep(Duration::from_millis((cycle * 50) % 600));
        drop(s); // SIGKILL
    }

    // The last start: what the crashes left is reconciled before anything else is written.
    let s = Server::start_in(work.path(), &env, &[], None);
    let rows = s.settled_rows("job=fast", Duration::from_millis(700));
    assert!(rows.len() as u64 >= 2 * CYCLES, "{} rows", rows.len());

    // Rows and objects are the same set.
    let root = s.local_root();
    let objects: HashSet<String> = files_under(&root)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let staging: Vec<&String> = objects.iter().filter(|k| k.contains('#')).collect();
    assert!(staging.is_empty(), "staging files left: {staging:?}");
    let keys: HashSet<String> = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    let orphans: Vec<&String> = objects.difference(&keys).collect();
    let missing: Vec<&String> = keys.difference(&objects).collect();
    assert!(orphans.is_empty(), "objects without a row: {orphans:?}");
    assert!(missing.is_empty(), "rows without an object: {missing:?}");

    // No sequence number twice.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in rows.iter().filter(|r| r["mode"] == "sequence") {
        *seen.entry(r["sequence"].as_u64().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sequence numbers used twice: {twice:?}");

    // Every stored picture was announced: its row's id is in a delivered snapshot.stored.
    let ids: HashSet<String> = rows
        .iter()
        .filter(|r| r["mode"] == "sequence")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let announced = poll(WAIT, "every stored picture's snapshot.stored", || {
        let got: HashSet<String> = hooks
            .events("snapshot.stored")
            .iter()
            .filter_map(|r| r.json()["data"]["id"].as_str().map(str::to_string))
            .collect();
        ids.is_subset(&got).then_some(got)
    });
    eprintln!(
        "{CYCLES} kills: {} rows ({} sequence), {} objects, {} distinct snapshot.stored ids",
        rows.len(),
        ids.len(),
        objects.len(),
        announced.len()
    );
}
