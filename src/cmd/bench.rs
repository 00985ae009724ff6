//! `charrnn bench`: training, evaluation and batch-1 sampling speed, and peak memory, for one
//! configuration on one corpus (`charrnn::bench`). Compare with
//! `../shared/bench/torch_charlm.py` run in the same sitting (see the README's Performance
//! section).

use crate::cli::BenchArgs;
use anyhow::Result;
use charrnn::bench::{BUILTIN_CORPUS, BUILTIN_NAME, BenchConfig, WARMUP_STEPS, measure};
use charrnn::text::Mode;
use charrnn::text::corpus::{Corpus, VocabSource};
use std::path::PathBuf;

pub fn run(args: BenchArgs) -> Result<()> {
    // Without a corpus, the play built into the binary: the same text wherever charrnn runs.
    let (path, corpus) = match args.corpus.clone() {
        Some(p) => {
            let corpus = Corpus::load(
                std::slice::from_ref(&p),
                Mode::Stream,
                0.1,
                VocabSource::Corpus,
            )?;
            (p, corpus)
        }
        None => (
            PathBuf::from(BUILTIN_NAME),
            Corpus::from_text(BUILTIN_NAME, BUILTIN_CORPUS, Mode::Stream, 0.1)?,
        ),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| super::default_threads(args.batch_size));
    let r = measure(
        &corpus,
        &path,
        &BenchConfig {
            cell: args.cell,
            layers: args.layers,
            hidden: args.hidden,
            batch: args.batch_size,
            seq_len: args.seq_len,
            threads,
            precision: args.precision,
            seconds: args.seconds,
            sample_chars: args.sample_chars,
        },
    )?;
    let cfg = format!(
        "{} {}x{} B{} T{} threads {}",
        args.cell, args.layers, args.hidden, args.batch_size, args.seq_len, threads
    );
    if args.json {
        let mut doc = serde_json::to_value(&r)?;
        let config = serde_json::json!({
            "config": cfg, "cell": args.cell, "layers": args.layers, "hidden": args.hidden,
            "batch": args.batch_size, "seq_len": args.seq_len, "threads": threads,
            "corpus": path.display().to_string(),
        });
        if let (Some(doc), serde_json::Value::Object(config)) = (doc.as_object_mut(), config) {
            doc.extend(config);
        }
        println!("{doc}");
        return Ok(());
    }
    println!(
        "charrnn bench: {cfg}, {} kernels, {} products, L2 {} per core, vocabulary {} ({})",
        r.isa,
        r.precision,
        r.l2,
        r.vocab,
        path.display()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| training chars/s ({} steps, {:.1} s after {WARMUP_STEPS} warm-up) | {:.0} |",
        r.train_steps, r.train_seconds, r.train_chars_per_s
    );
    println!(
        "| training GFLOP/s (3 x forward FLOPs per char) | {:.1} |",
        r.train_gflops
    );
    println!(
        "| evaluation chars/s ({} chars) | {:.0} |",
        r.eval_chars, r.eval_chars_per_s
    );
    println!(
        "| batch-1 sampling chars/s (median of 3 x {}) | {:.0} |",
        args.sample_chars, r.sample_chars_per_s
    );
    println!(
        "| peak resident memory while training (MB) | {} |",
        r.peak_rss_mb.map_or("n/a".into(), |m| format!("{m:.0}"))
    );
    println!(
        "| checkpoint size / save / load | {:.1} MB / {:.2} s / {:.2} s |",
        r.checkpoint_mb, r.checkpoint_save_s, r.checkpoint_load_s
    );
    println!(
        "| last training loss / validation loss | {:.3} / {:.3} |",
        r.train_loss_last, r.val_loss
    );
    Ok(())
}
