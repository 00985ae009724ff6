//! General matrix products through the `gemm` crate.

use ndarray::{ArrayView2, ArrayViewMut2};

/// `c = a · b`, or `c += a · b` when `accumulate`.
///
/// a: [M, K], b: [K, N], c: [M, N]; any strides (pass `x.t()` for a transpose).
pub fn matmul(
    c: &mut ArrayViewMut2<f32>,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    accumulate: bool,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "matmul: inner dimensions differ");
    assert_eq!(c.dim(), (m, n), "matmul: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    let (cs, as_, bs) = (c.strides().to_vec(), a.strides(), b.strides());
    // SAFETY: the pointers and strides come from live ndarray views of the stated shapes,
    // `c` is borrowed mutably so it cannot alias `a` or `b`, and gemm reads only inside them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            cs[1],
            cs[0],
            accumulate,
            a.as_ptr(),
            as_[1],
            as_[0],
            b.as_ptr(),
            bs[1],
            bs[0],
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn naive(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                c[[i, j]] = (0..a.ncols()).map(|k| a[[i, k]] * b[[k, j]]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_with_transposes_and_accumulate() {
        let a = Array2::from_shape_fn((7, 5), |(i, j)| (i * 5 + j) as f32 * 0.1 - 1.0);
        let b = Array2::from_shape_fn((5, 3), |(i, j)| (i as f32 - j as f32) * 0.3);
        let want = naive(&a, &b);
        let mut c = Array2::from_elem((7, 3), 9.0f32);
        matmul(&mut c.view_mut(), a.view(), b.view(), false);
        let close = |x: ArrayView2<f32>, y: &Array2<f32>| {
            x.iter().zip(y).all(|(a, b)| (a - b).abs() < 1e-5)
        };
        assert!(close(c.view(), &want));
        // Transposed operands: (bᵀ aᵀ)ᵀ = a b, written into a transposed destination.
        let (at, bt) = (a.t().to_owned(), b.t().to_owned());
        let mut ct = Array2::from_elem((3, 7), 1.0f32);
        matmul(&mut ct.view_mut(), bt.view(), at.view(), true);
        assert!(close(ct.t(), &(want + 1.0)));
    }
}
