//! A model read from a file for sampling, evaluation, scoring or the activation page: a
//! checkpoint, or the safetensors file `charrnn export` writes (4 bytes a parameter, a
//! tenth of a checkpoint with its optimizer moments: the file to share).
//!
//! A safetensors file is hostile input like a checkpoint: its metadata is parsed and
//! checked (format, shape, vocabulary), every tensor's name, type and shape compared with
//! what the metadata's model needs, and its data with its shape, with checked arithmetic,
//! before the model is allocated; every value must be finite. (The `safetensors` crate
//! itself checks that the header and the offsets fit in the file.)

use crate::fs::{ReadLimit, available_memory, read_regular};
use crate::io::checkpoint::{Checkpoint, DataSection, printable};
use crate::nn::{CellKind, Model, ModelConfig};
use crate::text::Mode;
use crate::text::vocab::Vocab;
use anyhow::{Context, Result, anyhow, bail};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use std::collections::HashMap;
use std::path::Path;

/// A model and what using it needs.
pub struct ModelFile {
    pub model: Model,
    pub vocab: Vocab,
    /// How its training text was cut into sequences (`stream` for an export written before
    /// exports recorded it).
    pub mode: Mode,
    /// The checkpoint's record of its training text; `None` for an export.
    pub data: Option<DataSection>,
}

/// Reads the model in `path`: an exported safetensors file (a little-endian header length
/// under 4 GB, so zero bytes that JSON text never has, then the header's `{`) or else a
/// checkpoint, whose loader names what is wrong with a
/// file that is neither.
pub fn load(path: &Path) -> Result<ModelFile> {
    let mut head = [0u8; 9];
    let is_safetensors = std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_exact(&mut std::io::Read::take(f, 9), &mut head))
        .is_ok()
        && head[4..8] == [0; 4]
        && head[8] == b'{';
    if is_safetensors {
        return read_safetensors(path);
    }
    let ck = Checkpoint::load(path)?;
    let (model, vocab) = ck.model()?;
    Ok(ModelFile {
        model,
        vocab,
        mode: ck.data.mode,
        data: Some(ck.data),
    })
}

/// Reads an exported safetensors model (see [`crate::io::export`]), checked as the module
/// docs say.
pub fn read_safetensors(path: &Path) -> Result<ModelFile> {
    let limit = ReadLimit {
        max_bytes: available_memory(),
    };
    let bytes = read_regular(path, "model", limit)?;
    parse_safetensors(&bytes).with_context(|| format!("model {}", path.display()))
}

fn parse_safetensors(bytes: &[u8]) -> Result<ModelFile> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("is neither a checkpoint nor a safetensors file ({e})"))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{e}"))?;
    let empty = HashMap::new();
    let meta = header.metadata().as_ref().unwrap_or(&empty);
    let field = |key: &str| {
        meta.get(key).map(String::as_str).ok_or_else(|| {
            anyhow!("has no \"{key}\" in its metadata (not written by charrnn export)")
        })
    };
    if field("format")? != "charrnn" {
        bail!("is not a charrnn export (metadata \"format\" is not \"charrnn\")");
    }
    if meta.get("task").is_some_and(|t| t == "classify") {
        bail!(
            "holds a classifier's weights (charrnn train --task classify), not a language model: it labels lines and has no next-character distribution; `charrnn predict` and `eval` read the classifier's checkpoint"
        );
    }
    let number = |key: &str| -> Result<usize> {
        let v = field(key)?;
        v.parse().map_err(|_| {
            anyhow!(
                "metadata \"{key}\" is \"{}\", not a whole number",
                printable(v)
            )
        })
    };
    let cell: CellKind = serde_json::from_value(serde_json::Value::String(field("cell")?.into()))
        .map_err(|_| {
        anyhow!(
            "metadata \"cell\" is \"{}\"",
            printable(field("cell").unwrap_or_default())
        )
    })?;
    let dropout: f32 = field("dropout")?
        .parse()
        .map_err(|_| anyhow!("metadata \"dropout\" is not a number"))?;
    // Written only when above 0 (see `io::export::metadata`): absent is 0.
    let rate = |key: &str| -> Result<f32> {
        meta.get(key).map_or(Ok(0.0), |q| {
            q.parse()
                .map_err(|_| anyhow!("metadata \"{key}\" is not a number"))
        })
    };
    let config = ModelConfig {
        cell,
        layers: number("layers")?,
        hidden: number("hidden")?,
        vocab_size: number("vocab_size")?,
        dropout,
        output_dropout: rate("output_dropout")?,
        weight_drop: rate("weight_drop")?,
    };
    config.validate().map_err(|e| anyhow!(e))?;
    let mode = match meta.get("mode") {
        None => Mode::Stream,
        Some(m) => serde_json::from_value(serde_json::Value::String(m.clone()))
            .map_err(|_| anyhow!("metadata \"mode\" is \"{}\"", printable(m)))?,
    };
    let chars: Vec<String> = serde_json::from_str(field("vocab")?)
        .map_err(|_| anyhow!("metadata \"vocab\" is not a JSON list of characters"))?;
    let mut vocab_chars = Vec::with_capacity(chars.len().min(config.vocab_size));
    for (i, s) in chars.iter().enumerate() {
        let mut it = s.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => vocab_chars.push(c),
            _ => bail!("vocab[{i}] is \"{}\", expected one character", printable(s)),
        }
    }
    let vocab = Vocab::from_chars(vocab_chars).map_err(|e| anyhow!("vocab: {e}"))?;
    if vocab.len() != config.vocab_size {
        bail!(
            "metadata \"vocab_size\" is {} but its vocab has {} characters (+2 special tokens)",
            config.vocab_size,
            chars.len()
        );
    }
    // The tensors against the model the metadata describes: the count first (it bounds the
    // layers by the file), then each one's type, shape and data, before any allocation.
    let want = config
        .tensor_count()
        .context("metadata \"layers\" is too large")?;
    if st.len() != want {
        bail!(
            "has {} tensors, a {}x{} {cell} needs {want}",
            st.len(),
            config.layers,
            config.hidden
        );
    }
    let mut views = Vec::with_capacity(want);
    for i in 0..want {
        let (name, shape) = config.tensor_spec(i).context("a tensor shape overflows")?;
        let t = st
            .tensor(&name)
            .map_err(|_| anyhow!("tensor {name} is missing"))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
            bail!(
                "tensor {name} is {:?} {:?}, the model needs F32 {shape:?}",
                t.dtype(),
                t.shape()
            );
        }
        let len = shape.iter().try_fold(4usize, |a, &d| a.checked_mul(d));
        if len != Some(t.data().len()) {
            bail!(
                "tensor {name} has {} bytes for shape {shape:?}",
                t.data().len()
            );
        }
        views.push((name, t));
    }
    let mut model = Model::new(config);
    for ((name, t), spec) in views.iter().zip(model.layout.tensors.clone()) {
        let dst = &mut model.params[spec.range()];
        for (x, b) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if let Some(j) = dst.iter().position(|x| !x.is_finite()) {
            bail!("tensor {name} has a non-finite value at index {j}");
        }
    }
    Ok(ModelFile {
        model,
        vocab,
        mode,
        data: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::export::safetensors_bytes;
    use rand::SeedableRng;

    fn exported(cell: CellKind) -> (Model, Vocab, Vec<u8>) {
        let vocab = Vocab::from_texts(["héllo wörld 世界"]);
        let mut model = Model::new(ModelConfig {
            cell,
            vocab_size: vocab.len(),
            hidden: 5,
            layers: 2,
            dropout: 0.25,
            // Present in one export, absent from the others: both read back.
            output_dropout: if cell == CellKind::Gru { 0.2 } else { 0.0 },
            weight_drop: if cell == CellKind::Rnn { 0.3 } else { 0.0 },
        });
        model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
        let bytes = safetensors_bytes(&model, &vocab, Mode::Lines).unwrap();
        (model, vocab, bytes)
    }

    #[test]
    fn an_export_reads_back_exactly() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let (model, vocab, bytes) = exported(cell);
            let back = parse_safetensors(&bytes).unwrap();
            assert_eq!(back.model.config, model.config);
            assert_eq!(back.vocab.chars(), vocab.chars());
            assert_eq!(back.mode, Mode::Lines);
            assert!(back.data.is_none());
            assert!(
                model
                    .params
                    .iter()
                    .zip(&back.model.params)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }

    /// Metadata that does not match the tensors, and damaged bytes, are refused with the
    /// field at fault (never a panic, never an allocation the file does not back).
    #[test]
    fn hostile_exports_are_refused() {
        let (model, vocab, bytes) = exported(CellKind::Lstm);
        let err = |b: &[u8]| format!("{:#}", parse_safetensors(b).err().expect("refused"));
        let with_meta = |key: &str, value: &str| {
            let mut m = crate::io::export::metadata(&model, &vocab, Mode::Stream);
            m.insert(key.into(), value.into());
            let views: Vec<(String, safetensors::tensor::TensorView)> =
                SafeTensors::deserialize(&bytes).unwrap().tensors();
            safetensors::tensor::serialize(views, Some(m)).unwrap()
        };
        for (key, value, needle) in [
            ("hidden", "1099511627776", "too many parameters"),
            ("hidden", "6", "the model needs F32 [24, 13]"),
            ("layers", "10000000", "has 10 tensors"),
            ("layers", "-1", "\"layers\" is \"-1\""),
            ("vocab_size", "12", "vocab_size"),
            ("vocab", "[\"ab\"]", "expected one character"),
            ("cell", "\u{1b}[31m", "\\u{1b}"),
            ("mode", "sideways", "\"mode\""),
            ("format", "other", "not a charrnn export"),
            ("dropout", "2", "dropout"),
            ("weight_drop", "1", "model.weight_drop is 1"),
            ("weight_drop", "often", "\"weight_drop\" is not a number"),
        ] {
            let e = err(&with_meta(key, value));
            assert!(e.contains(needle), "{key}={value}: {e}");
        }
        assert!(err(&bytes[..bytes.len() - 3]).contains("neither a checkpoint nor a safetensors"));
        assert!(err(b"\xff\xff\xff\xff\xff\xff\xff\xff{}").contains("safetensors"));
        // A NaN weight.
        let mut nan = bytes.clone();
        let n = nan.len();
        nan[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(err(&nan).contains("non-finite"), "{}", err(&nan));
        // Fuzz: every flipped byte of the header and the first tensors is an error or a
        // model, never a panic.
        for i in 0..bytes.len().min(2000) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = parse_safetensors(&b);
        }
    }
}
