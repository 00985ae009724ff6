//! `charrnn predict`: the most probable labels of each line of a file (or stdin), with
//! their probabilities, as TSV with a header or as one JSON object per line.

use crate::cli::PredictArgs;
use anyhow::{Context, Result, bail};
use charrnn::analysis::classify::{log_probs, top_k};
use charrnn::io::classifier::{ClassifierCheckpoint, is_classifier};
use charrnn::text::corpus::read_utf8;
use charrnn::text::labeled::{encode, unlabelled};
use std::io::{BufWriter, Read, Write};

pub fn run(args: PredictArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    if !is_classifier(&path) {
        bail!(
            "{} is not a classifier's checkpoint (a language model's, or an export), so it has no labels to predict; predict reads the best.json or latest.json of `charrnn train --task classify`",
            path.display()
        );
    }
    let ck = ClassifierCheckpoint::load(&path)?;
    let (model, vocab, labels) = ck.model()?;
    let text = if args.file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        let limit = charrnn::fs::available_memory();
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)?;
        String::from_utf8(bytes).context("stdin is not valid UTF-8")?
    } else {
        read_utf8(&args.file)?
    };
    // Each non-empty line, by its number; a line with no character the model knows gets no
    // label (NA) rather than a guess.
    let mut lines = Vec::new();
    let mut dropped = 0;
    for (i, line) in text.lines().enumerate() {
        let t = unlabelled(line);
        if !t.is_empty() {
            let (ids, d) = encode(&vocab, t, ck.data.max_len);
            dropped += d;
            lines.push((i + 1, ids));
        }
    }
    let scored: Vec<&[u32]> = lines
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(_, ids)| &ids[..])
        .collect();
    let threads = args
        .threads
        .unwrap_or_else(|| super::default_threads(usize::MAX));
    let lp = log_probs(&model, &scored, threads);
    let (c, k) = (labels.len(), args.top_k.min(labels.len()));
    let mut out = BufWriter::new(std::io::stdout().lock());
    if !args.json {
        let head: Vec<String> = if k == 1 {
            vec!["label".into(), "probability".into()]
        } else {
            (1..=k)
                .flat_map(|i| [format!("label_{i}"), format!("probability_{i}")])
                .collect()
        };
        writeln!(out, "line\t{}", head.join("\t"))?;
    }
    let mut rows = lp.chunks_exact(c);
    for (no, ids) in &lines {
        let top = if ids.is_empty() {
            Vec::new()
        } else {
            top_k(rows.next().unwrap(), k)
        };
        if args.json {
            let ranked: Vec<serde_json::Value> = top
                .iter()
                .map(|&(l, p)| serde_json::json!({"label": labels[l], "probability": p}))
                .collect();
            let mut doc = serde_json::json!({
                "line": no,
                "label": top.first().map(|&(l, _)| labels[l].clone()),
                "probability": top.first().map(|&(_, p)| p),
            });
            if k > 1 {
                doc["top"] = serde_json::Value::from(ranked);
            }
            writeln!(out, "{doc}")?;
        } else if top.is_empty() {
            writeln!(out, "{no}{}", "\tNA\tNA".repeat(k))?;
        } else {
            let cells: Vec<String> = top
                .iter()
                .map(|&(l, p)| format!("{}\t{p:.6}", labels[l]))
                .collect();
            writeln!(out, "{no}\t{}", cells.join("\t"))?;
        }
    }
    out.flush()?;
    if dropped > 0 {
        eprintln!(
            "charrnn: {dropped} characters the model never saw were left out of the lines they are in"
        );
    }
    Ok(())
}
