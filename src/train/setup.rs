//! A run's trainer, checked before it is built: the model a fresh run starts from (new
//! weights, or for fine-tuning another run's weights carried over to this corpus's
//! vocabulary), and the checks a resumed run must pass on today's corpus.

use crate::nn::{CellKind, Model, ModelConfig};
use crate::text::corpus::Corpus;
use crate::text::vocab::Vocab;
use crate::train::{Optimizer, Progress, TrainConfig, Trainer};
use anyhow::{Result, bail};
use rand::SeedableRng;

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
