//! The metrics log of a run directory, `metrics.jsonl`: one JSON object per line, appended
//! as the run goes (a training-loss point every few steps, a validation point at every
//! validation), and the loss plot `loss.svg` drawn from it at every validation.
//!
//! A resumed run continues the same log: the lines after the checkpoint it resumes from
//! (written between that checkpoint and a crash) are dropped first, since those steps are
//! trained again. A line cut short by a crash is skipped when the log is read.

use crate::fs::write_atomic;
use crate::io::plot::{Run, XAxis, svg};
use crate::train::run::Event;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const METRICS: &str = "metrics.jsonl";
pub const PLOT: &str = "loss.svg";

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `train` (training loss only) or `val` (a validation, with both losses).
    pub kind: String,
    pub step: u64,
    pub epoch: f64,
    /// Training seconds so far, over all runs (validation excluded).
    pub seconds: f64,
    /// Mean training loss since the previous record of the same kind (nats/char).
    pub train_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    /// A classifier's validation accuracy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_accuracy: Option<f64>,
    pub lr: f32,
    pub chars_per_s: f64,
}

/// Reads a metrics log, skipping lines that do not parse (a line cut short by a crash).
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Appends records to `<dir>/metrics.jsonl` as a run's events arrive and redraws
/// `<dir>/loss.svg` at each validation.
pub struct MetricsLog {
    dir: PathBuf,
    label: String,
    file: std::fs::File,
    records: Vec<Record>,
    /// Training-loss records every this many steps.
    every: u64,
    sum: f64,
    n: u64,
    error: Option<anyhow::Error>,
}

impl MetricsLog {
    /// Opens the log of `dir`. A fresh run (`resumed_step` `None`) starts a new log; a
    /// resumed one keeps the records up to its step. Training-loss records are written
    /// every `every` steps.
    pub fn open(dir: &Path, resumed_step: Option<u64>, every: u64) -> Result<MetricsLog> {
        let path = dir.join(METRICS);
        let records = match resumed_step {
            Some(step) if path.exists() => read(&path)?
                .into_iter()
                .filter(|r| r.step <= step)
                .collect(),
            _ => Vec::new(),
        };
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&path, |f| Ok(f.write_all(text.as_bytes())?))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let label = dir
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy().into_owned());
        Ok(MetricsLog {
            dir: dir.to_path_buf(),
            label,
            file,
            records,
            every: every.max(1),
            sum: 0.0,
            n: 0,
            error: None,
        })
    }

    /// Consumes one event of the run loop. Errors are kept for [`MetricsLog::finish`]
    /// rather than stopping training: the log is a view of the run, not the run.
    pub fn event(&mut self, e: &Event) {
        if self.error.is_none()
            && let Err(err) = self.handle(e)
        {
            self.error = Some(err);
        }
    }

    fn handle(&mut self, e: &Event) -> Result<()> {
        match e {
            Event::Step(s) => {
                self.sum += s.report.loss;
                self.n += 1;
                if s.step.is_multiple_of(self.every) {
                    let r = Record {
                        kind: "train".into(),
                        step: s.step,
                        epoch: s.epoch,
                        seconds: s.seconds,
                        train_loss: self.sum / self.n as f64,
                        val_loss: None,
                        val_accuracy: None,
                        lr: s.report.lr,
                        chars_per_s: s.chars_per_s,
                    };
                    self.sum = 0.0;
                    self.n = 0;
                    self.append(r)?;
                }
            }
            Event::Validated {
                point,
                lr,
                chars_per_s,
                ..
            } => {
                let r = Record {
                    kind: "val".into(),
                    step: point.step,
                    epoch: point.epoch,
                    seconds: point.seconds,
                    train_loss: point.train_loss,
                    val_loss: point.val_loss,
                    val_accuracy: point.val_accuracy,
                    lr: *lr,
                    chars_per_s: *chars_per_s,
                };
                self.append(r)?;
                self.draw()?;
            }
            Event::Saved { .. } => {}
        }
        Ok(())
    }

    fn append(&mut self, r: Record) -> Result<()> {
        let line = serde_json::to_string(&r)? + "\n";
        self.file
            .write_all(line.as_bytes())
            .context("cannot append to metrics.jsonl")?;
        self.records.push(r);
        Ok(())
    }

    /// Redraws `loss.svg` from the records so far.
    pub fn draw(&self) -> Result<()> {
        let run = Run {
            label: self.label.clone(),
            records: self.records.clone(),
        };
        let doc = svg(&[run], &format!("charrnn: {}", self.label), XAxis::Steps);
        write_atomic(&self.dir.join(PLOT), |f| Ok(f.write_all(doc.as_bytes())?))
    }

    /// The first error met while logging, if any.
    pub fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e).context("the metrics log could not be written"),
            None => Ok(()),
        }
    }
}
