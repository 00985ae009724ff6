//! Exporting a model's weights for other tools: safetensors with PyTorch's tensor names,
//! so that `nn.LSTM/GRU/RNN(V, H, L)` plus `nn.Linear(H, V)` load them as they are.
//!
//! The file's metadata (string to string, as the format allows) holds what is needed to use
//! the weights: `format` = `charrnn`, `cell`, `layers`, `hidden`, `vocab_size`, `dropout`,
//! `mode` (how the text was cut into sequences in training: `stream` or `lines`),
//! `start_id` and `end_id` of the two special tokens, and `vocab`, a JSON array of the
//! characters in id order from id 2.

use crate::fs::write_atomic;
use crate::nn::Model;
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
    HashMap::from([
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
    ])
}

/// The safetensors bytes of `model`'s parameters (f32, little-endian, row-major).
pub fn safetensors_bytes(model: &Model, vocab: &Vocab, mode: Mode) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .layout
        .tensors
        .iter()
        .map(|t| {
            let data = model.params[t.range()]
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
    safetensors::tensor::serialize(views, Some(metadata(model, vocab, mode)))
        .context("cannot serialise the safetensors file")
}

/// Writes `model` (trained in `mode`) to `path` as safetensors, atomically.
pub fn write_safetensors(model: &Model, vocab: &Vocab, mode: Mode, path: &Path) -> Result<()> {
    let bytes = safetensors_bytes(model, vocab, mode)?;
    write_atomic(path, |f| Ok(f.write_all(&bytes)?))
}
