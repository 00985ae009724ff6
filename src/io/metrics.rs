//! The metrics log of a run directory, `metrics.jsonl`: one JSON object per line, appended
//! as the run goes (a training-loss point every few steps, a validation point at every
//! validation), and the loss plot `loss.svg` drawn from it at every validation.
//!
//! Every line names the run that wrote it (`run`, see [`crate::io::rundir`]). A resumed run
//! continues the same log: lines of other runs, and the lines after the checkpoint it
//! resumes from (written between that checkpoint and a crash), are dropped first, since
//! those steps are trained again.
//!
//! The log is a view of the run, never a reason to stop it: a line cut short by a crash,
//! bytes that are not UTF-8 (what a power cut can leave) or a line that is not a record are
//! skipped when the log is read, and counted.

use crate::fs::{ReadLimit, available_memory, read_regular, write_atomic};
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
    /// Mean training loss since the previous record of the same kind (nats/char): in a
    /// `train` record the last few steps, in a `val` record every step since the previous
    /// validation (a longer average, which is why plots draw the training curve from the
    /// `train` records alone when there are any).
    pub train_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    pub lr: f32,
    pub chars_per_s: f64,
    /// The run that wrote the line; absent in logs written before runs had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// The records of a log, and how many of its lines could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Log {
    pub records: Vec<Record>,
    pub skipped: usize,
}

impl Log {
    /// One line for stderr about the skipped lines of `path`, if there were any.
    pub fn note(&self, path: &Path) -> Option<String> {
        skipped_note(self.skipped, path)
    }
}

/// One line for stderr about `skipped` unreadable lines of the log `path`, if any.
pub fn skipped_note(skipped: usize, path: &Path) -> Option<String> {
    (skipped > 0).then(|| {
        format!(
            "skipped {skipped} unreadable line{} of {} (cut short, damaged or not a record)",
            if skipped == 1 { "" } else { "s" },
            path.display()
        )
    })
}

/// Reads a metrics log leniently: a line that is not UTF-8 or not a record is skipped and
/// counted, never an error (only a file that cannot be read at all is).
pub fn read(path: &Path) -> Result<Log> {
    let limit = ReadLimit {
        max_bytes: available_memory(),
    };
    let bytes = read_regular(path, "metrics log", limit)?;
    Ok(parse(&bytes))
}

/// The records of the bytes of a log (see [`read`]).
pub fn parse(bytes: &[u8]) -> Log {
    let mut log = Log::default();
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match std::str::from_utf8(line)
            .ok()
            .and_then(|l| serde_json::from_str(l).ok())
        {
            Some(r) => log.records.push(r),
            None => log.skipped += 1,
        }
    }
    log
}

/// Appends records to `<dir>/metrics.jsonl` as a run's events arrive and redraws
/// `<dir>/loss.svg` at each validation.
pub struct MetricsLog {
    dir: PathBuf,
    label: String,
    run: String,
    file: std::fs::File,
    records: Vec<Record>,
    /// Training-loss records every this many steps.
    every: u64,
    sum: f64,
    n: u64,
    error: Option<anyhow::Error>,
    /// Lines of the old log that could not be read (and were dropped).
    pub skipped: usize,
}

impl MetricsLog {
    /// Opens the log of `dir` for the run `run`: the records of the old log that `keep`
    /// accepts (a resumed run's own past, see [`crate::io::rundir::RunDir::keeps`]) are kept,
    /// the rest dropped, and `loss.svg` is redrawn from what is kept (removed if nothing
    /// is). Training-loss records are written every `every` steps.
    pub fn open(
        dir: &Path,
        run: &str,
        keep: impl Fn(&Record) -> bool,
        every: u64,
    ) -> Result<MetricsLog> {
        let path = dir.join(METRICS);
        let old = if path.exists() {
            read(&path)?
        } else {
            Log::default()
        };
        let records: Vec<Record> = old.records.into_iter().filter(|r| keep(r)).collect();
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
        let log = MetricsLog {
            dir: dir.to_path_buf(),
            label,
            run: run.to_string(),
            file,
            records,
            every: every.max(1),
            sum: 0.0,
            n: 0,
            error: None,
            skipped: old.skipped,
        };
        // The plot shows this run's records only: another run's is not left in its place.
        if log.records.is_empty() {
            match std::fs::remove_file(dir.join(PLOT)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("cannot remove the old loss.svg");
                }
                _ => {}
            }
        } else {
            log.draw()?;
        }
        Ok(log)
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
                        lr: s.report.lr,
                        chars_per_s: s.chars_per_s,
                        run: Some(self.run.clone()),
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
                    lr: *lr,
                    chars_per_s: *chars_per_s,
                    run: Some(self.run.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a power cut or a crash can leave in a log: a torn last line, bytes that are not
    /// UTF-8, a line of something else. Each is skipped and counted; the rest is read.
    #[test]
    fn damaged_lines_are_skipped_and_counted() {
        let good = |step: u64| {
            serde_json::to_string(&Record {
                kind: "val".into(),
                step,
                epoch: 0.5,
                seconds: 1.0,
                train_loss: 2.0,
                val_loss: Some(2.1),
                lr: 1e-3,
                chars_per_s: 10.0,
                run: Some("ab12".into()),
            })
            .unwrap()
        };
        let mut bytes = format!("{}\n{}\n\n", good(5), good(10)).into_bytes();
        bytes.extend_from_slice(b"{\"kind\": \"tr\xff\xfe\n[1, 2]\n");
        bytes.extend_from_slice(good(15).as_bytes());
        bytes.extend_from_slice(b"\n{\"kind\":\"val\",\"st");
        let log = parse(&bytes);
        let steps: Vec<u64> = log.records.iter().map(|r| r.step).collect();
        assert_eq!(steps, [5, 10, 15]);
        assert_eq!(log.skipped, 3);
        let note = log.note(Path::new("m.jsonl")).unwrap();
        assert!(
            note.contains("skipped 3 unreadable lines of m.jsonl"),
            "{note}"
        );
        assert_eq!(parse(good(1).as_bytes()).note(Path::new("x")), None);
        // A line written before runs had ids reads as a record of no run.
        let old = r#"{"kind":"train","step":3,"epoch":0.1,"seconds":0.2,"train_loss":3.0,"lr":0.002,"chars_per_s":5.0}"#;
        assert_eq!(parse(old.as_bytes()).records[0].run, None);
    }
}
