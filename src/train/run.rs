//! The run loop: optimizer steps until a stop rule fires, validation and checkpoints at a
//! fixed cadence, the best validation loss tracked, divergence rolled back. It reports what
//! happens as [`Event`]s and knows nothing of terminals or file formats: a progress bar, a
//! plain log and a metrics file are each one consumer of the events, and where checkpoints
//! go is a [`Checkpointer`]. What it trains is a [`Learner`]: the language model's
//! [`Trainer`], or a classifier's (see [`crate::train::classify`]).

use crate::analysis::eval::{EvalConfig, evaluate_in};
use crate::text::Tokens;
use crate::train::Optimizer;
use crate::train::trainer::{Diverged, HistoryPoint, Progress, StepReport, Trainer};
use crate::world::{self, Collective};
use anyhow::Result;
use std::time::Instant;

/// What the run loop trains: one optimizer step at a time, a [`Progress`] to record, and a
/// validation on held-out data of its own kind.
pub trait Learner {
    /// The held-out data [`Learner::validate`] reads.
    type Val: ?Sized;
    /// One optimizer step; on divergence nothing is updated (see [`Diverged`]).
    fn step(&mut self) -> Result<StepReport, Diverged>;
    fn progress(&self) -> &Progress;
    fn progress_mut(&mut self) -> &mut Progress;
    /// Epochs completed, with the fraction of the current one.
    fn epoch_fraction(&self) -> f64;
    /// How far through its run training is, in [0, 1], for the learning-rate schedule.
    fn set_run_fraction(&mut self, fraction: f64);
    /// The learning rate of the next step.
    fn lr(&self) -> f32;
    /// Scores `val` (with `eval`'s threads; a language model also reads its other fields);
    /// `None` if there is nothing to score.
    fn validate(&mut self, val: &Self::Val, eval: &EvalConfig) -> Option<Validation>;
    /// Brings the progress's carried state up to date (before a checkpoint).
    fn sync_progress_state(&mut self) {}
    /// The processes this learner trains with (one, unless it is a distributed run).
    fn world(&self) -> &dyn Collective {
        &world::LOCAL
    }
}

/// A validation's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// Mean loss: nats per character, or per example for a classifier.
    pub loss: f64,
    /// A classifier's fraction of examples labelled right.
    pub accuracy: Option<f64>,
}

impl Learner for Trainer<'_> {
    type Val = Tokens;

    fn step(&mut self) -> Result<StepReport, Diverged> {
        Trainer::step(self)
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn progress_mut(&mut self) -> &mut Progress {
        &mut self.progress
    }

    fn epoch_fraction(&self) -> f64 {
        Trainer::epoch_fraction(self)
    }

    fn set_run_fraction(&mut self, fraction: f64) {
        self.run_fraction = fraction;
    }

    fn lr(&self) -> f32 {
        self.config.lr.lr(self.progress.epoch, self.run_fraction)
    }

    fn validate(&mut self, val: &Tokens, eval: &EvalConfig) -> Option<Validation> {
        let config = EvalConfig {
            threads: self.config.threads,
            ..*eval
        };
        (val.len() >= 2).then(|| Validation {
            loss: evaluate_in(Trainer::world(self), &self.model, val, &config).loss(),
            accuracy: None,
        })
    }

    fn sync_progress_state(&mut self) {
        Trainer::sync_progress_state(self)
    }

    fn world(&self) -> &dyn Collective {
        Trainer::world(self)
    }
}

/// When a run stops, and how often it validates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunConfig {
    /// Stop when the trainer has taken this many optimizer steps in total (over all runs).
    pub max_steps: u64,
    /// Stop after this many seconds of this run (wall clock, validation included).
    pub time_limit: Option<f64>,
    /// Steps between validations (each followed by a checkpoint).
    pub eval_every: u64,
    /// How validation scores the held-out text (its `threads` are the trainer's).
    pub eval: EvalConfig,
    /// Stop when the model over-fits beyond doubt (see [`overfitting`]): for runs whose
    /// length charrnn chose, not for a number of steps or epochs the user asked for.
    pub stop_when_overfitting: bool,
}

/// Validations in a row that must each be this far above the best for [`overfitting`].
pub const OVERFIT_VALIDATIONS: usize = 3;
pub const OVERFIT_MARGIN: f64 = 0.05;

/// Whether the last [`OVERFIT_VALIDATIONS`] validation losses in `history` are all more than
/// [`OVERFIT_MARGIN`] above the lowest. Measured on tinyshakespeare, a validation loss that
/// drifts up while the rate is still high stays within 1-2% of its best and may come back
/// as the rate falls; a tiny corpus (data/names.txt) climbs 15% above its best within a few
/// validations and never returns, so that the rest of the run is time lost.
pub fn overfitting(history: &[HistoryPoint]) -> bool {
    let vals: Vec<f64> = history.iter().filter_map(|h| h.val_loss).collect();
    let best = vals.iter().copied().fold(f64::INFINITY, f64::min);
    vals.len() > OVERFIT_VALIDATIONS
        && vals[vals.len() - OVERFIT_VALIDATIONS..]
            .iter()
            .all(|&v| v > best * (1.0 + OVERFIT_MARGIN))
}

/// Where a run's checkpoints go, for a learner of type `L`.
pub trait Checkpointer<L: ?Sized> {
    /// Writes the trainer's state (its `progress` up to date, the validation just recorded
    /// in its history). `best`: this state has the lowest validation loss so far, and must
    /// be kept as the best model *before* the latest checkpoint that records it is written.
    fn save(&mut self, trainer: &mut L, best: bool) -> Result<()>;

    /// Puts the last state written back into `trainer` (after divergence); returns its
    /// step, or `None` if nothing was written yet.
    fn restore_last(&mut self, trainer: &mut L) -> Result<Option<u64>>;
}

/// Checkpoints nowhere: for library users who keep the model in memory.
pub struct NoCheckpoints;

impl<L: ?Sized> Checkpointer<L> for NoCheckpoints {
    fn save(&mut self, _: &mut L, _: bool) -> Result<()> {
        Ok(())
    }
    fn restore_last(&mut self, _: &mut L) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// Checkpoints kept in memory only: what the ranks other than 0 of a distributed run use,
/// while rank 0 writes the same states to disk, so that after a divergence every rank goes
/// back to the same step.
#[derive(Default)]
pub struct InMemory {
    last: Option<(Vec<f32>, Optimizer, Progress)>,
}

impl Checkpointer<Trainer<'_>> for InMemory {
    fn save(&mut self, t: &mut Trainer, _: bool) -> Result<()> {
        self.last = Some((
            t.model.params.clone(),
            t.optimizer.clone(),
            t.progress.clone(),
        ));
        Ok(())
    }
    fn restore_last(&mut self, t: &mut Trainer) -> Result<Option<u64>> {
        let Some((params, optimizer, progress)) = &self.last else {
            return Ok(None);
        };
        t.restore(params, optimizer.clone(), progress.clone())?;
        Ok(Some(progress.step))
    }
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The trainer reached `max_steps`.
    MaxSteps,
    /// `time_limit` seconds passed.
    TimeLimit,
    /// The validation loss stayed well above its best (see [`overfitting`]).
    Overfitting,
    /// The caller's stop flag was set (a signal, say); the state was saved first.
    Interrupted,
    /// A step diverged. The trainer was put back to the last checkpoint written, at step
    /// `rolled_back_to` (`None`: nothing had been written, and the trainer holds the
    /// parameters from before the failed step, or non-finite ones if the update made them so).
    Diverged {
        error: Diverged,
        rolled_back_to: Option<u64>,
    },
}

/// What a finished step looked like, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    pub report: StepReport,
    /// Steps taken in total.
    pub step: u64,
    /// Epochs completed, with the fraction of the current one.
    pub epoch: f64,
    /// Training seconds so far, over all runs (validation excluded).
    pub seconds: f64,
    /// Exponential moving average of the training loss (weight 0.05 per step).
    pub smoothed_loss: f64,
    /// Training characters per second in this run (validation excluded).
    pub chars_per_s: f64,
    /// Seconds until a stop rule fires, at the current pace.
    pub eta_seconds: f64,
    /// The last validation loss measured, if any.
    pub last_val: Option<f64>,
    /// A classifier's last validation accuracy, if any.
    pub last_accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Step(&'a StepInfo),
    /// A validation was measured and appended to the trainer's history; `best` if it is the
    /// lowest loss so far, or for a classifier the highest accuracy (or there is no
    /// validation text, in which case every point is "best").
    Validated {
        point: &'a HistoryPoint,
        best: bool,
        /// The learning rate of the last step, and the training speed of this run.
        lr: f32,
        chars_per_s: f64,
    },
    /// The checkpoints of `step` were written.
    Saved {
        step: u64,
        best: bool,
    },
}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub reason: StopReason,
    /// Steps taken and characters trained on in this run.
    pub steps: u64,
    pub chars: usize,
    /// Seconds spent in training steps in this run, and in all (validation excluded).
    pub train_seconds: f64,
    pub wall_seconds: f64,
    pub last_val: Option<f64>,
}

impl Outcome {
    pub fn chars_per_s(&self) -> f64 {
        self.chars as f64 / self.train_seconds.max(1e-9)
    }
}

/// Trains until a stop rule fires or `stop()` returns true (checked before every step):
/// validates on `val` every `eval_every` steps and saves through `checkpoints`, and
/// validates and saves once more at the end unless the last step was just saved. Errors are
/// those of the checkpointer (a full disk, say); divergence is an [`Outcome`].
///
/// In a distributed run (the trainer's [`world`](Learner::world)) every rank calls this:
/// rank 0 decides before each step whether to go on (its `stop()`, its clock) and how far
/// through the run it is, and tells the others, so that all stop at the same step with the
/// same learning rate; every other decision follows from numbers all ranks share.
pub fn run<L: Learner + ?Sized>(
    trainer: &mut L,
    val: &L::Val,
    config: &RunConfig,
    checkpoints: &mut dyn Checkpointer<L>,
    stop: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome> {
    let start = Instant::now();
    let first_step = trainer.progress().step;
    let mut tracker = Tracker::new(trainer, config.eval);
    let (mut chars, mut train_secs) = (0usize, 0.0f64);
    let mut ema: Option<f64> = None;
    let mut last_saved: Option<u64> = None;
    let limit = config.time_limit;
    let out_of_time = |start: &Instant| limit.is_some_and(|l| start.elapsed().as_secs_f64() >= l);

    let reason = loop {
        let world = trainer.world();
        let mut agreed = [0.0; 2];
        if world.rank() == 0 {
            let code = if trainer.progress().step >= config.max_steps {
                1
            } else if out_of_time(&start) {
                2
            } else if stop() {
                3
            } else {
                0
            };
            agreed = [
                code as f64,
                run_fraction(config, trainer.progress().step, &start),
            ];
        }
        world::broadcast_f64(world, &mut agreed);
        match agreed[0] as u8 {
            1 => break StopReason::MaxSteps,
            2 => break StopReason::TimeLimit,
            3 => break StopReason::Interrupted,
            _ => {}
        }
        trainer.set_run_fraction(agreed[1]);
        let t0 = Instant::now();
        let r = match trainer.step() {
            Ok(r) => r,
            Err(error) => {
                let rolled_back_to = checkpoints.restore_last(trainer)?;
                return Ok(Outcome {
                    reason: StopReason::Diverged {
                        error,
                        rolled_back_to,
                    },
                    steps: trainer.progress().step.saturating_sub(first_step),
                    chars,
                    train_seconds: train_secs,
                    wall_seconds: start.elapsed().as_secs_f64(),
                    last_val: tracker.last_val,
                });
            }
        };
        let dt = t0.elapsed().as_secs_f64();
        trainer.progress_mut().elapsed += dt;
        train_secs += dt;
        chars += r.chars;
        ema = Some(ema.map_or(r.loss, |e| 0.95 * e + 0.05 * r.loss));
        tracker.add(r.loss);
        if trainer.progress().step.is_multiple_of(config.eval_every) {
            let speed = chars as f64 / train_secs.max(1e-9);
            tracker.validate_and_save(trainer, val, checkpoints, on_event, r.lr, speed)?;
            last_saved = Some(trainer.progress().step);
            if config.stop_when_overfitting && overfitting(&trainer.progress().history) {
                break StopReason::Overfitting;
            }
        }
        let step = trainer.progress().step;
        let steps_done = (step - first_step).max(1) as f64;
        let per_step = start.elapsed().as_secs_f64() / steps_done;
        let mut eta = config.max_steps.saturating_sub(step) as f64 * per_step;
        if let Some(l) = limit {
            eta = eta.min((l - start.elapsed().as_secs_f64()).max(0.0));
        }
        on_event(Event::Step(&StepInfo {
            report: r,
            step,
            epoch: trainer.epoch_fraction(),
            seconds: trainer.progress().elapsed,
            smoothed_loss: ema.unwrap_or(r.loss),
            chars_per_s: chars as f64 / train_secs.max(1e-9),
            eta_seconds: eta,
            last_val: tracker.last_val,
            last_accuracy: tracker.last_accuracy,
        }));
    };
    if last_saved != Some(trainer.progress().step) {
        let speed = chars as f64 / train_secs.max(1e-9);
        let lr = trainer.lr();
        tracker.validate_and_save(trainer, val, checkpoints, on_event, lr, speed)?;
    }
    Ok(Outcome {
        reason,
        steps: trainer.progress().step - first_step,
        chars,
        train_seconds: train_secs,
        wall_seconds: start.elapsed().as_secs_f64(),
        last_val: tracker.last_val,
    })
}

/// How far through the run the trainer is, for the learning-rate schedule: the larger of the
/// fraction of `max_steps` taken and of `time_limit` spent, so that the schedule reaches its
/// end when the run does, whichever rule stops it. (Steps are counted from 0, so a resumed
/// step-limited run continues its schedule exactly; a time-limited run fits the schedule to
/// the time it is given.)
pub fn run_fraction(config: &RunConfig, step: u64, start: &Instant) -> f64 {
    let by_steps = if config.max_steps == u64::MAX {
        0.0
    } else {
        step as f64 / config.max_steps.max(1) as f64
    };
    let by_time = config
        .time_limit
        .map_or(0.0, |l| start.elapsed().as_secs_f64() / l);
    by_steps.max(by_time).min(1.0)
}

/// Training losses since the last validation, and the validation that decides "best".
struct Tracker {
    eval: EvalConfig,
    loss_sum: f64,
    loss_n: usize,
    last_val: Option<f64>,
    last_accuracy: Option<f64>,
}

impl Tracker {
    fn new<L: Learner + ?Sized>(trainer: &L, eval: EvalConfig) -> Tracker {
        let history = &trainer.progress().history;
        Tracker {
            eval,
            loss_sum: 0.0,
            loss_n: 0,
            last_val: history.iter().rev().find_map(|h| h.val_loss),
            last_accuracy: history.iter().rev().find_map(|h| h.val_accuracy),
        }
    }

    fn add(&mut self, loss: f64) {
        self.loss_sum += loss;
        self.loss_n += 1;
    }

    /// Validates, records a history point, and saves (as best if the validation loss
    /// improved, or if there is no validation text).
    #[allow(clippy::too_many_arguments)]
    fn validate_and_save<L: Learner + ?Sized>(
        &mut self,
        t: &mut L,
        val_data: &L::Val,
        checkpoints: &mut dyn Checkpointer<L>,
        on_event: &mut dyn FnMut(Event),
        lr: f32,
        chars_per_s: f64,
    ) -> Result<()> {
        let validation = t.validate(val_data, &self.eval);
        let val = validation.map(|v| v.loss);
        let accuracy = validation.and_then(|v| v.accuracy);
        let improved = match (accuracy, val, t.progress().best_val_loss) {
            // A classifier keeps its most accurate state: its loss goes on rising as it
            // grows confident long after its accuracy has stopped improving (data/words: the
            // lowest loss at 28 s of 120, the highest accuracy at 44 s, 1.2 points above).
            (Some(a), _, _) => (t.progress().history.iter())
                .filter_map(|h| h.val_accuracy)
                .all(|b| a > b),
            (None, Some(v), Some(b)) => v < b,
            _ => true,
        };
        if improved && val.is_some() {
            t.progress_mut().best_val_loss = val;
        }
        if self.loss_n > 0 {
            let point = HistoryPoint {
                step: t.progress().step,
                epoch: t.epoch_fraction(),
                seconds: t.progress().elapsed,
                train_loss: self.loss_sum / self.loss_n as f64,
                val_loss: val,
                val_accuracy: accuracy,
            };
            t.progress_mut().history.push(point);
            on_event(Event::Validated {
                point: &point,
                best: improved,
                lr,
                chars_per_s,
            });
        }
        self.loss_sum = 0.0;
        self.loss_n = 0;
        self.last_val = val.or(self.last_val);
        self.last_accuracy = accuracy.or(self.last_accuracy);
        t.sync_progress_state();
        checkpoints.save(t, improved)?;
        on_event(Event::Saved {
            step: t.progress().step,
            best: improved,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(vals: &[f64]) -> Vec<HistoryPoint> {
        vals.iter()
            .enumerate()
            .map(|(i, &v)| HistoryPoint {
                step: i as u64 * 10,
                epoch: i as f64,
                seconds: i as f64,
                train_loss: 1.0,
                val_loss: Some(v),
                val_accuracy: None,
            })
            .collect()
    }

    #[test]
    fn overfitting_needs_several_validations_well_above_the_best() {
        // data/names.txt, one minute: the best, then a climb that never comes back.
        assert!(overfitting(&history(&[
            2.22, 1.98, 1.94, 1.98, 2.06, 2.13, 2.20
        ])));
        // tinyshakespeare with the rate held: within 1-2% of the best, then back.
        assert!(!overfitting(&history(&[
            1.51, 1.49, 1.467, 1.476, 1.476, 1.477, 1.475
        ])));
        // Two high points are not enough; nor is a run still improving.
        assert!(!overfitting(&history(&[2.0, 1.9, 2.1, 2.1, 1.95])));
        assert!(!overfitting(&history(&[3.0, 2.5, 2.2, 2.0])));
        assert!(!overfitting(&history(&[2.0, 2.5, 2.6])));
        // Points without a validation loss are skipped.
        let mut h = history(&[1.9, 2.1, 2.1, 2.1]);
        h.push(HistoryPoint {
            val_loss: None,
            ..h[0]
        });
        assert!(overfitting(&h));
    }
}
