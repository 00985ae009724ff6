//! GRU cell (Cho et al. 2014) in PyTorch's variant, gate order r,z,n:
//!
//! ```text
//! [x_r x_z x_n] = W_ih x_t + b_ih          [h_r h_z h_n] = W_hh h_{t-1} + b_hh
//! r = σ(x_r + h_r)    z = σ(x_z + h_z)    n = tanh(x_n + r ⊙ h_n)
//! h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
//! ```
//!
//! The reset gate scales `h_n`, which already includes `b_hn`; this is why the input and
//! recurrent pre-activations must be kept apart (`gates` and `hw`) for the `n` block.

use super::{LayerCache, cut_at_resets, gather_prev};
use crate::kernels::{PackedMatrix, add_assign, matmul_packed, sigmoid, simd_dispatch, tanh};

/// Runs steps `0..t_len`. On entry `cache.gates` holds `W_ih x_t + b_ih`, [T, B, 3H]; `h0`
/// ([B, H]) is the state before the window and becomes the state after it.
///
/// w_hh_t: W_hhᵀ [H, 3H] packed (see `model::PackedWeights`), b_hh: [3H], reset: [T, B].
pub fn forward(
    w_hh_t: &PackedMatrix,
    b_hh: &[f32],
    cache: &mut LayerCache,
    h0: &mut [f32],
    reset: &[bool],
    t_len: usize,
    batch: usize,
) {
    let hid = w_hh_t.dim().0;
    let step = batch * hid;
    let gstep = 3 * step;
    for t in 0..t_len {
        let rs = &reset[t * batch..(t + 1) * batch];
        let cur = t * step..(t + 1) * step;
        {
            let prev: &[f32] = if t == 0 {
                h0
            } else {
                &cache.h[(t - 1) * step..t * step]
            };
            gather_prev(&mut cache.h_prev[cur.clone()], prev, rs, hid);
        }
        // hw = h_prev · W_hhᵀ + b_hh, [B, 3H]
        matmul_packed(&mut cache.hw, &cache.h_prev[cur.clone()], w_hh_t, false);
        let a = &mut cache.gates[t * gstep..(t + 1) * gstep];
        let (h_prev, h, hn) = (
            &cache.h_prev[cur.clone()],
            &mut cache.h[cur.clone()],
            &mut cache.hn[cur],
        );
        step_forward(a, &mut cache.hw, b_hh, h_prev, h, hn, hid);
    }
    if t_len > 0 {
        h0.copy_from_slice(&cache.h[(t_len - 1) * step..t_len * step]);
    }
}

/// Reverse recurrence. `dh` ([T, B, H]) is the gradient arriving at each output from above;
/// it is consumed. Overwrites `cache.gates` with the input-side gate gradients and leaves
/// the recurrent-side ones in `cache.dgh`, both [T, B, 3H].
///
/// ```text
/// dn = dh ⊙ (1-z)              dz = dh ⊙ (h_{t-1} - n)
/// da_n = dn ⊙ (1-n²)           da_r = da_n ⊙ h_n ⊙ r(1-r)      da_z = dz ⊙ z(1-z)
/// dgx = [da_r, da_z, da_n]     dgh = [da_r, da_z, da_n ⊙ r]
/// dh_{t-1} = dgh · W_hh + dh ⊙ z
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
    let gstep = 3 * step;
    cache.dh_next.fill(0.0);
    for t in (0..t_len).rev() {
        let cur = t * step..(t + 1) * step;
        let dh_t = &mut dh[cur.clone()];
        add_assign(dh_t, &cache.dh_next);
        let g_dgx = &mut cache.gates[t * gstep..(t + 1) * gstep];
        let dgh = &mut cache.dgh[t * gstep..(t + 1) * gstep];
        let (h_prev, hn) = (&cache.h_prev[cur.clone()], &cache.hn[cur]);
        step_backward(g_dgx, h_prev, hn, dh_t, dgh, &mut cache.dh_next, hid);
        if t > 0 {
            matmul_packed(&mut cache.dh_next, dgh, w_hh, true);
            cut_at_resets(&mut cache.dh_next, &reset[t * batch..(t + 1) * batch], hid);
        }
    }
}

simd_dispatch! {
    /// The gate arithmetic of one step for all rows. a: [B, 3H] input-side pre-activations,
    /// overwritten with the gates r, z, n; hw: [B, 3H] recurrent product without b_hh;
    /// b_hh: [3H]; h_prev, h, hn: [B, H].
    fn step_forward(a: &mut [f32], hw: &mut [f32], b_hh: &[f32], h_prev: &[f32], h: &mut [f32], hn: &mut [f32], hid: usize) => step_forward_imp
}

#[inline(always)]
fn step_forward_imp(
    a: &mut [f32],
    hw: &mut [f32],
    b_hh: &[f32],
    h_prev: &[f32],
    h: &mut [f32],
    hn: &mut [f32],
    hid: usize,
) {
    let rows = a
        .chunks_exact_mut(3 * hid)
        .zip(hw.chunks_exact_mut(3 * hid))
        .zip(h_prev.chunks_exact(hid))
        .zip(h.chunks_exact_mut(hid))
        .zip(hn.chunks_exact_mut(hid));
    for ((((row, hw), hp), ho), hno) in rows {
        add_assign(hw, b_hh);
        let (hr, rest) = hw.split_at(hid);
        let (hz, hnb) = rest.split_at(hid);
        let (xr, rest) = row.split_at_mut(hid);
        let (xz, xn) = rest.split_at_mut(hid);
        for j in 0..hid {
            let u = unit(xr[j], xz[j], xn[j], hr[j], hz[j], hnb[j], hp[j]);
            (xr[j], xz[j], xn[j]) = (u.r, u.z, u.n);
            hno[j] = hnb[j];
            ho[j] = u.h;
        }
    }
}

/// One GRU unit's gates and output (see [`unit`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub r: f32,
    pub z: f32,
    pub n: f32,
    pub h: f32,
}

/// The GRU equations for one unit, from the input-side pre-activations `x_r, x_z, x_n`
/// (`W_ih x + b_ih`), the recurrent ones `h_r, h_z, h_n` (`W_hh h' + b_hh`) and the previous
/// output `h'`: `r = σ(x_r + h_r)`, `z = σ(x_z + h_z)`, `n = tanh(x_n + r h_n)`,
/// `h = (1 - z) n + z h'`. Training's window loop and one-stream inference both call this.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn unit(x_r: f32, x_z: f32, x_n: f32, h_r: f32, h_z: f32, h_n: f32, h_prev: f32) -> Unit {
    let r = sigmoid(x_r + h_r);
    let z = sigmoid(x_z + h_z);
    let n = tanh(x_n + r * h_n);
    Unit {
        r,
        z,
        n,
        h: (1.0 - z) * n + z * h_prev,
    }
}

simd_dispatch! {
    /// The backward gate arithmetic of one step for all rows. g_dgx: [B, 3H], the gates in,
    /// the input-side gradients out; h_prev, hn, dh: [B, H]; out: dgh: [B, 3H], and
    /// dnext: [B, H] = dh ⊙ z (the direct path).
    fn step_backward(g_dgx: &mut [f32], h_prev: &[f32], hn: &[f32], dh: &[f32], dgh: &mut [f32], dnext: &mut [f32], hid: usize) => step_backward_imp
}

#[inline(always)]
fn step_backward_imp(
    g_dgx: &mut [f32],
    h_prev: &[f32],
    hn: &[f32],
    dh: &[f32],
    dgh: &mut [f32],
    dnext: &mut [f32],
    hid: usize,
) {
    let rows = g_dgx
        .chunks_exact_mut(3 * hid)
        .zip(dgh.chunks_exact_mut(3 * hid))
        .zip(h_prev.chunks_exact(hid))
        .zip(hn.chunks_exact(hid))
        .zip(dh.chunks_exact(hid))
        .zip(dnext.chunks_exact_mut(hid));
    for (((((g3, h3), hp), hnr), dhr), dn) in rows {
        let (xr, rest) = g3.split_at_mut(hid);
        let (xz, xn) = rest.split_at_mut(hid);
        let (hr, rest) = h3.split_at_mut(hid);
        let (hz, hnn) = rest.split_at_mut(hid);
        for j in 0..hid {
            let (rg, z, n) = (xr[j], xz[j], xn[j]);
            let dan = dhr[j] * (1.0 - z) * (1.0 - n * n);
            let dar = dan * hnr[j] * rg * (1.0 - rg);
            let daz = dhr[j] * (hp[j] - n) * z * (1.0 - z);
            (xr[j], xz[j], xn[j]) = (dar, daz, dan);
            (hr[j], hz[j], hnn[j]) = (dar, daz, dan * rg);
            dn[j] = dhr[j] * z;
        }
    }
}
