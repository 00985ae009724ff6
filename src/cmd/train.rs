//! `charrnn train`: read the corpus, build or restore the model, run the library's training
//! loop with a live progress display, print a sample at the end.

use crate::cli::TrainArgs;
use crate::cmd::progress::Reporter;
use anyhow::{Context, Result, bail};
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::metrics::{METRICS, MetricsLog, skipped_note};
use charrnn::io::rundir::{Claim, Resumed, unused_sibling};
use charrnn::nn::ModelConfig;
use charrnn::text::corpus::Corpus;
use charrnn::train::recipe::{self, Recipe};
use charrnn::train::report;
use charrnn::train::run::{self, StopReason};
use charrnn::train::setup::{self, Origin, Start};
use charrnn::train::{TrainConfig, Trainer};
use std::io::Write;
use std::path::PathBuf;

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(p) = args.precision {
        p.check_available().map_err(anyhow::Error::msg)?;
    }
    let fresh = args.resume.is_none();
    let (resumed, identity) = match &args.resume {
        Some(path) => {
            let ck = Checkpoint::load(path)?;
            (Some(ck.restore()?), Some((ck.run, ck.progress.step)))
        }
        None => (None, None),
    };
    if let (Some(_), Some(flag)) = (&resumed, args.fixed_by_checkpoint()) {
        bail!("{flag} is fixed by the checkpoint being resumed; leave it out with --resume");
    }
    // Fine-tuning: another run's weights, with a fresh optimizer and schedule.
    let init = match &args.init_from {
        Some(path) => {
            let ck = Checkpoint::load(path)?;
            let (model, vocab) = ck.model()?;
            setup::check_fine_tune_shape(
                &model.config,
                &path.display().to_string(),
                args.cell,
                args.layers,
                args.hidden,
            )?;
            Some((path, model, vocab, ck.data.mode, ck.progress.step))
        }
        None => None,
    };
    let layers = init.as_ref().map(|i| i.1.config.layers);
    args.check_flags(
        layers
            .or(args.layers)
            .unwrap_or(ModelConfig::default().layers),
    )
    .map_err(anyhow::Error::msg)?;

    // The text's files (names only: what a typo or a wrong path gets is this error).
    let origin = match (&resumed, &init) {
        (Some(r), _) => Origin::Resumed {
            sources: &r.data.sources,
            mode: r.data.mode,
            val_fraction: r.data.val_fraction,
            vocab: &r.vocab,
        },
        (None, Some(i)) => Origin::FineTune {
            mode: i.3,
            vocab: &i.2,
        },
        (None, None) => Origin::New,
    };
    let val_file = match &resumed {
        Some(r) => r.data.val_file.as_ref().map(PathBuf::from),
        None => args.val_file.clone(),
    };
    let val_fraction = args.val_fraction.or(val_file.as_ref().map(|_| 0.0));
    let reading = setup::reading(&args.corpus, args.mode, val_fraction, origin)?;
    let (paths, mode) = (&reading.paths, reading.mode);
    charrnn::text::corpus::list_files(paths)?;

    // The run directory, claimed before the text is read: a directory in use or holding
    // another run is refused at once, however large the corpus.
    let out = match (&args.out, &args.resume) {
        (Some(o), _) => o.clone(),
        (None, Some(r)) => charrnn::fs::parent_dir(r).to_path_buf(),
        (None, None) => PathBuf::from("checkpoints"),
    };
    let resumed_from = args.resume.as_deref().zip(identity.as_ref());
    let resumed_from = resumed_from.map(|(path, (run, step))| Resumed {
        path,
        run: run.as_deref(),
        step: *step,
    });
    let claim = Claim::new(&out, resumed_from, args.force)?;

    let t0 = std::time::Instant::now();
    let mut corpus = Corpus::load(paths, mode, reading.val_fraction, reading.vocab)?;
    if let Some(f) = &val_file {
        let with_val = corpus.with_val_file(f);
        corpus = match &resumed {
            Some(_) => with_val.with_context(|| {
                format!("the run validates on {} (its --val-file)", f.display())
            })?,
            None => with_val?,
        };
    }
    let chars = corpus.info.train_chars + corpus.info.val_chars;
    if chars > 10_000_000 {
        eprintln!(
            "charrnn: read {chars} characters in {:.1}s ({} bytes per token)",
            t0.elapsed().as_secs_f64(),
            corpus.train.width()
        );
    }
    if paths.iter().any(|p| p.is_dir()) {
        eprintln!("charrnn: {}", corpus.describe_files());
    }

    // The trainer; nothing of the model's size is allocated before the memory it needs is
    // known to be there.
    let (mut trainer, eval_every_saved, budget_epochs, recipe_line) = match resumed {
        Some(mut r) => {
            if let Some(lr) = args.lr {
                r.train.lr.base = lr;
            }
            if let Some(p) = args.precision {
                r.train.precision = p;
            }
            let t = setup::resumed(&corpus, r.model, r.optimizer, r.train, r.progress)?;
            (t, Some(r.eval_every), None, None)
        }
        None => {
            let (recipe, calibration) =
                choose_recipe(&args, &corpus, init.as_ref().map(|i| &i.1.config))?;
            let config = args.train_config(super::default_threads, &recipe);
            let mut model_config = args.model_config(corpus.vocab.len(), &recipe);
            let start = match &init {
                Some((path, m, old, init_mode, step)) => {
                    model_config = ModelConfig {
                        vocab_size: corpus.vocab.len(),
                        dropout: args.dropout.unwrap_or(m.config.dropout),
                        ..m.config
                    };
                    eprintln!(
                        "charrnn: {}",
                        report::fine_tune(
                            &path.display().to_string(),
                            *step,
                            &m.config,
                            *init_mode,
                            args.dropout,
                            args.mode,
                            &corpus.vocab.chars_not_in(old),
                        )
                    );
                    Start::From {
                        model: m,
                        vocab: old,
                    }
                }
                None => Start::New,
            };
            let t = setup::fresh(&corpus, model_config, config, start, args.forget_bias)?;
            if t.config.batch < config.batch {
                eprintln!(
                    "note: {} characters of training text fill only {} streams of --seq-len {}; using --batch-size {}",
                    corpus.info.train_chars, t.config.batch, config.seq_len, t.config.batch
                );
            }
            let given = recipe::Given {
                hidden: args.hidden.is_some(),
                dropout: args.dropout.is_some(),
                lr: args.lr.is_some(),
                lr_tail: args.lr_tail.is_some(),
                lr_floor: args.lr_floor.is_some(),
                inherited_width: init.is_some(),
            };
            let (m, lr, chars) = (&t.model.config, &t.config.lr, corpus.info.train_chars);
            let line = match args.time_limit.zip(calibration.as_ref()) {
                Some(b) => recipe::describe_budget(m, lr, given, b, &recipe, chars),
                None => recipe::describe(m, lr, given),
            };
            (t, None, recipe.epochs, Some(line))
        }
    };
    let config = trainer.config;
    let windows = trainer.batches().windows as u64;
    let eval_every = args
        .eval_every
        .or(eval_every_saved)
        .unwrap_or_else(|| recipe::eval_every(windows, budget_epochs));
    let run_config = recipe::run_config(
        args.epochs,
        args.max_steps,
        args.time_limit,
        windows,
        eval_every,
        args.val_chars.unwrap_or(1_000_000),
    );
    if !fresh {
        let what = match (args.max_steps, args.epochs) {
            (Some(m), _) if m == run_config.max_steps => format!("--max-steps {m}"),
            (_, Some(e)) => format!("--epochs {e}"),
            _ => "the default length (20 epochs, at least 2000 steps)".into(),
        };
        setup::check_resumed_length(trainer.progress.step, run_config.max_steps, &what)?;
    }
    let mut dir = claim.into_run(
        corpus.vocab.clone(),
        corpus.info.clone(),
        eval_every,
        &mut trainer,
    )?;

    dir.keep_every = args.keep_every;
    let header = report::header(&dir.run, &trainer, corpus.vocab.len(), &corpus.info);
    eprintln!("charrnn: {header}");
    if let Some(line) = recipe_line {
        eprintln!("charrnn: {line}");
    }
    if trainer.progress.step > 0 {
        let from = dir.branched_from.as_ref().map(|(run, _)| run.as_deref());
        let shown = out.display().to_string();
        eprintln!("charrnn: {}", report::resuming(&trainer, from, &shown));
        let lr_given = args.lr.is_some();
        if let Some(line) = setup::lr_change(&trainer.progress, &config, &run_config, lr_given) {
            eprintln!("charrnn: {line}");
        }
        if let (Some(v), false) = (trainer.progress.best_val_loss, dir.best().is_file()) {
            eprintln!(
                "charrnn: note: {shown} has no best.json of this run yet; the next validation that beats {v:.4} writes one"
            );
        }
    }

    let mut metrics = MetricsLog::open(&out, &dir.run, |r| dir.keeps(r), (eval_every / 5).max(1))?;
    if let Some(note) = skipped_note(metrics.skipped, &out.join(METRICS)) {
        eprintln!("charrnn: {note}");
    }
    let signals = super::signals::Signals::install()?;
    let mut report = Reporter::new(trainer.progress.step, run_config.max_steps);
    let outcome = run::run(
        &mut trainer,
        &corpus.val,
        &run_config,
        &mut dir,
        &|| signals.received().is_some(),
        &mut |e| {
            report.event(&e);
            metrics.event(&e);
        },
    );
    report.finish();
    if let Err(e) = metrics.finish() {
        eprintln!("charrnn: warning: {e:#}");
    }
    let outcome = outcome?;
    let (latest, best) = (dir.latest(), dir.best());
    if let StopReason::Diverged {
        error,
        rolled_back_to,
    } = &outcome.reason
    {
        let kept = match rolled_back_to {
            Some(s) => format!(
                "the last good checkpoint is {} (step {s}), which was not changed",
                latest.display()
            ),
            None => "no checkpoint was written".into(),
        };
        bail!("{error}; {kept}");
    }
    let interrupted = outcome.reason == StopReason::Interrupted;
    let shown = if best.is_file() { &best } else { &latest };
    for line in report::ended(&outcome, &trainer, &shown.display().to_string()) {
        eprintln!("charrnn: {line}");
    }
    let timed = matches!(
        outcome.reason,
        StopReason::TimeLimit | StopReason::Overfitting
    );
    if timed && args.time_limit.is_some() && fresh {
        // Where a time limit ends, and the width it allows, depend on this machine's speed
        // at the moment; the same recipe in steps repeats bit for bit with the same seed.
        eprintln!(
            "charrnn: the same recipe for the same steps, reproducible on any machine (another --dir): {}",
            repeat_command(&args, &trainer, &out)
        );
    }
    if let (true, Some(signal)) = (interrupted, signals.received()) {
        eprintln!(
            "charrnn: saved {}; resume with `charrnn train --resume {}`",
            latest.display(),
            latest.display()
        );
        drop(dir);
        std::process::exit(signal.exit_code());
    }
    if args.sample_len > 0 {
        let path = if best.is_file() { &best } else { &latest };
        let (model, vocab) = Checkpoint::load(path)?.model()?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "--- sample from {} (temperature 0.8) ---",
            path.display()
        )?;
        let config = SampleConfig {
            temperature: 0.8,
            seed: config.seed,
            ..SampleConfig::default()
        };
        Sampler::new(&model, &vocab, config).write_sample(mode, args.sample_len, &mut out)?;
    }
    Ok(())
}

/// The defaults of a fresh run (see `charrnn::train::recipe`): with --time-limit, the width
/// the budget allows on this machine (measured in about half a second, returned too);
/// dropout and learning rate for the model and the corpus. `fixed`: the model fine-tuning
/// starts from, whose shape is not chosen.
fn choose_recipe(
    args: &TrainArgs,
    corpus: &Corpus,
    fixed: Option<&ModelConfig>,
) -> Result<(Recipe, Option<recipe::Calibration>)> {
    let threads = args.threads.unwrap_or_else(|| super::default_threads(64));
    let hidden = fixed.map(|f| f.hidden).or(args.hidden);
    let (d, m) = (TrainConfig::default(), fixed.copied().unwrap_or_default());
    let task = recipe::Task {
        train_chars: corpus.info.train_chars,
        vocab_size: corpus.vocab.len(),
        cell: args.cell.unwrap_or(m.cell),
        layers: args.layers.unwrap_or(m.layers),
        chars_per_step: (args.batch_size.unwrap_or(d.batch))
            .saturating_mul(args.seq_len.unwrap_or(d.seq_len)),
    };
    let precision = args.precision.unwrap_or_default();
    recipe::plan(&task, args.time_limit, threads, hidden, precision)
}

/// The command line of this run with --time-limit replaced by the steps it made and the
/// recipe's choices written out as flags (the flags the user gave are kept as given).
fn repeat_command(args: &TrainArgs, trainer: &Trainer, dir: &std::path::Path) -> String {
    let (c, lr) = (&trainer.model.config, &trainer.config.lr);
    let chosen = [
        ("--hidden", args.hidden.is_none(), c.hidden.to_string()),
        ("--dropout", args.dropout.is_none(), c.dropout.to_string()),
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
