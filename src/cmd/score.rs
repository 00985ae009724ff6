//! `charrnn score`: the probability the model gives each non-empty line of a file, on its
//! own (zero state, `<start>` … `<end>`, as lines mode trains), as TSV or JSON lines.

use crate::cli::ScoreArgs;
use anyhow::Result;
use charrnn::analysis::score::{LineEnd, SeqScore, score_sequences};
use charrnn::fs::input_name;
use charrnn::io::model_file;
use charrnn::text::Mode;
use charrnn::text::corpus::read_utf8;
use std::io::Write;

/// A line to score: its number, its text, and its ids or why it cannot be scored.
type Line<'a> = (usize, &'a str, Result<Vec<u32>, String>);

pub fn run(args: ScoreArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let model_file::ModelFile {
        model, vocab, mode, ..
    } = model_file::load(&path)?;
    let stream = mode == Mode::Stream;
    let (end, end_id) = LineEnd::resolve(args.end, mode, &vocab)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if stream && args.end.is_none() {
        eprintln!(
            "charrnn: note: {} was trained in stream mode, where <end> comes once per file: each line is scored with {} instead (--end end scores <end> as for a lines-mode model)",
            path.display(),
            if end == LineEnd::Newline {
                "the newline that ends it"
            } else {
                "nothing after its characters"
            }
        );
    }
    let text = read_utf8(&args.file)?;
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l, vocab.encode(l).map_err(|e| e.to_string())))
        .collect();
    let seqs: Vec<Vec<u32>> = lines
        .iter()
        .filter_map(|(_, _, ids)| ids.as_ref().ok().cloned())
        .collect();
    let threads = args
        .threads
        .unwrap_or_else(|| super::default_threads(seqs.len()));
    let mut scores = score_sequences(&model, &seqs, threads, args.per_char, end_id).into_iter();

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !args.json {
        let extra = if args.per_char {
            "\tsurprisal_nats"
        } else {
            ""
        };
        writeln!(out, "line\tnats\tbits_per_char\tchars\ttext\terror{extra}")?;
    }
    let (mut failed, mut total_nats, mut total_positions) = (0, 0.0, 0);
    for (line, text, ids) in &lines {
        let score: Result<SeqScore, &String> = match ids {
            Ok(_) => Ok(scores.next().expect("one score per encoded line")),
            Err(e) => Err(e),
        };
        if let Ok(s) = &score {
            total_nats += s.nats;
            total_positions += s.scored;
        } else {
            failed += 1;
        }
        if args.json {
            let doc = match &score {
                Ok(s) => {
                    let mut d = serde_json::json!({
                        "line": line, "text": text, "chars": s.chars, "nats": s.nats,
                        "bits_per_char": s.bits_per_char(),
                    });
                    if args.per_char {
                        d["surprisal_nats"] = serde_json::json!(s.surprisal);
                    }
                    d
                }
                Err(e) => serde_json::json!({
                    "line": line, "text": text, "chars": text.chars().count(),
                    "nats": null, "bits_per_char": null, "error": e,
                }),
            };
            writeln!(out, "{doc}")?;
        } else {
            let shown = text.replace('\\', "\\\\").replace('\t', "\\t");
            match &score {
                Ok(s) => {
                    write!(
                        out,
                        "{line}\t{:.4}\t{:.4}\t{}\t{shown}\t",
                        s.nats,
                        s.bits_per_char(),
                        s.chars
                    )?;
                    if args.per_char {
                        let each: Vec<String> =
                            s.surprisal.iter().map(|x| format!("{x:.3}")).collect();
                        write!(out, "\t{}", each.join(" "))?;
                    }
                    writeln!(out)?;
                }
                Err(e) => writeln!(
                    out,
                    "{line}\tNA\tNA\t{}\t{shown}\t{e}{}",
                    text.chars().count(),
                    if args.per_char { "\t" } else { "" }
                )?,
            }
        }
    }
    out.flush()?;
    let mean = total_nats / total_positions.max(1) as f64;
    eprintln!(
        "charrnn: scored {} lines of {} with {}: {mean:.4} nats per symbol over all of them{}",
        lines.len() - failed,
        input_name(&args.file),
        path.display(),
        if failed > 0 {
            format!(
                "; {failed} lines have characters the model never saw (nats NA, see the error column)"
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
