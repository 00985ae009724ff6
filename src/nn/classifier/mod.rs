//! A many-to-one classifier on the same cells: one-hot characters → L stacked layers, each
//! optionally bidirectional → pooling over time → dropout → linear head → softmax over C
//! labels, trained with cross-entropy.
//!
//! ```text
//! x_t (id) ─gather─▶ layer 0 ─[fwd ‖ rev]─▶ layer 1 … ─▶ pool (final|mean|max) ─▶ z = p W_headᵀ + b_head
//! ```
//!
//! Shapes use the letters of the crate's legend plus `C` (labels), `S` (directions: 1, or 2
//! with `bidirectional`) and `D = S·H` (the width of a layer's output, and the input width of
//! every layer above the first).
//!
//! # Conventions (PyTorch's `nn.LSTM/GRU/RNN(V, H, L, bidirectional=True, batch_first=True)`)
//! - Parameters of layer `k`, forward direction then reverse: `weight_ih_l{k}`,
//!   `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, then the same with `_reverse`. Layer
//!   0 reads V inputs, layers above read `D`: the concatenation `[h_fwd ‖ h_rev]` of the layer
//!   below at the same position. The head is `nn.Linear(D, C)`, named `head`.
//! - Sequences have their own lengths, and padding never enters the computation of a valid
//!   position: PyTorch's packed-sequence semantics. The forward direction runs from each
//!   sequence's first character, the reverse direction from its *own* last character (not from
//!   the end of the padding), each from a zero state.
//! - Pooling: `final` is `[h_fwd at t = len-1 ‖ h_rev at t = 0]` (PyTorch's `h_n[-2:]`, the
//!   last state each direction reached); `mean` and `max` run over the valid positions only.
//! - Dropout (inverted) on the input of every layer above the first, as in
//!   `nn.LSTM(dropout=p)`, and on the pooled vector before the head.

mod head;
mod pool;
mod stack;
mod workspace;

pub use workspace::ClassifierWorkspace;

use crate::kernels::PackedMatrix;
use crate::nn::cell::CellKind;
use crate::nn::params::{Layout, TensorId};
use ndarray::ArrayView2;
use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;

/// How the outputs of the top layer over a sequence become one vector of width D.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The last state of each direction: forward at the last character, reverse at the first
    Final,
    /// The mean over the sequence's positions
    Mean,
    /// The maximum over the sequence's positions, unit by unit
    Max,
}

crate::value_enum_display!(Pool);

/// The shape of a classifier; serialised as the `model` section of its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassifierConfig {
    pub cell: CellKind,
    /// L.
    pub layers: usize,
    /// H, per direction.
    pub hidden: usize,
    /// S = 2 if set: every layer also runs over each sequence backwards.
    pub bidirectional: bool,
    pub pool: Pool,
    /// V, including `<start>` and `<end>` (unused by the classifier, kept so that ids mean
    /// the same as in the language model's vocabulary).
    pub vocab_size: usize,
    /// C.
    pub labels: usize,
    /// Dropout between layers and before the head while training, in [0, 1).
    pub dropout: f32,
}

/// The four tensors of one direction of a layer, in parameter order.
const DIR_TENSORS: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];

impl ClassifierConfig {
    /// S: 1 or 2.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// D = S·H: width of a layer's output.
    pub fn width(&self) -> usize {
        self.directions() * self.hidden
    }

    /// Parameter tensors: four per layer and direction, then the head's two.
    pub fn tensor_count(&self) -> Option<usize> {
        self.layers
            .checked_mul(4 * self.directions())?
            .checked_add(2)
    }

    /// Name and shape of parameter tensor `i` (PyTorch's names and order, see the module
    /// docs); `None` if out of range or a dimension overflows. From the config alone, so that
    /// a checkpoint's tensors are checked before anything the size of the model exists.
    pub fn tensor_spec(&self, i: usize) -> Option<(String, Vec<usize>)> {
        let (h, s) = (self.hidden, self.directions());
        let d = s.checked_mul(h)?;
        let gh = self.cell.gates().checked_mul(h)?;
        let n = self.tensor_count()?;
        if i + 2 == n {
            return Some(("head.weight".into(), vec![self.labels, d]));
        }
        if i + 1 == n {
            return Some(("head.bias".into(), vec![self.labels]));
        }
        if i >= n {
            return None;
        }
        let (k, dir, which) = (i / (4 * s), (i / 4) % s, i % 4);
        let suffix = if dir == 1 { "_reverse" } else { "" };
        let name = format!("{}_l{k}{suffix}", DIR_TENSORS[which]);
        let input = if k == 0 { self.vocab_size } else { d };
        let shape = match which {
            0 => vec![gh, input],
            1 => vec![gh, h],
            _ => vec![gh],
        };
        Some((name, shape))
    }

    /// Total number of parameters, with checked arithmetic.
    pub fn param_count(&self) -> Option<usize> {
        let mut total = 0usize;
        for i in 0..self.tensor_count()? {
            let (_, shape) = self.tensor_spec(i)?;
            let len = shape.iter().try_fold(1usize, |a, &x| a.checked_mul(x))?;
            total = total.checked_add(len)?;
        }
        Some(total)
    }

    /// Multiply-adds x 2 of one character's forward pass (the head, once per sequence, is
    /// left out): per layer and direction the recurrent product, and above the first layer
    /// the input product. Training costs about three times this.
    pub fn forward_flops(&self) -> f64 {
        let (h, l, s) = (
            self.hidden as f64,
            self.layers as f64,
            self.directions() as f64,
        );
        let gh = self.cell.gates() as f64 * h;
        2.0 * s * (gh * h * l + gh * s * h * (l - 1.0))
    }

    /// Checks that the config describes a model that can exist; errors name the field as in
    /// a checkpoint's `model` section.
    pub fn validate(&self) -> Result<(), String> {
        let body = crate::nn::ModelConfig {
            cell: self.cell,
            layers: self.layers,
            hidden: self.hidden,
            vocab_size: self.vocab_size,
            dropout: self.dropout,
            output_dropout: 0.0,
            weight_drop: 0.0,
        };
        body.validate_fields()?;
        if self.labels < 2 {
            return Err(format!(
                "model.labels is {}, a classifier needs at least 2",
                self.labels
            ));
        }
        if self
            .param_count()
            .is_none_or(|n| n > isize::MAX as usize / 4)
        {
            return Err(format!(
                "a {}x{} {} classifier over {} symbols and {} labels has too many parameters to exist",
                self.layers, self.hidden, self.cell, self.vocab_size, self.labels
            ));
        }
        Ok(())
    }
}

/// The tensors of one direction of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirIds {
    pub w_ih: TensorId,
    pub w_hh: TensorId,
    pub b_ih: TensorId,
    pub b_hh: TensorId,
}

#[derive(Debug, Clone)]
pub struct Classifier {
    pub config: ClassifierConfig,
    pub layout: Layout,
    /// Every parameter, laid out by `layout`.
    pub params: Vec<f32>,
    /// Per layer and direction, index `l·S + d` (d = 0 forward, 1 reverse).
    pub(crate) dirs: Vec<DirIds>,
    pub(crate) head_w: TensorId,
    pub(crate) head_b: TensorId,
}

impl Classifier {
    /// A classifier with every parameter zero; see [`Classifier::init`].
    ///
    /// Panics if the config is invalid (see [`ClassifierConfig::validate`]).
    pub fn new(config: ClassifierConfig) -> Classifier {
        if let Err(e) = config.validate() {
            panic!("Classifier::new: {e}");
        }
        let mut layout = Layout::default();
        for i in 0..config.tensor_count().unwrap() {
            let (name, shape) = config.tensor_spec(i).unwrap();
            layout.push(name, &shape);
        }
        let dirs = (0..config.layers * config.directions())
            .map(|j| DirIds {
                w_ih: 4 * j,
                w_hh: 4 * j + 1,
                b_ih: 4 * j + 2,
                b_hh: 4 * j + 3,
            })
            .collect();
        let head_w = 4 * config.layers * config.directions();
        Classifier {
            params: vec![0.0; layout.len],
            config,
            layout,
            dirs,
            head_w,
            head_b: head_w + 1,
        }
    }

    /// PyTorch's initialisation: recurrent tensors uniform in ±1/√H, the head (an
    /// `nn.Linear(D, C)`) in ±1/√D.
    pub fn init(&mut self, rng: &mut impl Rng) {
        let k_rnn = 1.0 / (self.config.hidden as f32).sqrt();
        let k_head = 1.0 / (self.config.width() as f32).sqrt();
        let head_start = self.layout.spec(self.head_w).offset;
        for (i, p) in self.params.iter_mut().enumerate() {
            let k = if i < head_start { k_rnn } else { k_head };
            *p = k * (2.0 * rng.random::<f32>() - 1.0);
        }
    }

    /// LSTM only: forget-gate biases with `b_if + b_hf = value` (see
    /// [`crate::nn::Model::set_forget_bias`]).
    pub fn set_forget_bias(&mut self, value: f32) {
        assert_eq!(self.config.cell, CellKind::Lstm, "an LSTM setting");
        let h = self.config.hidden;
        for ids in self.dirs.clone() {
            self.layout.slice_mut(&mut self.params, ids.b_ih)[h..2 * h].fill(value);
            self.layout.slice_mut(&mut self.params, ids.b_hh)[h..2 * h].fill(0.0);
        }
    }

    pub fn param_count(&self) -> usize {
        self.layout.len
    }

    pub(crate) fn mat(&self, id: TensorId) -> ArrayView2<'_, f32> {
        self.layout.mat(&self.params, id)
    }

    pub(crate) fn vec(&self, id: TensorId) -> &[f32] {
        self.layout.slice(&self.params, id)
    }

    /// Runs the classifier over `seqs` (character ids, each at least one long; one per row of
    /// `ws`) and leaves the logits in `ws.logits`, [B, C]. With `rng`, dropout is on.
    pub fn forward(
        &self,
        packed: &ClassifierPacked,
        ws: &mut ClassifierWorkspace,
        seqs: &[&[u32]],
        rng: Option<&mut ChaCha8Rng>,
    ) {
        ws.load(seqs);
        let mut rng = rng.filter(|_| self.config.dropout > 0.0 && ws.training);
        ws.dropout_active = rng.is_some();
        stack::forward(self, packed, ws, rng.as_deref_mut());
        pool::forward(self.config.pool, ws);
        head::forward(self, ws, rng);
    }

    /// [`Classifier::forward`] then the loss: returns `Σ_b w_b · (-ln p_b[y_b])` over the rows
    /// (nats), with `w_b = weights[labels[b]]` (1 without weights), and keeps what
    /// [`Classifier::backward`] needs. `ws.logits` then holds the probabilities.
    pub fn forward_loss(
        &self,
        packed: &ClassifierPacked,
        ws: &mut ClassifierWorkspace,
        seqs: &[&[u32]],
        labels: &[u32],
        weights: Option<&[f32]>,
        rng: Option<&mut ChaCha8Rng>,
    ) -> f64 {
        self.forward(packed, ws, seqs, rng);
        head::loss(ws, self.config.labels, labels, weights)
    }

    /// Probabilities of every label for each of `seqs`, [B, C], without dropout.
    pub fn probabilities<'w>(
        &self,
        packed: &ClassifierPacked,
        ws: &'w mut ClassifierWorkspace,
        seqs: &[&[u32]],
    ) -> &'w [f32] {
        self.forward(packed, ws, seqs, None);
        head::softmax(ws, self.config.labels)
    }

    /// Backpropagation for the batch of the last [`Classifier::forward_loss`]: *adds* the
    /// gradient of `scale · (its loss)` to `grads` (laid out like `params`).
    pub fn backward(
        &self,
        packed: &ClassifierPacked,
        ws: &mut ClassifierWorkspace,
        grads: &mut [f32],
        scale: f32,
    ) {
        assert!(ws.training, "backward needs a training workspace");
        assert!(
            !packed.w_hh.is_empty(),
            "backward needs ClassifierPacked::training"
        );
        head::backward(self, ws, grads, scale);
        pool::backward(self.config.pool, ws);
        stack::backward(self, packed, ws, grads);
    }
}

/// The weights rearranged for the products that read them most (as
/// [`crate::nn::PackedWeights`] for the language model): per direction layer 0's W_ihᵀ
/// [V, G·H] for the gather, and per layer and direction W_hhᵀ [H, G·H] packed (forward) and
/// W_hh [G·H, H] packed (backward, training only). [`ClassifierPacked::sync`] must follow
/// every change of the parameters.
#[derive(Debug, Clone)]
pub struct ClassifierPacked {
    pub(crate) w_ih0_t: Vec<Vec<f32>>,
    pub(crate) w_hh_t: Vec<PackedMatrix>,
    pub(crate) w_hh: Vec<PackedMatrix>,
}

impl ClassifierPacked {
    pub fn training(model: &Classifier) -> ClassifierPacked {
        ClassifierPacked::with_mode(model, true)
    }

    pub fn inference(model: &Classifier) -> ClassifierPacked {
        ClassifierPacked::with_mode(model, false)
    }

    fn with_mode(model: &Classifier, training: bool) -> ClassifierPacked {
        let c = &model.config;
        let (h, gh, s) = (c.hidden, c.cell.gates() * c.hidden, c.directions());
        let n = c.layers * s;
        let mut packed = ClassifierPacked {
            w_ih0_t: (0..s).map(|_| vec![0.0; c.vocab_size * gh]).collect(),
            w_hh_t: (0..n).map(|_| PackedMatrix::new(h, gh)).collect(),
            w_hh: (0..n)
                .filter(|_| training)
                .map(|_| PackedMatrix::new(gh, h))
                .collect(),
        };
        packed.sync(model);
        packed
    }

    /// Copies the model's current parameters in, side by side on the thread pool.
    pub fn sync(&mut self, model: &Classifier) {
        let ClassifierPacked {
            w_ih0_t,
            w_hh_t,
            w_hh,
        } = self;
        rayon::scope(|s| {
            for (ids, dst) in model.dirs.iter().zip(w_ih0_t) {
                s.spawn(move |_| {
                    let src = model.mat(ids.w_ih);
                    let (r, c) = src.dim();
                    transpose::transpose(src.as_slice().expect("contiguous"), dst, c, r);
                });
            }
            for (ids, dst) in model.dirs.iter().zip(w_hh_t) {
                s.spawn(move |_| dst.pack(model.mat(ids.w_hh).t()));
            }
            for (ids, dst) in model.dirs.iter().zip(w_hh) {
                s.spawn(move |_| dst.pack(model.mat(ids.w_hh)));
            }
        });
    }
}

/// Inverted dropout of `x` into `out` with a fresh mask in `mask` (0 or 1/(1-p)).
pub(crate) fn dropout(x: &[f32], out: &mut [f32], mask: &mut [f32], p: f32, rng: &mut ChaCha8Rng) {
    let keep = 1.0 / (1.0 - p);
    for ((m, o), &v) in mask.iter_mut().zip(out.iter_mut()).zip(x) {
        *m = if rng.random::<f32>() < p { 0.0 } else { keep };
        *o = v * *m;
    }
}

#[cfg(test)]
mod tests;
