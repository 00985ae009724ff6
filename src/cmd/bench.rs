//! `charrnn bench`: training, evaluation and batch-1 sampling speed, and peak memory, for one
//! configuration on one corpus. Compare with `../shared/bench/torch_charlm.py` run in the
//! same sitting (see the README's Performance section).

use crate::cli::BenchArgs;
use anyhow::{Result, bail};
use charrnn::analysis::eval::{EvalConfig, evaluate};
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::checkpoint::{Checkpoint, DataSection};
use charrnn::nn::{Model, ModelConfig};
use charrnn::text::Mode;
use charrnn::text::corpus::{Corpus, VocabSource};
use charrnn::text::vocab::Vocab;
use charrnn::train::schedule::LrSchedule;
use charrnn::train::{Optimizer, TrainConfig, Trainer};
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

const WARMUP_STEPS: usize = 5;

pub fn run(args: BenchArgs) -> Result<()> {
    let path = match args.corpus.clone() {
        Some(p) => p,
        None => {
            let p = PathBuf::from("../shared/data/tinyshakespeare.txt");
            if !p.is_file() {
                bail!(
                    "no corpus given and {} does not exist: pass a text file",
                    p.display()
                );
            }
            p
        }
    };
    let corpus = Corpus::load(
        std::slice::from_ref(&path),
        Mode::Stream,
        0.1,
        VocabSource::Corpus,
    )?;
    let (vocab, train_tokens, val_tokens) = (&corpus.vocab, &corpus.train, &corpus.val);
    let batch_len = args.batch_size.checked_mul(args.seq_len);
    if batch_len.is_none_or(|n| train_tokens.len() <= n) {
        bail!(
            "{} is too short for one batch of {} x {}",
            path.display(),
            args.batch_size,
            args.seq_len
        );
    }
    let cell = args.cell;
    let threads = args
        .threads
        .unwrap_or_else(|| super::default_threads(args.batch_size));
    let mut model = Model::new(ModelConfig {
        cell,
        vocab_size: vocab.len(),
        hidden: args.hidden,
        layers: args.layers,
        dropout: 0.0,
    });
    model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1234));
    let config = TrainConfig {
        batch: args.batch_size,
        seq_len: args.seq_len,
        lr: LrSchedule {
            base: 2e-3,
            decay: 1.0,
            after: 0,
            ..LrSchedule::default()
        },
        optimizer: Default::default(),
        grad_clip: 5.0,
        threads,
        seed: 1234,
    };
    let optimizer = Optimizer::new(config.optimizer, model.param_count());
    let progress = Trainer::fresh_progress(&model, &config);
    let mut trainer = Trainer::new(model, optimizer, config, train_tokens, progress);

    for _ in 0..WARMUP_STEPS {
        trainer.step()?;
    }
    let (mut chars, mut steps, mut loss) = (0usize, 0usize, 0.0);
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < args.seconds {
        let r = trainer.step()?;
        chars += r.chars;
        steps += 1;
        loss = r.loss;
    }
    let train_secs = t0.elapsed().as_secs_f64();
    let train_cps = chars as f64 / train_secs;

    let t0 = Instant::now();
    let eval = evaluate(
        &trainer.model,
        val_tokens,
        &EvalConfig {
            threads,
            ..EvalConfig::default()
        },
    );
    let eval_cps = eval.count as f64 / t0.elapsed().as_secs_f64();

    let mut sampler = Sampler::new(
        &trainer.model,
        vocab,
        SampleConfig {
            seed: 1,
            ..SampleConfig::default()
        },
    );
    sampler.prime("")?;
    sampler.run_tokens(50);
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            sampler.run_tokens(args.sample_chars);
            args.sample_chars as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let sample_cps = rates[1];

    // Peak memory of training, evaluation and sampling, before the checkpoint's JSON text
    // (which exists only while a checkpoint is written or read) is measured.
    let rss_mb = peak_rss_mb();
    let (save_secs, load_secs, ck_mb) = checkpoint_io(&mut trainer, vocab, &path)?;

    let flops_per_char = 3.0 * trainer.model.config.forward_flops();
    let gflops = train_cps * flops_per_char / 1e9;
    let cfg = format!(
        "{} {}x{} B{} T{} threads {}",
        args.cell, args.layers, args.hidden, args.batch_size, args.seq_len, threads
    );
    // Figures mean something only with the CPU and the kernels that produced them.
    let isa = charrnn::kernels::isa().name();
    if args.json {
        let doc = serde_json::json!({
            "config": cfg, "isa": isa, "cell": args.cell, "layers": args.layers, "hidden": args.hidden,
            "batch": args.batch_size, "seq_len": args.seq_len, "threads": threads,
            "corpus": path.display().to_string(), "vocab": vocab.len(),
            "train_chars_per_s": train_cps, "train_steps": steps, "train_seconds": train_secs,
            "train_loss_last": loss, "train_gflops": gflops,
            "eval_chars_per_s": eval_cps, "val_loss": eval.loss(),
            "sample_chars_per_s": sample_cps, "peak_rss_mb": rss_mb,
            "checkpoint_mb": ck_mb, "checkpoint_save_s": save_secs, "checkpoint_load_s": load_secs,
        });
        println!("{doc}");
    } else {
        println!(
            "charrnn bench: {cfg}, {isa} kernels, vocabulary {} ({})",
            vocab.len(),
            path.display()
        );
        println!("| measure | value |");
        println!("|---|---|");
        println!(
            "| training chars/s ({steps} steps, {train_secs:.1} s after {WARMUP_STEPS} warm-up) | {train_cps:.0} |"
        );
        println!("| training GFLOP/s (3 x forward FLOPs per char) | {gflops:.1} |");
        println!(
            "| evaluation chars/s ({} chars) | {eval_cps:.0} |",
            eval.count
        );
        println!(
            "| batch-1 sampling chars/s (median of 3 x {}) | {sample_cps:.0} |",
            args.sample_chars
        );
        println!(
            "| peak resident memory while training (MB) | {} |",
            rss_mb.map_or("n/a".into(), |m| format!("{m:.0}"))
        );
        println!(
            "| checkpoint size / save / load | {ck_mb:.1} MB / {save_secs:.2} s / {load_secs:.2} s |"
        );
        println!(
            "| last training loss / validation loss | {loss:.3} / {:.3} |",
            eval.loss()
        );
    }
    Ok(())
}

/// Writes the full training checkpoint to a temporary file and reads it back (with all of
/// `Checkpoint::load`'s checks); returns the seconds of each and the size in MB.
fn checkpoint_io(
    trainer: &mut Trainer,
    vocab: &Vocab,
    corpus: &std::path::Path,
) -> Result<(f64, f64, f64)> {
    trainer.sync_progress_state();
    let data = DataSection {
        mode: Mode::Stream,
        sources: vec![corpus.display().to_string()],
        val_fraction: 0.1,
        train_chars: 0,
        val_chars: 0,
    };
    let ck = Checkpoint::new(
        &trainer.model,
        vocab,
        data,
        &trainer.config,
        100,
        &trainer.optimizer,
        &trainer.progress,
    );
    let path = std::env::temp_dir().join(format!("charrnn-bench-{}.json", std::process::id()));
    let t0 = Instant::now();
    ck.save(&path)?;
    let save = t0.elapsed().as_secs_f64();
    let mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    let t0 = Instant::now();
    let back = Checkpoint::load(&path);
    let load = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    if back? != ck {
        bail!("checkpoint did not round-trip");
    }
    Ok((save, load, mb))
}

/// Peak resident set size of this process (VmHWM), Linux only.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
