//! The defaults a fresh run chooses for its corpus and budget (`charrnn::train::recipe`),
//! and the command that repeats a time-limited run in steps.

use crate::cli::TrainArgs;
use anyhow::Result;
use charrnn::io::rundir::unused_sibling;
use charrnn::nn::ModelConfig;
use charrnn::text::corpus::Corpus;
use charrnn::train::recipe::{self, Recipe};
use charrnn::train::setup;
use charrnn::train::{TrainConfig, Trainer};
use charrnn::world::Collective;

/// The defaults of a fresh run (see `charrnn::train::recipe`): with --time-limit, the width
/// the budget allows on this machine (measured in about half a second, returned too);
/// dropout and learning rate for the model and the corpus. `fixed`: the model fine-tuning
/// starts from, whose shape is not chosen.
pub fn choose_recipe(
    world: &dyn Collective,
    args: &TrainArgs,
    corpus: &Corpus,
    fixed: Option<&ModelConfig>,
) -> Result<(Recipe, Option<recipe::Calibration>)> {
    let threads = args.threads.unwrap_or_else(|| super::default_threads(64));
    let hidden = fixed.map(|f| f.hidden).or(args.hidden);
    let (d, m) = (TrainConfig::default(), fixed.copied().unwrap_or_default());
    // The batch the run will have (see `setup::spread`).
    let shards = world.size() * args.threads.unwrap_or_else(super::cores);
    let batch = args.batch_size.unwrap_or(setup::default_batch(shards));
    let task = recipe::Task {
        train_chars: corpus.info.train_chars,
        vocab_size: corpus.vocab.len(),
        cell: args.cell.unwrap_or(m.cell),
        layers: args.layers.unwrap_or(m.layers),
        batch,
        seq_len: args.seq_len.unwrap_or(d.seq_len),
        // Under mpirun each rank has kept only its streams of the default step's text.
        choose_step: args.batch_size.is_none() && args.seq_len.is_none() && world.size() == 1,
    };
    let precision = args.precision.unwrap_or_default();
    recipe::plan_in(world, &task, args.time_limit, threads, hidden, precision)
}

/// The command line of this run with --time-limit replaced by the steps it made and the
/// recipe's choices written out as flags (the flags the user gave are kept as given).
pub fn repeat_command(args: &TrainArgs, trainer: &Trainer, dir: &std::path::Path) -> String {
    let (c, lr, t) = (&trainer.model.config, &trainer.config.lr, &trainer.config);
    // A step the recipe chose is written out with the shards it was split into.
    let step = args.batch_size.is_none()
        && args.seq_len.is_none()
        && t.seq_len != TrainConfig::default().seq_len;
    let chosen = [
        ("--batch-size", step, t.batch.to_string()),
        ("--seq-len", step, t.seq_len.to_string()),
        (
            "--threads",
            step && args.threads.is_none(),
            t.threads.to_string(),
        ),
        ("--hidden", args.hidden.is_none(), c.hidden.to_string()),
        ("--dropout", args.dropout.is_none(), c.dropout.to_string()),
        (
            "--output-dropout",
            args.output_dropout.is_none() && c.output_dropout > 0.0,
            c.output_dropout.to_string(),
        ),
        (
            "--weight-drop",
            args.weight_drop.is_none() && c.weight_drop > 0.0,
            c.weight_drop.to_string(),
        ),
        ("--lr", args.lr.is_none(), lr.base.to_string()),
        ("--lr-tail", args.lr_tail.is_none(), lr.tail.to_string()),
    ];
    recipe::repeat_command(
        std::env::args().skip(1),
        chosen
            .into_iter()
            .filter(|(_, add, _)| *add)
            .map(|(flag, _, value)| (flag, value)),
        trainer.progress.step,
        &unused_sibling(dir, "repeat").to_string_lossy(),
    )
}
