//! Schedules on the hub's ingest path, on a manual clock: no sleeping, no timers.

use std::sync::Arc;
use std::time::Duration;

use livesnap_core::hub::{Hub, HubConfig, HubObserver, LiveStream};
use livesnap_core::schedule::{Clock, ManualClock};
use livesnap_core::snapshot::Precision;
use livesnap_core::template::TemplateSpec;
use media::stream::{PublisherInfo, StreamKey, StreamWriter};

struct Bind(Arc<livesnap_core::template::Template>);

impl HubObserver for Bind {
    fn published(&self, stream: &Arc<LiveStream>) {
        stream.set_template(Some(self.0.clone()));
    }
    fn unpublished(&self, _: &Arc<LiveStream>) {}
}

#[test]
fn due_pictures_leave_the_ingest_path_as_shots_at_the_right_keyframes() {
    let clock = Arc::new(ManualClock::default());
    let hub = Hub::with_clock(HubConfig::default(), clock.clone());
    let template: TemplateSpec = serde_json::from_str(r#"{"name":"t","interval_s":2}"#).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    hub.set_automation(Arc::new(Bind(Arc::new(template.check().unwrap()))), tx);

    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/720p.h264"
    ))
    .unwrap();
    let (config, frames) = media::avc::annexb_to_frames(&data).unwrap();
    let key = StreamKey::new("_default", "live", "cam").unwrap();
    let info = PublisherInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        protocol: "test",
    };
    let mut w = hub.start(key, info).ok().unwrap();
    w.config(config.into());
    // Replay the GOP five times at 25 fps, one keyframe a second, moving the clock by hand.
    let mut due_at = Vec::new();
    for round in 0..5u64 {
        for (i, f) in frames.iter().enumerate().take(25) {
            let mut f = f.clone();
            f.dts_ms += round as i64 * 1000;
            f.pts_ms += round as i64 * 1000;
            w.frame(f);
            if let Ok(shot) = rx.try_recv() {
                assert_eq!(shot.precision, Precision::Keyframe);
                assert!(shot.view.frames[0].frame.keyframe);
                due_at.push((clock.now().as_millis(), i));
            }
            clock.advance(Duration::from_millis(40));
        }
    }
    // Due at 0, 2 s, 4 s: each taken by the keyframe that starts that second.
    assert_eq!(due_at, vec![(0, 0), (2000, 0), (4000, 0)]);
    let stats = w.stream().stats();
    assert_eq!(stats.template.as_deref(), Some("t"));
    assert_eq!(stats.auto_triggered, 3);
    assert_eq!(stats.auto_missed, 0);
}
