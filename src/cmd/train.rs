//! `charrnn train`: read the corpus, build or restore the model, run the library's training
//! loop with a live progress display, print a sample at the end.

use crate::cli::TrainArgs;
use crate::cmd::progress::Reporter;
use crate::cmd::world::{Exit, note};
use anyhow::{Result, bail};
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::metrics::MetricsLog;
use charrnn::io::rundir::Claim;
use charrnn::nn::ModelConfig;
use charrnn::text::corpus::Corpus;
use charrnn::train::recipe;
use charrnn::train::run::{self, InMemory, StopReason};
use charrnn::train::setup::{self, Origin, Start};
use charrnn::world::Collective;
use std::io::Write;
use std::path::PathBuf;

pub fn run(args: TrainArgs) -> Result<()> {
    let world = super::world::join()?;
    let result = train(args, world.as_ref());
    super::world::end_if_failed(world.as_ref(), result)
}

fn train(args: TrainArgs, world: &dyn Collective) -> Result<()> {
    let fresh = args.resume.is_none();
    let given = setup::Spread {
        batch: args.batch_size,
        threads: args.threads,
        lr: args.lr.is_some(),
    };
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
    // Rank 0 alone claims it and writes to it.
    let claim = match world.rank() {
        0 => Some(Claim::new(&out, resumed_from, args.force)?),
        _ => None,
    };

    // A rank of a distributed run keeps only the text its streams read.
    let resumed_config = resumed.as_ref().map(|r| r.train);
    let keep = super::world::keep(world, resumed_config, args.seq_len, given, args.val_chars);
    let t0 = std::time::Instant::now();
    let corpus = Corpus::load_part(paths, mode, reading.val_fraction, reading.vocab, &keep)?;
    let chars = corpus.info.train_chars + corpus.info.val_chars;
    if chars > 10_000_000 {
        note!(
            "charrnn: read {chars} characters in {:.1}s ({} bytes per token)",
            t0.elapsed().as_secs_f64(),
            corpus.train.width()
        );
    }
    if paths.iter().any(|p| p.is_dir()) {
        note!("charrnn: {}", corpus.describe_files());
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
            let t = setup::resumed(world, &corpus, r.model, r.optimizer, r.train, r.progress)?;
            (t, Some(r.eval_every), None)
        }
        None => {
            let recipe = super::defaults::choose_recipe(
                world,
                &args,
                &corpus,
                init.as_ref().map(|i| &i.1.config),
            );
            let config = args.train_config(super::default_threads, &recipe);
            let config = setup::spread(config, world.size(), super::cores(), given);
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
                    note!(
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
            let t = setup::fresh(
                world,
                &corpus,
                model_config,
                config,
                start,
                args.forget_bias,
            )?;
            if t.config.batch < config.batch {
                note!(
                    "note: {} characters of training text fill only {} streams of --seq-len {}; using --batch-size {}",
                    corpus.info.train_chars,
                    t.config.batch,
                    config.seq_len,
                    t.config.batch
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
        args.val_chars,
    );
    let mut dir = claim.map(|c| c.into_run(corpus.vocab.clone(), corpus.info.clone(), eval_every));

    let c = &trainer.model.config;
    note!(
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
        super::world::describe(world, config.shards()),
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
        note!(
            "charrnn: resuming at step {}, epoch {:.2}",
            trainer.progress.step,
            trainer.epoch_fraction()
        );
    }

    let resumed_step = args.resume.as_ref().map(|_| trainer.progress.step);
    let mut voice = match dir {
        Some(_) => Some((
            Reporter::new(trainer.progress.step, run_config.max_steps),
            MetricsLog::open(&out, resumed_step, (eval_every / 5).max(1))?,
        )),
        None => None,
    };
    let signals = super::signals::Signals::install()?;
    let mut in_memory = InMemory::default();
    let outcome = run::run(
        &mut trainer,
        &corpus.val,
        &run_config,
        match &mut dir {
            Some(d) => d,
            None => &mut in_memory,
        },
        &|| signals.received().is_some(),
        &mut |e| {
            if let Some((report, metrics)) = &mut voice {
                report.event(&e);
                metrics.event(&e);
            }
        },
    );
    if let Some((mut report, metrics)) = voice {
        report.finish();
        if let Err(e) = metrics.finish() {
            eprintln!("charrnn: warning: {e:#}");
        }
    }
    let outcome = outcome?;
    // The other ranks are done: rank 0 reports the outcome and writes the sample.
    let Some(dir) = dir else { return Ok(()) };
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
        // Every rank diverged at the same step: rank 0 says so, and all end normally.
        eprintln!("charrnn: {error}; {kept}");
        return Err(Exit(1).into());
    }
    let interrupted = outcome.reason == StopReason::Interrupted;
    let best_val = trainer.progress.best_val_loss;
    note!(
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
    super::world::report_traffic(world, outcome.steps, outcome.train_seconds);
    if outcome.reason == StopReason::Overfitting {
        note!(
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
        note!(
            "charrnn: the same recipe for the same steps, reproducible on any machine (another --dir): {}",
            super::defaults::repeat_command(&args, &trainer)
        );
    }
    if let (true, Some(signal)) = (interrupted, signals.received()) {
        note!(
            "charrnn: saved {}; resume with `charrnn train --resume {}`",
            latest.display(),
            latest.display()
        );
        drop(dir);
        return Err(Exit(signal.exit_code() as u8).into());
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
