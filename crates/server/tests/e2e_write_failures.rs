//! Writes that fail, against the real binary, while automatic pictures are made five times a
//! second (sequence and overwrite):
//! - a full disk under the pictures and the SQLite index (a small tmpfs, filled, then freed);
//! - a PostgreSQL index that fails on demand (its `snapshots`, then its `write_intents` table
//!   renamed away, then back).
//!
//! Every picture the server accepted (given a sequence number) goes to the spool when its write
//! or its row fails, and is stored and indexed once the failure ends: then rows and objects are
//! the same set, the sequence numbers are contiguous (none consumed without a row), every
//! `snapshot.stored` is delivered, and the log says "spooled for retry", never "picture lost".

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use auto::*;
use common::*;
use serde_json::{json, Value};

/// A tmpfs mounted over a folder for the test's life (the tests run as root, as CI does).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs on {} (the full-disk test needs root, as CI has): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with one file until it is full; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    let block = vec![0x5a_u8; 64 << 10];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // What is left of a partial block, byte by byte.
    while f.write_all(&[0]).is_ok() {}
    path
}

fn counter(s: &Server, name: &str) -> u64 {
    s.automation()["counters"][name].as_u64().unwrap()
}

/// Polls until `n` more pictures than `from` were spooled.
fn wait_spooled(s: &Server, from: u64, n: u64, what: &str) -> u64 {
    poll(WAIT, what, || {
        let spooled = counter(s, "spooled");
        (spooled >= from + n).then_some(spooled)
    })
}

/// Polls until the spool is empty and `n` more pictures than `from` were stored.
fn wait_drained(s: &Server, from: u64, n: u64, what: &str) {
    poll(WAIT, what, || {
        let a = s.automation();
        (a["spool"]["queued"] == 0 && a["counters"]["stored"].as_u64().unwrap() >= from + n)
            .then_some(())
    });
}

const TEMPLATE: &str = "fast";

fn template() -> Value {
    template_json(
        TEMPLATE,
        json!({"every_n_frames": 5, "width": 160, "modes": ["sequence", "overwrite"]}),
    )
}

/// After the publisher stopped: nothing lost, sequence numbers contiguous, the log plain.
fn assert_all_stored(s: &Server, hooks: &Receiver, query: &str, spooled: u64) {
    let rows = assert_nothing_lost(s, &s.local_root(), hooks, query, Duration::from_millis(700));
    let seq: Vec<Value> = rows
        .iter()
        .filter(|r| r["mode"] == "sequence")
        .cloned()
        .collect();
    let mut numbers = sequences(&seq);
    numbers.sort_unstable();
    assert_contiguous(&numbers, 1, "sequence rows after the failures");
    let a = s.automation();
    assert_eq!(a["spool"]["queued"], 0, "{a}");
    assert_eq!(a["spool"]["bad"], 0, "{a}");
    let log = s.log_text();
    assert!(!log.contains("picture lost"), "{}", s.log_tail(40));
    assert!(log.contains("spooled for retry"), "{}", s.log_tail(40));
    eprintln!(
        "{} sequence rows, {spooled} pictures spooled and then stored; counters {}",
        numbers.len(),
        a["counters"]
    );
}

#[test]
fn a_full_disk_under_pictures_and_index_loses_no_accepted_picture() {
    let work = workdir();
    // The data folder (the SQLite index, the `local` pictures) on a small file system of its
    // own; the spool elsewhere.
    let data = work.path().join("data");
    let _disk = Tmpfs::mount(&data, "16m");
    let src = per_second_source(work.path(), "disk", 8);
    let hooks = Receiver::start(vec![], 200);
    let hook = hooks.url("/hook");
    let spool = work.path().join("spool");
    let s = Server::start_in(
        work.path(),
        &[("LIVESNAP_CALLBACK_URL", hook.as_str())],
        &["--spool-dir", spool.to_str().unwrap()],
        None,
    );
    // `cam` in both modes: on the full disk its sequence number cannot be taken, so its
    // pictures are refused before they are accepted (counted failed). `over` in overwrite mode
    // only: accepted, then neither its intent nor its object can be written, so it is spooled.
    s.create_template(template());
    s.create_template(template_json(
        "over",
        json!({"every_n_frames": 5, "width": 160, "modes": ["overwrite"]}),
    ));
    s.bind(json!({"app": "live", "stream": "cam", "template": TEMPLATE}));
    s.bind(json!({"app": "live", "stream": "over", "template": "over"}));
    let cam = Publisher::start(&src.path, &s.rtmp_url("live", "cam"));
    let over = Publisher::start(&src.path, &s.rtmp_url("live", "over"));
    s.wait_rows("job=fast", 4, "pictures before the disk fills");
    s.wait_rows("job=over", 1, "the overwrite picture before the disk fills");

    let filler = fill(&data);
    let spooled = wait_spooled(&s, 0, 6, "pictures spooled while the disk is full");
    let refused = poll(WAIT, "pictures refused while the disk is full", || {
        let failed = counter(&s, "failed");
        (failed > 0).then_some(failed)
    });
    let stored = counter(&s, "stored");
    fs::remove_file(&filler).unwrap();
    wait_drained(
        &s,
        stored,
        spooled,
        "the spool to drain once the disk has room",
    );

    drop((cam, over));
    s.wait_gone("live", "cam", None);
    s.wait_gone("live", "over", None);
    assert!(s
        .log_text()
        .contains("automatic snapshot failed stream=_default/live/cam error=index database"));
    eprintln!("{refused} pictures refused (not accepted) while the disk was full");
    assert_all_stored(&s, &hooks, "app=live", counter(&s, "spooled"));
}

#[test]
fn an_index_failing_on_demand_loses_no_accepted_picture() {
    let work = workdir();
    let index = fresh_database("failing");
    let src = per_second_source(work.path(), "index", 8);
    let hooks = Receiver::start(vec![], 200);
    let hook = hooks.url("/hook");
    let s = Server::start_in(
        work.path(),
        &[("LIVESNAP_CALLBACK_URL", hook.as_str())],
        &["--index", &index],
        None,
    );
    s.create_template(template());
    s.bind(json!({"app": "live", "template": TEMPLATE}));
    let publisher = Publisher::start(&src.path, &s.rtmp_url("live", "cam"));
    s.wait_rows("job=fast", 4, "pictures before the index fails");

    // Rows cannot be written (the write intent can: the object is stored, then its row fails),
    // then intents cannot be written (nothing is stored): each until the table is back.
    for table in ["snapshots", "write_intents"] {
        let before = counter(&s, "spooled");
        postgres_execute(
            &index,
            &format!("ALTER TABLE {table} RENAME TO {table}_away"),
        );
        let spooled = wait_spooled(
            &s,
            before,
            6,
            &format!("pictures spooled while {table} is away"),
        );
        let stored = counter(&s, "stored");
        postgres_execute(
            &index,
            &format!("ALTER TABLE {table}_away RENAME TO {table}"),
        );
        wait_drained(
            &s,
            stored,
            spooled - before,
            &format!("the spool to drain once {table} is back"),
        );
    }

    drop(publisher);
    s.wait_gone("live", "cam", None);
    assert_all_stored(&s, &hooks, "job=fast", counter(&s, "spooled"));
}
