//! Softmax cross-entropy over every scored position, and its fused backward `p - onehot(y)`.

use crate::kernels::{exp_neg, simd_dispatch};

/// Turns each row of `logits` ([N, V]) into probabilities in place and returns the summed
/// cross-entropy `Σ_n -log p_n[y_n]` over the rows with `valid[n]`, in nats (f64).
///
/// The max is subtracted before `exp` so that no logit overflows; the log-probability of the
/// target is `z_y - max - ln Σ exp(z - max)`, which stays exact when `p_y` underflows.
pub fn softmax_cross_entropy(logits: &mut [f32], v: usize, y: &[u32], valid: &[bool]) -> f64 {
    let mut total = 0.0f64;
    for (n, row) in logits.chunks_exact_mut(v).enumerate() {
        let target = row[y[n] as usize];
        let (max, sum) = softmax_row(row);
        if valid[n] {
            total += (sum as f64).ln() - (target - max) as f64;
        }
    }
    total
}

/// [`softmax_cross_entropy`] that also writes each row's `-ln p_n[y_n]` into `nll` ([N];
/// 0 for rows not scored).
pub fn softmax_cross_entropy_each(
    logits: &mut [f32],
    v: usize,
    y: &[u32],
    valid: &[bool],
    nll: &mut [f32],
) -> f64 {
    let mut total = 0.0f64;
    for (n, row) in logits.chunks_exact_mut(v).enumerate() {
        let target = row[y[n] as usize];
        let (max, sum) = softmax_row(row);
        let l = (sum as f64).ln() - (target - max) as f64;
        nll[n] = if valid[n] { l as f32 } else { 0.0 };
        if valid[n] {
            total += l;
        }
    }
    total
}

simd_dispatch! {
    /// Replaces `row` by its softmax; returns the row's maximum and Σ exp(z - max).
    pub(crate) fn softmax_row(row: &mut [f32]) -> (f32, f32) => softmax_row_imp
}

#[inline(always)]
fn softmax_row_imp(row: &mut [f32]) -> (f32, f32) {
    // The max and the sum are kept in 16 lanes: a plain fold is one serial chain of
    // V dependent additions per row, which cost more than the exponentials.
    const LANES: usize = 16;
    let (chunks, tail) = row.as_chunks::<LANES>();
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for c in chunks {
        for (m, &z) in lanes.iter_mut().zip(c) {
            *m = m.max(z);
        }
    }
    let max = lanes
        .iter()
        .chain(tail)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let (chunks, tail) = row.as_chunks_mut::<LANES>();
    let mut sums = [0.0f32; LANES];
    for c in chunks {
        for (s, z) in sums.iter_mut().zip(c) {
            *z = exp_neg(*z - max);
            *s += *z;
        }
    }
    for z in tail {
        *z = exp_neg(*z - max);
        sums[0] += *z;
    }
    let sum: f32 = sums.iter().sum();
    let inv = 1.0 / sum;
    for z in row.iter_mut() {
        *z *= inv;
    }
    (max, sum)
}

/// In place on the probabilities left by [`softmax_cross_entropy`]:
/// `dlogits_n = scale · (p_n - onehot(y_n))` for valid rows and zero for the others.
/// `scale` is `1 / (scored positions of the whole batch)`, so the gradient is that of the mean.
pub fn softmax_cross_entropy_backward(
    probs: &mut [f32],
    v: usize,
    y: &[u32],
    valid: &[bool],
    scale: f32,
) {
    for (n, row) in probs.chunks_exact_mut(v).enumerate() {
        if valid[n] {
            row[y[n] as usize] -= 1.0;
            for p in row.iter_mut() {
                *p *= scale;
            }
        } else {
            row.fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_ln_v() {
        let mut z = vec![0.3f32; 2 * 5];
        let loss = softmax_cross_entropy(&mut z, 5, &[1, 4], &[true, true]);
        assert!((loss - 2.0 * 5f64.ln()).abs() < 1e-6);
        assert!(z.iter().all(|&p| (p - 0.2).abs() < 1e-7));
    }

    #[test]
    fn hand_checked_row_and_mask() {
        // logits (0, ln 3): p = (1/4, 3/4); target 0 => loss ln 4.
        let mut z = vec![0.0, 3f32.ln(), 5.0, 1.0];
        let loss = softmax_cross_entropy(&mut z, 2, &[0, 1], &[true, false]);
        assert!((loss - 4f64.ln()).abs() < 1e-6);
        softmax_cross_entropy_backward(&mut z, 2, &[0, 1], &[true, false], 0.5);
        let want = [0.5 * (0.25 - 1.0), 0.5 * 0.75, 0.0, 0.0];
        for (a, b) in z.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{z:?}");
        }
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let mut z = vec![1000.0f32, 0.0, -1000.0];
        let loss = softmax_cross_entropy(&mut z, 3, &[2], &[true]);
        assert!((loss - 2000.0).abs() < 1e-3, "{loss}");
    }
}
