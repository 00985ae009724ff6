//! Training a classifier: one optimizer step on a batch of labelled sequences of about one
//! length (see [`epoch_batches`]), the batch split into shards that run forward and backward
//! side by side, gradients summed, clipped, one update; label weights for imbalanced data.
//! The run loop drives it as it drives the language model (see [`Learner`]).
//!
//! As for the language model, [`Progress`] plus the model and optimizer is the whole state:
//! an epoch's batches are drawn from `(seed, epoch)` and a step's dropout masks from
//! `(seed, step, shard)`, so that a checkpoint resumes bit for bit.

pub mod setup;

use crate::analysis::classify::evaluate;
use crate::analysis::eval::EvalConfig;
use crate::nn::State;
use crate::nn::classifier::{Classifier, ClassifierConfig, ClassifierPacked, ClassifierWorkspace};
use crate::text::batches::shard_rows;
use crate::text::labeled::{Examples, epoch_batches};
use crate::train::optim::{Optimizer, clip_to, sum_shards};
use crate::train::run::{Learner, Outcome, StopReason, Validation};
use crate::train::trainer::{Diverged, Progress, StepReport, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::ops::Range;

/// How the loss weighs the labels. The names are those of the command line and checkpoints.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    /// Every example counts the same: a label with ten times the examples weighs ten times
    /// as much in the loss
    None,
    /// Each label counts the same in total: weight n / (C · n_label), scikit-learn's
    /// "balanced"
    Balanced,
}

crate::value_enum_display!(ClassWeights);

impl ClassWeights {
    /// The weight of each label, [C], from the training examples per label; `None` for
    /// [`ClassWeights::None`]. A label without examples gets weight 0.
    pub fn weights(self, counts: &[usize]) -> Option<Vec<f32>> {
        let n: usize = counts.iter().sum();
        let c = counts.len() as f64;
        match self {
            ClassWeights::None => None,
            ClassWeights::Balanced => Some(
                counts
                    .iter()
                    .map(|&k| {
                        if k == 0 {
                            0.0
                        } else {
                            (n as f64 / (c * k as f64)) as f32
                        }
                    })
                    .collect(),
            ),
        }
    }
}

struct Shard {
    rows: Range<usize>,
    ws: ClassifierWorkspace,
    grads: Vec<f32>,
}

/// A classifier, its optimizer and where training stands, over training examples.
/// `config.seq_len` is the longest sequence (lines were cut to it when read).
pub struct ClassifierTrainer<'a> {
    pub model: Classifier,
    pub optimizer: Optimizer,
    pub config: TrainConfig,
    pub progress: Progress,
    /// The loss weight of each label, [C] (`None`: all 1).
    pub weights: Option<Vec<f32>>,
    data: &'a Examples,
    lens: Vec<usize>,
    /// The current epoch's batches, and which epoch they are.
    batches: Vec<Vec<u32>>,
    batches_of: Option<usize>,
    shards: Vec<Shard>,
    packed: ClassifierPacked,
    /// A batch loss above this counts as divergence.
    pub max_loss: f64,
    pub run_fraction: f64,
}

impl<'a> ClassifierTrainer<'a> {
    /// A trainer over `data`, starting from `progress` (fresh: [`Progress`] at step 0, see
    /// [`ClassifierTrainer::fresh_progress`]). `config.batch` must be at most the number of
    /// examples (see [`ClassifierTrainer::fit_batch`]).
    pub fn new(
        model: Classifier,
        optimizer: Optimizer,
        config: TrainConfig,
        data: &'a Examples,
        weights: Option<Vec<f32>>,
        progress: Progress,
    ) -> ClassifierTrainer<'a> {
        assert!(
            config.batch >= 1 && config.batch <= data.len(),
            "batch vs examples"
        );
        let lens: Vec<usize> = (0..data.len()).map(|i| data.seq(i).len()).collect();
        let t_cap = lens.iter().copied().max().unwrap_or(1);
        let n = config.threads.clamp(1, config.batch);
        let shards = (0..n)
            .map(|i| {
                let rows = shard_rows(config.batch, n, i);
                Shard {
                    ws: ClassifierWorkspace::new(&model.config, rows.len(), t_cap),
                    grads: vec![0.0; model.param_count()],
                    rows,
                }
            })
            .collect();
        ClassifierTrainer {
            packed: ClassifierPacked::training(&model),
            max_loss: (3.0 * (model.config.labels as f64).ln()).max(5.0),
            model,
            optimizer,
            config,
            progress,
            weights,
            data,
            lens,
            batches: Vec::new(),
            batches_of: None,
            shards,
            run_fraction: 0.0,
        }
    }

    pub fn fresh_progress() -> Progress {
        Progress {
            step: 0,
            epoch: 0,
            window: 0,
            state: State::default(),
            best_val_loss: None,
            elapsed: 0.0,
            history: Vec::new(),
            last_lr: None,
        }
    }

    /// The batch to use instead of `batch` when there are fewer examples than that.
    pub fn fit_batch(batch: usize, examples: usize) -> Option<usize> {
        (examples < batch).then_some(examples.max(1))
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.data.len() / self.config.batch
    }

    /// An upper bound on the bytes a trainer holds (parameters, moments, packed weights, and
    /// per shard a gradient buffer and a workspace for sequences of up to `t_cap`), checked.
    pub fn memory_bytes(
        model: &ClassifierConfig,
        config: &TrainConfig,
        t_cap: usize,
    ) -> Option<u64> {
        let p = (model.param_count()? as u64).checked_mul(4)?;
        let shards = config.threads.clamp(1, config.batch.max(1));
        let rows = config.batch.div_ceil(shards);
        let shard = p.checked_add(ClassifierWorkspace::bytes(model, rows, t_cap, true)?)?;
        p.checked_mul(5)?
            .checked_add(shard.checked_mul(shards as u64)?)
    }

    /// Refuses a model and batch whose buffers would not fit in memory, before allocating.
    pub fn check_memory(
        model: &ClassifierConfig,
        config: &TrainConfig,
        t_cap: usize,
    ) -> anyhow::Result<()> {
        crate::fs::check_fits(
            ClassifierTrainer::memory_bytes(model, config, t_cap),
            &format!(
                "training a {}x{} {} classifier with batch {} and lines of up to {t_cap} characters on {} threads",
                model.layers,
                model.hidden,
                model.cell,
                config.batch,
                config.threads.min(config.batch)
            ),
            "use a smaller --hidden, --layers, --batch-size, --seq-len or --threads",
        )
    }

    /// One line describing the model and how it trains, for the run's summary.
    pub fn describe(&self, vocab_size: usize) -> String {
        let (m, c) = (&self.model.config, &self.config);
        format!(
            "{}{} {}x{}, pool {}, {} parameters, vocabulary {vocab_size}, {} labels | batch {}, {} threads ({} kernels), {} batches per epoch",
            if m.bidirectional {
                "bidirectional "
            } else {
                ""
            },
            m.cell,
            m.layers,
            m.hidden,
            m.pool,
            self.model.param_count(),
            m.labels,
            c.batch,
            c.threads.min(c.batch),
            crate::kernels::isa().name(),
            self.batches_per_epoch()
        )
    }

    /// One line on how a run ended: where, how fast, its last validation, its most accurate
    /// (the best kept), and the checkpoint `kept`.
    pub fn describe_end(&self, outcome: &Outcome, kept: &std::path::Path) -> String {
        let p = &self.progress;
        let acc = p.history.iter().rev().find_map(|h| h.val_accuracy);
        let best = p
            .history
            .iter()
            .filter_map(|h| h.val_accuracy)
            .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
        let num = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.4}"));
        let pct = |v: Option<f64>| v.map_or("n/a".into(), |a| format!("{:.2}%", 100.0 * a));
        format!(
            "{} at step {} (epoch {:.2}) after {:.1}s, {:.0} chars/s; validation accuracy {}, loss {}; best accuracy {} (loss {}) -> {}",
            if outcome.reason == StopReason::Interrupted {
                "interrupted"
            } else {
                "stopped"
            },
            p.step,
            self.epoch_fraction(),
            outcome.wall_seconds,
            outcome.chars_per_s(),
            pct(acc),
            num(outcome.last_val),
            pct(best),
            num(p.best_val_loss),
            kept.display(),
        )
    }

    /// Puts the trainer back to a saved state (after divergence).
    pub fn restore(&mut self, params: &[f32], optimizer: Optimizer, progress: Progress) {
        assert_eq!(params.len(), self.model.params.len(), "restore: parameters");
        self.model.params.copy_from_slice(params);
        self.optimizer = optimizer;
        self.progress = progress;
    }
}

impl Learner for ClassifierTrainer<'_> {
    type Val = Examples;

    /// One optimizer step on the next batch of the epoch.
    fn step(&mut self) -> Result<StepReport, Diverged> {
        let epoch = self.progress.epoch;
        if self.batches_of != Some(epoch) {
            self.batches = epoch_batches(&self.lens, self.config.batch, self.config.seed, epoch);
            self.batches_of = Some(epoch);
        }
        let idx = &self.batches[self.progress.window];
        let seqs: Vec<&[u32]> = idx.iter().map(|&i| self.data.seq(i as usize)).collect();
        let labels: Vec<u32> = idx.iter().map(|&i| self.data.labels[i as usize]).collect();
        let chars: usize = seqs.iter().map(|s| s.len()).sum();
        let weight = |y: u32| self.weights.as_ref().map_or(1.0, |w| w[y as usize]);
        let total: f32 = labels.iter().map(|&y| weight(y)).sum();
        let scale = 1.0 / total.max(f32::MIN_POSITIVE);
        self.packed.sync(&self.model);
        let (model, packed, weights) = (&self.model, &self.packed, self.weights.as_deref());
        let (seed, step) = (self.config.seed, self.progress.step);
        let losses: Vec<f64> = self
            .shards
            .par_iter_mut()
            .enumerate()
            .map(|(i, s)| {
                s.grads.fill(0.0);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(step * 1024 + i as u64);
                let (sq, lb) = (&seqs[s.rows.clone()], &labels[s.rows.clone()]);
                let loss = model.forward_loss(packed, &mut s.ws, sq, lb, weights, Some(&mut rng));
                model.backward(packed, &mut s.ws, &mut s.grads, scale);
                loss
            })
            .collect();
        let loss = losses.iter().sum::<f64>() * scale as f64;
        let (first, rest) = self.shards.split_first_mut().unwrap();
        let rest: Vec<&[f32]> = rest.iter().map(|s| &s.grads[..]).collect();
        let grad_norm = sum_shards(&mut first.grads, &rest);
        clip_to(&mut first.grads, grad_norm, self.config.grad_clip);
        let diverged = |params_non_finite| Diverged {
            step: step + 1,
            loss,
            grad_norm,
            params_non_finite,
        };
        if !loss.is_finite() || !grad_norm.is_finite() || loss > self.max_loss {
            return Err(diverged(false));
        }
        let lr = self.config.lr.lr(self.progress.epoch, self.run_fraction);
        if !self
            .optimizer
            .update(&mut self.model.params, &first.grads, lr)
        {
            return Err(diverged(true));
        }
        self.progress.step += 1;
        self.progress.last_lr = Some(lr);
        self.progress.window += 1;
        if self.progress.window == self.batches.len() {
            self.progress.window = 0;
            self.progress.epoch += 1;
        }
        Ok(StepReport {
            loss,
            grad_norm,
            chars,
            lr,
        })
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn progress_mut(&mut self) -> &mut Progress {
        &mut self.progress
    }

    fn epoch_fraction(&self) -> f64 {
        self.progress.epoch as f64
            + self.progress.window as f64 / self.batches_per_epoch().max(1) as f64
    }

    fn set_run_fraction(&mut self, fraction: f64) {
        self.run_fraction = fraction;
    }

    fn lr(&self) -> f32 {
        self.config.lr.lr(self.progress.epoch, self.run_fraction)
    }

    fn validate(&mut self, val: &Examples, eval: &EvalConfig) -> Option<Validation> {
        if val.is_empty() {
            return None;
        }
        let threads = eval.threads.max(self.config.threads);
        let stats = evaluate(&self.model, val, self.weights.as_deref(), threads);
        Some(Validation {
            loss: stats.loss(),
            accuracy: Some(stats.accuracy()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;
    use crate::nn::classifier::Pool;
    use crate::train::run::{self, NoCheckpoints, RunConfig, StopReason};
    use crate::train::schedule::LrSchedule;

    /// Words whose label is whether they contain an 'a' before a 'b': the answer depends on
    /// the order of characters anywhere in the word.
    fn data(n: usize, seed: u64) -> Examples {
        use rand::RngExt;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ex = Examples::default();
        ex.offsets.push(0);
        for _ in 0..n {
            let len = rng.random_range(2..9);
            let ids: Vec<u32> = (0..len).map(|_| rng.random_range(2..6)).collect();
            let a = ids.iter().position(|&x| x == 2);
            let b = ids.iter().position(|&x| x == 3);
            let y = u32::from(matches!((a, b), (Some(a), Some(b)) if a < b));
            ex.ids.extend(&ids);
            ex.offsets.push(ex.ids.len());
            ex.labels.push(y);
        }
        ex
    }

    fn setup(cell: CellKind, threads: usize, dropout: f32) -> (Classifier, TrainConfig) {
        let mut m = Classifier::new(ClassifierConfig {
            cell,
            layers: 2,
            hidden: 16,
            bidirectional: true,
            pool: Pool::Max,
            vocab_size: 6,
            labels: 2,
            dropout,
        });
        m.init(&mut ChaCha8Rng::seed_from_u64(1));
        let config = TrainConfig {
            batch: 32,
            seq_len: 8,
            lr: LrSchedule {
                base: 1e-2,
                decay: 1.0,
                after: 0,
                ..LrSchedule::default()
            },
            threads,
            seed: 5,
            ..TrainConfig::default()
        };
        (m, config)
    }

    fn trainer(m: Classifier, config: TrainConfig, data: &Examples) -> ClassifierTrainer<'_> {
        let opt = Optimizer::new(config.optimizer, m.param_count());
        ClassifierTrainer::new(
            m,
            opt,
            config,
            data,
            None,
            ClassifierTrainer::fresh_progress(),
        )
    }

    /// Each cell learns an order-dependent rule through the run loop: validation accuracy
    /// well above the majority label's share.
    #[test]
    fn learns_an_order_dependent_rule() {
        let (train, val) = (data(1024, 1), data(256, 2));
        let majority = val.counts(2).into_iter().max().unwrap() as f64 / 256.0;
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let (m, config) = setup(cell, 2, 0.0);
            let mut t = trainer(m, config, &train);
            let rc = RunConfig {
                max_steps: 300,
                time_limit: None,
                eval_every: 100,
                eval: EvalConfig::default(),
                stop_when_overfitting: false,
            };
            let mut accs = Vec::new();
            let outcome = run::run(&mut t, &val, &rc, &mut NoCheckpoints, &|| false, &mut |e| {
                if let run::Event::Validated { point, best, .. } = e {
                    // The best state is the most accurate so far, whatever the loss.
                    let a = point.val_accuracy.unwrap();
                    assert_eq!(best, accs.iter().all(|&b| a > b), "{accs:?} then {a}");
                    accs.push(a);
                }
            })
            .unwrap();
            assert_eq!(outcome.reason, StopReason::MaxSteps);
            assert_eq!(t.progress.epoch, 300 / 32);
            let last = *accs.last().unwrap();
            assert!(
                last > 0.95 && last > majority + 0.2,
                "{cell}: accuracy {accs:?}, majority {majority}"
            );
        }
    }

    /// Shards change only the order of sums; the same seed gives the same parameters.
    #[test]
    fn shards_agree_and_runs_repeat() {
        let train = data(200, 3);
        let run = |threads: usize| {
            let (m, config) = setup(CellKind::Gru, threads, 0.2);
            let mut t = trainer(m, config, &train);
            for _ in 0..8 {
                t.step().unwrap();
            }
            (t.model.params, t.progress.epoch, t.progress.window)
        };
        let (a, b) = (run(1), run(1));
        assert_eq!(a, b);
        assert_eq!((a.1, a.2), (1, 2), "6 batches of 32 per epoch");
        let (m, config) = setup(CellKind::Gru, 1, 0.0);
        let (m2, config2) = (
            m.clone(),
            TrainConfig {
                threads: 3,
                ..config
            },
        );
        let (mut one, mut three) = (trainer(m, config, &train), trainer(m2, config2, &train));
        for _ in 0..4 {
            let (x, y) = (one.step().unwrap(), three.step().unwrap());
            assert!((x.loss - y.loss).abs() < 1e-5 && x.chars == y.chars);
        }
        let diff = one
            .model
            .params
            .iter()
            .zip(&three.model.params)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn balanced_weights() {
        let w = ClassWeights::Balanced.weights(&[90, 10, 0]).unwrap();
        assert!((w[0] - 100.0 / 270.0).abs() < 1e-6 && (w[1] - 100.0 / 30.0).abs() < 1e-6);
        assert_eq!(w[2], 0.0);
        // Each present label weighs the same in total.
        assert!((w[0] * 90.0 - w[1] * 10.0).abs() < 1e-4);
        assert_eq!(ClassWeights::None.weights(&[1, 2]), None);
    }
}
