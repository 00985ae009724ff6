//! `charrnn train`: read the corpus, build or restore the model, run the training loop with
//! a live progress display, validate and checkpoint periodically, print a sample at the end.

use crate::cli::TrainArgs;
use anyhow::{Context, Result, bail};
use charrnn::cell::CellKind;
use charrnn::checkpoint::{Checkpoint, DataSection};
use charrnn::corpus;
use charrnn::data::{self, Mode};
use charrnn::model::{Model, ModelConfig};
use charrnn::optim::{LrSchedule, OptimConfig, Optimizer, OptimizerKind};
use charrnn::sample::{SampleConfig, Sampler};
use charrnn::train::{EVAL_STREAMS, EVAL_WINDOW, HistoryPoint, Trainer, evaluate};
use charrnn::vocab::Vocab;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const DEFAULT_EPOCHS: usize = 20;
/// Without --epochs, a small corpus still gets this many steps: 20 epochs of a 30 KB list of
/// names would be about a hundred steps, far from a trained model (`best.json` keeps the
/// lowest validation loss if it over-fits).
const MIN_DEFAULT_STEPS: u64 = 2000;

pub fn run(args: TrainArgs) -> Result<()> {
    let resumed = match &args.resume {
        Some(path) => Some(Checkpoint::load(path)?.restore()?),
        None => None,
    };
    if resumed.is_some() {
        reject_fixed_flags(&args)?;
    }

    // The text.
    let paths: Vec<PathBuf> = match (&resumed, args.corpus.is_empty()) {
        (_, false) => args.corpus.clone(),
        (Some(r), true) => r.data.sources.iter().map(PathBuf::from).collect(),
        (None, true) => bail!("no corpus given: usage is `charrnn train <file or directory>...`"),
    };
    let (sources, texts): (Vec<String>, Vec<String>) = corpus::read(&paths)?
        .into_iter()
        .map(|s| (s.path.display().to_string(), s.text))
        .unzip();
    let mode = match (&resumed, &args.mode) {
        (Some(r), _) => r.mode,
        (None, Some(m)) => Mode::parse(m).expect("clap checked the mode"),
        (None, None) => Mode::Stream,
    };
    let val_fraction = resumed
        .as_ref()
        .map(|r| r.data.val_fraction)
        .or(args.val_fraction)
        .unwrap_or(0.1);
    let (train_seqs, val_seqs) = data::train_val(&texts, mode, val_fraction);
    drop(texts);
    if train_seqs.iter().chain(&val_seqs).all(|s| s.is_empty()) {
        bail!("the corpus is empty: {}", list(&paths));
    }
    let vocab = match &resumed {
        Some(r) => r.vocab.clone(),
        None => Vocab::from_texts(train_seqs.iter().chain(&val_seqs).map(|s| s.as_str())),
    };
    let unknown = |e| anyhow::anyhow!("the corpus does not fit the checkpoint's vocabulary: {e}");
    let train_tokens = data::tokens(&vocab, &train_seqs).map_err(unknown)?;
    let val_tokens = data::tokens(&vocab, &val_seqs).map_err(unknown)?;
    let count_chars = |seqs: &[String]| seqs.iter().map(|s| s.chars().count()).sum::<usize>();
    let data_section = DataSection {
        mode: mode.name().into(),
        sources,
        val_fraction,
        train_chars: count_chars(&train_seqs),
        val_chars: count_chars(&val_seqs),
    };

    // The model, optimizer and training state.
    let (model, optimizer, mut config, progress, eval_every_saved) = match resumed {
        Some(r) => (
            r.model,
            r.optimizer,
            r.train,
            r.progress,
            Some(r.eval_every),
        ),
        None => {
            let cell = CellKind::parse(args.cell.as_deref().unwrap_or("lstm"))
                .expect("clap checked the cell");
            let seed = args.seed.unwrap_or(1234);
            let mut model = Model::new(ModelConfig {
                cell,
                vocab_size: vocab.len(),
                hidden: args.hidden.unwrap_or(256),
                layers: args.layers.unwrap_or(2),
                dropout: args.dropout.unwrap_or(0.0),
            });
            model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            if let Some(b) = args.forget_bias {
                if cell != CellKind::Lstm {
                    bail!("--forget-bias applies to --cell lstm only");
                }
                model.set_forget_bias(b);
            }
            let kind = OptimizerKind::parse(args.optimizer.as_deref().unwrap_or("adam"))
                .expect("clap checked");
            let mut optim = OptimConfig::new(kind);
            if let Some(m) = args.momentum {
                optim.momentum = m;
            }
            let batch = args.batch_size.unwrap_or(64);
            let config = charrnn::train::TrainConfig {
                batch,
                seq_len: args.seq_len.unwrap_or(100),
                lr: LrSchedule {
                    base: args.lr.unwrap_or(2e-3),
                    decay: args.lr_decay.unwrap_or(0.97),
                    after: args.lr_decay_after.unwrap_or(10),
                },
                optimizer: optim,
                grad_clip: args.grad_clip.unwrap_or(5.0),
                threads: args
                    .threads
                    .unwrap_or_else(|| super::default_threads(batch)),
                seed,
            };
            let optimizer = Optimizer::new(optim, model.param_count());
            let progress = Trainer::fresh_progress(&model, &config);
            (model, optimizer, config, progress, None)
        }
    };
    let positions = train_tokens.len().saturating_sub(1);
    if positions < config.seq_len {
        bail!(
            "the corpus is too short: {} characters of training text, but one window is {} (--seq-len); use more text or a smaller --seq-len",
            data_section.train_chars,
            config.seq_len
        );
    }
    let mut progress = progress;
    if config.batch * config.seq_len > positions && progress.step == 0 {
        let batch = (positions / config.seq_len).max(1);
        eprintln!(
            "note: {} characters of training text fill only {batch} streams of --seq-len {}; using --batch-size {batch}",
            data_section.train_chars, config.seq_len
        );
        config.batch = batch;
        progress = Trainer::fresh_progress(&model, &config);
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    check_writable(&args.out)?;
    let latest = args.out.join("latest.json");
    let best = args.out.join("best.json");

    let mut trainer = Trainer::new(model, optimizer, config, &train_tokens, progress);
    let windows = trainer.batches().windows as u64;
    if trainer.progress.window as u64 >= windows {
        bail!(
            "the corpus has changed since the checkpoint was written: it resumes at window {} of an epoch that now has {windows}",
            trainer.progress.window
        );
    }
    let eval_every = args
        .eval_every
        .or(eval_every_saved)
        .unwrap_or((windows / 2).clamp(10, 1000));
    let epoch_steps = match args.epochs {
        Some(e) => e as u64 * windows,
        None => (DEFAULT_EPOCHS as u64 * windows).max(MIN_DEFAULT_STEPS),
    };
    let max_steps = args.max_steps.unwrap_or(u64::MAX).min(epoch_steps);

    eprintln!(
        "charrnn: {} {}x{}, {} parameters, vocabulary {} | {} train / {} validation chars, {} mode | batch {} x {} steps, {} threads, {} windows per epoch",
        trainer.model.config.cell.name(),
        trainer.model.config.layers,
        trainer.model.config.hidden,
        trainer.model.param_count(),
        vocab.len(),
        data_section.train_chars,
        data_section.val_chars,
        mode.name(),
        config.batch,
        config.seq_len,
        config.threads.min(config.batch),
        windows
    );
    if trainer.progress.step > 0 {
        eprintln!(
            "charrnn: resuming at step {}, epoch {:.2}",
            trainer.progress.step,
            trainer.epoch_fraction()
        );
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // Only one handler per process; failing to install one only loses the Ctrl-C save.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let mut saver = Saver {
        latest: &latest,
        best: &best,
        data: data_section,
        vocab: &vocab,
        val_tokens: &val_tokens,
        eval_every,
        last_saved_step: None,
        loss_sum: 0.0,
        loss_n: 0,
    };
    let start = Instant::now();
    let limit = args.time_limit.map(Duration::from_secs_f64);
    let mut report = Reporter::new(trainer.progress.step, max_steps);
    let mut ema: Option<f64> = None;
    let mut run_chars = 0usize;
    let mut run_train_secs = 0.0f64;
    let mut last_val = trainer
        .progress
        .history
        .iter()
        .rev()
        .find_map(|h| h.val_loss);
    let mut stopped_by_user = false;
    while trainer.progress.step < max_steps && limit.is_none_or(|l| start.elapsed() < l) {
        if interrupted.load(Ordering::SeqCst) {
            stopped_by_user = true;
            break;
        }
        let t0 = Instant::now();
        let r = match trainer.step() {
            Ok(r) => r,
            Err(d) => {
                report.finish();
                let kept = match saver.last_saved_step {
                    Some(s) => format!(
                        "the last good checkpoint is {} (step {s})",
                        latest.display()
                    ),
                    None => "no checkpoint was written".into(),
                };
                bail!("{d}; {kept}");
            }
        };
        let dt = t0.elapsed().as_secs_f64();
        trainer.progress.elapsed += dt;
        run_train_secs += dt;
        run_chars += r.chars;
        ema = Some(ema.map_or(r.loss, |e| 0.95 * e + 0.05 * r.loss));
        saver.loss_sum += r.loss;
        saver.loss_n += 1;
        if trainer.progress.step.is_multiple_of(eval_every) {
            last_val = saver.save(&mut trainer)?;
        }
        let cps = run_chars as f64 / run_train_secs.max(1e-9);
        let steps_done = trainer.progress.step - report.first_step;
        let per_step = start.elapsed().as_secs_f64() / steps_done.max(1) as f64;
        let mut eta = (max_steps.saturating_sub(trainer.progress.step)) as f64 * per_step;
        if let Some(l) = limit {
            eta = eta.min((l.as_secs_f64() - start.elapsed().as_secs_f64()).max(0.0));
        }
        report.update(&trainer, ema.unwrap(), last_val, cps, eta, r.lr);
    }
    report.finish();
    if saver.last_saved_step != Some(trainer.progress.step) {
        last_val = saver.save(&mut trainer)?;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "charrnn: {} at step {} (epoch {:.2}) after {:.1}s, {:.0} chars/s; validation loss {} ; best {} -> {}",
        if stopped_by_user {
            "interrupted"
        } else {
            "stopped"
        },
        trainer.progress.step,
        trainer.epoch_fraction(),
        secs,
        run_chars as f64 / run_train_secs.max(1e-9),
        last_val.map_or("n/a".into(), |v| format!(
            "{v:.4} nats/char ({:.4} bits/char)",
            v / std::f64::consts::LN_2
        )),
        trainer
            .progress
            .best_val_loss
            .map_or("n/a".into(), |v| format!("{v:.4}")),
        if best.is_file() {
            best.display().to_string()
        } else {
            latest.display().to_string()
        },
    );
    if stopped_by_user {
        eprintln!(
            "charrnn: resume with `charrnn train --resume {}`",
            latest.display()
        );
        return Ok(());
    }
    if args.sample_len > 0 {
        print_sample(&best, &latest, mode, args.sample_len, config.seed)?;
    }
    Ok(())
}

/// Flags that define the model or its optimisation cannot change when resuming.
fn reject_fixed_flags(a: &TrainArgs) -> Result<()> {
    let given = [
        ("--cell", a.cell.is_some()),
        ("--layers", a.layers.is_some()),
        ("--hidden", a.hidden.is_some()),
        ("--seq-len", a.seq_len.is_some()),
        ("--batch-size", a.batch_size.is_some()),
        ("--lr", a.lr.is_some()),
        ("--lr-decay", a.lr_decay.is_some()),
        ("--lr-decay-after", a.lr_decay_after.is_some()),
        ("--optimizer", a.optimizer.is_some()),
        ("--momentum", a.momentum.is_some()),
        ("--grad-clip", a.grad_clip.is_some()),
        ("--dropout", a.dropout.is_some()),
        ("--forget-bias", a.forget_bias.is_some()),
        ("--mode", a.mode.is_some()),
        ("--val-fraction", a.val_fraction.is_some()),
        ("--threads", a.threads.is_some()),
        ("--seed", a.seed.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
        bail!("{flag} is fixed by the checkpoint being resumed; leave it out with --resume");
    }
    Ok(())
}

fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".charrnn-write-test{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("cannot write to output directory {}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validation and checkpoint writing.
struct Saver<'a> {
    latest: &'a Path,
    best: &'a Path,
    data: DataSection,
    vocab: &'a Vocab,
    val_tokens: &'a [u32],
    eval_every: u64,
    last_saved_step: Option<u64>,
    /// Training losses since the last validation.
    loss_sum: f64,
    loss_n: usize,
}

impl Saver<'_> {
    /// Validates, records a history point, writes latest.json and, if the validation loss
    /// improved (or there is no validation split), best.json. Returns the validation loss.
    fn save(&mut self, t: &mut Trainer) -> Result<Option<f64>> {
        let c = t.config;
        let val = (self.val_tokens.len() >= 2).then(|| {
            evaluate(
                &t.model,
                self.val_tokens,
                EVAL_STREAMS,
                EVAL_WINDOW,
                c.threads,
            )
            .loss()
        });
        let train_loss = self.loss_sum / self.loss_n.max(1) as f64;
        if self.loss_n > 0 {
            t.progress.history.push(HistoryPoint {
                step: t.progress.step,
                epoch: t.epoch_fraction(),
                seconds: t.progress.elapsed,
                train_loss,
                val_loss: val,
            });
        }
        self.loss_sum = 0.0;
        self.loss_n = 0;
        let improved = match (val, t.progress.best_val_loss) {
            (Some(v), Some(b)) => v < b,
            _ => true,
        };
        if improved && val.is_some() {
            t.progress.best_val_loss = val;
        }
        t.sync_progress_state();
        let ck = Checkpoint::new(
            &t.model,
            self.vocab,
            self.data.clone(),
            &t.config,
            self.eval_every,
            &t.optimizer,
            &t.progress,
        );
        ck.save(self.latest)?;
        if improved {
            Checkpoint::copy(self.latest, self.best)?;
        }
        self.last_saved_step = Some(t.progress.step);
        Ok(val)
    }
}

fn print_sample(best: &Path, latest: &Path, mode: Mode, len: usize, seed: u64) -> Result<()> {
    let path = if best.is_file() { best } else { latest };
    let (model, vocab) = Checkpoint::load(path)?.model()?;
    let config = SampleConfig {
        temperature: 0.8,
        seed,
        ..SampleConfig::default()
    };
    let mut sampler = Sampler::new(&model, &vocab, config);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "--- sample from {} (temperature 0.8) ---",
        path.display()
    )?;
    let mut written = 0;
    // In lines mode, one sequence per line until `len` characters; bounded in sequences too,
    // in case the model ends every line at once.
    for _ in 0..len {
        if written >= len {
            break;
        }
        sampler
            .prime("")
            .expect("the empty prime has no unknown characters");
        sampler.generate(len - written, |c| {
            written += 1;
            write!(out, "{c}")
        })?;
        writeln!(out)?;
        if mode == Mode::Stream {
            break;
        }
    }
    Ok(())
}

/// Live progress: an indicatif bar on a terminal, a plain line every 10 s otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    first_step: u64,
    last_line: Instant,
}

impl Reporter {
    fn new(first_step: u64, max_steps: u64) -> Reporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(max_steps);
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} steps | {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_position(first_step);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Reporter {
            bar,
            first_step,
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, t: &Trainer, loss: f64, val: Option<f64>, cps: f64, eta: f64, lr: f32) {
        let msg = format!(
            "epoch {:.2} | loss {loss:.4} | val {} | {:.1}k chars/s | lr {lr:.2e} | ETA {}",
            t.epoch_fraction(),
            val.map_or("-".into(), |v| format!("{v:.4}")),
            cps / 1000.0,
            hms(eta)
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(t.progress.step);
                bar.set_message(msg);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                eprintln!("step {} | {msg}", t.progress.step);
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
