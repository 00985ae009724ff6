//! Vanilla (Elman) RNN cell with tanh:
//!
//! ```text
//! h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//! ```

use super::{LayerCache, cut_at_resets, gather_prev};
use crate::kernels::{PackedMatrix, add_assign, matmul_packed, simd_dispatch, tanh};

/// Runs steps `0..t_len`. On entry `cache.gates` holds `W_ih x_t + b_ih`, [T, B, H]; `h0`
/// ([B, H]) is the state before the window and becomes the state after it.
///
/// w_hh_t: W_hhᵀ [H, H] packed (see `model::PackedWeights`), b_hh: [H], reset: [T, B].
pub fn forward(
    w_hh_t: &PackedMatrix,
    b_hh: &[f32],
    cache: &mut LayerCache,
    h0: &mut [f32],
    reset: &[bool],
    t_len: usize,
    batch: usize,
) {
    let hid = b_hh.len();
    let step = batch * hid;
    for t in 0..t_len {
        let rs = &reset[t * batch..(t + 1) * batch];
        let (done, rest) = cache.h.split_at_mut(t * step);
        let prev: &[f32] = if t == 0 { h0 } else { &done[(t - 1) * step..] };
        let h_prev = &mut cache.h_prev[t * step..(t + 1) * step];
        gather_prev(h_prev, prev, rs, hid);

        // a = xw_t + h_prev · W_hhᵀ + b_hh, then h = tanh(a), all in the step's gate block.
        let a = &mut cache.gates[t * step..(t + 1) * step];
        matmul_packed(a, h_prev, w_hh_t, true);
        step_forward(a, b_hh);
        rest[..step].copy_from_slice(a);
    }
    if t_len > 0 {
        h0.copy_from_slice(&cache.h[(t_len - 1) * step..t_len * step]);
    }
}

/// Reverse recurrence. `dh` ([T, B, H]) is the gradient arriving at each output from above;
/// it is consumed. Overwrites `cache.gates` (which holds `h`) with `dL/da_t`, [T, B, H].
pub fn backward(
    w_hh: &PackedMatrix,
    cache: &mut LayerCache,
    dh: &mut [f32],
    reset: &[bool],
    t_len: usize,
    batch: usize,
) {
    let hid = w_hh.dim().1;
    let step = batch * hid;
    cache.dh_next.fill(0.0);
    for t in (0..t_len).rev() {
        let dh_t = &mut dh[t * step..(t + 1) * step];
        add_assign(dh_t, &cache.dh_next);
        let h_da = &mut cache.gates[t * step..(t + 1) * step];
        step_backward(h_da, dh_t);
        let da = &*h_da;
        if t > 0 {
            // dh_{t-1} = da · W_hh
            matmul_packed(&mut cache.dh_next, da, w_hh, false);
            cut_at_resets(&mut cache.dh_next, &reset[t * batch..(t + 1) * batch], hid);
        }
    }
}

simd_dispatch! {
    /// h = tanh(a + b_hh) for every row of a: [B, H], in place.
    fn step_forward(a: &mut [f32], b_hh: &[f32]) => step_forward_imp
}

#[inline(always)]
fn step_forward_imp(a: &mut [f32], b_hh: &[f32]) {
    for row in a.chunks_exact_mut(b_hh.len()) {
        for (x, &b) in row.iter_mut().zip(b_hh) {
            *x = unit(*x + b);
        }
    }
}

/// The RNN equation for one unit, from its pre-activation `W_ih x + b_ih + W_hh h' + b_hh`:
/// `h = tanh(a)`. Training's window loop and one-stream inference both call this.
#[inline(always)]
pub fn unit(a: f32) -> f32 {
    tanh(a)
}

simd_dispatch! {
    /// h_da: h in, da = dh ⊙ (1 - h²) out; all [B, H].
    fn step_backward(h_da: &mut [f32], dh: &[f32]) => step_backward_imp
}

#[inline(always)]
fn step_backward_imp(h_da: &mut [f32], dh: &[f32]) {
    for (x, &g) in h_da.iter_mut().zip(dh) {
        *x = g * (1.0 - *x * *x);
    }
}
