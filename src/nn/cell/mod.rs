//! Recurrent cells: vanilla RNN (tanh), LSTM and GRU, each a forward/backward pair over a
//! window, in PyTorch's conventions.
//!
//! # Conventions (identical to `torch.nn.RNN/LSTM/GRU`)
//! Per layer `k`: `weight_ih_l{k}` [G·H, I], `weight_hh_l{k}` [G·H, H], `bias_ih_l{k}` [G·H],
//! `bias_hh_l{k}` [G·H], where I is V for the first layer and H above it. Gate blocks are
//! stacked in PyTorch's order: LSTM `i, f, g, o`; GRU `r, z, n`. The GRU is PyTorch's variant,
//! in which the reset gate multiplies the *whole* recurrent term of the candidate,
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))` (Cho et al. put `r` inside, on `h`).
//! Keeping PyTorch's layout lets the tests compare every tensor against PyTorch's numbers.
//!
//! # Division of work
//! Everything that does not depend on the previous step is done by the model, once per
//! window, as one large product: the input projection `xw = x · W_ihᵀ + b_ih` for all T·B
//! positions (a gather for the first layer), and the weight gradients. A cell's `forward`
//! runs only the sequential part: `h_{t-1} · W_hhᵀ`, one fused product for all gates per
//! step, and the gate arithmetic. Its `backward` runs the reverse recurrence and leaves the
//! gate gradients (`dgx` for the input side, `dgh` for the recurrent side) for the model to
//! turn into weight gradients.
//!
//! # Resets
//! Where `reset[t, b]` is set, the state entering step `t` of stream `b` is zero, and no
//! gradient flows from step `t` back into step `t-1` for that stream.

pub mod gru;
pub mod lstm;
pub mod rnn;

use crate::kernels::{PackedMatrix, add_assign, add_row_sums, matmul};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Which recurrent cell a model stacks. The names (`rnn`, `lstm`, `gru`) are those of the
/// command line and of checkpoints.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Vanilla (Elman) RNN with tanh
    Rnn,
    /// Long short-term memory, gates i, f, g, o
    Lstm,
    /// Gated recurrent unit (PyTorch's variant), gates r, z, n
    Gru,
}

impl CellKind {
    /// G: gate blocks per cell.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Whether the cell carries a memory cell `c` besides `h`.
    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }
}

crate::value_enum_display!(CellKind);

/// What one layer's forward pass over a window keeps for its backward pass, plus the
/// backward pass's own buffers. Allocated once for the largest window and reused: nothing
/// is allocated inside the time loop.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// [T, B, G·H]: on entry to `forward` the input projection `x · W_ihᵀ + b_ih`; on return
    /// the activated gates (LSTM `i,f,g,o`; GRU `r,z,n`; RNN `h`); after `backward`, the
    /// gradient of the loss w.r.t. the input-side gate pre-activations (`dgx`): a step's
    /// gates are dead once its gradient is known, so the two share memory.
    pub gates: Vec<f32>,
    /// [T, B, H]: the state that entered each step (zero where reset).
    pub h_prev: Vec<f32>,
    /// [T, B, H]: the layer's output at each step.
    pub h: Vec<f32>,
    /// [B, H], LSTM: the memory cell entering the current step (zero where reset); rebuilt
    /// from `c` in backward rather than kept for every step.
    pub c_prev: Vec<f32>,
    /// [B, H], LSTM: the memory cell entering the window.
    pub c_init: Vec<f32>,
    /// [T, B, H], LSTM: memory cell after each step.
    pub c: Vec<f32>,
    /// [T, B, H], GRU: the recurrent candidate term `W_hn h_prev + b_hn`.
    pub hn: Vec<f32>,
    /// [B, G·H], GRU: the recurrent product of the current step.
    pub hw: Vec<f32>,
    /// [T, B, G·H], GRU only: gradient w.r.t. the recurrent-side pre-activations (it
    /// differs from `dgx` in the `n` block by the factor `r`). RNN and LSTM use `dgx`.
    pub dgh: Vec<f32>,
    /// [B, H]: gradient flowing from step t into step t-1 through `h`.
    pub dh_next: Vec<f32>,
    /// [B, H], LSTM: the same through `c`.
    pub dc_next: Vec<f32>,
}

impl LayerCache {
    /// Buffers for batches of `batch` streams and windows of up to `t_cap` steps; without
    /// `training`, only what the forward pass needs.
    pub fn new(
        kind: CellKind,
        batch: usize,
        t_cap: usize,
        hidden: usize,
        training: bool,
    ) -> LayerCache {
        let n = batch * t_cap;
        let gh = kind.gates() * hidden;
        let z = |len: usize| vec![0.0f32; len];
        let lstm = kind == CellKind::Lstm;
        let gru = kind == CellKind::Gru;
        let (lstm_bw, gru_bw) = (lstm && training, gru && training);
        LayerCache {
            gates: z(n * gh),
            h_prev: z(n * hidden),
            h: z(n * hidden),
            c_prev: z(if lstm { batch * hidden } else { 0 }),
            c_init: z(if lstm { batch * hidden } else { 0 }),
            c: z(if lstm { n * hidden } else { 0 }),
            hn: z(if gru { n * hidden } else { 0 }),
            hw: z(if gru { batch * gh } else { 0 }),
            dgh: z(if gru_bw { n * gh } else { 0 }),
            dh_next: z(if training { batch * hidden } else { 0 }),
            dc_next: z(if lstm_bw { batch * hidden } else { 0 }),
        }
    }

    /// After backward: gradient w.r.t. the input-side gate pre-activations, [T, B, G·H].
    pub fn dgx(&self) -> &[f32] {
        &self.gates
    }

    /// After backward: gradient w.r.t. the recurrent-side pre-activations, [T, B, G·H].
    pub fn dgh(&self) -> &[f32] {
        if self.dgh.is_empty() {
            &self.gates
        } else {
            &self.dgh
        }
    }
}

/// Runs one layer's recurrence over steps `0..t_len` with the cell `kind` (its `forward`):
/// on entry `cache.gates` holds `x · W_ihᵀ + b_ih`, [T, B, G·H]; `h0` (and for the LSTM
/// `c0`), [B, H], are the state before the window and become the state after it.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    kind: CellKind,
    w_hh_t: &PackedMatrix,
    b_hh: &[f32],
    cache: &mut LayerCache,
    h0: &mut [f32],
    c0: &mut [f32],
    reset: &[bool],
    t_len: usize,
    batch: usize,
) {
    match kind {
        CellKind::Rnn => rnn::forward(w_hh_t, b_hh, cache, h0, reset, t_len, batch),
        CellKind::Gru => gru::forward(w_hh_t, b_hh, cache, h0, reset, t_len, batch),
        CellKind::Lstm => lstm::forward(w_hh_t, b_hh, cache, h0, c0, reset, t_len, batch),
    }
}

/// The reverse recurrence of the cell `kind` (its `backward`): consumes `dh` ([T, B, H], the
/// gradient arriving at each output) and leaves the gate gradients in the cache (see
/// [`LayerCache::dgx`], [`LayerCache::dgh`]).
pub fn backward(
    kind: CellKind,
    w_hh: &PackedMatrix,
    cache: &mut LayerCache,
    dh: &mut [f32],
    reset: &[bool],
    t_len: usize,
    batch: usize,
) {
    match kind {
        CellKind::Rnn => rnn::backward(w_hh, cache, dh, reset, t_len, batch),
        CellKind::Lstm => lstm::backward(w_hh, cache, dh, reset, t_len, batch),
        CellKind::Gru => gru::backward(w_hh, cache, dh, reset, t_len, batch),
    }
}

/// After [`backward`] over `n` = T·B positions, the gradients of the recurrent weights and
/// of both biases, each one product or sum over the whole window, outside the time loop:
///
/// ```text
/// dW_hh += dghᵀ · h_prev      db_hh += Σ_n dgh      db_ih += Σ_n dgx
/// ```
///
/// dw_hh: [G·H, H]; db_ih, db_hh, and the scratch `db`: [G·H].
pub fn weight_grads(
    cache: &LayerCache,
    n: usize,
    dw_hh: &mut ArrayViewMut2<f32>,
    db_ih: &mut [f32],
    db_hh: &mut [f32],
    db: &mut [f32],
) {
    let (gh, hid) = dw_hh.dim();
    let dgx = &cache.dgx()[..n * gh];
    let dgh = &cache.dgh()[..n * gh];
    let h_prev = ArrayView2::from_shape((n, hid), &cache.h_prev[..n * hid]).unwrap();
    let dgh_m = ArrayView2::from_shape((n, gh), dgh).unwrap();
    matmul(dw_hh, dgh_m.t(), h_prev, true);
    if std::ptr::eq(dgx, dgh) {
        // One buffer (RNN, LSTM): both biases get the same gradient; sum it once.
        let db = &mut db[..gh];
        db.fill(0.0);
        add_row_sums(db, dgh);
        add_assign(db_hh, db);
        add_assign(db_ih, db);
    } else {
        add_row_sums(db_hh, dgh);
        add_row_sums(db_ih, dgx);
    }
}

/// Writes `h_prev` for step `t` (rows of `[B, H]`): the previous output, or zero on reset.
///
/// `prev` is the state after step t-1 ([B, H]); `reset` the flags of step t ([B]).
pub(crate) fn gather_prev(dst: &mut [f32], prev: &[f32], reset: &[bool], hidden: usize) {
    for ((d, p), &r) in dst
        .chunks_exact_mut(hidden)
        .zip(prev.chunks_exact(hidden))
        .zip(reset)
    {
        if r {
            d.fill(0.0);
        } else {
            d.copy_from_slice(p);
        }
    }
}

/// Zeroes the rows of `d` ([B, H]) whose stream was reset at this step: the state entering
/// the step did not depend on the step before, so no gradient flows back into it.
pub(crate) fn cut_at_resets(d: &mut [f32], reset: &[bool], hidden: usize) {
    for (row, &r) in d.chunks_exact_mut(hidden).zip(reset) {
        if r {
            row.fill(0.0);
        }
    }
}
