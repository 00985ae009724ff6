//! A run directory: `latest.json` and `best.json` of one training run, owned by that run for
//! as long as it trains.
//!
//! - The directory is locked for the whole run: a second trainer is refused at once.
//! - A new run does not overwrite another run's checkpoints unless told to (`force`).
//! - `best.json` is written before the `latest.json` that records it, so a crash between the
//!   two never leaves the best model in no file.
//! - Temporary files of a process killed mid-save are removed when the next run opens it.

use crate::fs::{DirLock, remove_stale_temps, write_atomic};
use crate::io::checkpoint::{Checkpoint, DataSection};
use crate::text::vocab::Vocab;
use crate::train::run::Checkpointer;
use crate::train::trainer::Trainer;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

pub const LATEST: &str = "latest.json";
pub const BEST: &str = "best.json";

/// A language model's run directory: the claimed directory and what its checkpoints record
/// besides the trainer.
pub struct RunDir {
    claim: Claim,
    vocab: Vocab,
    data: DataSection,
    eval_every: u64,
}

/// A run directory locked and checked for this run, before the run has its data: claimed
/// first, so that a refusal comes before a large corpus is read. It writes the run's
/// checkpoints ([`Claim::save_with`]) for a model of any kind.
pub struct Claim {
    dir: PathBuf,
    /// Held for the life of the run: the directory is this process's until it is dropped.
    _lock: DirLock,
    last_saved: Option<u64>,
}

impl Claim {
    /// Creates `dir` if needed, locks it and removes stale temporary files.
    ///
    /// `resumed`: the checkpoint this run continues, and its step. If the directory holds
    /// checkpoints that are not that run's own, it is refused unless `force`.
    pub fn new(dir: &Path, resumed: Option<(&Path, u64)>, force: bool) -> Result<Claim> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let lock = DirLock::acquire(dir)
            .with_context(|| format!("cannot write to output directory {}", dir.display()))?;
        remove_stale_temps(dir)?;
        let latest = dir.join(LATEST);
        let existing = [LATEST, BEST].iter().any(|f| dir.join(f).exists());
        let own = resumed.is_some_and(|(from, _)| same_dir(from, dir));
        if existing && !own && !force {
            let what = describe(&latest).unwrap_or_else(|| "a checkpoint".into());
            let hint = if resumed.is_some() {
                "choose another --dir for the resumed run".to_string()
            } else {
                format!(
                    "continue it with `charrnn train --resume {}`, or choose another --dir",
                    latest.display()
                )
            };
            bail!(
                "{} already holds another run ({what}); {hint}, or pass --force to replace it",
                dir.display()
            );
        }
        Ok(Claim {
            dir: dir.to_path_buf(),
            _lock: lock,
            last_saved: resumed.filter(|_| own).map(|(_, step)| step),
        })
    }

    /// The run directory of a language model, now that the run's vocabulary, data and
    /// cadence are known.
    pub fn into_run(self, vocab: Vocab, data: DataSection, eval_every: u64) -> RunDir {
        RunDir {
            claim: self,
            vocab,
            data,
            eval_every,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

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
            // The same bytes, copied rather than serialised twice.
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

impl RunDir {
    pub fn latest(&self) -> PathBuf {
        self.claim.latest()
    }

    pub fn best(&self) -> PathBuf {
        self.claim.best()
    }

    /// See [`Claim::last_saved`].
    pub fn last_saved(&self) -> Option<u64> {
        self.claim.last_saved()
    }
}

/// One line saying what a checkpoint holds, or `None` if it cannot be read.
fn describe(path: &Path) -> Option<String> {
    let ck = Checkpoint::load(path).ok()?;
    let m = ck.model;
    let source = ck
        .data
        .sources
        .first()
        .and_then(|s| Path::new(s).file_name())
        .map(|n| crate::io::checkpoint::printable(&n.to_string_lossy()))
        .unwrap_or_default();
    Some(format!(
        "{} {}x{} on {source}, step {}",
        m.cell, m.layers, m.hidden, ck.progress.step
    ))
}

fn same_dir(file: &Path, dir: &Path) -> bool {
    let parent = crate::fs::parent_dir(file);
    match (std::fs::canonicalize(parent), std::fs::canonicalize(dir)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Checkpointer<Trainer<'_>> for RunDir {
    fn save(&mut self, t: &mut Trainer, best: bool) -> Result<()> {
        let ck = Checkpoint::new(
            &t.model,
            &self.vocab,
            self.data.clone(),
            &t.config,
            self.eval_every,
            &t.optimizer,
            &t.progress,
        );
        self.claim
            .save_with(t.progress.step, best, |path| ck.save(path))
    }

    fn restore_last(&mut self, t: &mut Trainer) -> Result<Option<u64>> {
        if self.last_saved().is_none() {
            return Ok(None);
        }
        let r = Checkpoint::load(&self.latest())?.restore()?;
        t.restore(&r.model.params, r.optimizer, r.progress);
        Ok(self.last_saved())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{CellKind, Model, ModelConfig};
    use crate::text::Mode;
    use crate::train::{Optimizer, TrainConfig};

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
        };
        let mut rd = Claim::new(dir.path(), None, false)
            .unwrap()
            .into_run(vocab, data, 1);
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
