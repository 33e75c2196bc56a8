//! The snapshot service on a real H.264 stream (testdata/720p.h264, High profile with B-frames).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use livesnap_core::hub::{Hub, HubConfig, HubWriter};
use livesnap_core::snapshot::{Precision, SnapshotConfig, SnapshotRequest, Snapshotter};
use livesnap_core::Error;
use media::picture::{EncodeOptions, ImageFormat};
use media::stream::{PublisherInfo, StreamKey, StreamWriter};

fn publish(hub: &Arc<Hub>, name: &str) -> HubWriter {
    let key = StreamKey::new("_default", "live", name).unwrap();
    let info = PublisherInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        protocol: "test",
    };
    hub.start(key, info).ok().unwrap()
}

fn feed_testdata(w: &mut HubWriter) -> Vec<media::Frame> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/720p.h264");
    let data = std::fs::read(path).unwrap();
    let (config, frames) = media::avc::annexb_to_frames(&data).unwrap();
    w.config(config.into());
    for f in &frames {
        w.frame(f.clone());
    }
    frames
}

fn service(interval_ms: u64) -> Arc<Snapshotter> {
    Snapshotter::new(SnapshotConfig {
        workers: 2,
        interval: Duration::from_millis(interval_ms),
        attempts: 3,
        cache_entries: 16,
        cache_bytes: 64 << 20,
        ..SnapshotConfig::default()
    })
}

fn jpeg(width: Option<u32>) -> SnapshotRequest {
    SnapshotRequest {
        options: EncodeOptions {
            width,
            ..EncodeOptions::new(ImageFormat::Jpeg)
        },
        precision: Precision::Keyframe,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_decode() {
    let hub = Hub::new(HubConfig::default());
    let mut w = publish(&hub, "a");
    feed_testdata(&mut w);
    let snap = service(2000);
    let stream = w.stream().clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (snap, stream) = (snap.clone(), stream.clone());
            tokio::spawn(async move { snap.take(&stream, jpeg(Some(640))).await })
        })
        .collect();
    let mut images = Vec::new();
    for t in tasks {
        images.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        snap.counters.pictures_made.load(Ordering::Relaxed),
        1,
        "one decode for eight requests"
    );
    assert_eq!(snap.counters.cache_hits.load(Ordering::Relaxed), 7);
    assert!(images.iter().all(|i| i.image == images[0].image));
    assert_eq!((images[0].width, images[0].height), (640, 360));
    assert!(images[0].image.starts_with(&[0xff, 0xd8]), "a JPEG");
    assert!(images[0].keyframe);
    // Another size of the same frame is another picture.
    let png = snap
        .take(
            &stream,
            SnapshotRequest {
                options: EncodeOptions::new(ImageFormat::Png),
                precision: Precision::Keyframe,
            },
        )
        .await
        .unwrap();
    assert_eq!((png.width, png.height), (1280, 720));
    assert!(png.image.starts_with(b"\x89PNG"));
    assert_eq!(snap.counters.pictures_made.load(Ordering::Relaxed), 2);
    assert_eq!(
        snap.counters.decoders_created.load(Ordering::Relaxed),
        1,
        "the decoder is reused"
    );
}

#[tokio::test]
async fn latest_pictures_the_newest_frame_in_presentation_order() {
    let hub = Hub::new(HubConfig::default());
    let mut w = publish(&hub, "b");
    let frames = feed_testdata(&mut w);
    let snap = service(2000);
    let latest = snap
        .take(
            w.stream(),
            SnapshotRequest {
                precision: Precision::Latest,
                ..jpeg(None)
            },
        )
        .await
        .unwrap();
    let max_pts = frames.iter().map(|f| f.pts_ms).max().unwrap();
    assert_eq!(latest.frame_pts_ms, max_pts);
    assert!(!latest.keyframe);
    let key = snap.take(w.stream(), jpeg(None)).await.unwrap();
    assert!(key.keyframe);
    assert_ne!(key.image, latest.image);
}

#[tokio::test]
async fn no_keyframe_is_a_timeout_and_a_request_waits_for_one() {
    let hub = Hub::new(HubConfig::default());
    let mut w = publish(&hub, "c");
    let snap = service(300);
    match snap.take(w.stream(), jpeg(None)).await {
        Err(Error::Timeout(why)) => assert!(why.contains("keyframe"), "{why}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // A request that arrives before the first keyframe gets it when it comes.
    let stream = w.stream().clone();
    let snap2 = service(5000);
    let waiting = tokio::spawn(async move { snap2.take(&stream, jpeg(Some(320))).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    feed_testdata(&mut w);
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.width, 320);
}

#[tokio::test]
async fn a_stream_that_ends_while_waited_on_is_not_live() {
    let hub = Hub::new(HubConfig::default());
    let w = publish(&hub, "d");
    let stream = w.stream().clone();
    let snap = service(5000);
    let waiting = tokio::spawn(async move { snap.take(&stream, jpeg(None)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(w);
    assert!(matches!(waiting.await.unwrap(), Err(Error::NotLive(_))));
    assert!(hub.list().is_empty());
}

#[tokio::test]
async fn absurd_sizes_are_refused_before_decoding() {
    let hub = Hub::new(HubConfig::default());
    let mut w = publish(&hub, "e");
    feed_testdata(&mut w);
    let snap = service(1000);
    assert!(matches!(
        snap.take(w.stream(), jpeg(Some(100_000))).await,
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        snap.take(w.stream(), jpeg(Some(0))).await,
        Err(Error::BadRequest(_))
    ));
    assert_eq!(snap.counters.pictures_made.load(Ordering::Relaxed), 0);
}
