//! A classifier run's defaults, and its trainer from new weights or from a checkpoint's,
//! checked before it is built (the classifier's counterpart of [`crate::train::setup`]).

use super::{ClassWeights, ClassifierTrainer};
use crate::nn::CellKind;
use crate::nn::classifier::{Classifier, ClassifierConfig, Pool};
use crate::text::labeled::{Examples, LabeledData};
use crate::train::schedule::LrSchedule;
use crate::train::{Optimizer, Progress, TrainConfig};
use anyhow::{Result, bail};
use rand::SeedableRng;

/// Hidden units per layer and direction when not given.
pub const HIDDEN: usize = 128;
/// Characters kept of each line when not given (`--seq-len`).
pub const MAX_LEN: usize = 256;
/// Lines per batch when not given.
pub const BATCH: usize = 32;
/// Pooling when not given: on data/words (12 languages, a minute of a bidirectional 2x128
/// LSTM), max 79.0% test accuracy, mean 78.2%, final 78.2% (bench/results/2026-12-01-classify.md).
pub const POOL: Pool = Pool::Max;
/// Dropout when not given: the same run over-fits within half a minute without it (best
/// validation loss 0.574 at 28 s, stopped early); with 0.3, 0.557 at 41 s.
pub const DROPOUT: f32 = 0.3;

/// The learning-rate schedule when not given: the language model's rate for the width,
/// held, then a half cosine down to 5% of it over the last 40% of the run (its time budget,
/// steps or epochs), after a 2% warm-up. Measured against the epoch schedule (the rate held
/// for 10 epochs, then x0.97 per epoch), two minutes of the default model: on 216,000 words
/// of twelve languages (`data/make_words.py --train 20000`) 86.95% test accuracy against
/// 85.97%; on data/words 79.52% against 79.72% (bench/results/2026-12-01-classify.md).
pub fn schedule(hidden: usize) -> LrSchedule {
    LrSchedule::cosine(crate::train::recipe::lr_for(hidden), 0.02, 0.05, 0.4)
}

/// The longest sequence of `examples`.
pub fn longest(examples: &Examples) -> usize {
    (0..examples.len())
        .map(|i| examples.seq(i).len())
        .max()
        .unwrap_or(1)
}

/// The trainer of a fresh run of `model` on `data`: the batch cut to the examples there
/// are, the buffers checked against the memory available before anything of the model's
/// size is allocated, weights initialised from `config.seed`.
pub fn fresh<'a>(
    data: &'a LabeledData,
    model: ClassifierConfig,
    mut config: TrainConfig,
    class_weights: ClassWeights,
    forget_bias: Option<f32>,
) -> Result<ClassifierTrainer<'a>> {
    if data.train.is_empty() {
        bail!("no training examples are left after the validation split; lower --val-fraction");
    }
    if let Some(b) = ClassifierTrainer::fit_batch(config.batch, data.train.len()) {
        config.batch = b;
    }
    model.validate().map_err(anyhow::Error::msg)?;
    ClassifierTrainer::check_memory(&model, &config, longest(&data.train))?;
    let mut m = Classifier::new(model);
    m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(config.seed));
    if let Some(b) = forget_bias {
        if model.cell != CellKind::Lstm {
            bail!("--forget-bias applies to --cell lstm only");
        }
        m.set_forget_bias(b);
    }
    let weights = class_weights.weights(&data.train.counts(model.labels));
    let optimizer = Optimizer::new(config.optimizer, m.param_count());
    let progress = ClassifierTrainer::fresh_progress();
    Ok(ClassifierTrainer::new(
        m,
        optimizer,
        config,
        &data.train,
        weights,
        progress,
    ))
}

/// The trainer of a resumed run: the data must still give the split the checkpoint
/// recorded (`train_examples`), and the buffers must fit in memory.
pub fn resumed<'a>(
    data: &'a LabeledData,
    model: Classifier,
    optimizer: Optimizer,
    config: TrainConfig,
    weights: Option<Vec<f32>>,
    progress: Progress,
    train_examples: usize,
) -> Result<ClassifierTrainer<'a>> {
    if data.train.len() != train_examples || config.batch > data.train.len() {
        bail!(
            "the data has changed since the checkpoint was written: its split now has {} training lines, the checkpoint recorded {train_examples}",
            data.train.len()
        );
    }
    ClassifierTrainer::check_memory(&model.config, &config, longest(&data.train))?;
    let t = ClassifierTrainer::new(model, optimizer, config, &data.train, weights, progress);
    if t.progress.window >= t.batches_per_epoch() {
        bail!(
            "the data has changed since the checkpoint was written: it resumes at batch {} of an epoch that now has {}",
            t.progress.window,
            t.batches_per_epoch()
        );
    }
    Ok(t)
}

/// One line saying how the loss weighs the labels, for the run's summary.
pub fn describe_weights(class_weights: ClassWeights, counts: &[usize]) -> String {
    let (lo, hi) = (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
    );
    match class_weights {
        ClassWeights::None if hi > 2 * lo.max(1) => format!(
            "labels are not weighted: each line counts the same, and the largest label has {:.1}x the lines of the smallest (--class-weights balanced makes each label count the same)",
            hi as f64 / lo.max(1) as f64
        ),
        ClassWeights::None => "labels are not weighted: each line counts the same".into(),
        ClassWeights::Balanced => {
            "labels are weighted n / (C · n_label): each label counts the same in the loss".into()
        }
    }
}
