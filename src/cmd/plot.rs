//! `charrnn plot`: the loss curves of one or more runs in one SVG.

use crate::cli::PlotArgs;
use anyhow::{Result, bail};
use charrnn::fs::write_atomic;
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::metrics::{METRICS, Record, read};
use charrnn::io::plot::{Run, svg};
use std::io::Write;
use std::path::Path;

pub fn run(args: PlotArgs) -> Result<()> {
    let mut runs = Vec::new();
    for dir in &args.dirs {
        let label = dir.file_name().map_or(dir.display().to_string(), |n| {
            n.to_string_lossy().into_owned()
        });
        runs.push(Run {
            label,
            records: records(dir)?,
        });
    }
    if runs.iter().all(|r| r.records.is_empty()) {
        bail!("no run directory given has any validation yet");
    }
    let title = args.title.unwrap_or_else(|| "charrnn: loss".into());
    let doc = svg(&runs, &title, args.x);
    write_atomic(&args.output, |f| Ok(f.write_all(doc.as_bytes())?))?;
    eprintln!("charrnn: wrote {}", args.output.display());
    Ok(())
}

/// A run's metrics log, or, for a run without one, the validation history of its latest
/// checkpoint.
fn records(dir: &Path) -> Result<Vec<Record>> {
    let log = dir.join(METRICS);
    if log.is_file() {
        return read(&log);
    }
    let ck = super::find_checkpoint(None, dir)?;
    let ck = Checkpoint::load(&ck)?;
    Ok(ck
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
            val_accuracy: h.val_accuracy,
            lr: ck.training.config.lr.base,
            chars_per_s: 0.0,
        })
        .collect())
}
