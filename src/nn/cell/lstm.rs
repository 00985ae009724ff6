//! LSTM cell (Hochreiter & Schmidhuber 1997, with forget gate), PyTorch's gate order i,f,g,o:
//!
//! ```text
//! [a_i a_f a_g a_o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh      (one [B, 4H] product)
//! i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//! c_t = f ⊙ c_{t-1} + i ⊙ g
//! h_t = o ⊙ tanh(c_t)
//! ```

use super::{LayerCache, cut_at_resets, gather_prev};
use crate::kernels::{PackedMatrix, add_assign, matmul_packed, sigmoid, simd_dispatch, tanh};

/// Runs steps `0..t_len`. On entry `cache.gates` holds `W_ih x_t + b_ih`, [T, B, 4H];
/// `h0`, `c0` ([B, H]) are the state before the window and become the state after it.
///
/// w_hh_t: W_hhᵀ [H, 4H] packed (see `model::PackedWeights`), b_hh: [4H], reset: [T, B].
#[allow(clippy::too_many_arguments)]
pub fn forward(
    w_hh_t: &PackedMatrix,
    b_hh: &[f32],
    cache: &mut LayerCache,
    h0: &mut [f32],
    c0: &mut [f32],
    reset: &[bool],
    t_len: usize,
    batch: usize,
) {
    let hid = w_hh_t.dim().0;
    let step = batch * hid;
    let gstep = 4 * step;
    // Backward rebuilds c_{t-1} from `c`; only the window's initial cell state is kept.
    cache.c_init.copy_from_slice(c0);
    for t in 0..t_len {
        let rs = &reset[t * batch..(t + 1) * batch];
        let cur = t * step..(t + 1) * step;
        {
            let prev_h: &[f32] = if t == 0 {
                h0
            } else {
                &cache.h[(t - 1) * step..t * step]
            };
            gather_prev(&mut cache.h_prev[cur.clone()], prev_h, rs, hid);
            let prev_c: &[f32] = if t == 0 {
                c0
            } else {
                &cache.c[(t - 1) * step..t * step]
            };
            gather_prev(&mut cache.c_prev, prev_c, rs, hid);
        }

        let a = &mut cache.gates[t * gstep..(t + 1) * gstep];
        matmul_packed(a, &cache.h_prev[cur.clone()], w_hh_t, true);
        step_forward(
            a,
            b_hh,
            &cache.c_prev,
            &mut cache.c[cur.clone()],
            &mut cache.h[cur],
        );
    }
    if t_len > 0 {
        let last = (t_len - 1) * step..t_len * step;
        h0.copy_from_slice(&cache.h[last.clone()]);
        c0.copy_from_slice(&cache.c[last]);
    }
}

/// Reverse recurrence. `dh` ([T, B, H]) is the gradient arriving at each output from above;
/// it is consumed. Overwrites `cache.gates` with the gate pre-activation gradients (each
/// step's gates are dead once its gradient is known), [T, B, 4H].
///
/// ```text
/// dc = dc_next + dh ⊙ o ⊙ (1 - tanh²c)
/// da_i = dc ⊙ g ⊙ i(1-i)    da_f = dc ⊙ c_{t-1} ⊙ f(1-f)
/// da_g = dc ⊙ i ⊙ (1-g²)    da_o = dh ⊙ tanh c ⊙ o(1-o)
/// dc_{t-1} = dc ⊙ f         dh_{t-1} = da · W_hh
/// ```
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
    let gstep = 4 * step;
    cache.dh_next.fill(0.0);
    cache.dc_next.fill(0.0);
    for t in (0..t_len).rev() {
        let cur = t * step..(t + 1) * step;
        let dh_t = &mut dh[cur.clone()];
        add_assign(dh_t, &cache.dh_next);
        {
            let prev_c: &[f32] = if t == 0 {
                &cache.c_init
            } else {
                &cache.c[(t - 1) * step..t * step]
            };
            gather_prev(
                &mut cache.c_prev,
                prev_c,
                &reset[t * batch..(t + 1) * batch],
                hid,
            );
        }
        let da = &mut cache.gates[t * gstep..(t + 1) * gstep];
        step_backward(
            da,
            &cache.c_prev,
            &cache.c[cur],
            dh_t,
            &mut cache.dc_next,
            hid,
        );
        if t > 0 {
            matmul_packed(&mut cache.dh_next, da, w_hh, false);
            let rs = &reset[t * batch..(t + 1) * batch];
            cut_at_resets(&mut cache.dh_next, rs, hid);
            cut_at_resets(&mut cache.dc_next, rs, hid);
        }
    }
}

simd_dispatch! {
    /// The gate arithmetic of one step for all rows. a: [B, 4H] pre-activations without
    /// `b_hh`, overwritten with the activated gates; b_hh: [4H]; c_prev, c, h: [B, H].
    fn step_forward(a: &mut [f32], b_hh: &[f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) => step_forward_imp
}

#[inline(always)]
fn step_forward_imp(a: &mut [f32], b_hh: &[f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
    let hid = b_hh.len() / 4;
    let rows = a
        .chunks_exact_mut(4 * hid)
        .zip(c_prev.chunks_exact(hid))
        .zip(c.chunks_exact_mut(hid))
        .zip(h.chunks_exact_mut(hid));
    for (((row, cp), cn), hn) in rows {
        add_assign(row, b_hh);
        let (ai, rest) = row.split_at_mut(hid);
        let (af, rest) = rest.split_at_mut(hid);
        let (ag, ao) = rest.split_at_mut(hid);
        forward_row(ai, af, ag, ao, cp, cn, hn);
    }
}

/// One row of [`step_forward`] (see [`backward_row`] for why it is a function).
#[inline(always)]
fn forward_row(
    ai: &mut [f32],
    af: &mut [f32],
    ag: &mut [f32],
    ao: &mut [f32],
    cp: &[f32],
    c: &mut [f32],
    h: &mut [f32],
) {
    let n = ai.len();
    let (af, ag, ao, cp, c, h) = (
        &mut af[..n],
        &mut ag[..n],
        &mut ao[..n],
        &cp[..n],
        &mut c[..n],
        &mut h[..n],
    );
    for j in 0..n {
        let u = unit(ai[j], af[j], ag[j], ao[j], cp[j]);
        (ai[j], af[j], ag[j], ao[j]) = (u.i, u.f, u.g, u.o);
        c[j] = u.c;
        h[j] = u.h;
    }
}

/// One LSTM unit's gates and outputs (see [`unit`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub i: f32,
    pub f: f32,
    pub g: f32,
    pub o: f32,
    pub c: f32,
    pub h: f32,
}

/// The LSTM equations for one unit, from its four pre-activations (per gate,
/// `W_ih x + b_ih + W_hh h' + b_hh`) and its previous memory cell `c'`:
/// `i, f, o = σ(a_i, a_f, a_o)`, `g = tanh(a_g)`, `c = f c' + i g`, `h = o tanh(c)`.
/// Training's window loop and one-stream inference both call this.
#[inline(always)]
pub fn unit(a_i: f32, a_f: f32, a_g: f32, a_o: f32, c_prev: f32) -> Unit {
    let (i, f, g, o) = (sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o));
    let c = f * c_prev + i * g;
    Unit {
        i,
        f,
        g,
        o,
        c,
        h: o * tanh(c),
    }
}

simd_dispatch! {
    /// The backward gate arithmetic of one step for all rows. g_da: [B, 4H], the activated
    /// gates in, their pre-activation gradients out; c_prev, c, dh: [B, H]; dc_next: [B, H]
    /// in (from step t+1) and out (to step t-1).
    fn step_backward(g_da: &mut [f32], c_prev: &[f32], c: &[f32], dh: &[f32], dc_next: &mut [f32], hid: usize) => step_backward_imp
}

#[inline(always)]
fn step_backward_imp(
    g_da: &mut [f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc_next: &mut [f32],
    hid: usize,
) {
    let rows = g_da
        .chunks_exact_mut(4 * hid)
        .zip(c_prev.chunks_exact(hid))
        .zip(c.chunks_exact(hid))
        .zip(dh.chunks_exact(hid))
        .zip(dc_next.chunks_exact_mut(hid));
    for ((((g4, cp), cr), dhr), dcn) in rows {
        let (gi, rest) = g4.split_at_mut(hid);
        let (gf, rest) = rest.split_at_mut(hid);
        let (gg, go) = rest.split_at_mut(hid);
        backward_row(gi, gf, gg, go, cp, cr, dhr, dcn);
    }
}

/// One row of [`step_backward`]. Separate `&mut` arguments tell the compiler that the gate
/// blocks do not overlap, and the re-slicing to one length removes the bounds checks: both
/// are needed for the loop to vectorise.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_row(
    gi: &mut [f32],
    gf: &mut [f32],
    gg: &mut [f32],
    go: &mut [f32],
    cp: &[f32],
    c: &[f32],
    dh: &[f32],
    dcn: &mut [f32],
) {
    let n = gi.len();
    let (gf, gg, go, cp, c, dh, dcn) = (
        &mut gf[..n],
        &mut gg[..n],
        &mut go[..n],
        &cp[..n],
        &c[..n],
        &dh[..n],
        &mut dcn[..n],
    );
    for j in 0..n {
        let (i, f, g, o) = (gi[j], gf[j], gg[j], go[j]);
        // tanh(c) is recomputed rather than cached: one cheap vector op saves [T, B, H].
        let tc = tanh(c[j]);
        let dc = dcn[j] + dh[j] * o * (1.0 - tc * tc);
        gi[j] = dc * g * i * (1.0 - i);
        gf[j] = dc * cp[j] * f * (1.0 - f);
        gg[j] = dc * i * (1.0 - g * g);
        go[j] = dh[j] * tc * o * (1.0 - o);
        dcn[j] = dc * f;
    }
}
