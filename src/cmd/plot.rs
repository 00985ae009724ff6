//! `charrnn plot`: the loss curves of one or more runs in one SVG.

use crate::cli::PlotArgs;
use anyhow::{Result, bail};
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::metrics::{METRICS, Record, read};
use charrnn::io::output::Output;
use charrnn::io::plot::{Run, labels, svg};
use std::path::{Path, PathBuf};

pub fn run(args: PlotArgs) -> Result<()> {
    let mut inputs = Vec::new();
    let mut runs = Vec::new();
    for (dir, label) in args.dirs.iter().zip(labels(&args.dirs)) {
        let (records, read_from) = records(dir)?;
        inputs.push(read_from);
        runs.push(Run { label, records });
    }
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let output = Output::check(&args.output, &inputs, args.force)?;
    if runs.iter().all(|r| r.records.is_empty()) {
        bail!("no run directory given has any validation yet");
    }
    let title = args.title.unwrap_or_else(|| "charrnn: loss".into());
    let doc = svg(&runs, &title, args.x);
    output.write(doc.as_bytes())?;
    eprintln!("charrnn: wrote {}", output.describe());
    Ok(())
}

/// A run's metrics log (read leniently: unreadable lines are skipped, with a note), or,
/// for a run without one, the validation history of its latest checkpoint; and the file
/// read.
fn records(dir: &Path) -> Result<(Vec<Record>, PathBuf)> {
    let log = dir.join(METRICS);
    if log.is_file() {
        let l = read(&log)?;
        if let Some(note) = l.note(&log) {
            eprintln!("charrnn: {note}");
        }
        return Ok((l.records, log));
    }
    let path = super::find_checkpoint(None, dir)?;
    let ck = Checkpoint::load(&path)?;
    let records = ck
        .progress
        .history
        .iter()
        .map(|h| Record {
            kind: "val".into(),
            step: h.step,
            epoch: h.epoch,
            seconds: h.seconds,
            train_loss: h.train_loss,
            val_loss: h.val_loss,
            lr: ck.training.config.lr.base,
            chars_per_s: 0.0,
            run: ck.run.clone(),
        })
        .collect();
    Ok((records, path))
}
