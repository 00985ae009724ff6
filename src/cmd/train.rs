//! `charrnn train`: read the corpus, build or restore the model, run the library's training
//! loop with a live progress display, print a sample at the end.

use crate::cli::TrainArgs;
use crate::cmd::progress::Reporter;
use anyhow::{Result, bail};
use charrnn::analysis::eval::EvalConfig;
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::fs::check_fits;
use charrnn::io::metrics::MetricsLog;
use charrnn::io::rundir::Claim;
use charrnn::nn::{CellKind, Model, ModelConfig};
use charrnn::text::Mode;
use charrnn::text::corpus::{Corpus, VocabSource};
use charrnn::train::recipe::{self, Recipe};
use charrnn::train::run::{self, RunConfig, StopReason};
use charrnn::train::{Optimizer, TrainConfig, Trainer};
use rand::SeedableRng;
use std::io::Write;
use std::path::{Path, PathBuf};

const DEFAULT_EPOCHS: usize = 20;
/// Without --epochs, a small corpus still gets this many steps: 20 epochs of a 30 KB list of
/// names would be about a hundred steps, far from a trained model (`best.json` keeps the
/// lowest validation loss if it over-fits).
const MIN_DEFAULT_STEPS: u64 = 2000;
/// Validations in a run with a time budget (see `eval_every`).
const VALIDATIONS: f64 = 15.0;

pub fn run(args: TrainArgs) -> Result<()> {
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
            let c = model.config;
            for (flag, given, has) in [
                (
                    "--cell",
                    args.cell.map(|x| x.to_string()),
                    c.cell.to_string(),
                ),
                (
                    "--layers",
                    args.layers.map(|x| x.to_string()),
                    c.layers.to_string(),
                ),
                (
                    "--hidden",
                    args.hidden.map(|x| x.to_string()),
                    c.hidden.to_string(),
                ),
            ] {
                if given.as_ref().is_some_and(|g| *g != has) {
                    bail!(
                        "{flag} {} differs from the model of {} ({has}); leave it out with --init-from",
                        given.unwrap(),
                        path.display()
                    );
                }
            }
            Some((path, model, vocab, ck.data.mode, ck.progress.step))
        }
        None => None,
    };

    // The text's files (names only: what a typo or a wrong path gets is this error).
    let paths: Vec<PathBuf> = match (&resumed, args.corpus.is_empty()) {
        (_, false) => args.corpus.clone(),
        (Some(r), true) => r.data.sources.iter().map(PathBuf::from).collect(),
        (None, true) => bail!("no corpus given: usage is `charrnn train <file or directory>...`"),
    };
    charrnn::text::corpus::list_files(&paths)?;

    // The run directory, claimed before the text is read: a directory in use or holding
    // another run is refused at once, however large the corpus.
    let out = match (&args.out, &args.resume) {
        (Some(o), _) => o.clone(),
        (None, Some(r)) => charrnn::io::fs::parent_dir(r).to_path_buf(),
        (None, None) => PathBuf::from("checkpoints"),
    };
    let resumed_from = args
        .resume
        .as_deref()
        .zip(resumed.as_ref().map(|r| r.progress.step));
    let claim = Claim::new(&out, resumed_from, args.force)?;

    let (mode, val_fraction) = match &resumed {
        Some(r) => (r.data.mode, r.data.val_fraction),
        None => (
            args.mode
                .or(init.as_ref().map(|i| i.3))
                .unwrap_or(Mode::Stream),
            args.val_fraction.unwrap_or(0.1),
        ),
    };
    let source = match (&resumed, &init) {
        (Some(r), _) => VocabSource::Fixed(&r.vocab),
        (None, Some(i)) => VocabSource::Extend(&i.2),
        (None, None) => VocabSource::Corpus,
    };
    let t0 = std::time::Instant::now();
    let corpus = Corpus::load(&paths, mode, val_fraction, source)?;
    let chars = corpus.info.train_chars + corpus.info.val_chars;
    if chars > 10_000_000 {
        eprintln!(
            "charrnn: read {chars} characters in {:.1}s ({} bytes per token)",
            t0.elapsed().as_secs_f64(),
            corpus.train.width()
        );
    }
    if paths.iter().any(|p| p.is_dir()) {
        eprintln!("charrnn: {}", describe_files(&corpus));
    }

    // The model, optimizer and training state; nothing of the model's size is allocated
    // before the memory it needs is known to be there.
    let positions = corpus.train.len().saturating_sub(1);
    let (model, optimizer, config, progress, eval_every_saved, budget_epochs) = match resumed {
        Some(mut r) => {
            if let Some(lr) = args.lr {
                r.train.lr.base = lr;
            }
            check_length(positions, &corpus, r.train.seq_len)?;
            check_memory(&r.model.config, &r.train)?;
            (
                r.model,
                r.optimizer,
                r.train,
                r.progress,
                Some(r.eval_every),
                None,
            )
        }
        None => {
            let recipe = choose_recipe(&args, &corpus, init.as_ref().map(|i| &i.1.config));
            let mut config = args.train_config(super::default_threads, &recipe);
            check_length(positions, &corpus, config.seq_len)?;
            if let Some(batch) = config.fit_batch(positions) {
                eprintln!(
                    "note: {} characters of training text fill only {batch} streams of --seq-len {}; using --batch-size {batch}",
                    corpus.info.train_chars, config.seq_len
                );
                config.batch = batch;
            }
            let mut model_config = args.model_config(corpus.vocab.len(), &recipe);
            if let Some((_, m, _, _, _)) = &init {
                model_config = ModelConfig {
                    vocab_size: corpus.vocab.len(),
                    dropout: args.dropout.unwrap_or(m.config.dropout),
                    ..m.config
                };
            }
            check_memory(&model_config, &config)?;
            model_config.validate().map_err(anyhow::Error::msg)?;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
            let mut model = match &init {
                Some((path, m, old, _, step)) => {
                    let new: Vec<String> = corpus
                        .vocab
                        .chars()
                        .iter()
                        .filter(|c| old.id(**c).is_none())
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
                    let mut m = m.with_vocab(old, &corpus.vocab, &mut rng);
                    m.config.dropout = model_config.dropout;
                    m
                }
                None => {
                    let mut m = Model::new(model_config);
                    m.init(&mut rng);
                    m
                }
            };
            if let Some(b) = args.forget_bias {
                if model.config.cell != CellKind::Lstm {
                    bail!("--forget-bias applies to --cell lstm only");
                }
                model.set_forget_bias(b);
            }
            let optimizer = Optimizer::new(config.optimizer, model.param_count());
            let progress = Trainer::fresh_progress(&model, &config);
            (model, optimizer, config, progress, None, recipe.epochs)
        }
    };
    let mut trainer = Trainer::new(model, optimizer, config, &corpus.train, progress);
    let windows = trainer.batches().windows as u64;
    if trainer.progress.window as u64 >= windows {
        bail!(
            "the corpus has changed since the checkpoint was written: it resumes at window {} of an epoch that now has {windows}",
            trainer.progress.window
        );
    }
    // Every half epoch; with a time budget, about VALIDATIONS times in it, so that
    // validating and saving (a few seconds each for a large model) cost a few percent.
    let eval_every = args
        .eval_every
        .or(eval_every_saved)
        .unwrap_or_else(|| match budget_epochs {
            Some(e) => ((e * windows as f64 / VALIDATIONS) as u64).max(10),
            None => (windows / 2).clamp(10, 1000),
        });
    // A run stops at --epochs, --max-steps or --time-limit, whichever comes first; with
    // none of them, after DEFAULT_EPOCHS. A time limit alone is the whole budget.
    let epoch_steps = match (args.epochs, args.max_steps, args.time_limit) {
        (Some(e), _, _) => (e as u64).saturating_mul(windows),
        (None, None, None) => (DEFAULT_EPOCHS as u64 * windows).max(MIN_DEFAULT_STEPS),
        _ => u64::MAX,
    };
    let run_config = RunConfig {
        max_steps: args.max_steps.unwrap_or(u64::MAX).min(epoch_steps),
        time_limit: args.time_limit,
        eval_every,
        // A number of steps or epochs asked for is trained in full.
        stop_when_overfitting: args.max_steps.is_none() && args.epochs.is_none(),
        eval: EvalConfig {
            max_chars: (args.val_chars > 0).then_some(args.val_chars),
            ..EvalConfig::default()
        },
    };
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
        charrnn::kernels::isa().name(),
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

/// Refuses a model and batch whose parameters and buffers would not fit in memory, before
/// anything of their size is allocated.
fn check_memory(model: &ModelConfig, config: &TrainConfig) -> Result<()> {
    check_fits(
        Trainer::memory_bytes(model, config),
        &format!(
            "training a {}x{} {} with batch {} x {} on {} threads",
            model.layers,
            model.hidden,
            model.cell,
            config.batch,
            config.seq_len,
            config.threads.min(config.batch)
        ),
        "use a smaller --hidden, --layers, --batch-size, --seq-len or --threads",
    )
}

/// "read 3 files: a.txt, b.txt, c.txt; skipped 1: notes.md (not .txt)", at most ten names each.
fn describe_files(corpus: &Corpus) -> String {
    let name = |p: &Path| {
        p.file_name().map_or(p.display().to_string(), |n| {
            n.to_string_lossy().into_owned()
        })
    };
    let some = |names: Vec<String>| {
        let n = names.len();
        let mut s = names.into_iter().take(10).collect::<Vec<_>>().join(", ");
        if n > 10 {
            s.push_str(&format!(", … ({} more)", n - 10));
        }
        s
    };
    let used = corpus
        .info
        .sources
        .iter()
        .map(|p| name(Path::new(p)))
        .collect();
    let mut s = format!("read {} files: {}", corpus.info.sources.len(), some(used));
    if !corpus.skipped.is_empty() {
        let skipped = corpus
            .skipped
            .iter()
            .map(|(p, why)| format!("{} ({why})", name(p)))
            .collect();
        s.push_str(&format!(
            "; skipped {}: {}",
            corpus.skipped.len(),
            some(skipped)
        ));
    }
    s
}

fn check_length(positions: usize, corpus: &Corpus, seq_len: usize) -> Result<()> {
    if positions < seq_len {
        bail!(
            "the corpus is too short: {} characters of training text, but one window is {seq_len} (--seq-len); use more text or a smaller --seq-len",
            corpus.info.train_chars
        );
    }
    Ok(())
}

/// The defaults of a fresh run (see `charrnn::train::recipe`): with --time-limit, the width
/// the budget allows on this machine (measured in about half a second); dropout and
/// learning rate for the model and the corpus. Says on stderr what it chose.
/// `fixed`: the model fine-tuning starts from, whose shape is not chosen.
fn choose_recipe(args: &TrainArgs, corpus: &Corpus, fixed: Option<&ModelConfig>) -> Recipe {
    let v = corpus.vocab.len();
    let threads = args.threads.unwrap_or_else(|| super::default_threads(64));
    let calibration = args.time_limit.map(|s| (s, recipe::calibrate(v, threads)));
    let hidden = fixed.map(|f| f.hidden).or(args.hidden);
    let (d, m) = (TrainConfig::default(), fixed.copied().unwrap_or_default());
    let task = recipe::Task {
        train_chars: corpus.info.train_chars,
        vocab_size: v,
        cell: args.cell.unwrap_or(m.cell),
        layers: args.layers.unwrap_or(m.layers),
        chars_per_step: (args.batch_size.unwrap_or(d.batch))
            .saturating_mul(args.seq_len.unwrap_or(d.seq_len)),
    };
    let r = recipe::choose(&task, calibration.as_ref().map(|(s, c)| (*s, c)), hidden);
    if let Some((seconds, c)) = &calibration {
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
    r
}

/// The command line of this run with --time-limit replaced by the steps it made and the
/// recipe's choices written out as flags.
fn repeat_command(args: &TrainArgs, trainer: &Trainer) -> String {
    let (lr, tail) = (trainer.config.lr.base, trainer.config.lr.tail);
    let mut words: Vec<String> = vec!["charrnn".into()];
    let mut raw = std::env::args().skip(1);
    while let Some(a) = raw.next() {
        if a == "--time-limit" {
            raw.next();
        } else if !a.starts_with("--time-limit=") {
            words.push(a);
        }
    }
    let c = &trainer.model.config;
    let chosen = [
        ("--hidden", args.hidden.is_none(), c.hidden.to_string()),
        ("--dropout", args.dropout.is_none(), c.dropout.to_string()),
        ("--lr", args.lr.is_none(), lr.to_string()),
        ("--lr-tail", args.lr_tail.is_none(), tail.to_string()),
    ];
    for (flag, add, value) in chosen {
        if add {
            words.extend([flag.to_string(), value]);
        }
    }
    words.extend(["--max-steps".into(), trainer.progress.step.to_string()]);
    words
        .iter()
        .map(|w| {
            if w.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_./=:,".contains(ch))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
