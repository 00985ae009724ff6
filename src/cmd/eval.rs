//! `charrnn eval`: loss, bits per character and perplexity on held-out text; for a
//! classifier, accuracy, macro-F1, per-label precision and recall, and the confusion matrix.

use crate::cli::EvalArgs;
use anyhow::{Context, Result, bail};
use charrnn::analysis::classify;
use charrnn::analysis::eval::{EvalConfig, evaluate};
use charrnn::fs::input_name;
use charrnn::io::classifier::{ClassifierCheckpoint, is_classifier};
use charrnn::io::model_file;
use charrnn::text::corpus::{Corpus, VocabSource, read_utf8};
use charrnn::text::split;
use std::path::PathBuf;

pub fn run(args: EvalArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    if is_classifier(&path) {
        return eval_classifier(&args, &path, &ClassifierCheckpoint::load(&path)?);
    }
    let model_file::ModelFile {
        model,
        vocab,
        mode,
        data,
    } = model_file::load(&path)?;
    // A run validated on a file of its own (--val-file) is evaluated on it by default.
    let file = args
        .file
        .clone()
        .or_else(|| data.as_ref()?.val_file.as_ref().map(PathBuf::from));
    let (what, tokens) = match &file {
        Some(file) => {
            let what = input_name(file);
            let text = super::known_text(&vocab, mode, read_utf8(file)?, &what, args.skip_unknown)?;
            let seqs = split::sequences(&[text], mode);
            let tokens =
                split::tokens(&vocab, &seqs).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            (what, tokens)
        }
        None if args.skip_unknown => {
            bail!(
                "--skip-unknown applies to a file given; the validation split holds only characters the model knows"
            )
        }
        None => {
            let Some(data) = data else {
                bail!(
                    "{} is an exported model, without a record of its training text; pass a file to evaluate on",
                    path.display()
                );
            };
            if data.val_chars == 0 {
                bail!(
                    "{} was trained without a validation split; pass a file to evaluate on",
                    path.display()
                );
            }
            let paths: Vec<PathBuf> = data.sources.iter().map(PathBuf::from).collect();
            let corpus = Corpus::load(&paths, mode, data.val_fraction, VocabSource::Fixed(&vocab))
                .context(
                    "cannot re-read the corpus recorded in the checkpoint; pass a file to evaluate on",
                )?;
            let chars = corpus.info.val_chars;
            if chars != data.val_chars {
                bail!(
                    "the corpus has changed since training: its validation split now has {chars} characters, the checkpoint recorded {}; pass a file to evaluate on",
                    data.val_chars
                );
            }
            ("validation split".to_string(), corpus.val)
        }
    };
    if tokens.len() < 2 {
        bail!("{what} has no text to score");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| super::default_threads(args.streams));
    let t0 = std::time::Instant::now();
    let config = EvalConfig {
        streams: args.streams,
        window: args.window,
        warmup: args.warmup,
        max_chars: args.max_chars,
        threads,
        precision: args.precision,
    };
    args.precision
        .check_available()
        .map_err(anyhow::Error::msg)?;
    charrnn::analysis::eval::check_memory(&model.config, tokens.len(), &config)?;
    let stats = evaluate(&model, &tokens, &config);
    let secs = t0.elapsed().as_secs_f64();
    if args.json {
        let doc = serde_json::json!({
            "checkpoint": path.display().to_string(),
            "text": what,
            "chars_scored": stats.count,
            "loss_nats_per_char": stats.loss(),
            "bits_per_char": stats.bits_per_char(),
            "perplexity": stats.perplexity(),
            "seconds": secs,
            "precision": args.precision,
        });
        println!("{doc}");
    } else {
        println!(
            "{what}: loss {:.4} nats/char | {:.4} bits/char | perplexity {:.3} | {} chars scored ({:.0} chars/s)",
            stats.loss(),
            stats.bits_per_char(),
            stats.perplexity(),
            stats.count,
            stats.count as f64 / secs.max(1e-9)
        );
        if !args.precision.is_f32() {
            println!(
                "(computed with {} products: a bf16 number, which differs slightly from the f32 number training validates with)",
                args.precision.describe()
            );
        }
    }
    Ok(())
}

/// A classifier on labelled lines in the format it was trained on: a file's lines, or by
/// default its validation split (re-read from its files and split as in training).
fn eval_classifier(
    args: &EvalArgs,
    path: &std::path::Path,
    ck: &ClassifierCheckpoint,
) -> Result<()> {
    if args.precision != charrnn::kernels::Precision::F32 {
        bail!("--precision bf16 applies to language models: a classifier runs in f32");
    }
    let (model, vocab, labels) = ck.model()?;
    let (what, data) = ck.eval_data(args.file.as_deref(), &labels, &vocab)?;
    let threads = args
        .threads
        .unwrap_or_else(|| super::default_threads(usize::MAX));
    let stats = classify::evaluate(&model, &data, None, threads);
    if args.json {
        let mut doc = stats.json(&labels);
        doc["checkpoint"] = path.display().to_string().into();
        doc["text"] = what.into();
        println!("{doc}");
    } else {
        println!(
            "{what}: accuracy {:.2}% | macro-F1 {:.4} | loss {:.4} nats/line | {} lines",
            100.0 * stats.accuracy(),
            stats.macro_f1(),
            stats.loss(),
            stats.count()
        );
        print!("{}", stats.table(&labels));
    }
    Ok(())
}
