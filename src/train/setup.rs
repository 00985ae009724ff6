//! A run's trainer, checked before it is built: the model a fresh run starts from (new
//! weights, or for fine-tuning another run's weights carried over to this corpus's
//! vocabulary), and the checks a resumed run must pass on today's corpus.

use crate::nn::{CellKind, Model, ModelConfig};
use crate::text::Mode;
use crate::text::corpus::{Corpus, VocabSource};
use crate::text::vocab::Vocab;
use crate::train::run::{RunConfig, run_fraction};
use crate::train::schedule::Shape;
use crate::train::{Optimizer, Progress, TrainConfig, Trainer};
use anyhow::{Result, bail};
use rand::SeedableRng;
use std::path::PathBuf;

/// Where a fresh run's weights come from.
pub enum Start<'a> {
    /// Initialised from `seed`.
    New,
    /// Another run's model over its vocabulary `vocab`: characters this corpus adds get
    /// freshly initialised rows (see [`Model::with_vocab`]); its shape is kept.
    From { model: &'a Model, vocab: &'a Vocab },
}

/// Errors if a shape the user gave (`cell`, `layers`, `hidden`) differs from the model
/// fine-tuning starts from (`from`, read from `source`).
pub fn check_fine_tune_shape(
    from: &ModelConfig,
    source: &str,
    cell: Option<CellKind>,
    layers: Option<usize>,
    hidden: Option<usize>,
) -> Result<()> {
    let given = [
        ("--cell", cell.map(|x| x.to_string()), from.cell.to_string()),
        (
            "--layers",
            layers.map(|x| x.to_string()),
            from.layers.to_string(),
        ),
        (
            "--hidden",
            hidden.map(|x| x.to_string()),
            from.hidden.to_string(),
        ),
    ];
    for (flag, given, has) in given {
        if let Some(g) = given.filter(|g| *g != has) {
            bail!(
                "{flag} {g} differs from the model of {source} ({has}); leave it out with --init-from"
            );
        }
    }
    Ok(())
}

/// The model of `config` (its vocabulary `vocab`) from `start`, with the LSTM forget-gate
/// bias set if `forget_bias` is given. Dropout is `config`'s either way.
pub fn start_model(
    config: ModelConfig,
    vocab: &Vocab,
    start: Start,
    seed: u64,
    forget_bias: Option<f32>,
) -> Result<Model> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut model = match start {
        Start::From { model, vocab: old } => {
            let mut m = model.with_vocab(old, vocab, &mut rng);
            m.config.dropout = config.dropout;
            m
        }
        Start::New => {
            let mut m = Model::new(config);
            m.init(&mut rng);
            m
        }
    };
    if let Some(b) = forget_bias {
        if model.config.cell != CellKind::Lstm {
            bail!("--forget-bias applies to --cell lstm only");
        }
        model.set_forget_bias(b);
    }
    Ok(model)
}

/// The trainer of a fresh run of `model_config` on `corpus`, its weights from `start`:
/// checks that the text holds a window and that the training buffers fit in memory before
/// anything of the model's size is allocated, and cuts the batch to the streams the text
/// fills (compare `config.batch` with the trainer's to see whether it did).
pub fn fresh<'a>(
    corpus: &'a Corpus,
    model_config: ModelConfig,
    mut config: TrainConfig,
    start: Start,
    forget_bias: Option<f32>,
) -> Result<Trainer<'a>> {
    corpus.check_window(config.seq_len)?;
    config
        .precision
        .check_available()
        .map_err(anyhow::Error::msg)?;
    if let Some(batch) = config.fit_batch(corpus.train.len().saturating_sub(1)) {
        config.batch = batch;
    }
    Trainer::check_memory(&model_config, &config)?;
    model_config.validate().map_err(anyhow::Error::msg)?;
    let model = start_model(model_config, &corpus.vocab, start, config.seed, forget_bias)?;
    let optimizer = Optimizer::new(config.optimizer, model.param_count());
    let progress = Trainer::fresh_progress(&model, &config);
    Ok(Trainer::new(
        model,
        optimizer,
        config,
        &corpus.train,
        progress,
    ))
}

/// The trainer of a resumed run on `corpus`: the text must still hold a window and the
/// epoch position the checkpoint recorded, and the training buffers must fit in memory.
pub fn resumed<'a>(
    corpus: &'a Corpus,
    model: Model,
    optimizer: Optimizer,
    config: TrainConfig,
    progress: Progress,
) -> Result<Trainer<'a>> {
    corpus.check_window(config.seq_len)?;
    config.precision.check_available().map_err(|e| {
        anyhow::anyhow!("{e}; pass --precision f32 to continue this bf16 run in f32")
    })?;
    Trainer::check_memory(&model.config, &config)?;
    let trainer = Trainer::new(model, optimizer, config, &corpus.train, progress);
    let windows = trainer.batches().windows;
    if trainer.progress.window >= windows {
        bail!(
            "the corpus has changed since the checkpoint was written: it resumes at window {} of an epoch that now has {windows}",
            trainer.progress.window
        );
    }
    Ok(trainer)
}

/// What a run continues from, as far as reading its text is concerned.
pub enum Origin<'a> {
    /// A new run from new weights.
    New,
    /// A resumed run: its checkpoint's files, mode, split and vocabulary.
    Resumed {
        sources: &'a [String],
        mode: Mode,
        val_fraction: f64,
        vocab: &'a Vocab,
    },
    /// Fine-tuning: the starting model's mode (unless given) and vocabulary, extended.
    FineTune { mode: Mode, vocab: &'a Vocab },
}

/// What a run reads, and how.
pub struct Reading<'a> {
    pub paths: Vec<PathBuf>,
    pub mode: Mode,
    pub val_fraction: f64,
    pub vocab: VocabSource<'a>,
}

/// The files, mode, split and vocabulary of a run: a resumed run keeps its checkpoint's
/// (and may name other files); otherwise what was `given`, by default stream mode and a
/// tenth held out.
pub fn reading<'a>(
    given: &[PathBuf],
    mode: Option<Mode>,
    val_fraction: Option<f64>,
    origin: Origin<'a>,
) -> Result<Reading<'a>> {
    let paths = match (&origin, given.is_empty()) {
        (_, false) => given.to_vec(),
        (Origin::Resumed { sources, .. }, true) => sources.iter().map(PathBuf::from).collect(),
        (_, true) => bail!("no corpus given: usage is `charrnn train <file or directory>...`"),
    };
    let val_fraction = val_fraction.unwrap_or(0.1);
    Ok(match origin {
        Origin::Resumed {
            mode,
            val_fraction,
            vocab,
            ..
        } => Reading {
            paths,
            mode,
            val_fraction,
            vocab: VocabSource::Fixed(vocab),
        },
        Origin::FineTune { mode: m, vocab } => Reading {
            paths,
            mode: mode.unwrap_or(m),
            val_fraction,
            vocab: VocabSource::Extend(vocab),
        },
        Origin::New => Reading {
            paths,
            mode: mode.unwrap_or(Mode::Stream),
            val_fraction,
            vocab: VocabSource::Corpus,
        },
    })
}

/// Errors if a resumed run at `step` would stop before taking a step: the run's end
/// (`max_steps`, set by `what`: `--max-steps 50`, `--epochs 2`, or the default length) is
/// at or before the checkpoint. Steps and epochs count from the run's first step.
pub fn check_resumed_length(step: u64, max_steps: u64, what: &str) -> Result<()> {
    if max_steps > step {
        return Ok(());
    }
    let more = step.saturating_mul(2).max(step + 1);
    bail!(
        "the checkpoint is at step {step} and {what} ends the run at step {max_steps}: nothing to train (--max-steps and --epochs count from the run's first step; e.g. --max-steps {more} trains {} more)",
        more - step
    )
}

/// One line if a resumed run's first step uses another learning rate than the checkpoint's
/// last step did (`None` if the rate carries on, or the checkpoint does not record it):
/// the old rate, the new one, and why (`lr_given`: a new --lr; otherwise the schedule is
/// fitted to this run's end, which the run's length or time limit moved).
pub fn lr_change(
    progress: &Progress,
    config: &TrainConfig,
    run: &RunConfig,
    lr_given: bool,
) -> Option<String> {
    let old = progress.last_lr?;
    let fraction = run_fraction(run, progress.step, &std::time::Instant::now());
    let new = config.lr.lr(progress.epoch, fraction);
    if (new - old).abs() <= 1e-6 * old.abs() {
        return None;
    }
    let why = if lr_given {
        format!("--lr {} sets a new base rate", config.lr.base)
    } else if config.lr.shape == Shape::Cosine {
        match run.time_limit {
            Some(t) => format!(
                "the schedule is fitted to this run's --time-limit {t} s, so it starts again at its warm-up"
            ),
            None => format!(
                "the schedule is fitted to this run's end at step {}, {:.0}% of the way through at step {}",
                run.max_steps,
                100.0 * fraction,
                progress.step
            ),
        }
    } else {
        "the schedule changed".into()
    };
    Some(format!(
        "the learning rate goes from {old:.3e} (the checkpoint's last step) to {new:.3e}: {why}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_follows_the_run_it_continues() {
        let vocab = Vocab::from_texts(["abc"]);
        let given = [PathBuf::from("new.txt")];
        let sources = ["/data/old.txt".to_string()];
        let resumed = || Origin::Resumed {
            sources: &sources,
            mode: Mode::Lines,
            val_fraction: 0.2,
            vocab: &vocab,
        };
        let r = reading(&[], None, None, resumed()).unwrap();
        assert_eq!(r.paths, [PathBuf::from("/data/old.txt")]);
        assert_eq!((r.mode, r.val_fraction), (Mode::Lines, 0.2));
        assert!(matches!(r.vocab, VocabSource::Fixed(_)));
        assert_eq!(reading(&given, None, None, resumed()).unwrap().paths, given);
        let tune = |mode| Origin::FineTune {
            mode,
            vocab: &vocab,
        };
        let r = reading(&given, None, Some(0.05), tune(Mode::Lines)).unwrap();
        assert_eq!((r.mode, r.val_fraction), (Mode::Lines, 0.05));
        assert!(matches!(r.vocab, VocabSource::Extend(_)));
        let r = reading(&given, Some(Mode::Stream), None, tune(Mode::Lines)).unwrap();
        assert_eq!((r.mode, r.val_fraction), (Mode::Stream, 0.1));
        let r = reading(&given, None, None, Origin::New).unwrap();
        assert!(r.mode == Mode::Stream && matches!(r.vocab, VocabSource::Corpus));
        let e = reading(&[], None, None, Origin::New).err().unwrap();
        assert!(e.to_string().contains("no corpus given"), "{e}");
    }

    #[test]
    fn what_a_resumed_run_checks_and_says() {
        let from = ModelConfig {
            cell: CellKind::Gru,
            layers: 2,
            hidden: 64,
            vocab_size: 10,
            dropout: 0.25,
        };
        assert!(check_resumed_length(100, 101, "--max-steps 101").is_ok());
        let e = check_resumed_length(100, 50, "--max-steps 50")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at step 100")
                && e.contains("--max-steps 50 ends the run at step 50")
                && e.contains("--max-steps 200"),
            "{e}"
        );
        assert!(check_resumed_length(100, 100, "--max-steps 100").is_err());

        let config = TrainConfig {
            lr: crate::train::schedule::LrSchedule::cosine(1e-3, 0.0, 0.1, 1.0),
            ..TrainConfig::default()
        };
        let mut progress = Trainer::fresh_progress(&Model::new(from), &config);
        progress.step = 100;
        let run = |max_steps| RunConfig {
            max_steps,
            time_limit: None,
            eval_every: 10,
            eval: Default::default(),
            stop_when_overfitting: false,
        };
        // At the end of a 100-step run the rate is at its floor; a run to step 200 puts it
        // half-way down the cosine.
        progress.last_lr = Some(config.lr.lr(0, 1.0));
        assert_eq!(lr_change(&progress, &config, &run(100), false), None);
        let line = lr_change(&progress, &config, &run(200), false).unwrap();
        assert!(
            line.contains("from 1.000e-4")
                && line.contains("to 5.500e-4")
                && line.contains("end at step 200"),
            "{line}"
        );
        assert!(
            lr_change(&progress, &config, &run(100), true).is_none(),
            "same rate"
        );
        progress.last_lr = None;
        assert_eq!(lr_change(&progress, &config, &run(200), false), None);
    }
}
