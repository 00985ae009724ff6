//! `charrnn train`: read the corpus, build or restore the model, run the library's training
//! loop with a live progress display, print a sample at the end.

use crate::cli::TrainArgs;
use crate::cmd::progress::run_shown;
use crate::cmd::world::{Exit, note};
use anyhow::{Context, Result, bail};
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::metrics::{METRICS, MetricsLog, skipped_note};
use charrnn::io::rundir::{Claim, Resumed};
use charrnn::nn::ModelConfig;
use charrnn::text::corpus::Corpus;
use charrnn::train::recipe;
use charrnn::train::report;
use charrnn::train::run::{self, InMemory, StopReason};
use charrnn::train::setup::{self, Origin, Start};
use charrnn::world::Collective;
use std::io::Write;
use std::path::PathBuf;

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(refusal) = args.refused_with_task() {
        bail!("{refusal}");
    }
    if args.task == crate::cli::Task::Classify {
        return super::classify::train(args);
    }
    let world = super::world::join()?;
    let result = train(args, world.as_ref());
    super::world::end_if_failed(world.as_ref(), result)
}

fn train(args: TrainArgs, world: &dyn Collective) -> Result<()> {
    if let Some(p) = args.precision {
        p.check_available().map_err(anyhow::Error::msg)?;
    }
    let fresh = args.resume.is_none();
    let given = setup::Spread {
        batch: args.batch_size,
        threads: args.threads,
        lr: args.lr.is_some(),
        divide_batch: None,
    };
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
    // Rank 0 alone claims it and writes to it.
    let claim = match world.rank() {
        0 => Some(Claim::new(&out, resumed_from, args.force)?),
        _ => None,
    };

    // A rank of a distributed run keeps only the text its streams read.
    let val_chars = args.val_chars.unwrap_or(1_000_000);
    let resumed_config = resumed.as_ref().map(|r| r.train);
    let keep = super::world::keep(world, resumed_config, args.seq_len, given, val_chars);
    let t0 = std::time::Instant::now();
    let (vf, vocab) = (reading.val_fraction, reading.vocab);
    let mut corpus = Corpus::load_part(paths, mode, vf, vocab, &keep)?;
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
    let (mut trainer, eval_every_saved, budget_epochs, recipe_line) = match resumed {
        Some(mut r) => {
            if let Some(lr) = args.lr {
                r.train.lr.base = lr;
            }
            if let Some(p) = args.precision {
                r.train.precision = p;
            }
            let t = setup::resumed(world, &corpus, r.model, r.optimizer, r.train, r.progress)?;
            (t, Some(r.eval_every), None, None)
        }
        None => {
            let fixed = init.as_ref().map(|i| &i.1.config);
            let (recipe, calibration) =
                super::defaults::choose_recipe(world, &args, &corpus, fixed)?;
            let config = args.train_config(super::default_threads, &recipe);
            let given = setup::Spread {
                divide_batch: recipe.smaller_step.map(|(divide, _)| divide),
                ..given
            };
            let config = setup::spread(config, world.size(), super::cores(), given);
            let mut model_config = args.model_config(corpus.vocab.len(), &recipe);
            let start = match &init {
                Some((path, m, old, init_mode, step)) => {
                    model_config = ModelConfig {
                        vocab_size: corpus.vocab.len(),
                        dropout: args.dropout.unwrap_or(m.config.dropout),
                        output_dropout: args.output_dropout.unwrap_or(m.config.output_dropout),
                        weight_drop: args.weight_drop.unwrap_or(m.config.weight_drop),
                        ..m.config
                    };
                    note!(
                        "charrnn: {}",
                        report::fine_tune(
                            &path.display().to_string(),
                            *step,
                            &m.config,
                            *init_mode,
                            &report::Rates {
                                dropout: args.dropout,
                                output_dropout: args.output_dropout,
                                weight_drop: args.weight_drop,
                            },
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
            let given = recipe::Given {
                hidden: args.hidden.is_some(),
                dropout: args.dropout.is_some(),
                output_dropout: args.output_dropout.is_some(),
                weight_drop: args.weight_drop.is_some(),
                lr: args.lr.is_some(),
                lr_tail: args.lr_tail.is_some(),
                lr_floor: args.lr_floor.is_some(),
                fine_tuned: init.is_some(),
            };
            let (m, lr, chars) = (&t.model.config, &t.config.lr, corpus.info.train_chars);
            let line = match args.time_limit.zip(calibration.as_ref()) {
                Some(b) => {
                    let step = (t.config.batch, t.config.seq_len);
                    recipe::describe_budget(m, lr, given, b, &recipe, chars, step)
                }
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
    let mut dir = match claim {
        Some(c) => Some(c.into_run(
            corpus.vocab.clone(),
            corpus.info.clone(),
            eval_every,
            &mut trainer,
        )?),
        None => None,
    };
    // The other ranks keep checkpoints in memory, for a rollback, and say nothing.
    let mut in_memory = InMemory::default();
    let Some(dir) = &mut dir else {
        // Rank 0 decides when to stop; a signal must still not end this process.
        let _signals = super::signals::Signals::install()?;
        let (val, ck) = (&corpus.val, &mut in_memory);
        return run::run(&mut trainer, val, &run_config, ck, &|| false, &mut |_| {}).map(|_| ());
    };
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

    let metrics = MetricsLog::open(&out, &dir.run, |r| dir.keeps(r), (eval_every / 5).max(1))?;
    if let Some(note) = skipped_note(metrics.skipped, &out.join(METRICS)) {
        eprintln!("charrnn: {note}");
    }
    let signals = super::signals::Signals::install()?;
    let outcome = run_shown(
        &mut trainer,
        &corpus.val,
        &run_config,
        dir,
        metrics,
        &signals,
    )?;
    super::world::report_traffic(world, outcome.steps, outcome.train_seconds);
    let (latest, best) = (dir.latest(), dir.best());
    if let Some(line) = report::diverged(&outcome.reason, &latest) {
        // In a distributed run every rank diverged at this step: rank 0 says so, all end.
        eprintln!("charrnn: {line}");
        return Err(Exit(1).into());
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
            super::defaults::repeat_command(&args, &trainer, &out)
        );
    }
    if let (true, Some(signal)) = (interrupted, signals.received()) {
        eprintln!(
            "charrnn: saved {}; resume with `charrnn train --resume {}`",
            latest.display(),
            latest.display()
        );
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
