//! Flat buffers with named tensor views.
//!
//! Parameters, their gradients and every optimizer moment are `Vec<f32>` of the same length
//! laid out by one [`Layout`]. The optimizer update, gradient clipping, the summing of shard
//! gradients and the checkpoint are each a single loop over a flat slice; the model reads
//! its tensors through named views into the buffer.

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Where each named tensor lives in a flat buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub tensors: Vec<TensorSpec>,
    pub len: usize,
}

/// Index of a tensor in a [`Layout`].
pub type TensorId = usize;

impl Layout {
    /// Appends a tensor; returns its id.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> TensorId {
        let spec = TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            offset: self.len,
        };
        self.len += spec.len();
        self.tensors.push(spec);
        self.tensors.len() - 1
    }

    pub fn find(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name)
    }

    pub fn spec(&self, id: TensorId) -> &TensorSpec {
        &self.tensors[id]
    }

    pub fn slice<'a>(&self, buf: &'a [f32], id: TensorId) -> &'a [f32] {
        &buf[self.tensors[id].range()]
    }

    pub fn slice_mut<'a>(&self, buf: &'a mut [f32], id: TensorId) -> &'a mut [f32] {
        &mut buf[self.tensors[id].range()]
    }

    /// Mutable slices of several tensors at once, `ids` in increasing order of offset (as
    /// [`Layout::push`] made them): the gradients of a layer's tensors, filled side by side.
    pub fn slices_mut<'a, const K: usize>(
        &self,
        mut buf: &'a mut [f32],
        ids: [TensorId; K],
    ) -> [&'a mut [f32]; K] {
        let mut start = 0;
        ids.map(|id| {
            let r = self.tensors[id].range();
            assert!(r.start >= start, "slices_mut: tensors out of order");
            let rest = std::mem::take(&mut buf);
            let (this, rest) = rest[r.start - start..].split_at_mut(r.len());
            buf = rest;
            start = r.end;
            this
        })
    }

    /// A 2-D tensor as a matrix view.
    pub fn mat<'a>(&self, buf: &'a [f32], id: TensorId) -> ArrayView2<'a, f32> {
        let s = &self.tensors[id];
        ArrayView2::from_shape((s.shape[0], s.shape[1]), &buf[s.range()]).expect("2-D tensor")
    }

    pub fn mat_mut<'a>(&self, buf: &'a mut [f32], id: TensorId) -> ArrayViewMut2<'a, f32> {
        let s = &self.tensors[id];
        ArrayViewMut2::from_shape((s.shape[0], s.shape[1]), &mut buf[s.range()])
            .expect("2-D tensor")
    }
}

/// Elements per parallel chunk of the flat buffers.
pub const CHUNK: usize = 1 << 14;

pub fn chunks(xs: &[f32]) -> rayon::slice::Chunks<'_, f32> {
    xs.par_chunks(CHUNK)
}

pub fn chunks_mut(xs: &mut [f32]) -> rayon::slice::ChunksMut<'_, f32> {
    xs.par_chunks_mut(CHUNK)
}

/// Euclidean norm of a flat buffer, accumulated in f64 so that it does not depend on how
/// large the model is. Chunks are summed on all cores, then added in a fixed order.
pub fn l2_norm(xs: &[f32]) -> f64 {
    let parts: Vec<f64> = xs.par_chunks(CHUNK).map(sum_squares).collect();
    parts.iter().sum::<f64>().sqrt()
}

crate::kernels::simd_dispatch! {
    /// Σ x², in f64.
    pub(crate) fn sum_squares(xs: &[f32]) -> f64 => sum_squares_imp
}

#[inline(always)]
fn sum_squares_imp(xs: &[f32]) -> f64 {
    // Eight running sums, so that the additions vectorise instead of forming one serial
    // chain (the order is fixed, so the result is too).
    let (chunks, tail) = xs.as_chunks::<8>();
    let mut lanes = [0.0f64; 8];
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x as f64 * x as f64;
        }
    }
    lanes.iter().sum::<f64>() + tail.iter().map(|&x| x as f64 * x as f64).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_address_disjoint_ranges() {
        let mut layout = Layout::default();
        let a = layout.push("a", &[2, 3]);
        let b = layout.push("b", &[4]);
        assert_eq!(layout.len, 10);
        assert_eq!(layout.find("b"), Some(b));
        let mut buf: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert_eq!(layout.mat(&buf, a)[[1, 2]], 5.0);
        layout.slice_mut(&mut buf, b)[0] = -1.0;
        let [sa, sb] = layout.slices_mut(&mut buf, [a, b]);
        assert_eq!((sa.len(), sa[5], sb[0]), (6, 5.0, -1.0));
        assert_eq!(buf[6], -1.0);
        assert_eq!(l2_norm(&[3.0, 4.0]), 5.0);
        // Lanes and tail: 1² + 2² + … + 21².
        let xs: Vec<f32> = (1..=21).map(|i| i as f32).collect();
        assert_eq!(sum_squares(&xs), (21 * 22 * 43 / 6) as f64);
    }
}
