//! A classifier's checkpoint: one versioned JSON document (format `charrnn-classifier`) with
//! everything needed to predict, evaluate or resume training bit for bit: the model's shape,
//! its vocabulary and label names, where its data came from and how it was split, the
//! training configuration, label weights, progress, tensors (PyTorch's names) and optimizer
//! moments. Written atomically, checked on load before anything the size of the model is
//! allocated, with the checks the language model's checkpoint uses.
//!
//! [`load_any`] reads a file once and says which kind of checkpoint it is, for commands that
//! take both (`eval`, `export`).

use crate::io::checkpoint::{
    CLASSIFIER_FORMAT, Checkpoint, OptimizerSection, TensorData, TrainingSection, check_progress,
    check_tensors, check_training, printable, read_checkpoint_bytes, vocab_of,
};
use crate::io::rundir::{PlainRun, Resumed};
use crate::nn::classifier::{Classifier, ClassifierConfig};
use crate::text::labeled::LabeledInfo;
use crate::text::vocab::Vocab;
use crate::train::classify::{ClassWeights, ClassifierTrainer};
use crate::train::optim::Optimizer;
use crate::train::run::Checkpointer;
use crate::train::trainer::Progress;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FORMAT: &str = CLASSIFIER_FORMAT;
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierCheckpoint {
    /// Always [`FORMAT`].
    pub format: String,
    pub version: u32,
    /// The run that wrote it (see [`crate::io::rundir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    pub model: ClassifierConfig,
    /// The characters in id order from id 2 (as in a language model's checkpoint).
    pub vocab: Vec<String>,
    /// The label names, sorted; label id `i` is `labels[i]`.
    pub labels: Vec<String>,
    pub data: LabeledInfo,
    pub training: TrainingSection,
    /// How the loss weighs labels, and the weights it gave them ([C], empty for none).
    pub class_weights: ClassWeights,
    pub label_weights: Vec<f32>,
    pub progress: Progress,
    pub tensors: Vec<TensorData>,
    pub optimizer: OptimizerSection,
}

/// What a checkpoint file holds.
#[allow(clippy::large_enum_variant)]
pub enum Loaded {
    LanguageModel(Checkpoint),
    Classifier(ClassifierCheckpoint),
}

/// Reads a checkpoint of either kind (the file is read once).
pub fn load_any(path: &Path) -> Result<Loaded> {
    let bytes = read_checkpoint_bytes(path)?;
    #[derive(Deserialize)]
    struct Header {
        format: Option<String>,
    }
    // A file cut short does not parse even as a header; charrnn writes the format first.
    let classifier = match serde_json::from_slice::<Header>(&bytes) {
        Ok(h) => h.format.as_deref() == Some(FORMAT),
        Err(_) => bytes.starts_with(format!("{{\"format\":\"{FORMAT}\"").as_bytes()),
    };
    Ok(if classifier {
        Loaded::Classifier(ClassifierCheckpoint::parse(&bytes, path)?)
    } else {
        Loaded::LanguageModel(Checkpoint::parse(&bytes, path)?)
    })
}

/// Whether the file at `path` is a classifier's checkpoint, from the `"format"` field near
/// its start (charrnn writes it first; spaces and line breaks, as another tool may write
/// them, are allowed), without reading the rest: a language model's checkpoint may be large.
pub fn is_classifier(path: &Path) -> bool {
    let mut head = Vec::with_capacity(4096);
    let read = std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut head));
    if read.is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&head);
    let Some(i) = text.find("\"format\"") else {
        return false;
    };
    let rest = text[i + "\"format\"".len()..].trim_start();
    rest.strip_prefix(':')
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('"'))
        .is_some_and(|r| r.starts_with(&format!("{FORMAT}\"")))
}

/// What a classifier checkpoint restores for training.
pub struct RestoredClassifier {
    pub model: Classifier,
    pub vocab: Vocab,
    pub labels: Vec<String>,
    pub optimizer: Optimizer,
}

impl ClassifierCheckpoint {
    /// The checkpoint of `trainer`'s state.
    pub fn new(
        run: &str,
        t: &ClassifierTrainer,
        vocab: &Vocab,
        labels: &[String],
        data: &LabeledInfo,
        eval_every: u64,
        class_weights: ClassWeights,
    ) -> ClassifierCheckpoint {
        let m = &t.model;
        ClassifierCheckpoint {
            format: FORMAT.into(),
            version: VERSION,
            run: Some(run.to_string()),
            model: m.config,
            vocab: vocab.chars().iter().map(|c| c.to_string()).collect(),
            labels: labels.to_vec(),
            data: data.clone(),
            training: TrainingSection {
                config: t.config,
                eval_every,
            },
            class_weights,
            label_weights: t.weights.clone().unwrap_or_default(),
            progress: t.progress.clone(),
            tensors: m
                .layout
                .tensors
                .iter()
                .map(|s| TensorData {
                    name: s.name.clone(),
                    shape: s.shape.clone(),
                    data: m.params[s.range()].to_vec(),
                })
                .collect(),
            optimizer: OptimizerSection {
                kind: t.optimizer.config.kind,
                step: t.optimizer.step,
                m: t.optimizer.m.clone(),
                v: t.optimizer.v.clone(),
            },
        }
    }

    /// Writes the checkpoint atomically; refuses one that would not load.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.check()
            .with_context(|| format!("refusing to write {}", path.display()))?;
        crate::io::checkpoint::write_checkpoint_json(path, self)
    }

    pub fn load(path: &Path) -> Result<ClassifierCheckpoint> {
        ClassifierCheckpoint::parse(&read_checkpoint_bytes(path)?, path)
    }

    /// Parses and checks the bytes of a classifier checkpoint read from `path`.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<ClassifierCheckpoint> {
        let ck: ClassifierCheckpoint = serde_json::from_slice(bytes).map_err(|e| {
            let what = if e.is_eof() {
                format!("is truncated ({e})")
            } else {
                format!("is malformed: {}", printable(&e.to_string()))
            };
            anyhow!("classifier checkpoint {} {what}", path.display())
        })?;
        if ck.version != VERSION {
            bail!(
                "classifier checkpoint {} has format version {}, this charrnn reads version {VERSION}",
                path.display(),
                ck.version
            );
        }
        ck.check()
            .with_context(|| format!("checkpoint {} is inconsistent", path.display()))?;
        Ok(ck)
    }

    fn check(&self) -> Result<()> {
        let c = self.model;
        c.validate().map_err(|e| anyhow!(e))?;
        vocab_of(&self.vocab, c.vocab_size)?;
        if self.labels.len() != c.labels {
            bail!(
                "model.labels is {} but {} label names are stored",
                c.labels,
                self.labels.len()
            );
        }
        if let Some(w) = self.labels.windows(2).find(|w| w[0] >= w[1]) {
            bail!(
                "labels must be sorted and distinct, found {:?} before {:?}",
                printable(&w[0]),
                printable(&w[1])
            );
        }
        let want = c.tensor_count().context("model.layers is too large")?;
        let n_params = check_tensors(&self.tensors, want, |i| c.tensor_spec(i))?;
        check_training(
            &self.training,
            &self.optimizer,
            n_params,
            self.progress.step,
        )?;
        check_progress(&self.progress)?;
        let w = &self.label_weights;
        let weighted = self.class_weights != ClassWeights::None;
        if (weighted && w.len() != c.labels) || (!weighted && !w.is_empty()) {
            bail!(
                "label_weights has {} values for class_weights {} and {} labels",
                w.len(),
                self.class_weights,
                c.labels
            );
        }
        if w.iter().any(|x| !x.is_finite() || *x < 0.0) {
            bail!("label_weights must be finite and not negative");
        }
        let d = &self.data;
        if !(0.0..1.0).contains(&d.val_fraction) || d.max_len == 0 {
            bail!(
                "data.val_fraction ({}) or data.max_len ({}) is out of range",
                d.val_fraction,
                d.max_len
            );
        }
        Ok(())
    }

    /// The model, its vocabulary and label names.
    pub fn model(&self) -> Result<(Classifier, Vocab, Vec<String>)> {
        let mut model = Classifier::new(self.model);
        for (t, spec) in self.tensors.iter().zip(&model.layout.tensors) {
            model.params[spec.range()].copy_from_slice(&t.data);
        }
        Ok((
            model,
            vocab_of(&self.vocab, self.model.vocab_size)?,
            self.labels.clone(),
        ))
    }

    /// The labelled lines to evaluate on, and what to call them: `file`'s lines in the
    /// format trained on, or the validation split, re-read and split as in training.
    pub fn eval_data(
        &self,
        file: Option<&Path>,
        labels: &[String],
        vocab: &Vocab,
    ) -> Result<(String, crate::text::labeled::Examples)> {
        let (what, data) = match file {
            Some(f) => {
                let data = self.data.read_other(f, labels, vocab)?.0.train;
                (f.display().to_string(), data)
            }
            None => {
                let data = self.data.reload(labels, vocab).context(
                    "cannot re-read the data recorded in the checkpoint; pass a file to evaluate on",
                )?;
                ("validation split".to_string(), data.0.val)
            }
        };
        if data.is_empty() {
            bail!("{what} has no lines to evaluate on");
        }
        Ok((what, data))
    }

    /// What a run resumed from this checkpoint at `path` continues, for claiming its
    /// directory.
    pub fn resumed<'a>(&'a self, path: &'a Path) -> Resumed<'a> {
        Resumed {
            path,
            run: self.run.as_deref(),
            step: self.progress.step,
        }
    }

    /// The label weights, `None` if the labels are not weighted.
    pub fn weights(&self) -> Option<Vec<f32>> {
        (self.class_weights != ClassWeights::None).then(|| self.label_weights.clone())
    }

    /// Everything needed to continue training (the progress is `self.progress`).
    pub fn restore(&self) -> Result<RestoredClassifier> {
        let (model, vocab, labels) = self.model()?;
        Ok(RestoredClassifier {
            model,
            vocab,
            labels,
            optimizer: Optimizer {
                config: self.training.config.optimizer,
                step: self.optimizer.step,
                m: self.optimizer.m.clone(),
                v: self.optimizer.v.clone(),
            },
        })
    }
}

/// A classifier's run directory: the claimed directory and what its checkpoints record
/// besides the trainer.
pub struct ClassifierRun {
    pub claim: PlainRun,
    pub vocab: Vocab,
    pub labels: Vec<String>,
    pub data: LabeledInfo,
    pub eval_every: u64,
    pub class_weights: ClassWeights,
}

impl Checkpointer<ClassifierTrainer<'_>> for ClassifierRun {
    fn save(&mut self, t: &mut ClassifierTrainer, best: bool) -> Result<()> {
        let ck = ClassifierCheckpoint::new(
            &self.claim.run,
            t,
            &self.vocab,
            &self.labels,
            &self.data,
            self.eval_every,
            self.class_weights,
        );
        self.claim
            .save_with(t.progress.step, best, |path| ck.save(path))
    }

    fn restore_last(&mut self, t: &mut ClassifierTrainer) -> Result<Option<u64>> {
        if self.claim.last_saved().is_none() {
            return Ok(None);
        }
        let ck = ClassifierCheckpoint::load(&self.claim.latest())?;
        let r = ck.restore()?;
        t.restore(&r.model.params, r.optimizer, ck.progress);
        Ok(self.claim.last_saved())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;
    use crate::nn::classifier::Pool;
    use crate::text::labeled::{Examples, LabelFormat};
    use crate::train::TrainConfig;
    use crate::train::run::Learner;
    use rand::SeedableRng;

    fn checkpoint() -> ClassifierCheckpoint {
        let vocab = Vocab::from_texts(["abcé"]);
        let mut m = Classifier::new(ClassifierConfig {
            cell: CellKind::Lstm,
            layers: 2,
            hidden: 5,
            bidirectional: true,
            pool: Pool::Final,
            vocab_size: vocab.len(),
            labels: 3,
            dropout: 0.1,
        });
        m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let mut ex = Examples::default();
        ex.offsets.push(0);
        for (i, y) in [0u32, 1, 2, 1].iter().enumerate() {
            ex.ids.extend([2, 3 + i as u32 % 3]);
            ex.offsets.push(ex.ids.len());
            ex.labels.push(*y);
        }
        let config = TrainConfig {
            batch: 2,
            seq_len: 4,
            threads: 2,
            ..TrainConfig::default()
        };
        let weights = ClassWeights::Balanced.weights(&ex.counts(3));
        let opt = Optimizer::new(config.optimizer, m.param_count());
        let progress = ClassifierTrainer::fresh_progress();
        let mut t = ClassifierTrainer::new(m, opt, config, &ex, weights, progress);
        t.step().unwrap();
        let data = LabeledInfo {
            format: LabelFormat::Tsv,
            sources: vec!["x.tsv".into()],
            val_fraction: 0.25,
            split_seed: 7,
            max_len: 4,
            train_examples: 4,
            val_examples: 1,
        };
        let labels = ["de".to_string(), "en".into(), "fr".into()];
        ClassifierCheckpoint::new(
            "abc",
            &t,
            &vocab,
            &labels,
            &data,
            10,
            ClassWeights::Balanced,
        )
    }

    #[test]
    fn save_load_is_exact_and_kinds_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let ck = checkpoint();
        ck.save(&path).unwrap();
        assert_eq!(ClassifierCheckpoint::load(&path).unwrap(), ck);
        assert!(matches!(load_any(&path).unwrap(), Loaded::Classifier(_)));
        assert!(is_classifier(&path));
        // As another tool would write it: spaces, indentation.
        let pretty = dir.path().join("pretty.json");
        std::fs::write(&pretty, serde_json::to_string_pretty(&ck).unwrap()).unwrap();
        assert!(is_classifier(&pretty));
        let lm = dir.path().join("lm.json");
        std::fs::write(&lm, "{\"format\": \"charrnn-checkpoint\"}").unwrap();
        assert!(!is_classifier(&lm) && !is_classifier(&dir.path().join("missing")));
        let e = format!("{:#}", Checkpoint::load(&path).err().unwrap());
        assert!(e.contains("holds a classifier"), "{e}");
        let (m, vocab, labels) = ck.model().unwrap();
        assert_eq!(
            (vocab.len(), labels.len(), m.param_count()),
            (6, 3, ck.tensors.iter().map(|t| t.data.len()).sum())
        );
    }

    #[test]
    fn load_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let err = |ck: &ClassifierCheckpoint| {
            std::fs::write(&path, serde_json::to_string(ck).unwrap()).unwrap();
            format!("{:#}", ClassifierCheckpoint::load(&path).unwrap_err())
        };
        let mut ck = checkpoint();
        ck.labels.swap(0, 1);
        assert!(err(&ck).contains("labels must be sorted"));
        let mut ck = checkpoint();
        ck.labels.pop();
        assert!(err(&ck).contains("label names"));
        let mut ck = checkpoint();
        ck.tensors[4].name = "weight_ih_l0_backward".into();
        assert!(err(&ck).contains("weight_ih_l0_reverse"), "{}", err(&ck));
        let mut ck = checkpoint();
        ck.label_weights.pop();
        assert!(err(&ck).contains("label_weights"));
        let mut ck = checkpoint();
        ck.model.labels = usize::MAX;
        assert!(err(&ck).contains("too many parameters"), "{}", err(&ck));
        let text = serde_json::to_string(&checkpoint()).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let e = format!("{:#}", load_any(&path).err().unwrap());
        assert!(
            e.contains("truncated") || e.contains("not valid JSON"),
            "{e}"
        );
    }
}
