//! A run's trainer, checked before it is built: the model a fresh run starts from (new
//! weights, or for fine-tuning another run's weights carried over to this corpus's
//! vocabulary), and the checks a resumed run must pass on today's corpus.

use crate::analysis::eval::EvalConfig;
use crate::nn::{CellKind, Model, ModelConfig};
use crate::text::Mode;
use crate::text::corpus::{Corpus, VocabSource};
use crate::text::vocab::Vocab;
use crate::train::run::{RunConfig, run_fraction};
use crate::train::schedule::Shape;
use crate::train::{Optimizer, Progress, TrainConfig, Trainer};
use crate::world::Collective;
use anyhow::{Result, bail};
use rand::SeedableRng;
use std::ops::Range;
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
            m.config.output_dropout = config.output_dropout;
            m.config.weight_drop = config.weight_drop;
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

/// The flags of a fresh run that decide how it is spread over processes and cores.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// `--batch-size`, if given.
    pub batch: Option<usize>,
    /// `--threads` (per rank), if given.
    pub threads: Option<usize>,
    /// Whether `--lr` was given.
    pub lr: bool,
    /// The default batch divided by this: the recipe's smaller step for a short budget
    /// (`crate::train::recipe::STEPS`), on as many shards as the default.
    pub divide_batch: Option<usize>,
}

/// Streams per shard below which a shard's matrix products waste more than a core gains.
pub const MIN_STREAMS_PER_SHARD: usize = 16;
/// The batch the default learning rates were chosen for (README, Defaults).
pub const BASE_BATCH: usize = 64;

/// The default batch for `shards` shards over all ranks: 64 streams, or 16 per shard when
/// there are more than four, so that more cores and more ranks train on more text per step
/// rather than on thinner shards of the same 64 streams.
pub fn default_batch(shards: usize) -> usize {
    (MIN_STREAMS_PER_SHARD * shards).max(BASE_BATCH)
}

/// How the learning rate chosen for [`BASE_BATCH`] streams scales to `batch`: in
/// proportion up to 4 times the rate, then no further. Measured on tinyshakespeare with a
/// 2x256 LSTM (bench/results/2026-12-01-mpi.md): at batch 256, 4 times the rate beat 2
/// times (the square-root rule) and the rate itself, reaching batch 64's loss in 2.5 times
/// fewer steps; at batch 1024, 8 times the rate did not train, 4 times did.
pub fn lr_scale(batch: usize) -> f32 {
    (batch as f32 / BASE_BATCH as f32).clamp(1.0, MAX_LR_SCALE)
}

/// The most [`lr_scale`] multiplies a rate by.
pub const MAX_LR_SCALE: f32 = 4.0;

/// A fresh run's shards, batch and learning rate on `ranks` processes of `cores` cores each:
/// `threads` shards per rank (by default one per core, and with a given batch at most one
/// per 16 of its streams), the batch by [`default_batch`] unless given, and the learning
/// rate of `config` scaled by [`lr_scale`] when neither the batch nor the rate was given.
/// `config.threads` becomes the shards over all ranks.
pub fn spread(mut config: TrainConfig, ranks: usize, cores: usize, given: Spread) -> TrainConfig {
    let per_rank = given.threads.unwrap_or(match given.batch {
        Some(b) => (b / (MIN_STREAMS_PER_SHARD * ranks)).clamp(1, cores.max(1)),
        None => cores.max(1),
    });
    config.threads = per_rank * ranks;
    config.batch = given.batch.unwrap_or_else(|| {
        (default_batch(config.threads) / given.divide_batch.unwrap_or(1)).max(config.threads)
    });
    if given.batch.is_none() && !given.lr {
        config.lr.base *= lr_scale(config.batch);
    }
    config
}

/// What rank `rank` of `ranks` keeps of a corpus it trains on under `config` and
/// validates on under `eval` (see [`crate::text::reader::read_corpus_part`]): the streams
/// of its training shards and of its validation shards. One process keeps everything.
pub fn keep_for(
    ranks: usize,
    rank: usize,
    config: TrainConfig,
    eval: EvalConfig,
) -> impl Fn(usize, usize) -> (Range<usize>, Range<usize>) {
    move |train_len, val_len| {
        let mut config = config;
        if let Some(b) = config.fit_batch(train_len.saturating_sub(1)) {
            config.batch = b;
        }
        if ranks == 1 || config.check_ranks(ranks).is_err() || config.batch < ranks {
            // Refused later with the reason; until then, nothing is left out.
            return (0..usize::MAX, 0..usize::MAX);
        }
        let eval = EvalConfig {
            threads: config.threads,
            ..eval
        };
        (
            crate::train::trainer::token_span(&config, train_len, ranks, rank),
            crate::analysis::eval::token_span(val_len, &eval, ranks, rank),
        )
    }
}

/// Errors unless `config` can run on the ranks of `world`: at least one stream per shard,
/// and the same number of shards on every rank.
pub fn check_ranks(world: &dyn Collective, config: &TrainConfig) -> Result<()> {
    let ranks = world.size();
    if config.batch < ranks {
        bail!(
            "--batch-size {} is fewer streams than the {ranks} ranks: each rank needs at least one",
            config.batch
        );
    }
    config.check_ranks(ranks).map_err(anyhow::Error::msg)
}

/// The trainer of a fresh run of `model_config` on `corpus`, its weights from `start`:
/// checks that the text holds a window and that the training buffers fit in memory before
/// anything of the model's size is allocated, and cuts the batch to the streams the text
/// fills (compare `config.batch` with the trainer's to see whether it did). In a distributed
/// run, this rank's part of it (see [`Trainer::in_world`]).
pub fn fresh<'a>(
    world: &'a dyn Collective,
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
    check_ranks(world, &config)?;
    Trainer::check_memory(&model_config, &config, world.size())?;
    model_config.validate().map_err(anyhow::Error::msg)?;
    let model = start_model(model_config, &corpus.vocab, start, config.seed, forget_bias)?;
    let optimizer = Optimizer::new(config.optimizer, model.param_count());
    let progress = Trainer::fresh_progress(&model, &config);
    Ok(Trainer::in_world(
        world,
        model,
        optimizer,
        config,
        &corpus.train,
        progress,
    ))
}

/// The trainer of a resumed run on `corpus`: the text must still hold a window and the
/// epoch position the checkpoint recorded, and the training buffers must fit in memory.
/// The shards are the checkpoint's, shared among the ranks of `world` (any number that
/// divides them: see [`crate::world`] for when that changes the last bits).
pub fn resumed<'a>(
    world: &'a dyn Collective,
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
    if let Err(e) = check_ranks(world, &config) {
        bail!("cannot resume on {} ranks: {e:#}", world.size());
    }
    Trainer::check_memory(&model.config, &config, world.size())?;
    let trainer = Trainer::in_world(world, model, optimizer, config, &corpus.train, progress);
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

    /// Two cores and no flags: today's 2 shards of 64 streams; many cores or ranks: 16
    /// streams per shard and a rate scaled with the batch, at most 4 times.
    #[test]
    fn the_batch_grows_with_the_shards() {
        let base = TrainConfig::default();
        let s = |ranks, cores, given| spread(base, ranks, cores, given);
        let c = s(1, 2, Spread::default());
        assert_eq!((c.threads, c.batch, c.lr.base), (2, 64, base.lr.base));
        let c = s(1, 64, Spread::default());
        assert_eq!(
            (c.threads, c.batch, c.lr.base),
            (64, 1024, base.lr.base * 4.0)
        );
        let c = s(8, 8, Spread::default());
        assert_eq!((c.threads, c.batch), (64, 1024));
        let given = Spread {
            batch: Some(64),
            ..Spread::default()
        };
        let c = s(1, 64, given);
        assert_eq!((c.threads, c.batch, c.lr.base), (4, 64, base.lr.base));
        let c = s(2, 64, given);
        assert_eq!((c.threads, c.batch), (4, 64));
        let c = s(
            4,
            2,
            Spread {
                threads: Some(3),
                lr: true,
                ..Spread::default()
            },
        );
        assert_eq!((c.threads, c.batch, c.lr.base), (12, 192, base.lr.base));
        // The recipe's smaller step keeps the shards: 8 streams each on two cores.
        let smaller = Spread {
            divide_batch: Some(4),
            ..Spread::default()
        };
        let c = s(1, 2, smaller);
        assert_eq!((c.threads, c.batch, c.lr.base), (2, 16, base.lr.base));
        let c = s(1, 64, smaller);
        assert_eq!(
            (c.threads, c.batch, c.lr.base),
            (64, 256, base.lr.base * 4.0)
        );
        let c = s(
            1,
            64,
            Spread {
                divide_batch: Some(64),
                ..Spread::default()
            },
        );
        assert_eq!((c.threads, c.batch), (64, 64));
    }

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
            output_dropout: 0.0,
            weight_drop: 0.0,
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
