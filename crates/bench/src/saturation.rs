//! Saturation: how many pictures per second the server makes when asked for more than it can,
//! held against the limit (`cores / (decode + encode)`), and the largest N that keeps up at
//! interval 5 s.
//!
//! Method, and why: pictures are taken only at keyframes, so with the camera-like input's 2 s
//! GOP one stream offers at most 0.5 pictures/s whatever the interval (1 s at least). Saturating
//! the decoder that way needs about 2 x limit streams (well over a hundred at 720p), and their
//! publishers and ingest would take the very cores being measured, more at every step. Instead a
//! fixed N publish an all-intra version of the input (every frame an IDR of about the camera
//! input's mean keyframe size, see `input::all_intra`), and a template `every_n_frames: k` offers
//! N x 30 / k pictures/s: publishers and ingest cost the same at every step, only the picture
//! rate changes. The steps go from half the limit to twice it, each on a fresh server (the
//! queues and the lag ring start empty), and stop at the first step that falls behind. The
//! pictures/s at saturation is the highest made/s of any step.
//!
//! The largest N at interval 5 s follows: each stream needs 1/5 picture/s, so N = saturation
//! pictures/s x 5. It is then checked with the camera-like input, capped at `--max-streams`.

use std::sync::Arc;
use std::time::Duration;

use crate::flv::VideoTag;
use crate::input::{Input, FPS};
use crate::limit::Limit;
use crate::report::{AutoFigures, Saturation, Step, Verify};
use crate::scenarios::{self, PICTURE_INTERVAL_S};
use crate::Ctx;

/// Offered picture rates of the steps, as multiples of the limit.
const STEPS: [f64; 6] = [0.5, 0.8, 1.0, 1.25, 1.6, 2.0];
/// Short mode: one step well below, one well above.
const SHORT_STEPS: [f64; 2] = [0.5, 2.0];
/// The last step offers this multiple of the limit: N is chosen so that k >= 1 reaches it.
const TOP_STEP: f64 = 2.0;
/// When the first step falls behind, how many times the rate is halved to find one that keeps up.
const MAX_STEPS_DOWN: usize = 2;

/// What the search needs to know.
pub struct Plan {
    /// Publishers at least (the run's N); more if N x 30 cannot offer 2 x the limit.
    pub min_streams: usize,
    pub max_streams: usize,
    pub short: bool,
    pub step_window: Duration,
}

/// Runs the steps with `intra`, then the 5 s check with `camera`.
pub fn run(
    ctx: &Ctx,
    tag: &str,
    plan: &Plan,
    intra: &Input,
    intra_limit: Limit,
    camera: &Arc<Vec<VideoTag>>,
) -> Result<Saturation, String> {
    let limit = intra_limit.pictures_per_s(ctx.cores);
    let fps = f64::from(FPS);
    let streams = if plan.short {
        plan.min_streams
    } else {
        ((TOP_STEP * limit / fps).ceil() as usize).clamp(plan.min_streams, plan.max_streams.max(1))
    };
    let ks = every_n_steps(
        if plan.short { &SHORT_STEPS } else { &STEPS },
        limit,
        streams,
    );
    let mut sat = Saturation {
        streams,
        input: intra.info.clone(),
        limit: intra_limit,
        steps: Vec::new(),
        verify: None,
    };
    let run_step = |k: u32| -> Result<Step, String> {
        eprintln!(
            "[bench] {tag} saturation: {streams} streams, every {k} frames ({:.1} pictures/s offered)",
            streams as f64 * fps / f64::from(k)
        );
        let template = format!(
            r#"{{"name":"b","every_n_frames":{k},"format":"jpg","storage":"local","modes":["sequence"]}}"#
        );
        let r = scenarios::auto_run(
            ctx,
            &format!("{tag}-saturation-k{k}"),
            &template,
            &intra.tags,
            streams,
            plan.step_window,
        )?;
        let step = Step {
            every_n: k,
            cpu_pct: r.measured.cpu_pct,
            bench_pct: r.measured.bench_pct,
            other_pct: r.measured.other_pct,
            auto: AutoFigures {
                trigger: format!("every {k} frames"),
                interval_s: f64::from(k) / fps,
                window_s: plan.step_window.as_secs_f64(),
                made: r.made,
                // Every frame is a keyframe: one picture due per k frames received.
                due: r.frames as f64 / f64::from(k),
                missed: r.missed,
                lag: r.lag,
            },
        };
        eprintln!(
            "[bench] {tag}   made {:.1}/s of {:.1}/s due, lag p99 {} ms, CPU {:.0} %",
            step.auto.made_per_s(),
            step.offered_per_s(),
            crate::stats::opt(step.auto.lag.and_then(|l| l.p99), 0),
            step.cpu_pct
        );
        Ok(step)
    };
    for &k in &ks {
        let step = run_step(k)?;
        let behind = !step.auto.keeps_up();
        sat.steps.push(step);
        if behind {
            break;
        }
    }
    // The first step fell behind: halve the rate until one keeps up, so that the report has
    // a rate the server sustains.
    if sat.steps.len() == 1 && sat.saturated() {
        let mut k = ks[0];
        for _ in 0..MAX_STEPS_DOWN {
            k = k.saturating_mul(2);
            let step = run_step(k)?;
            let kept_up = step.auto.keeps_up();
            sat.steps.insert(0, step);
            if kept_up {
                break;
            }
        }
    }

    let derived = (sat.pictures_per_s() * f64::from(PICTURE_INTERVAL_S)).floor() as usize;
    let n = derived.min(plan.max_streams);
    if n > 0 {
        eprintln!(
            "[bench] {tag} checking N = {n} at interval {PICTURE_INTERVAL_S} s (derived {derived})"
        );
        let row = scenarios::periodic(
            ctx,
            &format!("{tag}-verify"),
            &format!("livesnap periodic, N from saturation (JPEG every {PICTURE_INTERVAL_S} s)"),
            camera,
            n,
            PICTURE_INTERVAL_S,
        )?;
        sat.verify = Some(Verify {
            derived,
            capped: derived > plan.max_streams,
            row,
        });
    }
    Ok(sat)
}

/// The `every_n_frames` of each step: offered N x 30 / k closest to each multiple of `limit`,
/// k >= 1, each k once, in order of rising rate.
fn every_n_steps(multiples: &[f64], limit: f64, streams: usize) -> Vec<u32> {
    /// A k past this offers too little to matter.
    const MAX_K: f64 = 3000.0;
    let offer_at_k1 = streams as f64 * f64::from(FPS);
    let mut ks: Vec<u32> = Vec::new();
    for m in multiples {
        let k = (offer_at_k1 / (m * limit).max(1e-9))
            .round()
            .clamp(1.0, MAX_K) as u32;
        if !ks.contains(&k) {
            ks.push(k);
        }
    }
    ks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_rise_and_never_repeat() {
        // 8 streams x 30 fps = 240 pictures/s at k = 1; limit 40/s.
        assert_eq!(every_n_steps(&STEPS, 40.0, 8), vec![12, 8, 6, 5, 4, 3]);
        // A limit far above what k = 1 offers: the top steps collapse to k = 1.
        assert_eq!(every_n_steps(&STEPS, 400.0, 8), vec![1]);
    }
}
