//! One configuration measured on one corpus: training, evaluation and batch-1 sampling
//! speed, peak memory, and the size and save/load time of the full training checkpoint.
//! `charrnn bench` prints it; `bench/compare.py` sets it beside PyTorch's reference script.
//! It uses every part of the library and nothing uses it.

use crate::analysis::eval::{EvalConfig, evaluate};
use crate::decode::sample::{SampleConfig, Sampler};
use crate::io::checkpoint::{Checkpoint, DataSection};
use crate::kernels::Precision;
use crate::nn::{CellKind, Model, ModelConfig};
use crate::text::Mode;
use crate::text::corpus::Corpus;
use crate::train::schedule::LrSchedule;
use crate::train::{Optimizer, TrainConfig, Trainer};
use anyhow::{Result, bail};
use rand::SeedableRng;
use std::path::Path;
use std::time::Instant;

/// Training steps taken before the clock starts (packing, page faults, caches).
pub const WARMUP_STEPS: usize = 5;

/// What to measure: the model, the batch, and how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchConfig {
    pub cell: CellKind,
    pub layers: usize,
    pub hidden: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub threads: usize,
    /// Precision of the products of training and evaluation.
    pub precision: Precision,
    /// Seconds of timed training.
    pub seconds: f64,
    /// Characters per timed sampling run (three runs; the median counts).
    pub sample_chars: usize,
}

/// The figures, under the names `charrnn bench --json` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The kernels that produced the figures (`avx512`, `avx2`, `portable`).
    pub isa: &'static str,
    /// The products' precision and, for bf16, the kernel (`bf16 (AMX-BF16)`).
    pub precision: String,
    pub vocab: usize,
    pub train_chars_per_s: f64,
    pub train_steps: usize,
    pub train_seconds: f64,
    pub train_loss_last: f64,
    /// Training FLOP/s counted as 3 x the forward FLOPs per character.
    pub train_gflops: f64,
    pub eval_chars_per_s: f64,
    #[serde(skip)]
    pub eval_chars: usize,
    pub val_loss: f64,
    pub sample_chars_per_s: f64,
    /// Peak resident memory of training, evaluation and sampling (Linux; `None` elsewhere).
    pub peak_rss_mb: Option<f64>,
    pub checkpoint_mb: f64,
    pub checkpoint_save_s: f64,
    pub checkpoint_load_s: f64,
}

/// Measures `config` on `corpus` (read from `source`, which the checkpoint names).
pub fn measure(corpus: &Corpus, source: &Path, config: &BenchConfig) -> Result<BenchReport> {
    let vocab = &corpus.vocab;
    config
        .precision
        .check_available()
        .map_err(anyhow::Error::msg)?;
    let batch_len = config.batch.checked_mul(config.seq_len);
    if batch_len.is_none_or(|n| corpus.train.len() <= n) {
        bail!(
            "{} is too short for one batch of {} x {}",
            source.display(),
            config.batch,
            config.seq_len
        );
    }
    let mut model = Model::new(ModelConfig {
        cell: config.cell,
        vocab_size: vocab.len(),
        hidden: config.hidden,
        layers: config.layers,
        dropout: 0.0,
    });
    model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1234));
    // PyTorch's reference script: Adam at a constant 2e-3, clip 5.
    let tc = TrainConfig {
        batch: config.batch,
        seq_len: config.seq_len,
        lr: LrSchedule {
            base: 2e-3,
            decay: 1.0,
            after: 0,
            ..LrSchedule::default()
        },
        optimizer: Default::default(),
        grad_clip: 5.0,
        threads: config.threads,
        seed: 1234,
        precision: config.precision,
    };
    let optimizer = Optimizer::new(tc.optimizer, model.param_count());
    let progress = Trainer::fresh_progress(&model, &tc);
    let mut trainer = Trainer::new(model, optimizer, tc, &corpus.train, progress);

    for _ in 0..WARMUP_STEPS {
        trainer.step()?;
    }
    let (mut chars, mut steps, mut loss) = (0usize, 0usize, 0.0);
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < config.seconds {
        let r = trainer.step()?;
        chars += r.chars;
        steps += 1;
        loss = r.loss;
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    let train_chars_per_s = chars as f64 / train_seconds;

    let t0 = Instant::now();
    let eval = evaluate(
        &trainer.model,
        &corpus.val,
        &EvalConfig {
            threads: config.threads,
            precision: config.precision,
            ..EvalConfig::default()
        },
    );
    let eval_chars_per_s = eval.count as f64 / t0.elapsed().as_secs_f64();

    let sample_config = SampleConfig {
        seed: 1,
        ..SampleConfig::default()
    };
    let mut sampler = Sampler::new(&trainer.model, vocab, sample_config);
    sampler.prime("")?;
    sampler.run_tokens(50);
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            sampler.run_tokens(config.sample_chars);
            config.sample_chars as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);

    // Peak memory of training, evaluation and sampling, before the checkpoint's JSON text
    // (which exists only while a checkpoint is written or read) is measured.
    let peak_rss_mb = peak_rss_mb();
    let (checkpoint_save_s, checkpoint_load_s, checkpoint_mb) =
        checkpoint_io(&mut trainer, corpus, source)?;
    Ok(BenchReport {
        isa: crate::kernels::isa().name(),
        precision: config.precision.describe(),
        vocab: vocab.len(),
        train_chars_per_s,
        train_steps: steps,
        train_seconds,
        train_loss_last: loss,
        train_gflops: train_chars_per_s * 3.0 * trainer.model.config.forward_flops() / 1e9,
        eval_chars_per_s,
        eval_chars: eval.count,
        val_loss: eval.loss(),
        sample_chars_per_s: rates[1],
        peak_rss_mb,
        checkpoint_mb,
        checkpoint_save_s,
        checkpoint_load_s,
    })
}

/// Writes the full training checkpoint to a temporary file and reads it back (with all of
/// `Checkpoint::load`'s checks); returns the seconds of each and the size in MB.
fn checkpoint_io(trainer: &mut Trainer, corpus: &Corpus, source: &Path) -> Result<(f64, f64, f64)> {
    trainer.sync_progress_state();
    let data = DataSection {
        mode: Mode::Stream,
        sources: vec![source.display().to_string()],
        val_fraction: 0.1,
        train_chars: 0,
        val_chars: 0,
    };
    let ck = Checkpoint::new(
        &trainer.model,
        &corpus.vocab,
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
