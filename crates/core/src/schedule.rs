//! When a stream's automatic pictures are due. Pure logic, fed with the stream's frames and the
//! time from an injected clock, so it is tested without sleeping.
//!
//! There is no timer per stream: the check runs on the ingest path, as part of handling a frame
//! the hub already holds a lock for, and costs a comparison or a counter.

use std::sync::Arc;
use std::time::Duration;

use crate::template::{Template, Trigger};

pub use crate::clock::{Clock, ManualClock, SystemClock};

/// What a frame means for the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing to do.
    No,
    /// Picture the keyframe that just arrived.
    Keyframe,
    /// Picture the newest frame (decoding on from the keyframe).
    Latest,
}

/// One stream's schedule for one template.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The template in force.
    pub template: Arc<Template>,
    next_due: Duration,
    frames: u64,
    /// Due times that passed with no keyframe to picture (interval), or Nth frames that came
    /// before any keyframe (every N frames).
    pub missed: u64,
    /// Pictures this schedule asked for.
    pub triggered: u64,
}

impl Schedule {
    /// A schedule whose first picture is due at `now` (the first keyframe takes it).
    pub fn new(template: Arc<Template>, now: Duration) -> Schedule {
        Schedule {
            template,
            next_due: now,
            frames: 0,
            missed: 0,
            triggered: 0,
        }
    }

    /// Called for every frame the hub keeps, with whether a keyframe is buffered at all.
    pub fn on_frame(&mut self, now: Duration, keyframe: bool, have_gop: bool) -> Due {
        match self.template.trigger {
            Trigger::Interval(secs) => {
                if !keyframe || now < self.next_due {
                    return Due::No;
                }
                let interval = Duration::from_secs(u64::from(secs));
                // Due times skipped entirely (no keyframe between them) are counted, not made up.
                let late = now - self.next_due;
                let skipped = (late.as_nanos() / interval.as_nanos()) as u64;
                self.missed += skipped;
                self.next_due += interval * (skipped as u32 + 1);
                self.triggered += 1;
                Due::Keyframe
            }
            Trigger::EveryNFrames(n) => {
                self.frames += 1;
                if self.frames < u64::from(n) {
                    return Due::No;
                }
                self.frames = 0;
                if !have_gop {
                    self.missed += 1;
                    return Due::No;
                }
                self.triggered += 1;
                if keyframe {
                    Due::Keyframe
                } else {
                    Due::Latest
                }
            }
        }
    }

    /// Due times missed so far, counting those still passing now without a keyframe.
    pub fn missed_now(&self, now: Duration) -> u64 {
        match self.template.trigger {
            Trigger::Interval(secs) if now > self.next_due => {
                self.missed + ((now - self.next_due).as_secs() / u64::from(secs))
            }
            _ => self.missed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateSpec;

    fn template(json: &str) -> Arc<Template> {
        Arc::new(
            serde_json::from_str::<TemplateSpec>(json)
                .unwrap()
                .check()
                .unwrap(),
        )
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn interval_takes_the_first_keyframe_at_or_after_each_due_time() {
        let mut s = Schedule::new(template(r#"{"name":"t","interval_s":5}"#), MS(0));
        let mut taken = Vec::new();
        // 25 fps for 30 s, keyframe every 2 s: due at 0, 5, 10, ... -> keyframes at 0, 6, 10, 16, 20, 26.
        for i in 0..750u64 {
            let t = i * 40;
            if s.on_frame(MS(t), t % 2000 == 0, true) == Due::Keyframe {
                taken.push(t);
            }
        }
        assert_eq!(taken, vec![0, 6000, 10000, 16000, 20000, 26000]);
        assert_eq!(s.missed, 0);
    }

    #[test]
    fn a_stream_without_keyframes_is_skipped_and_counted() {
        let mut s = Schedule::new(template(r#"{"name":"t","interval_s":1}"#), MS(0));
        assert_eq!(s.on_frame(MS(0), true, true), Due::Keyframe);
        for t in (40..10_000).step_by(40) {
            assert_eq!(s.on_frame(MS(t), false, true), Due::No);
        }
        assert_eq!(s.missed_now(MS(10_000)), 9);
        // The next keyframe at 10.5 s takes one picture and counts the nine skipped due times.
        assert_eq!(s.on_frame(MS(10_500), true, true), Due::Keyframe);
        assert_eq!(s.missed, 9);
        assert_eq!(
            s.on_frame(MS(10_600), true, true),
            Due::No,
            "next due at 11 s"
        );
        assert_eq!(s.on_frame(MS(11_000), true, true), Due::Keyframe);
    }

    #[test]
    fn every_n_frames() {
        let mut s = Schedule::new(template(r#"{"name":"t","every_n_frames":3}"#), MS(0));
        let dues: Vec<Due> = (0..9)
            .map(|i| s.on_frame(MS(i * 40), i % 6 == 0, true))
            .collect();
        use Due::*;
        assert_eq!(dues, vec![No, No, Latest, No, No, Latest, No, No, Latest]);
        let mut s = Schedule::new(template(r#"{"name":"t","every_n_frames":2}"#), MS(0));
        assert_eq!(s.on_frame(MS(0), false, false), No);
        assert_eq!(s.on_frame(MS(40), false, false), No);
        assert_eq!(s.missed, 1, "the second frame came before any keyframe");
    }
}
