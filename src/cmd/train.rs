//! `charrnn train`: read the corpus, build or restore the model, run the library's training
//! loop with a live progress display, print a sample at the end.

use crate::cli::TrainArgs;
use crate::cmd::progress::Reporter;
use anyhow::{Result, bail};
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::metrics::MetricsLog;
use charrnn::io::rundir::Claim;
use charrnn::nn::ModelConfig;
use charrnn::text::corpus::Corpus;
use charrnn::train::recipe::{self, Recipe};
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
    let resumed = match &args.resume {
        Some(path) => Some(Checkpoint::load(path)?.restore()?),
        None => None,
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
    let reading = setup::reading(&args.corpus, args.mode, args.val_fraction, origin)?;
    let (paths, mode) = (&reading.paths, reading.mode);
    charrnn::text::corpus::list_files(paths)?;

    // The run directory, claimed before the text is read: a directory in use or holding
    // another run is refused at once, however large the corpus.
    let out = match (&args.out, &args.resume) {
        (Some(o), _) => o.clone(),
        (None, Some(r)) => charrnn::fs::parent_dir(r).to_path_buf(),
        (None, None) => PathBuf::from("checkpoints"),
    };
    let resumed_from = args
        .resume
        .as_deref()
        .zip(resumed.as_ref().map(|r| r.progress.step));
    let claim = Claim::new(&out, resumed_from, args.force)?;

    let t0 = std::time::Instant::now();
    let corpus = Corpus::load(paths, mode, reading.val_fraction, reading.vocab)?;
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
    let (mut trainer, eval_every_saved, budget_epochs) = match resumed {
        Some(mut r) => {
            if let Some(lr) = args.lr {
                r.train.lr.base = lr;
            }
            if let Some(p) = args.precision {
                r.train.precision = p;
            }
            let t = setup::resumed(&corpus, r.model, r.optimizer, r.train, r.progress)?;
            (t, Some(r.eval_every), None)
        }
        None => {
            let recipe = choose_recipe(&args, &corpus, init.as_ref().map(|i| &i.1.config))?;
            let config = args.train_config(super::default_threads, &recipe);
            let mut model_config = args.model_config(corpus.vocab.len(), &recipe);
            let start = match &init {
                Some((path, m, old, _, step)) => {
                    model_config = ModelConfig {
                        vocab_size: corpus.vocab.len(),
                        dropout: args.dropout.unwrap_or(m.config.dropout),
                        ..m.config
                    };
                    let new: Vec<String> = corpus
                        .vocab
                        .chars_not_in(old)
                        .iter()
                        .map(|c| format!("{c:?}"))
                        .collect();
                    eprintln!(
                        "charrnn: starting from the weights of {} (step {step}) with a fresh optimizer and schedule{}",
                        path.display(),
                        if new.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; {} new characters get fresh weights: {}",
                                new.len(),
                                new.join(" ")
                            )
                        }
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
            (t, None, recipe.epochs)
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
    let mut dir = claim.into_run(corpus.vocab.clone(), corpus.info.clone(), eval_every);

    let c = &trainer.model.config;
    eprintln!(
        "charrnn: {} {}x{}, {} parameters, vocabulary {} | {} train / {} validation chars, {} mode | batch {} x {} steps, {} threads ({} kernels), {} windows per epoch",
        c.cell,
        c.layers,
        c.hidden,
        trainer.model.param_count(),
        corpus.vocab.len(),
        corpus.info.train_chars,
        corpus.info.val_chars,
        mode,
        config.batch,
        config.seq_len,
        config.threads.min(config.batch),
        match config.precision {
            charrnn::kernels::Precision::F32 => charrnn::kernels::isa().name().to_string(),
            p => format!(
                "{}, {} products",
                charrnn::kernels::isa().name(),
                p.describe()
            ),
        },
        windows
    );
    if trainer.progress.step > 0 {
        eprintln!(
            "charrnn: resuming at step {}, epoch {:.2}",
            trainer.progress.step,
            trainer.epoch_fraction()
        );
    }

    let resumed_step = args.resume.as_ref().map(|_| trainer.progress.step);
    let mut metrics = MetricsLog::open(&out, resumed_step, (eval_every / 5).max(1))?;
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
    let best_val = trainer.progress.best_val_loss;
    eprintln!(
        "charrnn: {} at step {} (epoch {:.2}) after {:.1}s, {:.0} chars/s; validation loss {} ; best {} -> {}",
        if interrupted {
            "interrupted"
        } else {
            "stopped"
        },
        trainer.progress.step,
        trainer.epoch_fraction(),
        outcome.wall_seconds,
        outcome.chars_per_s(),
        outcome.last_val.map_or("n/a".into(), |v| format!(
            "{v:.4} nats/char ({:.4} bits/char)",
            v / std::f64::consts::LN_2
        )),
        best_val.map_or("n/a".into(), |v| format!("{v:.4}")),
        if best.is_file() { &best } else { &latest }.display(),
    );
    if outcome.reason == StopReason::Overfitting {
        eprintln!(
            "charrnn: stopped early: the last {} validation losses were each more than {:.0}% above the best ({}); more training would not bring it back (--epochs or --max-steps train in full)",
            run::OVERFIT_VALIDATIONS,
            100.0 * run::OVERFIT_MARGIN,
            best_val.map_or("n/a".into(), |v| format!("{v:.4}")),
        );
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
            repeat_command(&args, &trainer)
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
/// the budget allows on this machine (measured in about half a second); dropout and
/// learning rate for the model and the corpus. Says on stderr what it chose.
/// `fixed`: the model fine-tuning starts from, whose shape is not chosen.
fn choose_recipe(args: &TrainArgs, corpus: &Corpus, fixed: Option<&ModelConfig>) -> Result<Recipe> {
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
    let (r, calibration) = recipe::plan(&task, args.time_limit, threads, hidden, precision)?;
    if let (Some(seconds), Some(c)) = (args.time_limit, calibration) {
        eprintln!(
            "charrnn: {seconds:.0} s on this machine ({:.0} GFLOP/s of training): width {}{}, dropout {}, lr {:.1e} falling over the last {:.0}% of the run to {:.1e} (about {:.0} epochs of {} characters)",
            c.flops_per_s / 1e9,
            r.hidden,
            if hidden.is_some() { " (given)" } else { "" },
            args.dropout.unwrap_or(r.dropout),
            args.lr.unwrap_or(r.lr.base),
            100.0 * args.lr_tail.unwrap_or(r.lr.tail),
            args.lr.unwrap_or(r.lr.base) * args.lr_floor.unwrap_or(r.lr.floor),
            r.epochs.unwrap_or(0.0),
            corpus.info.train_chars
        );
    }
    Ok(r)
}

/// The command line of this run with --time-limit replaced by the steps it made and the
/// recipe's choices written out as flags (the flags the user gave are kept as given).
fn repeat_command(args: &TrainArgs, trainer: &Trainer) -> String {
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
    )
}
