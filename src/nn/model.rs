//! The model: one-hot input → L stacked cells → linear output layer → softmax; the forward
//! pass over a window and backpropagation through time.
//!
//! ```text
//! x_t (id) ──gather──▶ layer 0 ──dropout──▶ layer 1 … layer L-1 ──output dropout──▶ logits = h W_headᵀ + b_head
//! ```
//!
//! Parameter names follow PyTorch (`weight_ih_l0`, …, see [`crate::nn::cell`]); the output layer
//! is `head.weight` [V, H] and `head.bias` [V], as in `nn.Linear(H, V)` named `head`.
//! Dropout (inverted: kept units are scaled by 1/(1-p), so evaluation needs no rescaling)
//! is applied to the input of every layer above the first, as in `torch.nn.LSTM(dropout=p)`,
//! and with `output_dropout` to the output layer's input too (Zaremba et al. 2014 drop every
//! non-recurrent connection: that is `nn.Dropout(q)` between `nn.LSTM` and `nn.Linear`);
//! it is off whenever no random generator is passed. The recurrent connections are
//! regularised on the weights instead, with `weight_drop` (DropConnect on W_hh, see
//! [`PackedWeights::sync_dropping`]): a unit mask on h_{t-1} would need a mask inside the
//! time loop's packed product, a weight mask is drawn once per update and packed with W_hh.

use crate::kernels::{
    PackedLayout, PackedMatrix, Precision, add_assign, add_row_sums, matmul, matmul_bf16,
    matmul_packed,
};
use crate::nn::cell::{self, CellKind};
use crate::nn::loss::{
    softmax_cross_entropy, softmax_cross_entropy_backward, softmax_cross_entropy_each,
};
use crate::nn::params::{Layout, TensorId};
use crate::nn::{State, Workspace};
use crate::text::batches::Window;
use crate::text::vocab::Vocab;
use ndarray::{ArrayView2, ArrayViewMut2};
use rand::{Rng, RngExt};
// A concrete generator, not `dyn Rng`: dropout draws one number per unit, and a virtual call
// per draw would sit in the hot loop.
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// The shape of a model; everything else about it is in its parameters. Serialised as the
/// `model` section of a checkpoint (field order is the file's).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub cell: CellKind,
    /// L.
    pub layers: usize,
    /// H.
    pub hidden: usize,
    /// V, including `<start>` and `<end>`.
    pub vocab_size: usize,
    /// Probability of dropping a unit between layers while training, in [0, 1).
    pub dropout: f32,
    /// Probability of dropping a unit of the top layer's output, the output layer's input,
    /// while training, in [0, 1). Absent from a checkpoint when 0, so that files written
    /// before it existed load and re-save byte for byte.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_dropout: f32,
    /// Probability of dropping each recurrent weight (an element of W_hh) for one update
    /// while training, in [0, 1): DropConnect on the hidden-to-hidden matrices. Absent from
    /// a checkpoint when 0, like `output_dropout`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_drop: f32,
}

fn is_zero(p: &f32) -> bool {
    *p == 0.0
}

impl Default for ModelConfig {
    /// A 2x256 LSTM without dropout; `vocab_size` is 0 and must be set from the corpus.
    fn default() -> Self {
        ModelConfig {
            cell: CellKind::Lstm,
            layers: 2,
            hidden: 256,
            vocab_size: 0,
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        }
    }
}

/// The four tensors of a layer, in parameter order.
const LAYER_TENSORS: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];

impl ModelConfig {
    /// Parameter tensors: four per layer, then the output layer's weight and bias. `None`
    /// if that overflows (it cannot for a model that fits in memory).
    pub fn tensor_count(&self) -> Option<usize> {
        self.layers.checked_mul(4)?.checked_add(2)
    }

    /// Name and shape of parameter tensor `i` in parameter order (PyTorch's names, see
    /// [`crate::nn::cell`]): `weight_ih_l{k}` [G·H, I], `weight_hh_l{k}` [G·H, H],
    /// `bias_ih_l{k}` [G·H], `bias_hh_l{k}` [G·H], ..., `head.weight` [V, H], `head.bias`
    /// [V]. `None` if `i` is out of range or a dimension overflows. Computed from the
    /// config alone, so that a checkpoint's tensors can be checked against it before
    /// anything the size of the model is allocated.
    pub fn tensor_spec(&self, i: usize) -> Option<(String, Vec<usize>)> {
        let (v, h) = (self.vocab_size, self.hidden);
        let gh = self.cell.gates().checked_mul(h)?;
        let n = self.tensor_count()?;
        if i + 2 == n {
            return Some(("head.weight".into(), vec![v, h]));
        }
        if i + 1 == n {
            return Some(("head.bias".into(), vec![v]));
        }
        if i >= n {
            return None;
        }
        let (k, which) = (i / 4, i % 4);
        let name = format!("{}_l{k}", LAYER_TENSORS[which]);
        let input = if k == 0 { v } else { h };
        let shape = match which {
            0 => vec![gh, input],
            1 => vec![gh, h],
            _ => vec![gh],
        };
        Some((name, shape))
    }

    /// Total number of parameters, with checked arithmetic.
    pub fn param_count(&self) -> Option<usize> {
        let (v, h) = (self.vocab_size, self.hidden);
        let gh = self.cell.gates().checked_mul(h)?;
        let bias = gh.checked_mul(2)?;
        let first = gh.checked_mul(v)?.checked_add(gh.checked_mul(h)?)?;
        let upper = gh.checked_mul(h)?.checked_mul(2)?;
        let head = v.checked_mul(h)?.checked_add(v)?;
        let layers = self.layers.checked_sub(1)?;
        upper
            .checked_add(bias)?
            .checked_mul(layers)?
            .checked_add(first.checked_add(bias)?)?
            .checked_add(head)
    }

    /// Multiply-adds x 2 of one character's forward pass: the recurrent and input products
    /// of every layer (the first layer's input is a gather, free) and the output layer.
    /// Training costs about three times this (forward, and two products backward).
    pub fn forward_flops(&self) -> f64 {
        let (h, v, l) = (
            self.hidden as f64,
            self.vocab_size as f64,
            self.layers as f64,
        );
        let gh = self.cell.gates() as f64 * h;
        2.0 * (gh * h * l + gh * h * (l - 1.0) + h * v)
    }

    /// Checks that the config describes a model that can exist; errors name the field as in
    /// a checkpoint's `model` section.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_fields()?;
        if self
            .param_count()
            .is_none_or(|n| n > isize::MAX as usize / 4)
        {
            return Err(format!(
                "a {}x{} {} model over {} symbols has too many parameters to exist",
                self.layers, self.hidden, self.cell, self.vocab_size
            ));
        }
        Ok(())
    }

    /// The checks of [`ModelConfig::validate`] that do not depend on what the layers feed
    /// (a classifier's config makes them too): sizes, vocabulary, dropout.
    pub fn validate_fields(&self) -> Result<(), String> {
        if self.layers == 0 || self.hidden == 0 {
            return Err("model.layers and model.hidden must be positive".into());
        }
        if self.vocab_size <= crate::text::vocab::SPECIALS {
            return Err(format!(
                "model.vocab_size is {}, must be more than the 2 special tokens",
                self.vocab_size
            ));
        }
        let rates = [
            ("dropout", self.dropout),
            ("output_dropout", self.output_dropout),
            ("weight_drop", self.weight_drop),
        ];
        match rates.iter().find(|(_, p)| !(0.0..1.0).contains(p)) {
            Some((name, p)) => Err(format!("model.{name} is {p}, must be in [0, 1)")),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LayerIds {
    w_ih: TensorId,
    w_hh: TensorId,
    b_ih: TensorId,
    b_hh: TensorId,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub layout: Layout,
    /// Every parameter, laid out by `layout`.
    pub params: Vec<f32>,
    layers: Vec<LayerIds>,
    head_w: TensorId,
    head_b: TensorId,
}

impl Model {
    /// A model with every parameter zero; see [`Model::init`].
    ///
    /// Panics if the config is invalid (see [`ModelConfig::validate`]).
    pub fn new(config: ModelConfig) -> Model {
        if let Err(e) = config.validate() {
            panic!("Model::new: {e}");
        }
        let mut layout = Layout::default();
        for i in 0..config.tensor_count().unwrap() {
            let (name, shape) = config.tensor_spec(i).unwrap();
            layout.push(name, &shape);
        }
        let layers = (0..config.layers)
            .map(|k| LayerIds {
                w_ih: 4 * k,
                w_hh: 4 * k + 1,
                b_ih: 4 * k + 2,
                b_hh: 4 * k + 3,
            })
            .collect();
        let head_w = 4 * config.layers;
        let params = vec![0.0; layout.len];
        Model {
            config,
            layout,
            params,
            layers,
            head_w,
            head_b: head_w + 1,
        }
    }

    /// PyTorch's initialisation: every tensor uniform in ±1/√H (for `nn.Linear(H, V)` that is
    /// ±1/√fan_in, the same bound).
    pub fn init(&mut self, rng: &mut impl Rng) {
        let k = 1.0 / (self.config.hidden as f32).sqrt();
        for p in &mut self.params {
            *p = k * (2.0 * rng.random::<f32>() - 1.0);
        }
    }

    /// The same network over a larger vocabulary `new`, a superset of `old` (the one this
    /// model was trained with), for fine-tuning on text with characters it has not seen. The
    /// input columns and output rows of known characters move to their new ids; those of new
    /// characters are initialised as [`Model::init`] does, and their output bias starts at
    /// the smallest bias of the known characters, so that the model does not predict them
    /// before it has been trained on them.
    pub fn with_vocab(&self, old: &Vocab, new: &Vocab, rng: &mut impl Rng) -> Model {
        assert_eq!(
            old.len(),
            self.config.vocab_size,
            "with_vocab: old vocabulary"
        );
        let mut m = Model::new(ModelConfig {
            vocab_size: new.len(),
            ..self.config
        });
        m.init(rng);
        // New id of each old id: the special tokens keep theirs.
        let map: Vec<usize> = (0..old.len() as u32)
            .map(|id| match old.char_of(id) {
                Some(c) => new.id(c).expect("the new vocabulary contains the old one") as usize,
                None => id as usize,
            })
            .collect();
        // Every tensor but the first layer's input weights and the head is copied as it is.
        for (k, (old, new)) in self
            .layout
            .tensors
            .iter()
            .zip(&m.layout.tensors)
            .enumerate()
        {
            if k != self.layers[0].w_ih && k != self.head_w && k != self.head_b {
                m.params[new.range()].copy_from_slice(&self.params[old.range()]);
            }
        }
        let (w_old, mut w_new) = (
            self.w_ih(0),
            m.layout.mat_mut(&mut m.params, m.layers[0].w_ih),
        );
        for (o, &n) in map.iter().enumerate() {
            w_new.column_mut(n).assign(&w_old.column(o));
        }
        let (h_old, mut h_new) = (self.head_w(), m.layout.mat_mut(&mut m.params, m.head_w));
        for (o, &n) in map.iter().enumerate() {
            h_new.row_mut(n).assign(&h_old.row(o));
        }
        let b_old = self.head_b();
        let lowest = b_old[crate::text::vocab::SPECIALS..]
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        let b_new = m.layout.slice_mut(&mut m.params, m.head_b);
        b_new.fill(if lowest.is_finite() { lowest } else { 0.0 });
        for (o, &n) in map.iter().enumerate() {
            b_new[n] = b_old[o];
        }
        m
    }

    /// LSTM only: sets the forget-gate bias so that `b_if + b_hf = value` (Jozefowicz et al.
    /// 2015 recommend 1.0, so that early gradients are not forgotten), by writing `value`
    /// into `bias_ih` and zero into `bias_hh`. PyTorch leaves it at the uniform init.
    pub fn set_forget_bias(&mut self, value: f32) {
        assert_eq!(
            self.config.cell,
            CellKind::Lstm,
            "forget bias is an LSTM setting"
        );
        let h = self.config.hidden;
        for ids in self.layers.clone() {
            self.layout.slice_mut(&mut self.params, ids.b_ih)[h..2 * h].fill(value);
            self.layout.slice_mut(&mut self.params, ids.b_hh)[h..2 * h].fill(0.0);
        }
    }

    pub fn param_count(&self) -> usize {
        self.layout.len
    }

    /// `weight_ih_l{l}`, [G·H, I].
    pub fn w_ih(&self, l: usize) -> ArrayView2<'_, f32> {
        self.mat(self.layers[l].w_ih)
    }

    /// `weight_hh_l{l}`, [G·H, H].
    pub fn w_hh(&self, l: usize) -> ArrayView2<'_, f32> {
        self.mat(self.layers[l].w_hh)
    }

    /// `bias_ih_l{l}`, [G·H].
    pub fn b_ih(&self, l: usize) -> &[f32] {
        self.vec(self.layers[l].b_ih)
    }

    /// `bias_hh_l{l}`, [G·H].
    pub fn b_hh(&self, l: usize) -> &[f32] {
        self.vec(self.layers[l].b_hh)
    }

    /// `head.weight`, [V, H].
    pub fn head_w(&self) -> ArrayView2<'_, f32> {
        self.mat(self.head_w)
    }

    /// `head.bias`, [V].
    pub fn head_b(&self) -> &[f32] {
        self.vec(self.head_b)
    }

    fn mat(&self, id: TensorId) -> ArrayView2<'_, f32> {
        self.layout.mat(&self.params, id)
    }

    fn vec(&self, id: TensorId) -> &[f32] {
        self.layout.slice(&self.params, id)
    }

    /// Runs the model over `t_len` steps of the inputs loaded in `ws` (see
    /// [`Workspace::load_window`]); leaves the logits in `ws.logits`, [T, B, V].
    /// With `rng`, dropout is on (training); without, off (evaluation and sampling).
    fn forward_logits(
        &self,
        packed: &PackedWeights,
        ws: &mut Workspace,
        state: &mut State,
        mut rng: Option<&mut ChaCha8Rng>,
    ) {
        let (hid, kind, v) = (self.config.hidden, self.config.cell, self.config.vocab_size);
        let gh = kind.gates() * hid;
        let (t_len, bs) = (ws.t_len, ws.batch);
        let n = t_len * bs;
        ws.dropout_active = rng.is_some() && ws.training;

        let p = self.config.dropout;
        for (l, ids) in self.layers.iter().enumerate() {
            let masked = ws.masked(l);
            let (below, this) = ws.layers.split_at_mut(l);
            let cache = &mut this[0];
            let gates = &mut cache.gates[..n * gh];
            let b_ih = self.vec(ids.b_ih);
            if l == 0 {
                // one_hot(x) · W_ihᵀ is row x of W_ihᵀ: a gather, no product.
                for (row, &x) in gates.chunks_exact_mut(gh).zip(&ws.x) {
                    let w = &packed.w_ih0_t[x as usize * gh..(x as usize + 1) * gh];
                    for ((g, &w), &b) in row.iter_mut().zip(w).zip(b_ih) {
                        *g = w + b;
                    }
                }
            } else {
                let h_below = &below[l - 1].h[..n * hid];
                let input: &[f32] = match rng.as_deref_mut() {
                    Some(rng) if masked => {
                        let (mask, dropped) = (&mut ws.masks[l], &mut ws.inputs[l]);
                        drop_units(
                            h_below,
                            &mut mask[..n * hid],
                            &mut dropped[..n * hid],
                            p,
                            rng,
                        )
                    }
                    _ => h_below,
                };
                let input = ArrayView2::from_shape((n, hid), input).unwrap();
                let mut out = ArrayViewMut2::from_shape((n, gh), &mut *gates).unwrap();
                let pre = packed.bf16.as_ref().map(|b| &b.w_ih_t[l - 1]);
                packed.product(&mut out, input, self.mat(ids.w_ih).t(), pre, false);
                for row in gates.chunks_exact_mut(gh) {
                    crate::kernels::add_assign(row, b_ih);
                }
            }
            let w_hh_t = &packed.w_hh_t[l];
            let b_hh = self.vec(ids.b_hh);
            let (h0, c0) = state.hc_mut(l);
            cell::forward(kind, w_hh_t, b_hh, cache, h0, c0, &ws.reset, t_len, bs);
        }

        let last = self.config.layers;
        let masked = ws.masked(last);
        let top = &ws.layers[last - 1].h[..n * hid];
        let top: &[f32] = match rng {
            Some(rng) if masked => {
                let (mask, dropped) = (&mut ws.masks[last], &mut ws.inputs[last]);
                let q = self.config.output_dropout;
                drop_units(top, &mut mask[..n * hid], &mut dropped[..n * hid], q, rng)
            }
            _ => top,
        };
        let top = ArrayView2::from_shape((n, hid), top).unwrap();
        let logits = &mut ws.logits[..n * v];
        let mut out = ArrayViewMut2::from_shape((n, v), &mut *logits).unwrap();
        let pre = packed.bf16.as_ref().map(|b| &b.head_t);
        packed.product(&mut out, top, self.mat(self.head_w).t(), pre, false);
        let b_head = self.vec(self.head_b);
        for row in logits.chunks_exact_mut(v) {
            crate::kernels::add_assign(row, b_head);
        }
    }

    /// Forward pass over rows `rows` of a window: returns the summed cross-entropy (nats)
    /// over the scored positions of those rows, and keeps what [`Model::backward`] needs.
    /// `state` holds those rows' hidden state, and is advanced to the window's end.
    pub fn forward(
        &self,
        packed: &PackedWeights,
        ws: &mut Workspace,
        win: &Window,
        rows: Range<usize>,
        state: &mut State,
        rng: Option<&mut ChaCha8Rng>,
    ) -> f64 {
        ws.load_window(win, rows);
        self.forward_logits(packed, ws, state, rng);
        let n = ws.t_len * ws.batch;
        let v = self.config.vocab_size;
        softmax_cross_entropy(&mut ws.logits[..n * v], v, &ws.y, &ws.valid)
    }

    /// Forward pass without dropout that also writes each position's loss `-ln p(y)` into
    /// `nll` ([T, B_rows], 0 where the position is not scored); returns their sum. For
    /// scoring text position by position.
    pub fn forward_each(
        &self,
        packed: &PackedWeights,
        ws: &mut Workspace,
        win: &Window,
        rows: Range<usize>,
        state: &mut State,
        nll: &mut [f32],
    ) -> f64 {
        ws.load_window(win, rows);
        self.forward_logits(packed, ws, state, None);
        let n = ws.t_len * ws.batch;
        let v = self.config.vocab_size;
        softmax_cross_entropy_each(&mut ws.logits[..n * v], v, &ws.y, &ws.valid, &mut nll[..n])
    }

    /// The raw logits of rows `rows` of a window, [T, B_rows, V], without loss or dropout.
    pub fn logits<'w>(
        &self,
        packed: &PackedWeights,
        ws: &'w mut Workspace,
        win: &Window,
        rows: Range<usize>,
        state: &mut State,
    ) -> &'w [f32] {
        ws.load_window(win, rows);
        self.forward_logits(packed, ws, state, None);
        &ws.logits[..ws.t_len * ws.batch * self.config.vocab_size]
    }

    /// Backpropagation through time for the window of the last [`Model::forward`]: *adds*
    /// the gradient of `scale · (summed loss)` to `grads` (laid out like `params`).
    pub fn backward(
        &self,
        packed: &PackedWeights,
        ws: &mut Workspace,
        grads: &mut [f32],
        scale: f32,
    ) {
        assert!(ws.training, "backward needs a training workspace");
        assert!(
            !packed.w_hh.is_empty(),
            "backward needs PackedWeights::training"
        );
        let (hid, kind, v) = (self.config.hidden, self.config.cell, self.config.vocab_size);
        let gh = kind.gates() * hid;
        let (t_len, bs) = (ws.t_len, ws.batch);
        let n = t_len * bs;
        let lay = &self.layout;

        let last = self.config.layers;
        let masked_top = ws.masked(last);
        let dlogits = &mut ws.logits[..n * v];
        softmax_cross_entropy_backward(dlogits, v, &ws.y, &ws.valid, scale);
        let dlogits = ArrayView2::from_shape((n, v), &*dlogits).unwrap();
        let top = match masked_top {
            true => &ws.inputs[last][..n * hid],
            false => &ws.layers[last - 1].h[..n * hid],
        };
        let top = ArrayView2::from_shape((n, hid), top).unwrap();
        // dW_head += dlogitsᵀ · h_top;  db_head += Σ_n dlogits;  dh_top = dlogits · W_head
        packed.product(
            &mut lay.mat_mut(grads, self.head_w),
            dlogits.t(),
            top,
            None,
            true,
        );
        add_row_sums(
            lay.slice_mut(grads, self.head_b),
            dlogits.as_slice().unwrap(),
        );
        {
            let mut dh = ArrayViewMut2::from_shape((n, hid), &mut ws.dh[..n * hid]).unwrap();
            let pre = packed.bf16.as_ref().map(|b| &b.head);
            packed.product(&mut dh, dlogits, self.mat(self.head_w), pre, false);
        }
        if masked_top {
            apply_mask(&mut ws.dh[..n * hid], &ws.masks[last][..n * hid]);
        }

        for (l, ids) in self.layers.iter().enumerate().rev() {
            let masked = ws.masked(l);
            let (below, this) = ws.layers.split_at_mut(l);
            let cache = &mut this[0];
            let w_hh = &packed.w_hh[l];
            let dh = &mut ws.dh[..n * hid];
            cell::backward(kind, w_hh, cache, dh, &ws.reset, t_len, bs);
            let dgx = &cache.dgx()[..n * gh];
            let dgh = &cache.dgh()[..n * gh];
            // Weight gradients of the whole window in one product each, outside the time loop.
            let h_prev = ArrayView2::from_shape((n, hid), &cache.h_prev[..n * hid]).unwrap();
            let dgh_m = ArrayView2::from_shape((n, gh), dgh).unwrap();
            match packed.hh_mask(l) {
                None => packed.product(
                    &mut lay.mat_mut(grads, ids.w_hh),
                    dgh_m.t(),
                    h_prev,
                    None,
                    true,
                ),
                Some(mask) => {
                    // The forward pass used W_hh ⊙ M: dW_hh = dW_used ⊙ M.
                    let used = &mut ws.dw_hh[..gh * hid];
                    let mut used_m = ArrayViewMut2::from_shape((gh, hid), &mut *used).unwrap();
                    packed.product(&mut used_m, dgh_m.t(), h_prev, None, false);
                    add_masked(lay.slice_mut(grads, ids.w_hh), used, mask);
                }
            }
            if std::ptr::eq(dgx, dgh) {
                // One buffer (RNN, LSTM): both biases get the same gradient; sum it once.
                let db = &mut ws.db[..gh];
                db.fill(0.0);
                add_row_sums(db, dgh);
                add_assign(lay.slice_mut(grads, ids.b_hh), db);
                add_assign(lay.slice_mut(grads, ids.b_ih), db);
            } else {
                add_row_sums(lay.slice_mut(grads, ids.b_hh), dgh);
                add_row_sums(lay.slice_mut(grads, ids.b_ih), dgx);
            }
            let dgx_m = ArrayView2::from_shape((n, gh), dgx).unwrap();
            if l > 0 {
                let input: &[f32] = if masked {
                    &ws.inputs[l][..n * hid]
                } else {
                    &below[l - 1].h[..n * hid]
                };
                let input = ArrayView2::from_shape((n, hid), input).unwrap();
                packed.product(
                    &mut lay.mat_mut(grads, ids.w_ih),
                    dgx_m.t(),
                    input,
                    None,
                    true,
                );
                // Gradient into the layer below: dx = dgx · W_ih, through the dropout mask.
                let dx = &mut ws.dx[..n * hid];
                {
                    let mut dx_m = ArrayViewMut2::from_shape((n, hid), &mut *dx).unwrap();
                    let pre = packed.bf16.as_ref().map(|b| &b.w_ih[l - 1]);
                    packed.product(&mut dx_m, dgx_m, self.mat(ids.w_ih), pre, false);
                }
                if masked {
                    apply_mask(dx, &ws.masks[l][..n * hid]);
                }
                std::mem::swap(&mut ws.dh, &mut ws.dx);
            } else {
                // The gather's gradient is a scatter-add into rows of W_ihᵀ.
                let dwt = &mut ws.dw_ih0_t;
                dwt.fill(0.0);
                for (row, &x) in dgx.chunks_exact(gh).zip(&ws.x) {
                    crate::kernels::add_assign(
                        &mut dwt[x as usize * gh..(x as usize + 1) * gh],
                        row,
                    );
                }
                let mut dw = lay.mat_mut(grads, ids.w_ih);
                let dwt = ArrayView2::from_shape((v, gh), &dwt[..]).unwrap();
                dw += &dwt.t();
            }
        }
    }

    /// Feeds one token per stream (`tokens`: [B]) and returns the next-token logits, [B, V].
    /// `<start>` resets a stream's state. For sampling and step-wise evaluation.
    pub fn step<'w>(
        &self,
        packed: &PackedWeights,
        ws: &'w mut Workspace,
        tokens: &[u32],
        state: &mut State,
    ) -> &'w [f32] {
        ws.load_tokens(tokens);
        self.forward_logits(packed, ws, state, None);
        &ws.logits[..tokens.len() * self.config.vocab_size]
    }
}

/// Inverted dropout of `h` into `dropped` (units of a layer's input, or weights of W_hh for
/// weight drop): each kept with probability 1 - p and scaled by 1/(1-p) (`mask` holds 0 or that scale, for the backward pass). Returns `dropped`.
fn drop_units<'d>(
    h: &[f32],
    mask: &mut [f32],
    dropped: &'d mut [f32],
    p: f32,
    rng: &mut ChaCha8Rng,
) -> &'d [f32] {
    const BLOCK: usize = 1024;
    let keep = 1.0 / (1.0 - p);
    let mut bytes = [0u8; 4 * BLOCK];
    for ((h, mask), dropped) in h
        .chunks(BLOCK)
        .zip(mask.chunks_mut(BLOCK))
        .zip(dropped.chunks_mut(BLOCK))
    {
        // The generator's words in bulk, each made into the f32 in [0, 1) that
        // `rng.random::<f32>()` would give (its top 24 bits times 2^-24), in a loop that
        // vectorises, where one call per word did not: the same masks, in less time.
        let bytes = &mut bytes[..4 * h.len()];
        rng.fill_bytes(bytes);
        for (((m, d), &h), word) in mask
            .iter_mut()
            .zip(dropped.iter_mut())
            .zip(h)
            .zip(bytes.chunks_exact(4))
        {
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            let u = (word >> 8) as i32 as f32 * (1.0 / (1 << 24) as f32);
            *m = if u < p { 0.0 } else { keep };
            *d = h * *m;
        }
    }
    dropped
}

/// Weights drawn per chunk of [`drop_weights`].
const MASK_CHUNK: usize = 1 << 16;

/// [`drop_units`] of every layer's W_hh into `masks` ((mask, W_hh ⊙ mask) per layer) with the
/// words of `rng` in order, layer after layer, as one loop would draw them, and `rng` left
/// after the last. Drawn in chunks on all cores, each seeking the generator to its first
/// word: one thread drawing a 2x640's 3.3 million weights word by word left the other core
/// idle for about a tenth of each update (bench/results/2026-12-02-weight-drop-speed.md).
fn drop_weights(model: &Model, masks: &mut [(Vec<f32>, Vec<f32>)], p: f32, rng: &mut ChaCha8Rng) {
    use rayon::prelude::*;
    // One f32 in [0, 1) is one 32-bit word of the generator.
    let start = rng.get_word_pos();
    let mut first = 0;
    let mut chunks = Vec::new();
    for (ids, (mask, dropped)) in model.layers.iter().zip(masks.iter_mut()) {
        let w = model.vec(ids.w_hh);
        for ((w, mask), dropped) in w
            .chunks(MASK_CHUNK)
            .zip(mask.chunks_mut(MASK_CHUNK))
            .zip(dropped.chunks_mut(MASK_CHUNK))
        {
            chunks.push((first, w, mask, dropped));
            first += w.len() as u128;
        }
    }
    let from = &*rng;
    chunks
        .into_par_iter()
        .for_each(|(first, w, mask, dropped)| {
            let mut rng = from.clone();
            rng.set_word_pos(start + first);
            drop_units(w, mask, dropped, p, &mut rng);
        });
    rng.set_word_pos(start + first);
}

/// The backward pass of [`drop_units`]: the gradient flows only through kept units.
fn apply_mask(grad: &mut [f32], mask: &[f32]) {
    for (g, &m) in grad.iter_mut().zip(mask) {
        *g *= m;
    }
}

/// `dst += src ⊙ mask`: [`apply_mask`] and the sum in one pass.
fn add_masked(dst: &mut [f32], src: &[f32], mask: &[f32]) {
    for ((d, &s), &m) in dst.iter_mut().zip(src).zip(mask) {
        *d += s * m;
    }
}

/// The model's weights rearranged for the products that read them most: layer 0's W_ihᵀ
/// [V, G·H], so that the one-hot gather reads a row, and per layer W_hhᵀ [H, G·H] (forward)
/// and W_hh [G·H, H] (backward, training only), packed for the products inside the time
/// loop, which read them T times (see [`PackedMatrix`]). Derived from the parameters: one copy
/// serves every shard, and [`PackedWeights::sync`] must follow every change of the parameters.
///
/// In bf16 precision the recurrent weights are packed as bf16 pairs, and so are the other
/// weights of the large products (`bf16`), once per update rather than once per product
/// and shard.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    precision: Precision,
    w_ih0_t: Vec<f32>,
    w_hh_t: Vec<PackedMatrix>,
    w_hh: Vec<PackedMatrix>,
    bf16: Option<Bf16Weights>,
    /// Per layer, with `weight_drop` in a training pack: the mask of W_hh (0 or 1/(1-p) per
    /// weight) and W_hh ⊙ mask, which is what was packed; `dropping` says whether the last
    /// sync used them.
    hh_masks: Vec<(Vec<f32>, Vec<f32>)>,
    dropping: bool,
}

/// The weights of the once-per-window products, packed as bf16 pairs.
#[derive(Debug, Clone)]
struct Bf16Weights {
    /// Per layer l ≥ 1: W_ihᵀ [H, G·H] (forward) and W_ih [G·H, H] (backward, training only).
    w_ih_t: Vec<PackedMatrix>,
    w_ih: Vec<PackedMatrix>,
    /// W_headᵀ [H, V] (forward) and W_head [V, H] (backward; empty 0 x 0 for inference).
    head_t: PackedMatrix,
    head: PackedMatrix,
}

impl PackedWeights {
    /// For forward and backward passes, packed from `model`, with f32 products.
    pub fn training(model: &Model) -> PackedWeights {
        PackedWeights::with_mode(model, true, Precision::F32)
    }

    /// For forward passes only (evaluation, sampling), packed from `model`, f32 products.
    pub fn inference(model: &Model) -> PackedWeights {
        PackedWeights::with_mode(model, false, Precision::F32)
    }

    /// For forward and backward passes (`training`) or forward only, with products in
    /// `precision`, which must be available on this CPU (see [`Precision::check_available`]).
    pub fn with_mode(model: &Model, training: bool, precision: Precision) -> PackedWeights {
        let c = &model.config;
        let (h, gh, v) = (c.hidden, c.cell.gates() * c.hidden, c.vocab_size);
        let bf16 = precision == Precision::Bf16;
        let recurrent = |k, n| match bf16 {
            true => PackedMatrix::with_layout(k, n, PackedLayout::Bf16Pairs),
            false => PackedMatrix::new(k, n),
        };
        let pairs = |k, n| PackedMatrix::with_layout(k, n, PackedLayout::Bf16Pairs);
        let mut packed = PackedWeights {
            precision,
            w_ih0_t: vec![0.0; c.vocab_size * gh],
            w_hh_t: (0..c.layers).map(|_| recurrent(h, gh)).collect(),
            w_hh: (0..c.layers)
                .filter(|_| training)
                .map(|_| recurrent(gh, h))
                .collect(),
            bf16: bf16.then(|| Bf16Weights {
                w_ih_t: (1..c.layers).map(|_| pairs(h, gh)).collect(),
                w_ih: (1..c.layers)
                    .filter(|_| training)
                    .map(|_| pairs(gh, h))
                    .collect(),
                head_t: pairs(h, v),
                head: if training { pairs(v, h) } else { pairs(0, 0) },
            }),
            hh_masks: (0..c.layers)
                .filter(|_| training && c.weight_drop > 0.0)
                .map(|_| (vec![0.0; gh * h], vec![0.0; gh * h]))
                .collect(),
            dropping: false,
        };
        packed.sync(model);
        packed
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Layer `l`'s recurrent weight mask, if the last sync dropped weights.
    fn hh_mask(&self, l: usize) -> Option<&[f32]> {
        self.dropping.then(|| &self.hh_masks[l].0[..])
    }

    /// Copies the model's current parameters in; the copies are independent of each other,
    /// so they are made side by side on the thread pool.
    pub fn sync(&mut self, model: &Model) {
        self.sync_dropping(model, None);
    }

    /// [`PackedWeights::sync`] for one training update: with `rng`, and `weight_drop` p > 0
    /// in a training pack, each layer's W_hh is packed as W_hh ⊙ M, M a fresh mask of 0 or
    /// 1/(1-p) per weight: DropConnect (Wan et al. 2013) on the recurrent weights, as
    /// AWD-LSTM's weight drop (Merity et al. 2018). One mask per update, shared by every
    /// stream, time step and shard; [`Model::backward`] passes W_hh's gradient through it.
    pub fn sync_dropping(&mut self, model: &Model, rng: Option<&mut ChaCha8Rng>) {
        let p = model.config.weight_drop;
        self.dropping = match rng {
            Some(rng) if !self.hh_masks.is_empty() => {
                drop_weights(model, &mut self.hh_masks, p, rng);
                true
            }
            _ => false,
        };
        let PackedWeights {
            w_ih0_t,
            w_hh_t,
            w_hh,
            bf16,
            hh_masks,
            dropping,
            ..
        } = self;
        let (gh, h) = (
            model.config.cell.gates() * model.config.hidden,
            model.config.hidden,
        );
        let recurrent = |l: usize| match *dropping {
            true => ArrayView2::from_shape((gh, h), &hh_masks[l].1[..]).unwrap(),
            false => model.mat(model.layers[l].w_hh),
        };
        rayon::scope(|s| {
            s.spawn(|_| transpose_into(model.mat(model.layers[0].w_ih), w_ih0_t));
            for (l, dst) in w_hh_t.iter_mut().enumerate() {
                s.spawn(move |_| dst.pack(recurrent(l).t()));
            }
            for (l, dst) in w_hh.iter_mut().enumerate() {
                s.spawn(move |_| dst.pack(recurrent(l)));
            }
            if let Some(b) = bf16 {
                for (ids, dst) in model.layers[1..].iter().zip(&mut b.w_ih_t) {
                    s.spawn(move |_| dst.pack(model.mat(ids.w_ih).t()));
                }
                for (ids, dst) in model.layers[1..].iter().zip(&mut b.w_ih) {
                    s.spawn(move |_| dst.pack(model.mat(ids.w_ih)));
                }
                s.spawn(|_| b.head_t.pack(model.mat(model.head_w).t()));
                if b.head.dim() != (0, 0) {
                    s.spawn(|_| b.head.pack(model.mat(model.head_w)));
                }
            }
        });
    }

    /// `c (+)= a · b` in this precision, where `b` is (a view of) a weight matrix or an
    /// activation; `pre`: `b` packed as bf16 pairs, if it is a weight this holds packed.
    /// a: [M, K], b: [K, N], c: [M, N].
    fn product(
        &self,
        c: &mut ArrayViewMut2<f32>,
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
        pre: Option<&PackedMatrix>,
        accumulate: bool,
    ) {
        match (self.precision, pre, a.as_slice(), c.as_slice_mut()) {
            (Precision::F32, ..) => matmul(c, a, b, accumulate),
            (Precision::Bf16, Some(p), Some(a), Some(c)) => matmul_packed(c, a, p, accumulate),
            (Precision::Bf16, ..) => matmul_bf16(c, a, b, accumulate),
        }
    }
}

/// Writes `src` ([R, C]) transposed into `dst` ([C, R], row-major).
fn transpose_into(src: ArrayView2<f32>, dst: &mut [f32]) {
    let (r, c) = src.dim();
    let src = src.as_slice().expect("parameters are contiguous");
    transpose::transpose(src, dst, c, r);
}

#[cfg(test)]
mod tests;
