//! Storage locations against a local folder and a real S3 endpoint (s3s-fs, in-process).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::S3Server;
use livesnap_store::{Error, Location, LocationConfig};

const HOSTILE_KEYS: &[&str] = &[
    "",
    "/etc/passwd",
    "../escape.jpg",
    "snapshot/../../escape.jpg",
    "snapshot/./x.jpg",
    "snapshot//x.jpg",
    "snapshot\\..\\escape.jpg",
    "snap\0shot.jpg",
];

/// put, get, overwrite, delete, missing objects, hostile keys: the behaviour every kind shares.
async fn exercise(loc: &Location) {
    let key = "snapshot/2026-11-21/_default/live/cam1.jpg";
    loc.put(key, Bytes::from_static(b"first picture"))
        .await
        .unwrap();
    assert_eq!(
        loc.get(key).await.unwrap(),
        Bytes::from_static(b"first picture")
    );

    // A shorter picture replaces the whole content: nothing of the old one is left.
    let big = Bytes::from(vec![7u8; 300_000]);
    loc.put(key, big.clone()).await.unwrap();
    assert_eq!(loc.get(key).await.unwrap(), big);
    loc.put(key, Bytes::from_static(b"tiny")).await.unwrap();
    assert_eq!(loc.get(key).await.unwrap(), Bytes::from_static(b"tiny"));

    loc.delete(key).await.unwrap();
    assert!(matches!(loc.get(key).await, Err(Error::NotFound { .. })));
    // Deleting what is already gone is fine.
    loc.delete(key).await.unwrap();
    loc.delete("never/was.jpg").await.unwrap();

    for key in HOSTILE_KEYS {
        let e = loc.put(key, Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(e, Error::InvalidKey { .. }), "put {key:?}: {e}");
        assert!(
            matches!(loc.get(key).await, Err(Error::InvalidKey { .. })),
            "get {key:?}"
        );
        assert!(
            matches!(loc.delete(key).await, Err(Error::InvalidKey { .. })),
            "delete {key:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_put_get_delete_overwrite_and_hostile_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("does/not/exist/yet");
    let loc = Location::local("local", &root).unwrap();
    assert!(root.is_dir(), "the root folder is created");
    assert_eq!(loc.name(), "local");
    assert_eq!(loc.describe(), format!("local:{}", root.display()));

    exercise(&loc).await;

    loc.put("a/b/c.png", Bytes::from_static(b"png"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("a/b/c.png")).unwrap(), b"png");
    // Nothing escaped the root, nothing was left half-written beside the objects.
    assert!(!tmp.path().join("does/not/exist/escape.jpg").exists());
    assert!(!tmp.path().join("escape.jpg").exists());
    let mut leftovers = Vec::new();
    for e in std::fs::read_dir(root.join("a/b")).unwrap() {
        leftovers.push(e.unwrap().file_name().to_string_lossy().into_owned());
    }
    assert_eq!(leftovers, vec!["c.png".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_config_builds_a_location() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg: LocationConfig = serde_json::from_value(serde_json::json!({
        "kind": "local", "root": tmp.path().join("pics"),
    }))
    .unwrap();
    let loc = Location::new("archive", &cfg).unwrap();
    loc.put("x.jpg", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(std::fs::read(tmp.path().join("pics/x.jpg")).unwrap(), b"1");
}

/// While one task keeps overwriting a key with two different pictures, readers only ever see
/// one picture or the other, whole.
async fn overwrite_is_never_half_visible(loc: Arc<Location>, rounds: usize) {
    let key = "live/cam1.jpg";
    let a = Bytes::from(vec![b'a'; 1 << 20]);
    let b = Bytes::from(vec![b'b'; 700 * 1024]);
    loc.put(key, a.clone()).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (loc, a, b, done) = (loc.clone(), a.clone(), b.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..rounds {
                let data = if i % 2 == 0 { b.clone() } else { a.clone() };
                loc.put(key, data).await.unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut reads = 0;
    while !done.load(Ordering::SeqCst) || reads < 5 {
        let got = loc.get(key).await.unwrap();
        assert!(
            got == a || got == b,
            "a reader saw {} bytes of a mixed or partial picture",
            got.len()
        );
        reads += 1;
    }
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_overwrite_is_atomic() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = Arc::new(Location::local("local", tmp.path()).unwrap());
    overwrite_is_never_half_visible(loc, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_get_delete_overwrite_and_hostile_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let loc = common::s3_location(&s3, "cloud", None);
    assert_eq!(
        loc.describe(),
        format!("s3:{}@{}", common::BUCKET, s3.endpoint())
    );
    assert!(!loc.describe().contains(common::SECRET_KEY));
    exercise(&loc).await;

    loc.put("live/cam2.jpg", Bytes::from_static(b"on s3"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(s3.object_file("live/cam2.jpg")).unwrap(),
        b"on s3"
    );
    overwrite_is_never_half_visible(Arc::new(loc), 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefix_is_prepended_to_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let loc = common::s3_location(&s3, "cloud", Some("/tenant-a/"));
    assert_eq!(
        loc.describe(),
        format!("s3:{}/tenant-a@{}", common::BUCKET, s3.endpoint())
    );
    loc.put("live/cam1.jpg", Bytes::from_static(b"prefixed"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(s3.object_file("tenant-a/live/cam1.jpg")).unwrap(),
        b"prefixed"
    );
    assert_eq!(
        loc.get("live/cam1.jpg").await.unwrap(),
        Bytes::from_static(b"prefixed")
    );
    loc.delete("live/cam1.jpg").await.unwrap();
    assert!(!s3.object_file("tenant-a/live/cam1.jpg").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let mut cfg = common::s3_config(&s3, None);
    cfg.secret_access_key = Some("wrong".into());
    let loc = Location::new("cloud", &cfg).unwrap();
    let e = loc
        .put("x.jpg", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Storage { .. }), "{e}");
    assert!(!s3.object_file("x.jpg").exists());
}
