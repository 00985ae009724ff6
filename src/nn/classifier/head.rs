//! The head: dropout on the pooled vector, a linear layer to C logits, softmax and
//! (optionally weighted) cross-entropy over the labels.
//!
//! ```text
//! z_b = (m_b ⊙ p_b) W_headᵀ + b_head                       [B, C]
//! loss = Σ_b w_b · (-ln softmax(z_b)[y_b])                  w_b = weight of label y_b (or 1)
//! dz_b = scale · w_b · (softmax(z_b) - onehot(y_b))
//! dW_head += dzᵀ (m ⊙ p)    db_head += Σ_b dz_b    dp = (dz W_head) ⊙ m
//! ```

use super::{Classifier, ClassifierWorkspace, dropout};
use crate::kernels::{add_assign, add_row_sums, matmul};
use crate::nn::loss::softmax_row;
use ndarray::{ArrayView2, ArrayViewMut2};
use rand_chacha::ChaCha8Rng;

/// `ws.pooled` → `ws.logits`.
pub(super) fn forward(m: &Classifier, ws: &mut ClassifierWorkspace, rng: Option<&mut ChaCha8Rng>) {
    let (bs, d, c) = (ws.batch, m.config.width(), m.config.labels);
    let input: &[f32] = match rng {
        Some(rng) => {
            dropout(
                &ws.pooled,
                &mut ws.head_in,
                &mut ws.head_mask,
                m.config.dropout,
                rng,
            );
            &ws.head_in
        }
        None => &ws.pooled,
    };
    let input = ArrayView2::from_shape((bs, d), input).unwrap();
    let mut z = ArrayViewMut2::from_shape((bs, c), &mut ws.logits[..]).unwrap();
    matmul(&mut z, input, m.mat(m.head_w).t(), false);
    for row in ws.logits.chunks_exact_mut(c) {
        add_assign(row, m.vec(m.head_b));
    }
}

/// Softmax of `ws.logits` in place; returns the probabilities, [B, C].
pub(super) fn softmax(ws: &mut ClassifierWorkspace, c: usize) -> &[f32] {
    for row in ws.logits.chunks_exact_mut(c) {
        softmax_row(row);
    }
    &ws.logits
}

/// Softmax in place and the summed weighted cross-entropy; records labels and weights for
/// [`backward`].
pub(super) fn loss(
    ws: &mut ClassifierWorkspace,
    c: usize,
    labels: &[u32],
    weights: Option<&[f32]>,
) -> f64 {
    assert_eq!(labels.len(), ws.batch, "labels vs batch");
    ws.labels.clear();
    ws.labels.extend(labels);
    ws.weights.clear();
    ws.weights.extend(
        labels
            .iter()
            .map(|&y| weights.map_or(1.0, |w| w[y as usize])),
    );
    let mut total = 0.0f64;
    for ((row, &y), &w) in ws.logits.chunks_exact_mut(c).zip(labels).zip(&ws.weights) {
        let target = row[y as usize];
        let (max, sum) = softmax_row(row);
        total += w as f64 * ((sum as f64).ln() - (target - max) as f64);
    }
    total
}

/// From the probabilities left by [`loss`] to `ws.dpooled`, adding the head's gradients.
pub(super) fn backward(
    m: &Classifier,
    ws: &mut ClassifierWorkspace,
    grads: &mut [f32],
    scale: f32,
) {
    let (bs, d, c) = (ws.batch, m.config.width(), m.config.labels);
    for ((row, &y), &w) in ws
        .logits
        .chunks_exact_mut(c)
        .zip(&ws.labels)
        .zip(&ws.weights)
    {
        row[y as usize] -= 1.0;
        row.iter_mut().for_each(|p| *p *= scale * w);
    }
    let dz = ArrayView2::from_shape((bs, c), &ws.logits[..]).unwrap();
    let input = if ws.dropout_active {
        &ws.head_in
    } else {
        &ws.pooled
    };
    let input = ArrayView2::from_shape((bs, d), &input[..]).unwrap();
    let lay = &m.layout;
    matmul(&mut lay.mat_mut(grads, m.head_w), dz.t(), input, true);
    add_row_sums(lay.slice_mut(grads, m.head_b), &ws.logits);
    let mut dp = ArrayViewMut2::from_shape((bs, d), &mut ws.dpooled[..]).unwrap();
    matmul(&mut dp, dz, m.mat(m.head_w), false);
    if ws.dropout_active {
        for (g, &k) in ws.dpooled.iter_mut().zip(&ws.head_mask) {
            *g *= k;
        }
    }
}
