//! Checkpoints: one versioned JSON document with everything needed to sample, evaluate or
//! resume training bit for bit. Written atomically; checked field by field on load.
//!
//! Floats are written in shortest round-trip form for f32 (serde_json formats `f32` with
//! `ryu`), so saving and loading give back the same bits.

use crate::cell::CellKind;
use crate::data::Mode;
use crate::model::{Model, ModelConfig, State};
use crate::optim::{LrSchedule, OptimConfig, Optimizer, OptimizerKind};
use crate::train::{HistoryPoint, Progress, TrainConfig};
use crate::vocab::Vocab;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const FORMAT: &str = "charrnn-checkpoint";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`]; a reader refuses other versions.
    pub version: u32,
    pub model: ModelSection,
    /// The characters of the vocabulary in id order; ids 0 and 1 are `<start>` and `<end>`,
    /// so `vocab[i]` has id `i + 2`.
    pub vocab: Vec<String>,
    pub data: DataSection,
    pub training: TrainingSection,
    pub progress: ProgressSection,
    /// Every parameter tensor, PyTorch names, row-major data.
    pub tensors: Vec<TensorData>,
    pub optimizer: OptimizerSection,
    /// The hidden state carried into the next training window.
    pub hidden: HiddenSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSection {
    pub cell: String,
    pub layers: usize,
    pub hidden: usize,
    pub vocab_size: usize,
    pub dropout: f32,
}

/// Where the training text came from, so that `eval` can rebuild the validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSection {
    pub mode: String,
    /// Absolute paths of the files read, in order.
    pub sources: Vec<String>,
    pub val_fraction: f64,
    pub train_chars: usize,
    pub val_chars: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSection {
    pub batch: usize,
    pub seq_len: usize,
    pub lr: f32,
    pub lr_decay: f32,
    pub lr_decay_after: usize,
    pub optimizer: String,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub momentum: f32,
    pub grad_clip: f32,
    pub threads: usize,
    pub seed: u64,
    pub eval_every: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressSection {
    pub step: u64,
    pub epoch: usize,
    pub window: usize,
    pub best_val_loss: Option<f64>,
    pub elapsed_seconds: f64,
    pub history: Vec<HistoryPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorData {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Optimizer moments, each the concatenation of all tensors in the order of `tensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSection {
    pub kind: String,
    pub step: u64,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// [L, B, H] each; `c` is empty except for LSTM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HiddenSection {
    pub batch: usize,
    pub h: Vec<f32>,
    pub c: Vec<f32>,
}

/// Writes `path` through `fill` into a temporary file in the same directory, flushed to disk,
/// then renamed over `path`: a crash leaves the old file or the new one, never half of one.
fn write_atomic(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("checkpoint path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// Everything a checkpoint restores.
pub struct Restored {
    pub model: Model,
    pub vocab: Vocab,
    pub train: TrainConfig,
    pub eval_every: u64,
    pub optimizer: Optimizer,
    pub progress: Progress,
    pub data: DataSection,
    pub mode: Mode,
}

impl Checkpoint {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &Model,
        vocab: &Vocab,
        data: DataSection,
        train: &TrainConfig,
        eval_every: u64,
        optimizer: &Optimizer,
        progress: &Progress,
    ) -> Checkpoint {
        let c = &model.config;
        Checkpoint {
            format: FORMAT.into(),
            version: VERSION,
            model: ModelSection {
                cell: c.cell.name().into(),
                layers: c.layers,
                hidden: c.hidden,
                vocab_size: c.vocab_size,
                dropout: c.dropout,
            },
            vocab: vocab.chars().iter().map(|ch| ch.to_string()).collect(),
            data,
            training: TrainingSection {
                batch: train.batch,
                seq_len: train.seq_len,
                lr: train.lr.base,
                lr_decay: train.lr.decay,
                lr_decay_after: train.lr.after,
                optimizer: train.optimizer.kind.name().into(),
                beta1: train.optimizer.beta1,
                beta2: train.optimizer.beta2,
                eps: train.optimizer.eps,
                momentum: train.optimizer.momentum,
                grad_clip: train.grad_clip,
                threads: train.threads,
                seed: train.seed,
                eval_every,
            },
            progress: ProgressSection {
                step: progress.step,
                epoch: progress.epoch,
                window: progress.window,
                best_val_loss: progress.best_val_loss,
                elapsed_seconds: progress.elapsed,
                history: progress.history.clone(),
            },
            tensors: model
                .layout
                .tensors
                .iter()
                .map(|t| TensorData {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    data: model.params[t.range()].to_vec(),
                })
                .collect(),
            optimizer: OptimizerSection {
                kind: optimizer.config.kind.name().into(),
                step: optimizer.step,
                m: optimizer.m.clone(),
                v: optimizer.v.clone(),
            },
            hidden: HiddenSection {
                batch: progress.state.batch,
                h: progress.state.h.clone(),
                c: progress.state.c.clone(),
            },
        }
    }

    /// Writes the checkpoint to `path` atomically: a temporary file in the same directory,
    /// flushed to disk, then renamed over `path`. A crash leaves the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, |file| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            serde_json::to_writer(&mut w, self)?;
            w.write_all(b"\n")?;
            w.flush()?;
            Ok(())
        })
    }

    /// Copies the checkpoint file `from` to `to` with the same guarantee as [`Checkpoint::save`]
    /// (used to keep `best.json` without serialising the model twice).
    pub fn copy(from: &Path, to: &Path) -> Result<()> {
        write_atomic(to, |file| {
            std::io::copy(&mut std::fs::File::open(from)?, file)?;
            Ok(())
        })
    }

    /// Reads and checks a checkpoint; errors name the file and the field at fault.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let ck: Checkpoint = match serde_json::from_str(&text) {
            Ok(ck) => ck,
            Err(e) => {
                #[derive(Deserialize)]
                struct Header {
                    format: Option<String>,
                    version: Option<u64>,
                }
                let what = match serde_json::from_str::<Header>(&text) {
                    Err(_) if e.is_eof() => format!("is truncated ({e})"),
                    Err(_) if e.is_syntax() => format!("is not valid JSON ({e})"),
                    Ok(h) if h.format.as_deref() != Some(FORMAT) => {
                        format!("is not a charrnn checkpoint (no \"format\": \"{FORMAT}\")")
                    }
                    Ok(Header {
                        version: Some(v), ..
                    }) if v != VERSION as u64 => {
                        format!("has format version {v}, this charrnn reads version {VERSION}")
                    }
                    _ => format!("is malformed: {e}"),
                };
                bail!("checkpoint {} {what}", path.display());
            }
        };
        if ck.format != FORMAT {
            bail!(
                "checkpoint {} is not a charrnn checkpoint (format is {:?})",
                path.display(),
                ck.format
            );
        }
        if ck.version != VERSION {
            bail!(
                "checkpoint {} has format version {}, this charrnn reads version {VERSION}",
                path.display(),
                ck.version
            );
        }
        ck.check()
            .with_context(|| format!("checkpoint {} is inconsistent", path.display()))?;
        Ok(ck)
    }

    fn model_config(&self) -> Result<ModelConfig> {
        let m = &self.model;
        let cell = CellKind::parse(&m.cell)
            .with_context(|| format!("model.cell is {:?}, expected rnn, lstm or gru", m.cell))?;
        if m.layers == 0 || m.hidden == 0 {
            bail!("model.layers and model.hidden must be positive");
        }
        if !(0.0..1.0).contains(&m.dropout) {
            bail!("model.dropout is {}, must be in [0, 1)", m.dropout);
        }
        Ok(ModelConfig {
            cell,
            vocab_size: m.vocab_size,
            hidden: m.hidden,
            layers: m.layers,
            dropout: m.dropout,
        })
    }

    fn vocab_(&self) -> Result<Vocab> {
        let mut chars = Vec::with_capacity(self.vocab.len());
        for (i, s) in self.vocab.iter().enumerate() {
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => bail!("vocab[{i}] is {s:?}, expected exactly one character"),
            }
        }
        let vocab = Vocab::from_chars(chars).map_err(|e| anyhow::anyhow!("vocab: {e}"))?;
        if vocab.len() != self.model.vocab_size {
            bail!(
                "model.vocab_size is {} but vocab has {} characters (+2 special tokens)",
                self.model.vocab_size,
                self.vocab.len()
            );
        }
        Ok(vocab)
    }

    /// Structural checks: every tensor present with the shape the config implies, all
    /// numbers finite, optimizer and hidden state of matching sizes.
    fn check(&self) -> Result<()> {
        let config = self.model_config()?;
        self.vocab_()?;
        let model = Model::new(config);
        let want: Vec<_> = model
            .layout
            .tensors
            .iter()
            .map(|t| (&t.name, &t.shape))
            .collect();
        for (i, t) in self.tensors.iter().enumerate() {
            match want.get(i) {
                Some((name, shape)) if *name == &t.name && *shape == &t.shape => {}
                Some((name, shape)) => bail!(
                    "tensors[{i}] is {} {:?}, the model config needs {} {:?}",
                    t.name,
                    t.shape,
                    name,
                    shape
                ),
                None => bail!("tensors[{i}] ({}) is not part of the model", t.name),
            }
            if t.data.len() != t.shape.iter().product::<usize>() {
                bail!(
                    "tensor {} has {} values for shape {:?}",
                    t.name,
                    t.data.len(),
                    t.shape
                );
            }
            if let Some(j) = t.data.iter().position(|x| !x.is_finite()) {
                bail!("tensor {} has a non-finite value at index {j}", t.name);
            }
        }
        if self.tensors.len() < want.len() {
            bail!("tensor {} is missing", want[self.tensors.len()].0);
        }
        let n = model.param_count();
        let kind = OptimizerKind::parse(&self.optimizer.kind)
            .with_context(|| format!("optimizer.kind is {:?}", self.optimizer.kind))?;
        let fresh = Optimizer::new(OptimConfig::new(kind), n);
        for (name, got, want) in [
            ("m", &self.optimizer.m, fresh.m.len()),
            ("v", &self.optimizer.v, fresh.v.len()),
        ] {
            if got.len() != want {
                bail!("optimizer.{name} has {} values, expected {want}", got.len());
            }
            if got.iter().any(|x| !x.is_finite()) {
                bail!("optimizer.{name} has a non-finite value");
            }
        }
        let t = &self.training;
        if t.batch == 0 || t.seq_len == 0 || t.threads == 0 {
            bail!("training.batch, training.seq_len and training.threads must be positive");
        }
        OptimizerKind::parse(&t.optimizer)
            .with_context(|| format!("training.optimizer is {:?}", t.optimizer))?;
        Mode::parse(&self.data.mode)
            .with_context(|| format!("data.mode is {:?}", self.data.mode))?;
        let h = &self.hidden;
        let len = config.layers * h.batch * config.hidden;
        if h.batch != t.batch || h.h.len() != len {
            bail!(
                "hidden.h has {} values, expected {len} for batch {}",
                h.h.len(),
                t.batch
            );
        }
        let c_len = if config.cell.has_cell_state() { len } else { 0 };
        if h.c.len() != c_len {
            bail!("hidden.c has {} values, expected {c_len}", h.c.len());
        }
        if h.h.iter().chain(&h.c).any(|x| !x.is_finite()) {
            bail!("hidden state has a non-finite value");
        }
        Ok(())
    }

    /// The model and vocabulary (for sampling and evaluation).
    pub fn model(&self) -> Result<(Model, Vocab)> {
        let mut model = Model::new(self.model_config()?);
        for (t, spec) in self.tensors.iter().zip(model.layout.tensors.clone()) {
            model.params[spec.range()].copy_from_slice(&t.data);
        }
        Ok((model, self.vocab_()?))
    }

    /// Everything needed to continue training.
    pub fn restore(&self) -> Result<Restored> {
        let (model, vocab) = self.model()?;
        let t = &self.training;
        let kind = OptimizerKind::parse(&t.optimizer).context("training.optimizer")?;
        let optim_config = OptimConfig {
            kind,
            beta1: t.beta1,
            beta2: t.beta2,
            eps: t.eps,
            momentum: t.momentum,
        };
        let train = TrainConfig {
            batch: t.batch,
            seq_len: t.seq_len,
            lr: LrSchedule {
                base: t.lr,
                decay: t.lr_decay,
                after: t.lr_decay_after,
            },
            optimizer: optim_config,
            grad_clip: t.grad_clip,
            threads: t.threads,
            seed: t.seed,
        };
        let optimizer = Optimizer {
            config: optim_config,
            step: self.optimizer.step,
            m: self.optimizer.m.clone(),
            v: self.optimizer.v.clone(),
        };
        let p = &self.progress;
        let progress = Progress {
            step: p.step,
            epoch: p.epoch,
            window: p.window,
            state: State {
                batch: self.hidden.batch,
                hidden: model.config.hidden,
                h: self.hidden.h.clone(),
                c: self.hidden.c.clone(),
            },
            best_val_loss: p.best_val_loss,
            elapsed: p.elapsed_seconds,
            history: p.history.clone(),
        };
        Ok(Restored {
            model,
            vocab,
            train,
            eval_every: t.eval_every,
            optimizer,
            progress,
            mode: Mode::parse(&self.data.mode).context("data.mode")?,
            data: self.data.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Trainer;
    use rand::SeedableRng;

    fn sample_checkpoint(cell: CellKind) -> Checkpoint {
        let vocab = Vocab::from_texts(["héllo wörld 世界"]);
        let mut model = Model::new(ModelConfig {
            cell,
            vocab_size: vocab.len(),
            hidden: 6,
            layers: 2,
            dropout: 0.1,
        });
        model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        let train = TrainConfig {
            batch: 3,
            seq_len: 5,
            lr: LrSchedule {
                base: 2e-3,
                decay: 0.97,
                after: 10,
            },
            optimizer: OptimConfig::new(OptimizerKind::Adam),
            grad_clip: 5.0,
            threads: 2,
            seed: 42,
        };
        let mut opt = Optimizer::new(train.optimizer, model.param_count());
        opt.m
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = i as f32 * 1e-3);
        opt.step = 7;
        let mut progress = Trainer::fresh_progress(&model, &train);
        progress.state.h.iter_mut().for_each(|x| *x = 0.1f32.sqrt());
        progress.best_val_loss = Some(1.25);
        let data = DataSection {
            mode: "stream".into(),
            sources: vec!["/tmp/x.txt".into()],
            val_fraction: 0.1,
            train_chars: 100,
            val_chars: 10,
        };
        Checkpoint::new(&model, &vocab, data, &train, 100, &opt, &progress)
    }

    #[test]
    fn save_load_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let ck = sample_checkpoint(cell);
            let path = dir.path().join("ck.json");
            ck.save(&path).unwrap();
            let back = Checkpoint::load(&path).unwrap();
            assert_eq!(back, ck);
            let (m1, _) = ck.model().unwrap();
            let (m2, _) = back.model().unwrap();
            assert!(
                m1.params
                    .iter()
                    .zip(&m2.params)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ck.json")]);
    }

    fn load_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, text).unwrap();
        format!("{:#}", Checkpoint::load(&path).unwrap_err())
    }

    #[test]
    fn load_errors_name_the_problem() {
        let good = serde_json::to_string(&sample_checkpoint(CellKind::Lstm)).unwrap();
        assert!(load_err(&good[..good.len() / 2]).contains("truncated"));
        assert!(load_err("hello").contains("not valid JSON"));
        assert!(load_err("{\"a\": 1}").contains("not a charrnn checkpoint"));
        let v2 = good.replace("\"version\":1", "\"version\":2");
        assert!(load_err(&v2).contains("version 2"), "{}", load_err(&v2));
        let mut ck = sample_checkpoint(CellKind::Lstm);
        ck.tensors[1].shape = vec![24, 7];
        assert!(load_err(&serde_json::to_string(&ck).unwrap()).contains("weight_hh_l0"));
        let mut ck = sample_checkpoint(CellKind::Gru);
        ck.tensors.pop();
        assert!(load_err(&serde_json::to_string(&ck).unwrap()).contains("head.bias is missing"));
        let mut ck = sample_checkpoint(CellKind::Rnn);
        ck.vocab.swap(0, 1);
        assert!(load_err(&serde_json::to_string(&ck).unwrap()).contains("vocab"));
        let no_field = good.replace("\"tensors\"", "\"tensorz\"");
        assert!(
            load_err(&no_field).contains("tensors"),
            "{}",
            load_err(&no_field)
        );
    }
}
