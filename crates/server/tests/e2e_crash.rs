//! The crash suite against the real binary: cycles of `kill -9` while automatic pictures are
//! made five times a second (sequence and overwrite) and the template changes, each followed by
//! a restart on the same data. At the end: every index row has its object and every object its
//! row, no staging file is left, no sequence number is used twice, and every stored picture's
//! `snapshot.stored` was delivered (at least once, by its event id).

#[path = "common/auto.rs"]
mod auto;
mod common;

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
    let rows = assert_nothing_lost(
        &s,
        &s.local_root(),
        &hooks,
        "job=fast",
        Duration::from_millis(700),
    );
    assert!(rows.len() as u64 >= 2 * CYCLES, "{} rows", rows.len());
    eprintln!("after {CYCLES} kills");
}
