//! The spool: pictures queue while their location fails, are delivered in order once it is
//! back, survive a crash, are dropped (and counted) only when the spool is full, and garbage in
//! the spool folder is moved aside.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{wait_until, S3Server};
use livesnap_store::{Error, Location, Spool, SpoolEntry};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn entry(location: &str, i: usize) -> SpoolEntry {
    SpoolEntry {
        location: location.into(),
        key: format!("live/cam1/{i:04}.jpg"),
        // Different sizes, so a mix-up would show.
        data: Bytes::from(vec![i as u8; 1000 + i * 37]),
        meta: json!({ "n": i, "stream": "cam1" }),
    }
}

/// Starts the delivery loop, whose delivery is a put to the entry's location; returns the
/// entries delivered (in order) and the task.
fn run(
    spool: &Arc<Spool>,
    locations: Vec<Arc<Location>>,
) -> (Arc<Mutex<Vec<SpoolEntry>>>, tokio::task::JoinHandle<()>) {
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let (spool, sink) = (spool.clone(), delivered.clone());
    let task = tokio::spawn(async move {
        let deliver = move |e: SpoolEntry| {
            let location = locations.iter().find(|l| l.name() == e.location).cloned();
            let sink = sink.clone();
            async move {
                let Some(location) = location else {
                    return Err(Error::Undeliverable(format!(
                        "unknown storage location {:?}",
                        e.location
                    )));
                };
                location.put(&e.key, e.data.clone()).await?;
                sink.lock().unwrap().push(e);
                Ok(())
            }
        };
        spool.run(deliver, tokio::time::sleep).await
    });
    (delivered, task)
}

fn keys(entries: &[SpoolEntry]) -> Vec<String> {
    entries.iter().map(|e| e.key.clone()).collect()
}

fn spool_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A local location that can be broken (its root replaced by a plain file) and repaired.
struct Breakable {
    root: PathBuf,
    location: Arc<Location>,
}

impl Breakable {
    fn new(root: PathBuf) -> Breakable {
        let location = Arc::new(Location::local("disk", &root).unwrap());
        Breakable { root, location }
    }
    fn break_it(&self) {
        std::fs::remove_dir_all(&self.root).unwrap();
        std::fs::write(&self.root, b"not a folder").unwrap();
    }
    fn repair(&self) {
        std::fs::remove_file(&self.root).unwrap();
        std::fs::create_dir(&self.root).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_queues_then_delivers_everything_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Breakable::new(tmp.path().join("pictures"));
    store.break_it();
    let spool = Spool::open(tmp.path().join("spool"), 10 << 20).unwrap();
    let (delivered, task) = run(&spool, vec![store.location.clone()]);

    let pushed: Vec<SpoolEntry> = (0..8).map(|i| entry("disk", i)).collect();
    for e in &pushed[..5] {
        spool.push(e.clone()).await.unwrap();
    }
    assert!(spool.has_pending("disk"));
    assert!(!spool.has_pending("elsewhere"));
    wait_until("two retries have failed", WAIT, || {
        spool.stats().retries >= 2
    })
    .await;
    // More pictures arrive during the outage.
    for e in &pushed[5..] {
        spool.push(e.clone()).await.unwrap();
    }
    let stats = spool.stats();
    assert_eq!((stats.queued, stats.stored, stats.dropped), (8, 0, 0));
    assert!(delivered.lock().unwrap().is_empty());
    assert_eq!(spool_files(spool.dir()).len(), 8);

    store.repair();
    wait_until("everything is delivered", WAIT, || {
        spool.stats().stored == 8
    })
    .await;
    assert_eq!(
        *delivered.lock().unwrap(),
        pushed,
        "delivered whole, with metadata, in push order"
    );
    for e in &pushed {
        assert_eq!(store.location.get(&e.key).await.unwrap(), e.data);
    }
    let stats = spool.stats();
    assert_eq!((stats.queued, stats.bytes, stats.dropped), (0, 0, 0));
    assert!(!spool.has_pending("disk"));
    assert!(
        spool_files(spool.dir()).is_empty(),
        "delivered entries are deleted"
    );

    // A later picture goes straight through.
    spool.push(entry("disk", 99)).await.unwrap();
    wait_until("the next one is delivered", WAIT, || {
        spool.stats().stored == 9
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_a_crash_and_are_recovered_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let store = Breakable::new(tmp.path().join("pictures"));
    store.break_it();

    // First run: entries queue while the store is down, then the process "crashes"
    // (the loop is killed and the spool dropped without draining).
    let first: Vec<SpoolEntry> = (0..6).map(|i| entry("disk", i)).collect();
    {
        let spool = Spool::open(&dir, 10 << 20).unwrap();
        let (_, task) = run(&spool, vec![store.location.clone()]);
        for e in &first {
            spool.push(e.clone()).await.unwrap();
        }
        wait_until("a retry has failed", WAIT, || spool.stats().retries >= 1).await;
        task.abort();
        let _ = task.await;
    }
    // A write interrupted by the crash leaves a temp file that was never acknowledged.
    std::fs::write(dir.join("00000000000000000099.tmp"), b"half").unwrap();

    // Second run: everything is found again, in order, and new entries go after it.
    let spool = Spool::open(&dir, 10 << 20).unwrap();
    let stats = spool.stats();
    assert_eq!(stats.queued, 6);
    assert!(stats.bytes > first.iter().map(|e| e.data.len() as u64).sum::<u64>());
    assert!(
        !dir.join("00000000000000000099.tmp").exists(),
        "unfinished writes are removed"
    );
    let second: Vec<SpoolEntry> = (6..9).map(|i| entry("disk", i)).collect();
    for e in &second {
        spool.push(e.clone()).await.unwrap();
    }
    store.repair();
    let (delivered, task) = run(&spool, vec![store.location.clone()]);
    wait_until("everything is delivered", WAIT, || {
        spool.stats().stored == 9
    })
    .await;
    let want: Vec<SpoolEntry> = first.into_iter().chain(second).collect();
    assert_eq!(*delivered.lock().unwrap(), want);
    assert_eq!(spool.stats().bad, 0);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_and_counts_new_pictures_only() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Breakable::new(tmp.path().join("pictures"));
    store.break_it();
    let one = entry("disk", 1);
    // Room for three entries of this size (data plus a header line), not four.
    let max = 3 * (one.data.len() as u64 + 400);
    let spool = Spool::open(tmp.path().join("spool"), max).unwrap();

    let mut accepted = Vec::new();
    for i in 0..6 {
        let e = SpoolEntry {
            key: format!("live/cam1/{i}.jpg"),
            ..one.clone()
        };
        match spool.push(e.clone()).await {
            Ok(()) => accepted.push(e),
            Err(Error::SpoolFull {
                needed,
                used,
                max: m,
            }) => {
                assert_eq!(m, max);
                assert!(used + needed > max);
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(accepted.len(), 3, "accepted until full");
    let stats = spool.stats();
    assert_eq!((stats.queued, stats.dropped), (3, 3));
    assert!(stats.bytes <= max);
    // A picture larger than the whole spool is dropped too.
    let huge = SpoolEntry {
        data: Bytes::from(vec![0; max as usize + 1]),
        ..one.clone()
    };
    assert!(matches!(
        spool.push(huge).await,
        Err(Error::SpoolFull { .. })
    ));
    assert_eq!(spool.stats().dropped, 4);

    // What was accepted is not lost: it is delivered once the store is back, and then
    // there is room again.
    store.repair();
    let (delivered, task) = run(&spool, vec![store.location.clone()]);
    wait_until("the accepted ones are delivered", WAIT, || {
        spool.stats().stored == 3
    })
    .await;
    assert_eq!(keys(&delivered.lock().unwrap()), keys(&accepted));
    spool.push(entry("disk", 7)).await.unwrap();
    wait_until("room again", WAIT, || spool.stats().stored == 4).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_spool_folder_is_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let store = Breakable::new(tmp.path().join("pictures"));
    store.break_it();
    {
        let spool = Spool::open(&dir, 10 << 20).unwrap();
        for i in 0..3 {
            spool.push(entry("disk", i)).await.unwrap();
        }
    }
    let files = spool_files(&dir);
    assert_eq!(files.len(), 3);
    // Damage: a stray file, a truncated entry, an entry with a garbage header, an empty one.
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
    let second = dir.join(&files[1]);
    let len = std::fs::metadata(&second).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&second)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    std::fs::write(dir.join("00000000000000000010.spool"), b"{not json\nxyz").unwrap();
    std::fs::write(dir.join("00000000000000000011.spool"), b"").unwrap();

    let spool = Spool::open(&dir, 10 << 20).unwrap();
    let stats = spool.stats();
    assert_eq!((stats.queued, stats.bad), (2, 4));
    let mut bad = spool_files(&dir.join("bad"));
    bad.sort();
    assert_eq!(
        bad,
        vec![
            "00000000000000000002.spool".to_string(),
            "00000000000000000010.spool".into(),
            "00000000000000000011.spool".into(),
            "notes.txt".into(),
        ]
    );

    // The intact entries are delivered; an entry for a location that no longer exists is
    // moved aside instead of blocking the others.
    spool.push(entry("gone", 50)).await.unwrap();
    spool.push(entry("disk", 51)).await.unwrap();
    store.repair();
    let (delivered, task) = run(&spool, vec![store.location.clone()]);
    wait_until("the good ones are delivered", WAIT, || {
        spool.stats().stored == 3
    })
    .await;
    assert_eq!(
        keys(&delivered.lock().unwrap()),
        keys(&[entry("disk", 0), entry("disk", 2), entry("disk", 51)])
    );
    assert_eq!(spool.stats().bad, 5);
    assert_eq!(spool_files(&dir.join("bad")).len(), 5);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_mid_stream_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let location = Arc::new(common::s3_location(&s3, "cloud", None));
    let spool = Spool::open(tmp.path().join("spool"), 10 << 20).unwrap();
    let (delivered, task) = run(&spool, vec![location.clone()]);

    // The way a caller uses it: write directly, spool on failure (or while older pictures
    // for the same location are still waiting, so nothing is overtaken).
    let pictures: Vec<SpoolEntry> = (0..12).map(|i| entry("cloud", i)).collect();
    let mut direct = Vec::new();
    for (i, p) in pictures.iter().enumerate() {
        if i == 4 {
            s3.stop();
        }
        if i == 9 {
            // The endpoint stays down until the spool has failed to deliver at least once.
            wait_until("a delivery has failed", WAIT, || spool.stats().retries >= 1).await;
            s3.restart();
        }
        if !spool.has_pending("cloud") && location.put(&p.key, p.data.clone()).await.is_ok() {
            direct.push(p.key.clone());
            continue;
        }
        spool.push(p.clone()).await.unwrap();
    }
    assert_eq!(
        direct,
        keys(&pictures[..4]),
        "before the outage pictures go straight to S3"
    );
    wait_until("the spooled ones are delivered", WAIT, || {
        spool.stats().stored == 8
    })
    .await;
    assert_eq!(keys(&delivered.lock().unwrap()), keys(&pictures[4..]));
    for p in &pictures {
        assert_eq!(location.get(&p.key).await.unwrap(), p.data, "{}", p.key);
    }
    assert_eq!(spool.stats().dropped, 0);
    task.abort();
}
