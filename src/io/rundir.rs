//! A run directory: `latest.json` and `best.json` of one training run, owned by that run for
//! as long as it trains.
//!
//! - Each run has an id, 16 random hex digits drawn when it starts, written into every
//!   checkpoint and every line of the metrics log. A resumed run keeps its id when it
//!   continues the state its directory holds (`latest.json`'s run and step); resumed
//!   anywhere else (a new directory, or an older state in its own) it is a branch and gets
//!   a new id, so that no two directories hold the same run. The id is drawn from the
//!   operating system, not from `--seed`, and nothing computed depends on it: two runs with
//!   one seed train the same bits and are still two runs.
//! - The directory is locked for the whole run: a second trainer is refused at once.
//! - A new run does not overwrite another run's checkpoints, and a resumed run does not
//!   continue in a directory whose latest state is not the one it resumes (a snapshot of an
//!   earlier step, another run's checkpoint copied in), unless told to (`force`). Told to,
//!   nothing of the replaced run is kept: its checkpoints, log lines and plot go.
//! - `best.json` is written before the `latest.json` that records it, so a crash between the
//!   two never leaves the best model in no file.
//! - A rollback after divergence reloads the last state this run saved, and checks that
//!   the file still holds it.
//! - Temporary files of a process killed mid-save are removed when the next run opens it.

use crate::fs::{DirLock, remove_stale_temps, write_atomic};
use crate::io::checkpoint::{Checkpoint, DataSection, Identity, printable};
use crate::io::metrics::Record;
use crate::text::vocab::Vocab;
use crate::train::run::Checkpointer;
use crate::train::trainer::Trainer;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

pub const LATEST: &str = "latest.json";
pub const BEST: &str = "best.json";

/// A new run id: 16 hex digits from the operating system's random source.
pub fn new_run_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub struct RunDir {
    pub dir: PathBuf,
    _lock: DirLock,
    /// This run's id.
    pub run: String,
    vocab: Vocab,
    data: DataSection,
    eval_every: u64,
    last_saved: Option<u64>,
    /// Which records of the directory's old log are this run's past.
    lineage: Option<(Option<String>, u64)>,
    /// The run the directory's records without an id belong to.
    legacy_owner: Option<String>,
    /// The run and step this run branched from, if it is a branch.
    pub branched_from: Option<(Option<String>, u64)>,
    /// Keep a copy of the checkpoint every this many validations (named by [`kept`]).
    pub keep_every: Option<u64>,
}

/// The name of a kept copy of the checkpoint of `step` (`--keep-every`).
pub fn kept(step: u64) -> String {
    format!("step-{step}.json")
}

/// The checkpoint a resumed run starts from: its file, run and step.
#[derive(Debug, Clone, Copy)]
pub struct Resumed<'a> {
    pub path: &'a Path,
    pub run: Option<&'a str>,
    pub step: u64,
}

/// How a claimed directory is taken.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    /// A new run; `replaces`: the directory held another run, to be removed (`force`).
    Fresh { replaces: bool },
    /// The directory's own latest state, continued under its id (`None`: a version-1 run,
    /// which gets one now).
    Continue { run: Option<String>, step: u64 },
    /// Another state (`from`'s run at `step`) continued as a new run in this directory,
    /// replacing what it held.
    Branch { from: Option<String>, step: u64 },
}

/// A run directory locked and checked for this run, before the run has its data: claimed
/// first, so that a refusal comes before a large corpus is read.
pub struct Claim {
    dir: PathBuf,
    lock: DirLock,
    plan: Plan,
    /// The run of the directory's latest checkpoint when it was claimed.
    held: Option<Identity>,
}

impl Claim {
    /// Creates `dir` if needed, locks it and removes stale temporary files.
    ///
    /// `resumed`: the checkpoint this run continues. Refused unless `force`: a new run in a
    /// directory that holds checkpoints; a resumed run in a directory whose `latest.json`
    /// is another state than the one resumed. Nothing is changed on disk until
    /// [`Claim::into_run`].
    pub fn new(dir: &Path, resumed: Option<Resumed>, force: bool) -> Result<Claim> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let lock = DirLock::acquire(dir)
            .with_context(|| format!("cannot write to output directory {}", dir.display()))?;
        remove_stale_temps(dir)?;
        let (latest, best) = (dir.join(LATEST), dir.join(BEST));
        let existing = latest.exists() || best.exists();
        let held = [&latest, &best]
            .into_iter()
            .find(|p| p.exists())
            .and_then(|p| Checkpoint::identity(p).ok());
        let what = held.as_ref().map_or(
            "a checkpoint that cannot be read".into(),
            Identity::describe,
        );
        let d = dir.display();
        let plan = match (resumed, &held) {
            (None, _) if existing && !force => bail!(
                "{d} already holds another run ({what}); continue it with `charrnn train --resume {}`, or choose another --dir, or pass --force to replace it (its checkpoints, log and plot are removed)",
                latest.display()
            ),
            (None, _) => Plan::Fresh { replaces: existing },
            (Some(r), Some(h))
                if latest.exists() && r.run == h.run.as_deref() && r.step == h.step =>
            {
                Plan::Continue {
                    run: h.run.clone(),
                    step: h.step,
                }
            }
            (Some(r), _) if existing && !force => {
                let file = r.path.display();
                let this = Checkpoint::identity(r.path)
                    .map(|i| i.describe())
                    .unwrap_or_default();
                let same_run = held
                    .as_ref()
                    .is_some_and(|h| h.run.is_some() && h.run.as_deref() == r.run);
                let held_step = held.as_ref().map_or(0, |h| h.step);
                if same_run {
                    let when = if r.step < held_step {
                        "an earlier"
                    } else {
                        "another"
                    };
                    bail!(
                        "{d} holds its run at step {held_step} ({what}), and {file} is {when} state of that run (step {}); continue from step {held_step} with `charrnn train --resume {}`, branch from step {} into another --dir, or pass --force to take {d} back to step {} (its records after that step are dropped)",
                        r.step,
                        latest.display(),
                        r.step,
                        r.step
                    )
                }
                bail!(
                    "{d} already holds another run ({what}), and {file} is not its latest state ({this}); continue {d}'s run with `charrnn train --resume {}`, continue this file's run in another --dir, or pass --force to replace {d}'s run with it (its checkpoints, log and plot are removed)",
                    latest.display()
                )
            }
            (Some(r), _) => Plan::Branch {
                from: r.run.map(str::to_string),
                step: r.step,
            },
        };
        Ok(Claim {
            dir: dir.to_path_buf(),
            lock,
            plan,
            held,
        })
    }

    /// The run directory, now that the run's vocabulary, data and cadence are known and its
    /// trainer is built (so that a corpus that fails to load changes nothing on disk). A
    /// run that replaces another removes the other's checkpoints; a branch writes its
    /// starting state as `latest.json` (and as `best.json` when that state is its own
    /// best), so that the directory holds this run alone from the start.
    pub fn into_run(
        self,
        vocab: Vocab,
        data: DataSection,
        eval_every: u64,
        trainer: &mut Trainer,
    ) -> Result<RunDir> {
        let (latest, best) = (self.dir.join(LATEST), self.dir.join(BEST));
        let run = match &self.plan {
            Plan::Continue { run: Some(r), .. } => r.clone(),
            _ => new_run_id(),
        };
        let (last_saved, lineage) = match &self.plan {
            Plan::Fresh { .. } => (None, None),
            Plan::Continue { run, step } => (Some(*step), Some((run.clone(), *step))),
            Plan::Branch { from, step } => (Some(*step), Some((from.clone(), *step))),
        };
        let mut dir = RunDir {
            dir: self.dir,
            _lock: self.lock,
            run,
            vocab,
            data,
            eval_every,
            last_saved,
            lineage,
            legacy_owner: self.held.as_ref().and_then(|h| h.run.clone()),
            branched_from: match &self.plan {
                Plan::Branch { from, step } => Some((from.clone(), *step)),
                _ => None,
            },
            keep_every: None,
        };
        // Kept copies (`--keep-every`) of a replaced run go with it; a branch keeps those of
        // its own past.
        if !matches!(
            self.plan,
            Plan::Continue { .. } | Plan::Fresh { replaces: false }
        ) {
            for entry in std::fs::read_dir(&dir.dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !(name.starts_with("step-") && name.ends_with(".json")) {
                    continue;
                }
                let own = match (&self.plan, Checkpoint::identity(&entry.path())) {
                    (Plan::Branch { from, step }, Ok(i)) => {
                        from.is_some() && i.run == *from && i.step <= *step
                    }
                    _ => false,
                };
                if !own {
                    remove(&entry.path())?;
                }
            }
        }
        match &self.plan {
            Plan::Fresh { replaces: true } => {
                remove(&best)?;
                remove(&latest)?;
            }
            Plan::Branch { from, step } => {
                // The old best model stays only if it is this run's own past.
                let own_best = Checkpoint::identity(&best)
                    .is_ok_and(|b| b.run == *from && b.step <= *step && from.is_some());
                if !own_best {
                    remove(&best)?;
                }
                let p = &trainer.progress;
                let is_best = p.best_val_loss.is_some()
                    && p.history.last().and_then(|h| h.val_loss) == p.best_val_loss;
                trainer.sync_progress_state();
                dir.save(trainer, is_best && !own_best)?;
            }
            _ => {}
        }
        Ok(dir)
    }
}

/// The run directory of a model of another kind (a classifier), whose checkpoints the
/// caller writes through [`PlainRun::save_with`]: locked, best before latest, a replaced
/// run's files removed. (Run ids and branches are the language model's.)
pub struct PlainRun {
    pub dir: PathBuf,
    _lock: DirLock,
    /// This run's id (kept when it continues its directory's latest state).
    pub run: String,
    last_saved: Option<u64>,
    /// The run and step this run continues, whose log records are its past.
    lineage: Option<(Option<String>, u64)>,
}

impl Claim {
    /// The directory for a run whose checkpoints are not a language model's. A fresh run
    /// that replaces another (`force`) removes its checkpoints and kept copies; a resumed
    /// run continues from the step it resumes; a branch (a state resumed in another
    /// directory) starts with nothing of the directory's run.
    pub fn into_plain(self) -> Result<PlainRun> {
        let (run, lineage) = match &self.plan {
            Plan::Continue { run, step } => (run.clone(), Some((run.clone(), *step))),
            _ => (None, None),
        };
        if !matches!(
            self.plan,
            Plan::Continue { .. } | Plan::Fresh { replaces: false }
        ) {
            for entry in std::fs::read_dir(&self.dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == LATEST
                    || name == BEST
                    || (name.starts_with("step-") && name.ends_with(".json"))
                {
                    remove(&entry.path())?;
                }
            }
        }
        Ok(PlainRun {
            dir: self.dir,
            _lock: self.lock,
            run: run.unwrap_or_else(new_run_id),
            last_saved: lineage.as_ref().map(|l| l.1),
            lineage,
        })
    }
}

impl PlainRun {
    pub fn latest(&self) -> PathBuf {
        self.dir.join(LATEST)
    }

    pub fn best(&self) -> PathBuf {
        self.dir.join(BEST)
    }

    /// The step of the last checkpoint this run wrote (or resumed from in this directory).
    pub fn last_saved(&self) -> Option<u64> {
        self.last_saved
    }

    /// Whether a record of the directory's old log is this run's past (see
    /// [`RunDir::keeps`]).
    pub fn keeps(&self, r: &Record) -> bool {
        self.lineage
            .as_ref()
            .is_some_and(|(run, step)| r.run == *run && r.step <= *step)
    }

    /// Writes the checkpoint of `step`: `write` writes it atomically to the path it is
    /// given. With `best`, to `best.json` first and then the same bytes to `latest.json`, so
    /// that a crash between the two never leaves the best model in no file.
    pub fn save_with(
        &mut self,
        step: u64,
        best: bool,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let (latest, best_path) = (self.latest(), self.best());
        if best {
            write(&best_path)?;
            write_atomic(&latest, |file| {
                std::io::copy(&mut std::fs::File::open(&best_path)?, file)?;
                Ok(())
            })
            .context("cannot write checkpoint")?;
        } else {
            write(&latest)?;
        }
        self.last_saved = Some(step);
        Ok(())
    }
}

/// `<dir>-<suffix>`, or `<dir>-<suffix>2`, `3`, … : the first that does not exist (a
/// directory for a command to suggest, which a new run would not be refused).
pub fn unused_sibling(dir: &Path, suffix: &str) -> PathBuf {
    let base = dir.as_os_str().to_string_lossy();
    let base = base.trim_end_matches('/');
    (1..)
        .map(|i| match i {
            1 => PathBuf::from(format!("{base}-{suffix}")),
            _ => PathBuf::from(format!("{base}-{suffix}{i}")),
        })
        .find(|p| !p.exists())
        .expect("some name is free")
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

impl RunDir {
    pub fn latest(&self) -> PathBuf {
        self.dir.join(LATEST)
    }

    pub fn best(&self) -> PathBuf {
        self.dir.join(BEST)
    }

    /// The step of the last checkpoint in this directory (written by this run, or the one it
    /// resumed from in this directory).
    pub fn last_saved(&self) -> Option<u64> {
        self.last_saved
    }

    /// Whether a record of the directory's old log is this run's past: a line of the run it
    /// continues, at or before the step it continues from. (A line without an id belongs to
    /// the run whose checkpoint the directory held.)
    pub fn keeps(&self, r: &Record) -> bool {
        let Some((run, step)) = &self.lineage else {
            return false;
        };
        let owner = r.run.as_ref().or(self.legacy_owner.as_ref());
        owner == run.as_ref() && r.step <= *step
    }
}

impl Checkpointer<Trainer<'_>> for RunDir {
    fn save(&mut self, t: &mut Trainer, best: bool) -> Result<()> {
        let ck = Checkpoint::new(
            &self.run,
            &t.model,
            &self.vocab,
            self.data.clone(),
            &t.config,
            self.eval_every,
            &t.optimizer,
            &t.progress,
        );
        let (latest, best_path) = (self.latest(), self.best());
        if best {
            ck.save(&best_path)?;
            // The same bytes, copied rather than serialised twice.
            write_atomic(&latest, |file| {
                std::io::copy(&mut std::fs::File::open(&best_path)?, file)?;
                Ok(())
            })
            .context("cannot write checkpoint")?;
        } else {
            ck.save(&latest)?;
        }
        self.last_saved = Some(t.progress.step);
        // Every n-th validation of the run (counted over all its sessions), a copy that
        // nothing replaces: an existing file of that name is left as it is.
        let validations = t.progress.history.len() as u64;
        if let Some(n) = self.keep_every
            && validations > 0
            && validations.is_multiple_of(n)
        {
            // A hard link is the copy at no cost (latest.json is replaced by renaming, never
            // written in place); it fails rather than replace a file.
            let copy = self.dir.join(kept(t.progress.step));
            match std::fs::hard_link(&latest, &copy) {
                Ok(()) => crate::fs::sync_dir(&self.dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(_) if !copy.exists() => write_atomic(&copy, |file| {
                    std::io::copy(&mut std::fs::File::open(&latest)?, file)?;
                    Ok(())
                })
                .context("cannot keep a copy of the checkpoint")?,
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Reloads `latest.json`, the last state this run saved, after checking that it still
    /// is (this run's id and step): a file that another process put there is refused, not
    /// trained on.
    fn restore_last(&mut self, t: &mut Trainer) -> Result<Option<u64>> {
        let Some(step) = self.last_saved else {
            return Ok(None);
        };
        let latest = self.latest();
        let ck = Checkpoint::load(&latest)?;
        if ck.run.as_deref() != Some(self.run.as_str()) || ck.progress.step != step {
            bail!(
                "cannot go back to step {step}: {} no longer holds this run's state (it holds {}, step {})",
                latest.display(),
                ck.run
                    .as_deref()
                    .map_or("a run without id".into(), printable),
                ck.progress.step
            );
        }
        let r = ck.restore()?;
        t.restore(&r.model.params, r.optimizer, r.progress)
            .with_context(|| format!("cannot go back to {}", latest.display()))?;
        Ok(self.last_saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{CellKind, Model, ModelConfig};
    use crate::text::Mode;
    use crate::train::{Optimizer, TrainConfig};

    #[test]
    fn a_suggested_directory_is_one_that_does_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        assert_eq!(
            unused_sibling(&run, "repeat"),
            dir.path().join("run-repeat")
        );
        std::fs::create_dir(dir.path().join("run-repeat")).unwrap();
        std::fs::write(dir.path().join("run-repeat2"), "x").unwrap();
        assert_eq!(
            unused_sibling(&run, "repeat"),
            dir.path().join("run-repeat3")
        );
        assert!(valid_id(&new_run_id()) && new_run_id() != new_run_id());
    }

    fn valid_id(s: &str) -> bool {
        s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The new best model reaches `best.json` before `latest.json` is touched: if writing
    /// `latest.json` fails, `best.json` already holds the new state.
    #[test]
    fn best_is_written_before_latest() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = Vocab::from_texts(["abc"]);
        let model = Model::new(ModelConfig {
            cell: CellKind::Gru,
            layers: 1,
            hidden: 4,
            vocab_size: vocab.len(),
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        });
        let config = TrainConfig {
            batch: 1,
            seq_len: 2,
            ..TrainConfig::default()
        };
        let tokens = crate::text::Tokens::from(vec![0u32, 2, 3, 4, 2, 3, 4, 1]);
        let opt = Optimizer::new(config.optimizer, model.param_count());
        let progress = Trainer::fresh_progress(&model, &config);
        let mut t = Trainer::new(model, opt, config, &tokens, progress);
        let data = DataSection {
            mode: Mode::Stream,
            sources: vec![],
            val_fraction: 0.0,
            train_chars: 6,
            val_chars: 0,
            val_file: None,
        };
        let mut rd = Claim::new(dir.path(), None, false)
            .unwrap()
            .into_run(vocab, data, 1, &mut t)
            .unwrap();
        t.step().unwrap();
        rd.save(&mut t, true).unwrap();
        // A directory where latest.json should go makes its rename fail.
        std::fs::remove_file(rd.latest()).unwrap();
        std::fs::create_dir(rd.latest()).unwrap();
        t.step().unwrap();
        assert!(rd.save(&mut t, true).is_err());
        let best = Checkpoint::load(&rd.best()).unwrap();
        assert_eq!(best.progress.step, 2);
    }
}
