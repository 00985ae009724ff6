//! A run's trainer, checked before it is built: the model a fresh run starts from (new
//! weights, or for fine-tuning another run's weights carried over to this corpus's
//! vocabulary), and the checks a resumed run must pass on today's corpus.

use crate::nn::{CellKind, Model, ModelConfig};
use crate::text::Mode;
use crate::text::corpus::{Corpus, VocabSource};
use crate::text::vocab::Vocab;
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
}
