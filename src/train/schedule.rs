//! The learning-rate schedule.
//!
//! Two shapes. `epochs` is char-rnn's: the rate is multiplied by `decay` at the end of every
//! epoch from epoch `after` on. `cosine` fits the run it is given: a short linear warm-up,
//! then a half cosine from `base` down to `floor · base`, reached when the run ends, whether
//! the end is a number of steps or a time budget (see [`crate::train::run`], which measures
//! how far through the run it is). Annealing to the end of the budget, rather than by
//! epochs, is what lets a run of any length finish with a low rate and a converged model.

/// Serialised inside a checkpoint's `training` section as `lr`, `lr_decay`, `lr_decay_after`
/// and, for the cosine shape only (so that version-1 files read and write unchanged),
/// `lr_schedule`, `lr_warmup`, `lr_floor`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    #[serde(rename = "lr")]
    pub base: f32,
    #[serde(rename = "lr_decay")]
    pub decay: f32,
    #[serde(rename = "lr_decay_after")]
    pub after: usize,
    #[serde(
        default,
        rename = "lr_schedule",
        skip_serializing_if = "Shape::is_epochs"
    )]
    pub shape: Shape,
    /// Cosine: fraction of the run spent warming up linearly from a tenth of `base`.
    #[serde(default, rename = "lr_warmup", skip_serializing_if = "is_zero")]
    pub warmup: f32,
    /// Cosine: the rate at the end of the run, as a fraction of `base`.
    #[serde(default, rename = "lr_floor", skip_serializing_if = "is_zero")]
    pub floor: f32,
    /// Cosine: the fraction of the run at its end over which the rate falls (1: the whole
    /// run after the warm-up; less holds `base` until then).
    #[serde(default = "one", rename = "lr_tail", skip_serializing_if = "is_one")]
    pub tail: f32,
}

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

/// The shape of the schedule; the names are those of `--lr-schedule` and of checkpoints.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// char-rnn's: multiply by --lr-decay at the end of every epoch after --lr-decay-after
    #[default]
    Epochs,
    /// a short warm-up, then a cosine down to --lr-floor x --lr at the end of the run (its
    /// --time-limit, --max-steps or --epochs)
    Cosine,
}

crate::value_enum_display!(Shape);

impl Shape {
    fn is_epochs(&self) -> bool {
        *self == Shape::Epochs
    }
}

impl Default for LrSchedule {
    /// 2e-3, decayed by 0.97 per epoch after 10 epochs (char-rnn's shape of schedule).
    fn default() -> Self {
        LrSchedule {
            base: 2e-3,
            decay: 0.97,
            after: 10,
            shape: Shape::Epochs,
            warmup: 0.0,
            floor: 0.0,
            tail: 1.0,
        }
    }
}

impl LrSchedule {
    /// A cosine schedule from `base` with the given warm-up and floor fractions.
    pub fn cosine(base: f32, warmup: f32, floor: f32, tail: f32) -> LrSchedule {
        LrSchedule {
            base,
            shape: Shape::Cosine,
            warmup,
            floor,
            tail,
            ..LrSchedule::default()
        }
    }

    /// Learning rate during (0-based) epoch `epoch`, `progress` (in [0, 1]) of the way
    /// through the run.
    pub fn lr(&self, epoch: usize, progress: f64) -> f32 {
        match self.shape {
            Shape::Epochs => {
                let n = epoch.saturating_sub(self.after).min(i32::MAX as usize);
                self.base * self.decay.powi(n as i32)
            }
            Shape::Cosine => {
                let p = progress.clamp(0.0, 1.0);
                let w = self.warmup.clamp(0.0, 0.5) as f64;
                let base = self.base as f64;
                if p < w {
                    return (base * (0.1 + 0.9 * p / w)) as f32;
                }
                let floor = base * self.floor as f64;
                // The fall starts at the later of the warm-up's end and 1 - tail.
                let start = w.max(1.0 - self.tail.clamp(0.0, 1.0) as f64);
                if p < start {
                    return self.base;
                }
                let t = ((p - start) / (1.0 - start).max(1e-12)).min(1.0);
                (floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_decays_after_given_epoch() {
        let s = LrSchedule {
            base: 1.0,
            decay: 0.5,
            after: 2,
            ..LrSchedule::default()
        };
        assert_eq!(
            [s.lr(0, 0.0), s.lr(2, 0.9), s.lr(3, 0.0), s.lr(5, 0.0)],
            [1.0, 1.0, 0.5, 0.125]
        );
    }

    #[test]
    fn cosine_warms_up_then_reaches_its_floor_at_the_end() {
        let s = LrSchedule::cosine(1.0, 0.1, 0.05, 1.0);
        assert!((s.lr(0, 0.0) - 0.1).abs() < 1e-6);
        assert!((s.lr(0, 0.05) - 0.55).abs() < 1e-6);
        assert!((s.lr(0, 0.1) - 1.0).abs() < 1e-6);
        assert!((s.lr(7, 0.55) - 0.525).abs() < 1e-6, "{}", s.lr(7, 0.55));
        assert!((s.lr(7, 1.0) - 0.05).abs() < 1e-6);
        assert!((s.lr(7, 3.0) - 0.05).abs() < 1e-6);
        // With a tail, the rate holds until the tail starts.
        let h = LrSchedule::cosine(1.0, 0.1, 0.05, 0.3);
        assert_eq!((h.lr(0, 0.5), h.lr(0, 0.7)), (1.0, 1.0));
        assert!((h.lr(0, 0.85) - 0.525).abs() < 1e-6 && (h.lr(0, 1.0) - 0.05).abs() < 1e-6);
        // Monotone after the warm-up.
        let mut last = f32::INFINITY;
        for i in 10..=100 {
            let x = s.lr(0, i as f64 / 100.0);
            assert!(x <= last);
            last = x;
        }
    }
}
