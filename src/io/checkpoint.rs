//! Checkpoints: one versioned JSON document with everything needed to sample, evaluate or
//! resume training bit for bit. Written atomically; every field checked on load before
//! anything the size of the model is allocated.
//!
//! The sections are the domain types themselves, serialised by serde ([`ModelConfig`],
//! [`TrainConfig`], [`Progress`], [`State`]); their field order is the file's. Floats are
//! written in shortest round-trip form for f32 (serde_json formats `f32` with `ryu`), so
//! saving and loading give back the same bits.
//!
//! A checkpoint is hostile input until checked: sizes are compared with checked arithmetic
//! against the data actually present in the file, hyper-parameters are validated as the
//! command line validates its flags, and names from the file are escaped before they are
//! printed.

use crate::fs::{ReadLimit, available_memory, read_regular, write_atomic};
use crate::nn::{Model, ModelConfig, State};
use crate::text::corpus::CorpusInfo;
use crate::text::vocab::Vocab;
use crate::train::optim::{Optimizer, OptimizerKind};
use crate::train::trainer::{Progress, TrainConfig};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const FORMAT: &str = "charrnn-checkpoint";
/// The version this charrnn writes. Version 2 added the run's id (`run`), the learning rate
/// of the last step (`progress.last_lr`) and a validation file of the user's own
/// (`data.val_file`); a reader of version 1 would resume such a file without them (another
/// validation text, no run identity), so it is refused there by the version number rather
/// than misread. Version-1 files load, and are saved back as they were.
pub const VERSION: u32 = 2;
/// The oldest version this charrnn reads.
pub const OLDEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this charrnn; a reader refuses versions it does not know.
    pub version: u32,
    /// The id of the run that wrote it (16 hex digits, random when the run started; see
    /// [`crate::io::rundir`]). Absent in version-1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    pub model: ModelConfig,
    /// The characters of the vocabulary in id order; ids 0 and 1 are `<start>` and `<end>`,
    /// so `vocab[i]` has id `i + 2`.
    pub vocab: Vec<String>,
    pub data: DataSection,
    pub training: TrainingSection,
    /// Where training stands (its `state` is stored in `hidden`).
    pub progress: Progress,
    /// Every parameter tensor, PyTorch names, row-major data.
    pub tensors: Vec<TensorData>,
    pub optimizer: OptimizerSection,
    /// The hidden state carried into the next training window, [L, B, H] each (`c` empty
    /// except for LSTM).
    pub hidden: State,
}

/// Where the training text came from (see [`CorpusInfo`]).
pub type DataSection = CorpusInfo;

/// The training configuration and the validation cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSection {
    #[serde(flatten)]
    pub config: TrainConfig,
    pub eval_every: u64,
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
    /// Must equal `training.optimizer`.
    pub kind: OptimizerKind,
    pub step: u64,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
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
}

/// A name from a file, safe to print: control characters (terminal escape sequences among
/// them) are escaped, and it is cut at 80 characters.
pub fn printable(name: &str) -> String {
    let mut s: String = name.chars().take(80).flat_map(char::escape_debug).collect();
    if name.chars().count() > 80 {
        s.push('…');
    }
    s
}

/// Who a checkpoint belongs to and where it stands, read without the tensors (see
/// [`Checkpoint::identity`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub run: Option<String>,
    pub step: u64,
    /// `lstm 2x256 on plays.txt`
    pub what: String,
}

impl Identity {
    /// `run 3f9c…, lstm 2x256 on plays.txt, step 622` (`a run without id` for version-1 files).
    pub fn describe(&self) -> String {
        format!(
            "{}, step {}, {}",
            self.what,
            self.step,
            match &self.run {
                Some(r) => format!("run {}", printable(r)),
                None => "a run without id".into(),
            }
        )
    }
}

/// Whether `s` is a well-formed run id: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn valid_run_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Checkpoint {
    /// The run, step and model of the checkpoint at `path`, parsed without keeping its
    /// tensors (a large checkpoint is streamed past, not held in memory).
    pub fn identity(path: &Path) -> Result<Identity> {
        #[derive(Deserialize)]
        struct Model {
            cell: crate::nn::CellKind,
            layers: usize,
            hidden: usize,
        }
        #[derive(Deserialize)]
        struct Step {
            step: u64,
        }
        #[derive(Deserialize)]
        struct Data {
            sources: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Head {
            format: String,
            #[serde(default)]
            run: Option<String>,
            model: Model,
            data: Data,
            progress: Step,
        }
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        crate::fs::check_regular(path, "checkpoint", &meta)?;
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let h: Head = serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file))
            .with_context(|| format!("checkpoint {} cannot be read", path.display()))?;
        // A classifier's checkpoint has the same head (its run directory is claimed alike).
        if h.format != FORMAT && h.format != CLASSIFIER_FORMAT {
            bail!("{} is not a charrnn checkpoint", path.display());
        }
        if h.run.as_deref().is_some_and(|r| !valid_run_id(r)) {
            bail!("checkpoint {} has a malformed run id", path.display());
        }
        let source = h
            .data
            .sources
            .first()
            .and_then(|s| Path::new(s).file_name())
            .map(|n| printable(&n.to_string_lossy()))
            .unwrap_or_default();
        Ok(Identity {
            run: h.run,
            step: h.progress.step,
            what: format!(
                "{} {}x{} on {source}",
                h.model.cell, h.model.layers, h.model.hidden
            ),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run: &str,
        model: &Model,
        vocab: &Vocab,
        data: DataSection,
        train: &TrainConfig,
        eval_every: u64,
        optimizer: &Optimizer,
        progress: &Progress,
    ) -> Checkpoint {
        Checkpoint {
            format: FORMAT.into(),
            version: VERSION,
            run: Some(run.to_string()),
            model: model.config,
            vocab: vocab.chars().iter().map(|ch| ch.to_string()).collect(),
            data,
            training: TrainingSection {
                config: *train,
                eval_every,
            },
            // In memory as it will be on disk: the state lives in `hidden`, without its width
            // (the model's), so that a loaded checkpoint equals the saved one.
            progress: Progress {
                state: State::default(),
                history: progress.history.clone(),
                ..*progress
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
                kind: optimizer.config.kind,
                step: optimizer.step,
                m: optimizer.m.clone(),
                v: optimizer.v.clone(),
            },
            hidden: State {
                hidden: 0,
                ..progress.state.clone()
            },
        }
    }

    /// Writes the checkpoint to `path` atomically (see [`write_atomic`]). Refuses to write
    /// a checkpoint that would not load (a non-finite weight, say), so that a good file is
    /// never replaced by a bad one.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.check()
            .with_context(|| format!("refusing to write {}", path.display()))?;
        write_checkpoint_json(path, self)
    }

    /// Reads and checks a checkpoint; errors name the file and the field at fault.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        Checkpoint::parse(&read_checkpoint_bytes(path)?, path)
    }

    /// Parses and checks the bytes of a checkpoint read from `path`.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        let ck: Checkpoint = match serde_json::from_slice(bytes) {
            Ok(ck) => ck,
            Err(e) => {
                #[derive(Deserialize)]
                struct Header {
                    format: Option<String>,
                    version: Option<u64>,
                }
                let what = match serde_json::from_slice::<Header>(bytes) {
                    Err(_) if e.is_eof() => format!("is truncated ({e})"),
                    Err(_) if e.is_syntax() => format!("is not valid JSON ({e})"),
                    Ok(h) if h.format.as_deref() == Some(CLASSIFIER_FORMAT) => {
                        "holds a classifier (charrnn train --task classify), not a language model: it labels lines and has no next-character distribution to sample, score or show; use `charrnn predict` or `charrnn eval` with it".to_string()
                    }
                    Ok(h) if h.format.as_deref() != Some(FORMAT) => {
                        format!("is not a charrnn checkpoint (no \"format\": \"{FORMAT}\")")
                    }
                    Ok(Header {
                        version: Some(v), ..
                    }) if !(OLDEST_VERSION as u64..=VERSION as u64).contains(&v) => {
                        format!(
                            "has format version {v}, this charrnn reads versions {OLDEST_VERSION} to {VERSION}"
                        )
                    }
                    _ => format!("is malformed: {}", printable(&e.to_string())),
                };
                bail!("checkpoint {} {what}", path.display());
            }
        };
        if ck.format != FORMAT {
            bail!(
                "checkpoint {} is not a charrnn checkpoint (format is \"{}\")",
                path.display(),
                printable(&ck.format)
            );
        }
        if !(OLDEST_VERSION..=VERSION).contains(&ck.version) {
            bail!(
                "checkpoint {} has format version {}, this charrnn reads versions {OLDEST_VERSION} to {VERSION}",
                path.display(),
                ck.version
            );
        }
        ck.check()
            .with_context(|| format!("checkpoint {} is inconsistent", path.display()))?;
        Ok(ck)
    }

    fn vocab_(&self) -> Result<Vocab> {
        vocab_of(&self.vocab, self.model.vocab_size)
    }

    /// Every check of a loaded checkpoint. Sizes are compared against the data present, with
    /// checked arithmetic, and nothing is allocated in proportion to a size read from the file.
    fn check(&self) -> Result<()> {
        let config = self.model;
        config.validate().map_err(|e| anyhow!(e))?;
        self.vocab_()?;
        if self.run.as_deref().is_some_and(|r| !valid_run_id(r)) {
            bail!(
                "run is \"{}\", expected 1 to 64 letters, digits, - or _",
                printable(self.run.as_deref().unwrap_or_default())
            );
        }

        let want = config.tensor_count().context("model.layers is too large")?;
        let n_params = check_tensors(&self.tensors, want, |i| config.tensor_spec(i))?;
        let t = &self.training.config;
        check_training(
            &self.training,
            &self.optimizer,
            n_params,
            self.progress.step,
        )?;

        let d = &self.data;
        if !(0.0..1.0).contains(&d.val_fraction) {
            bail!("data.val_fraction is {}, must be in [0, 1)", d.val_fraction);
        }

        check_progress(&self.progress)?;

        let h = &self.hidden;
        let len = config
            .layers
            .checked_mul(h.batch)
            .and_then(|x| x.checked_mul(config.hidden));
        if h.batch != t.batch || len != Some(h.h.len()) {
            bail!(
                "hidden.h has {} values, expected layers x batch x hidden for batch {}",
                h.h.len(),
                t.batch
            );
        }
        let c_len = if config.cell.has_cell_state() {
            h.h.len()
        } else {
            0
        };
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
        let mut model = Model::new(self.model);
        for (t, spec) in self.tensors.iter().zip(&model.layout.tensors) {
            model.params[spec.range()].copy_from_slice(&t.data);
        }
        Ok((model, self.vocab_()?))
    }

    /// Everything needed to continue training.
    pub fn restore(&self) -> Result<Restored> {
        let (model, vocab) = self.model()?;
        let train = self.training.config;
        let optimizer = Optimizer {
            config: train.optimizer,
            step: self.optimizer.step,
            m: self.optimizer.m.clone(),
            v: self.optimizer.v.clone(),
        };
        let mut progress = self.progress.clone();
        progress.state = State {
            hidden: model.config.hidden,
            ..self.hidden.clone()
        };
        Ok(Restored {
            model,
            vocab,
            train,
            eval_every: self.training.eval_every,
            optimizer,
            progress,
            data: self.data.clone(),
        })
    }
}

/// Format name of a classifier's checkpoint (see `crate::io::classifier`), which this reader
/// recognises to say so.
pub const CLASSIFIER_FORMAT: &str = "charrnn-classifier";

/// Writes `value` as a checkpoint's JSON to `path` atomically (see [`write_atomic`]): the
/// language model's and the classifier's checkpoints alike.
pub(crate) fn write_checkpoint_json(path: &Path, value: &impl Serialize) -> Result<()> {
    write_atomic(path, |file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer(&mut w, value)?;
        w.write_all(b"\n")?;
        w.flush()?;
        Ok(())
    })
    .context("cannot write checkpoint")
}

/// The bytes of a checkpoint file. The parsed numbers take less memory than their text, so a
/// file that fits in the available memory can be parsed; a larger one is refused before it
/// is read.
pub fn read_checkpoint_bytes(path: &Path) -> Result<Vec<u8>> {
    let limit = ReadLimit {
        max_bytes: available_memory(),
    };
    read_regular(path, "checkpoint", limit)
}

/// The vocabulary stored as one string per character, checked against `vocab_size`.
pub(crate) fn vocab_of(strings: &[String], vocab_size: usize) -> Result<Vocab> {
    let mut chars = Vec::with_capacity(strings.len());
    for (i, s) in strings.iter().enumerate() {
        let mut it = s.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => chars.push(c),
            _ => bail!(
                "vocab[{i}] is \"{}\", expected exactly one character",
                printable(s)
            ),
        }
    }
    let vocab = Vocab::from_chars(chars).map_err(|e| anyhow!("vocab: {e}"))?;
    if vocab.len() != vocab_size {
        bail!(
            "model.vocab_size is {vocab_size} but vocab has {} characters (+2 special tokens)",
            strings.len()
        );
    }
    Ok(vocab)
}

/// Checks stored tensors against a model's `want` tensors (`spec(i)`: name and shape of the
/// i-th): the count first (so that a size in the config is bounded by the file), then each
/// one's name and shape, its data against its shape, and that every value is finite.
/// Returns the number of parameters.
pub(crate) fn check_tensors(
    tensors: &[TensorData],
    want: usize,
    spec: impl Fn(usize) -> Option<(String, Vec<usize>)>,
) -> Result<usize> {
    let mut n_params = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let Some((name, shape)) = spec(i).filter(|_| i < want) else {
            bail!(
                "tensors[{i}] ({}) is not part of the model",
                printable(&t.name)
            );
        };
        if name != t.name || shape != t.shape {
            bail!(
                "tensors[{i}] is {} {:?}, the model config needs {name} {shape:?}",
                printable(&t.name),
                t.shape
            );
        }
        let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(t.data.len()) {
            bail!(
                "tensor {name} has {} values for shape {shape:?}",
                t.data.len()
            );
        }
        if let Some(j) = t.data.iter().position(|x| !x.is_finite()) {
            bail!("tensor {name} has a non-finite value at index {j}");
        }
        n_params += t.data.len();
    }
    if tensors.len() < want {
        let (name, _) = spec(tensors.len()).context("tensor count")?;
        bail!("tensor {name} is missing");
    }
    Ok(n_params)
}

/// Checks the training section and the optimizer's moments against `n_params` parameters
/// and the progress's step.
pub(crate) fn check_training(
    training: &TrainingSection,
    optimizer: &OptimizerSection,
    n_params: usize,
    step: u64,
) -> Result<()> {
    let t = &training.config;
    t.validate().map_err(|e| anyhow!(e))?;
    if training.eval_every == 0 {
        bail!("training.eval_every must be positive");
    }
    if optimizer.kind != t.optimizer.kind {
        bail!(
            "optimizer.kind is {} but training.optimizer is {}: the file was edited or damaged",
            optimizer.kind,
            t.optimizer.kind
        );
    }
    let (m_len, v_len) = Optimizer::moment_lens(optimizer.kind, n_params);
    for (name, got, want) in [("m", &optimizer.m, m_len), ("v", &optimizer.v, v_len)] {
        if got.len() != want {
            bail!("optimizer.{name} has {} values, expected {want}", got.len());
        }
        if got.iter().any(|x| !x.is_finite()) {
            bail!("optimizer.{name} has a non-finite value");
        }
    }
    if optimizer.step > step {
        bail!(
            "optimizer.step is {}, more than progress.step {step}",
            optimizer.step
        );
    }
    Ok(())
}

pub(crate) fn check_progress(p: &Progress) -> Result<()> {
    if !p.elapsed.is_finite() || p.elapsed < 0.0 {
        bail!("progress.elapsed_seconds is {}", p.elapsed);
    }
    if p.best_val_loss.is_some_and(|v| !v.is_finite()) {
        bail!("progress.best_val_loss is not finite");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;
    use crate::text::split::Mode;
    use crate::train::optim::OptimConfig;
    use crate::train::schedule::LrSchedule;
    use crate::train::trainer::Trainer;
    use rand::SeedableRng;

    fn sample_checkpoint(cell: CellKind) -> Checkpoint {
        let vocab = Vocab::from_texts(["héllo wörld 世界"]);
        let mut model = Model::new(ModelConfig {
            cell,
            vocab_size: vocab.len(),
            hidden: 6,
            layers: 2,
            dropout: 0.1,
            output_dropout: 0.0,
            weight_drop: 0.0,
        });
        model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        let train = TrainConfig {
            batch: 3,
            seq_len: 5,
            lr: LrSchedule {
                base: 2e-3,
                decay: 0.97,
                after: 10,
                ..LrSchedule::default()
            },
            optimizer: OptimConfig::new(OptimizerKind::Adam),
            grad_clip: 5.0,
            threads: 2,
            seed: 42,
            precision: Default::default(),
        };
        let mut opt = Optimizer::new(train.optimizer, model.param_count());
        opt.m
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = i as f32 * 1e-3);
        opt.step = 7;
        let mut progress = Trainer::fresh_progress(&model, &train);
        progress.step = 7;
        progress.state.h.iter_mut().for_each(|x| *x = 0.1f32.sqrt());
        progress.best_val_loss = Some(1.25);
        let data = DataSection {
            mode: Mode::Stream,
            sources: vec!["/tmp/x.txt".into()],
            val_fraction: 0.1,
            train_chars: 100,
            val_chars: 10,
            val_file: None,
        };
        Checkpoint::new(
            "0123456789abcdef",
            &model,
            &vocab,
            data,
            &train,
            100,
            &opt,
            &progress,
        )
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

    /// Names on the command line and in files are the same: serde's and clap's.
    #[test]
    fn enum_names_agree_with_the_command_line() {
        use clap::ValueEnum;
        for c in CellKind::value_variants() {
            assert_eq!(serde_json::to_value(c).unwrap(), c.to_string());
        }
        for m in Mode::value_variants() {
            assert_eq!(serde_json::to_value(m).unwrap(), m.to_string());
        }
        for o in OptimizerKind::value_variants() {
            assert_eq!(serde_json::to_value(o).unwrap(), o.to_string());
        }
        for p in crate::kernels::Precision::value_variants() {
            assert_eq!(serde_json::to_value(p).unwrap(), p.to_string());
        }
        assert_eq!(OptimizerKind::RmsProp.to_string(), "rmsprop");
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
        let v3 = good.replace("\"version\":2", "\"version\":3");
        assert!(load_err(&v3).contains("version 3"), "{}", load_err(&v3));
        let bad_id = good.replace("0123456789abcdef", "0123\\u001b[31m");
        assert!(
            load_err(&bad_id).contains("run is"),
            "{}",
            load_err(&bad_id)
        );
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
