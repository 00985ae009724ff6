//! The stacked layers, each one direction or two: the input projection of every position at
//! once, the cell's recurrence per direction, the concatenation `[h_fwd ‖ h_rev]`, and their
//! backward pass.
//!
//! The reverse direction runs over each row's valid part reversed (`perm`, see
//! [`super::ClassifierWorkspace`]). A row permutation commutes with a product applied row by
//! row, so with `X` the layer's input in time order ([N, D]) and `P` the reversal:
//!
//! ```text
//! forward:   gx_f = X W_ih_fᵀ + b_ih_f          gx_r = (P X) W_ih_rᵀ + b_ih_r
//!            out  = [h_f ‖ P h_r]                (time order, [N, D])
//! backward:  dh_f = dout[:, :H]                  dh_r = P dout[:, H:]
//!            dW_ih_f += dgx_fᵀ X                 dW_ih_r += dgx_rᵀ (P X)
//!            dX = dgx_f W_ih_f + P (dgx_r W_ih_r)
//! ```
//!
//! Padding needs no mask inside the layers: a padded position comes after every valid
//! position of its row in both orders, so it never feeds one; and since nothing reads a padded
//! output (pooling skips them), the gradient arriving there is zero, and so is all that the
//! backward recurrence sends on from it.

use super::{Classifier, ClassifierPacked, ClassifierWorkspace, dropout};
use crate::kernels::{add_assign, matmul};
use crate::nn::cell;
use ndarray::{ArrayView2, ArrayViewMut2};
use rand_chacha::ChaCha8Rng;

/// Rows of `src` ([N, W]) in the order `perm` into `dst`: `dst[n] = src[perm[n]]`.
fn permute_rows(dst: &mut [f32], src: &[f32], perm: &[u32], w: usize) {
    for (row, &p) in dst.chunks_exact_mut(w).zip(perm) {
        row.copy_from_slice(&src[p as usize * w..(p as usize + 1) * w]);
    }
}

/// Layers bottom to top; leaves each layer's output in `ws.outs[l]`, [T, B, D].
pub(super) fn forward(
    m: &Classifier,
    packed: &ClassifierPacked,
    ws: &mut ClassifierWorkspace,
    mut rng: Option<&mut ChaCha8Rng>,
) {
    let c = &m.config;
    let (hid, s, d) = (c.hidden, c.directions(), c.width());
    let gh = c.cell.gates() * hid;
    let (t_len, bs) = (ws.t_len, ws.batch);
    let n = t_len * bs;
    for l in 0..c.layers {
        // The layer's input in time order and, for the reverse direction, reversed.
        if l > 0 {
            let x = &ws.outs[l - 1][..n * d];
            if let Some(rng) = rng.as_deref_mut() {
                let (mask, input) = (&mut ws.masks[l][..n * d], &mut ws.inputs[l][..n * d]);
                dropout(x, input, mask, c.dropout, rng);
            }
            if s == 2 {
                let x = if ws.dropout_active {
                    &ws.inputs[l][..n * d]
                } else {
                    &ws.outs[l - 1][..n * d]
                };
                permute_rows(&mut ws.inputs_rev[l][..n * d], x, &ws.perm[..n], d);
            }
        }
        for dir in 0..s {
            let ids = m.dirs[l * s + dir];
            let cache = &mut ws.caches[l * s + dir];
            let gates = &mut cache.gates[..n * gh];
            let b_ih = m.vec(ids.b_ih);
            if l == 0 {
                // one_hot(x) · W_ihᵀ is row x of W_ihᵀ: a gather.
                let x = if dir == 0 { &ws.x } else { &ws.x_rev };
                let w_t = &packed.w_ih0_t[dir];
                for (row, &id) in gates.chunks_exact_mut(gh).zip(x) {
                    let w = &w_t[id as usize * gh..(id as usize + 1) * gh];
                    for ((g, &w), &b) in row.iter_mut().zip(w).zip(b_ih) {
                        *g = w + b;
                    }
                }
            } else {
                let x: &[f32] = match (dir, ws.dropout_active) {
                    (1, _) => &ws.inputs_rev[l][..n * d],
                    (_, true) => &ws.inputs[l][..n * d],
                    (_, false) => &ws.outs[l - 1][..n * d],
                };
                let x = ArrayView2::from_shape((n, d), x).unwrap();
                let mut out = ArrayViewMut2::from_shape((n, gh), &mut *gates).unwrap();
                matmul(&mut out, x, m.mat(ids.w_ih).t(), false);
                for row in gates.chunks_exact_mut(gh) {
                    add_assign(row, b_ih);
                }
            }
            ws.h0.fill(0.0);
            ws.c0.fill(0.0);
            let b_hh = m.vec(ids.b_hh);
            let w_hh_t = &packed.w_hh_t[l * s + dir];
            let (h0, c0) = (&mut ws.h0[..], &mut ws.c0[..]);
            cell::forward(c.cell, w_hh_t, b_hh, cache, h0, c0, &ws.reset, t_len, bs);
        }
        // out = [h_f ‖ P h_r], in time order.
        let out = &mut ws.outs[l][..n * d];
        for dir in 0..s {
            let h = &ws.caches[l * s + dir].h[..n * hid];
            for (i, row) in out.chunks_exact_mut(d).enumerate() {
                let src = if dir == 0 { i } else { ws.perm[i] as usize };
                row[dir * hid..(dir + 1) * hid].copy_from_slice(&h[src * hid..(src + 1) * hid]);
            }
        }
    }
}

/// Layers top to bottom, from `ws.dout` (the gradient w.r.t. the top layer's output, [T, B,
/// D], consumed): adds every layer's weight gradients to `grads`.
pub(super) fn backward(
    m: &Classifier,
    packed: &ClassifierPacked,
    ws: &mut ClassifierWorkspace,
    grads: &mut [f32],
) {
    let c = &m.config;
    let (hid, s, d, v) = (c.hidden, c.directions(), c.width(), c.vocab_size);
    let gh = c.cell.gates() * hid;
    let (t_len, bs) = (ws.t_len, ws.batch);
    let n = t_len * bs;
    let lay = &m.layout;
    for l in (0..c.layers).rev() {
        for dir in 0..s {
            let ids = m.dirs[l * s + dir];
            // dh of this direction, in its own order.
            let dh = &mut ws.dh[..n * hid];
            let dout = &ws.dout[..n * d];
            for (i, row) in dh.chunks_exact_mut(hid).enumerate() {
                let src = if dir == 0 { i } else { ws.perm[i] as usize };
                row.copy_from_slice(&dout[src * d + dir * hid..src * d + (dir + 1) * hid]);
            }
            let cache = &mut ws.caches[l * s + dir];
            let w_hh = &packed.w_hh[l * s + dir];
            cell::backward(c.cell, w_hh, cache, dh, &ws.reset, t_len, bs);
            {
                let [g_hh, g_bih, g_bhh] = lay.slices_mut(grads, [ids.w_hh, ids.b_ih, ids.b_hh]);
                let mut dw_hh = ArrayViewMut2::from_shape((gh, hid), g_hh).unwrap();
                cell::weight_grads(cache, n, &mut dw_hh, g_bih, g_bhh, &mut ws.db);
            }
            let dgx = &cache.dgx()[..n * gh];
            if l == 0 {
                // The gather's gradient: a scatter-add into rows of W_ihᵀ.
                let x = if dir == 0 { &ws.x } else { &ws.x_rev };
                let dwt = &mut ws.dw_ih0_t;
                dwt.fill(0.0);
                for (row, &id) in dgx.chunks_exact(gh).zip(x) {
                    add_assign(&mut dwt[id as usize * gh..(id as usize + 1) * gh], row);
                }
                let mut dw = lay.mat_mut(grads, ids.w_ih);
                dw += &ArrayView2::from_shape((v, gh), &dwt[..]).unwrap().t();
                continue;
            }
            let x: &[f32] = match (dir, ws.dropout_active) {
                (1, _) => &ws.inputs_rev[l][..n * d],
                (_, true) => &ws.inputs[l][..n * d],
                (_, false) => &ws.outs[l - 1][..n * d],
            };
            let x = ArrayView2::from_shape((n, d), x).unwrap();
            let dgx_m = ArrayView2::from_shape((n, gh), dgx).unwrap();
            matmul(&mut lay.mat_mut(grads, ids.w_ih), dgx_m.t(), x, true);
            // dX = dgx_f W_ih_f + P (dgx_r W_ih_r)
            let dst = if dir == 0 { &mut ws.dx } else { &mut ws.dx_rev };
            let mut dx = ArrayViewMut2::from_shape((n, d), &mut dst[..n * d]).unwrap();
            matmul(&mut dx, dgx_m, m.mat(ids.w_ih), false);
        }
        if l == 0 {
            break;
        }
        if s == 2 {
            let dx = &mut ws.dx[..n * d];
            for (i, row) in dx.chunks_exact_mut(d).enumerate() {
                let p = ws.perm[i] as usize;
                add_assign(row, &ws.dx_rev[p * d..(p + 1) * d]);
            }
        }
        if ws.dropout_active {
            for (g, &k) in ws.dx[..n * d].iter_mut().zip(&ws.masks[l][..n * d]) {
                *g *= k;
            }
        }
        std::mem::swap(&mut ws.dout, &mut ws.dx);
    }
}
