//! Pooling over time: the top layer's outputs at a sequence's valid positions, [T, B, D],
//! become one vector per sequence, [B, D].
//!
//! ```text
//! final: p_b = [h_f(len_b - 1) ‖ h_r(0)]     (the last state each direction reached)
//! mean:  p_b = Σ_{t<len_b} out_t / len_b
//! max:   p_b,j = max_{t<len_b} out_t,j       (the gradient goes to the position of the max)
//! ```

use super::{ClassifierWorkspace, Pool};

/// `ws.outs[top]` → `ws.pooled`.
pub(super) fn forward(pool: Pool, ws: &mut ClassifierWorkspace) {
    let bs = ws.batch;
    let out = ws.outs.last().unwrap();
    let d = ws.pooled.len() / bs;
    let hid = ws.h0.len() / bs;
    for (b, p) in ws.pooled.chunks_exact_mut(d).enumerate() {
        let len = ws.lens[b];
        let row = |t: usize| &out[(t * bs + b) * d..(t * bs + b + 1) * d];
        match pool {
            Pool::Final => {
                // The forward half at the last position; the reverse half (if any) at t = 0.
                p[..hid].copy_from_slice(&row(len - 1)[..hid]);
                p[hid..].copy_from_slice(&row(0)[hid..]);
            }
            Pool::Mean => {
                p.fill(0.0);
                for t in 0..len {
                    crate::kernels::add_assign(p, row(t));
                }
                let inv = 1.0 / len as f32;
                p.iter_mut().for_each(|x| *x *= inv);
            }
            Pool::Max => {
                let arg = &mut ws.argmax[b * d..(b + 1) * d];
                p.copy_from_slice(row(0));
                arg.fill(0);
                for t in 1..len {
                    for ((m, a), &x) in p.iter_mut().zip(arg.iter_mut()).zip(row(t)) {
                        if x > *m {
                            *m = x;
                            *a = t as u32;
                        }
                    }
                }
            }
        }
    }
}

/// `ws.dpooled` ([B, D]) → `ws.dout` ([T, B, D], zero at every position the pooling did not
/// read, padding included).
pub(super) fn backward(pool: Pool, ws: &mut ClassifierWorkspace) {
    let bs = ws.batch;
    let d = ws.pooled.len() / bs;
    let hid = ws.h0.len() / bs;
    let n = ws.t_len * bs;
    let dout = &mut ws.dout[..n * d];
    dout.fill(0.0);
    for (b, dp) in ws.dpooled.chunks_exact(d).enumerate() {
        let len = ws.lens[b];
        let at = |t: usize| (t * bs + b) * d;
        match pool {
            Pool::Final => {
                let (f, r) = (at(len - 1), at(0));
                dout[f..f + hid].copy_from_slice(&dp[..hid]);
                dout[r + hid..r + d].copy_from_slice(&dp[hid..]);
            }
            Pool::Mean => {
                let inv = 1.0 / len as f32;
                for t in 0..len {
                    for (g, &x) in dout[at(t)..at(t) + d].iter_mut().zip(dp) {
                        *g = x * inv;
                    }
                }
            }
            Pool::Max => {
                let arg = &ws.argmax[b * d..(b + 1) * d];
                for (j, (&a, &x)) in arg.iter().zip(dp).enumerate() {
                    dout[at(a as usize) + j] = x;
                }
            }
        }
    }
}
