//! Exporting a model's weights for other tools: safetensors with PyTorch's tensor names,
//! so that `nn.LSTM/GRU/RNN(V, H, L)` plus `nn.Linear(H, V)` load them as they are.
//!
//! The file's metadata (string to string, as the format allows) holds what is needed to use
//! the weights: `format` = `charrnn`, `cell`, `layers`, `hidden`, `vocab_size`, `dropout`,
//! `output_dropout` and `weight_drop` (only when above 0),
//! `mode` (how the text was cut into sequences in training: `stream` or `lines`),
//! `start_id` and `end_id` of the two special tokens, and `vocab`, a JSON array of the
//! characters in id order from id 2.
//!
//! A classifier's file holds `nn.LSTM/GRU/RNN(V, H, L, bidirectional=...)`'s tensors (with
//! `_reverse` for the second direction) and `head.weight` [C, D], `head.bias` [C]; its
//! metadata adds `task` = `classify`, `bidirectional`, `pool`, `labels` (a JSON array of the
//! label names in id order) and drops nothing a language model's has but the `<start>` and
//! `<end>` ids (a classifier reads only characters).

use crate::fs::write_atomic;
use crate::nn::Model;
use crate::nn::classifier::Classifier;
use crate::nn::params::Layout;
use crate::text::Mode;
use crate::text::vocab::{END, START, Vocab};
use anyhow::{Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The metadata written with the weights (see the module docs).
pub fn metadata(model: &Model, vocab: &Vocab, mode: Mode) -> HashMap<String, String> {
    let c = &model.config;
    let chars: Vec<String> = vocab.chars().iter().map(|ch| ch.to_string()).collect();
    let mut meta = HashMap::from([
        ("format".to_string(), "charrnn".to_string()),
        ("cell".to_string(), c.cell.to_string()),
        ("layers".to_string(), c.layers.to_string()),
        ("hidden".to_string(), c.hidden.to_string()),
        ("vocab_size".to_string(), c.vocab_size.to_string()),
        ("dropout".to_string(), c.dropout.to_string()),
        ("mode".to_string(), mode.to_string()),
        ("start_id".to_string(), START.to_string()),
        ("end_id".to_string(), END.to_string()),
        (
            "vocab".to_string(),
            serde_json::to_string(&chars).expect("strings serialise"),
        ),
    ]);
    // Only when set, as in the checkpoint: files of models without it stay as they were.
    for (key, p) in [
        ("output_dropout", c.output_dropout),
        ("weight_drop", c.weight_drop),
    ] {
        if p > 0.0 {
            meta.insert(key.into(), p.to_string());
        }
    }
    meta
}

/// The metadata written with a classifier's weights (see the module docs).
pub fn classifier_metadata(
    model: &Classifier,
    vocab: &Vocab,
    labels: &[String],
) -> HashMap<String, String> {
    let c = &model.config;
    let chars: Vec<String> = vocab.chars().iter().map(|ch| ch.to_string()).collect();
    let json = |v: &[String]| serde_json::to_string(v).expect("strings serialise");
    HashMap::from([
        ("format".to_string(), "charrnn".to_string()),
        ("task".to_string(), "classify".to_string()),
        ("cell".to_string(), c.cell.to_string()),
        ("layers".to_string(), c.layers.to_string()),
        ("hidden".to_string(), c.hidden.to_string()),
        ("bidirectional".to_string(), c.bidirectional.to_string()),
        ("pool".to_string(), c.pool.to_string()),
        ("vocab_size".to_string(), c.vocab_size.to_string()),
        ("dropout".to_string(), c.dropout.to_string()),
        ("vocab".to_string(), json(&chars)),
        ("labels".to_string(), json(labels)),
    ])
}

/// The safetensors bytes of `model`'s parameters (f32, little-endian, row-major).
pub fn safetensors_bytes(model: &Model, vocab: &Vocab, mode: Mode) -> Result<Vec<u8>> {
    tensors_bytes(&model.layout, &model.params, metadata(model, vocab, mode))
}

/// The safetensors bytes of a classifier (see the module docs).
pub fn classifier_bytes(model: &Classifier, vocab: &Vocab, labels: &[String]) -> Result<Vec<u8>> {
    tensors_bytes(
        &model.layout,
        &model.params,
        classifier_metadata(model, vocab, labels),
    )
}

/// Writes a classifier to `path` as safetensors, atomically.
pub fn write_classifier_safetensors(
    model: &Classifier,
    vocab: &Vocab,
    labels: &[String],
    path: &Path,
) -> Result<()> {
    let bytes = classifier_bytes(model, vocab, labels)?;
    write_atomic(path, |f| Ok(f.write_all(&bytes)?))
}

/// The safetensors bytes of the tensors of `layout` in `params`, with `meta`.
fn tensors_bytes(
    layout: &Layout,
    params: &[f32],
    meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .tensors
        .iter()
        .map(|t| {
            let data = params[t.range()]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            (t.name.clone(), t.shape.clone(), data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .context("cannot build the safetensors tensors")?;
    safetensors::tensor::serialize(views, Some(meta))
        .context("cannot serialise the safetensors file")
}

/// Writes `model` (trained in `mode`) to `path` as safetensors, atomically.
pub fn write_safetensors(model: &Model, vocab: &Vocab, mode: Mode, path: &Path) -> Result<()> {
    let bytes = safetensors_bytes(model, vocab, mode)?;
    write_atomic(path, |f| Ok(f.write_all(&bytes)?))
}
