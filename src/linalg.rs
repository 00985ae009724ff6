//! Matrix products, and the element-wise functions of the hot path.
//!
//! [`matmul`] goes through the `gemm` crate (pure Rust, picks AVX-512/AVX2/FMA kernels at run
//! time, accepts any strides, so a transposed operand `a.t()` costs no copy). The products
//! inside the time loop, a small batch times a weight matrix that stays fixed for the whole
//! window, use [`matmul_packed`] on a [`PackedMatrix`] instead. Each call is
//! single-threaded: the trainer uses the cores by running batch shards side by side.
//!
//! `std`'s `f32::tanh` costs ~12 ns and does not vectorise; the gate non-linearities of a
//! large LSTM would cost as much as its recurrent product. [`tanh`] is a rational
//! approximation (max abs error under 1e-6, tested below) whose loop the compiler turns into
//! SIMD; [`sigmoid`] is derived from it exactly as `σ(x) = (1 + tanh(x/2)) / 2`, and
//! [`exp_neg`] does the same for the softmax's exponentials. [`simd_dispatch!`] compiles the
//! loops that use them for AVX-512 and AVX2 and picks one at run time.

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

/// Defines `$vis fn $name(args)` that runs `$imp(args)` compiled for the widest vector
/// instructions the CPU has (AVX-512, else AVX2+FMA, else the baseline), chosen at run time.
/// `$imp` must be `#[inline(always)]` so that its body is compiled inside each variant. The
/// binary stays portable; the element-wise loops of the cells get 16-wide registers.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $imp:path) => {
        simd_dispatch! { $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () => $imp }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $imp:path) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) -> $ret {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($arg: $ty),*) -> $ret {
                    $imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features v4 was compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for v3.
                    return unsafe { v3($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

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

/// Width of a panel of a [`PackedMatrix`]: four 16-float AVX-512 registers.
const PANEL: usize = 64;

/// One panel row, aligned to a cache line so that the kernel's loads never straddle two.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A matrix B [K, N] stored for [`matmul_packed`], the product inside the time loop.
///
/// On a CPU with AVX-512 the columns are cut into panels of 64; panel p holds
/// B[.., 64p .. 64p+64] row by row, so the kernel reads each panel front to back, one
/// cache-line-aligned row of 64 per k (the last panel is zero-padded). W_hh does not change
/// within a window: it is packed once per step of the optimizer and then read T times, where
/// a general product (the `gemm` crate) would re-pack it on every call and keep fewer
/// accumulators busy at these small M. Elsewhere B is stored row-major and goes to `gemm`
/// whole, as one contiguous operand.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    panels: bool,
    lines: Vec<Line>,
}

/// Whether [`matmul_packed`] has its AVX-512 kernel on this CPU.
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return true;
    }
    false
}

impl PackedMatrix {
    pub fn new(k: usize, n: usize) -> PackedMatrix {
        PackedMatrix::with_layout(k, n, has_avx512())
    }

    /// `panels`: the AVX-512 kernel's layout, else row-major.
    fn with_layout(k: usize, n: usize, panels: bool) -> PackedMatrix {
        let len = if panels {
            n.div_ceil(PANEL) * k * PANEL
        } else {
            k * n
        };
        PackedMatrix {
            k,
            n,
            panels,
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
        }
    }

    /// (K, N).
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    fn data(&self) -> &[f32] {
        // SAFETY: `Line` is 16 f32 with no padding (size 64, align 64).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.lines.len() * 16) }
    }

    fn data_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `data`.
        unsafe {
            std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.lines.len() * 16)
        }
    }

    /// Panel p as a [K, width] matrix view.
    fn panel(&self, p: usize) -> ArrayView2<'_, f32> {
        let w = PANEL.min(self.n - p * PANEL);
        let d = &self.data()[p * self.k * PANEL..(p + 1) * self.k * PANEL];
        ArrayView2::from_shape((self.k, w).strides((PANEL, 1)), d).unwrap()
    }

    /// B as a row-major [K, N] view (row-major layout only).
    fn plain(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.k, self.n), &self.data()[..self.k * self.n]).unwrap()
    }

    /// Stores `b` ([K, N], any strides; pass `w.t()` to pack a transpose).
    pub fn pack(&mut self, b: ArrayView2<f32>) {
        assert_eq!(b.dim(), (self.k, self.n), "pack: shape");
        let (k, n) = (self.k, self.n);
        if !self.panels {
            let dst = &mut self.data_mut()[..k * n];
            match (b.as_slice(), b.t().as_slice()) {
                (Some(src), _) => dst.copy_from_slice(src),
                (None, Some(src)) => transpose::transpose(src, dst, k, n),
                _ => {
                    for (d, &x) in dst.iter_mut().zip(b.iter()) {
                        *d = x;
                    }
                }
            }
            return;
        }
        let data = self.data_mut();
        for p in 0..n.div_ceil(PANEL) {
            let cols = p * PANEL..n.min((p + 1) * PANEL);
            let w = cols.len();
            let panel = &mut data[p * k * PANEL..(p + 1) * k * PANEL];
            match (b.as_slice(), b.t().as_slice()) {
                // Row-major B: each panel row is a slice of a row of B.
                (Some(src), _) => {
                    for (kk, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                        dst[..w].copy_from_slice(&src[kk * n + cols.start..kk * n + cols.end]);
                        dst[w..].fill(0.0);
                    }
                }
                // B = Wᵀ with W row-major [N, K]: rows 64p.. of W, transposed, are the panel.
                (None, Some(src)) if w == PANEL => {
                    transpose::transpose(&src[cols.start * k..cols.end * k], panel, k, PANEL);
                }
                _ => {
                    for (kk, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                        for (j, d) in dst.iter_mut().enumerate() {
                            *d = if j < w { b[[kk, cols.start + j]] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

/// `c = a · b`, or `c += a · b` when `accumulate`. a: [M, K], c: [M, N], both row-major.
///
/// With AVX-512, each 64-column panel of `b` is multiplied by tiles of at most 6 rows of `a`
/// held in 24 accumulator registers for the whole K loop (~215 GFLOP/s on one core of the
/// development machine for M = 32, against 140–190 for `gemm` on the unpacked matrix;
/// `charrnn bench` shows the effect end to end). Otherwise the product goes to [`matmul`].
pub fn matmul_packed(c: &mut [f32], a: &[f32], b: &PackedMatrix, accumulate: bool) {
    let (k, n) = b.dim();
    let m = a.len().checked_div(k).unwrap_or(c.len() / n.max(1));
    assert_eq!(a.len(), m * k, "matmul_packed: a is not [M, K]");
    assert_eq!(c.len(), m * n, "matmul_packed: c is not [M, N]");
    #[cfg(target_arch = "x86_64")]
    if b.panels && has_avx512() && k > 0 {
        // SAFETY: the CPU has AVX-512F; the shapes were checked above.
        unsafe { avx512::matmul_packed(c, a, b, m, accumulate) };
        return;
    }
    matmul_packed_portable(c, a, b, m, accumulate);
}

fn matmul_packed_portable(c: &mut [f32], a: &[f32], b: &PackedMatrix, m: usize, accumulate: bool) {
    let (k, n) = b.dim();
    let a = ArrayView2::from_shape((m, k), a).unwrap();
    let mut c = ArrayViewMut2::from_shape((m, n), c).unwrap();
    if !b.panels {
        matmul(&mut c, a, b.plain(), accumulate);
        return;
    }
    for p in 0..n.div_ceil(PANEL) {
        let mut cp = c.slice_mut(ndarray::s![.., p * PANEL..n.min((p + 1) * PANEL)]);
        matmul(&mut cp, a, b.panel(p), accumulate);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PANEL, PackedMatrix};
    use std::arch::x86_64::*;

    /// Rows per tile: 6 rows × 4 registers = 24 accumulators, leaving room for the 4 panel
    /// registers and a broadcast.
    const MAX_ROWS: usize = 6;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn matmul_packed(
        c: &mut [f32],
        a: &[f32],
        b: &PackedMatrix,
        m: usize,
        accumulate: bool,
    ) {
        let (k, n) = b.dim();
        let data = b.data().as_ptr();
        // Rows are split into tiles as equal as possible (32 rows: 6,6,5,5,5,5), because
        // a tile of 1–3 rows has too few independent accumulators to hide the FMA latency.
        let tiles = m.div_ceil(MAX_ROWS);
        for p in 0..n.div_ceil(PANEL) {
            let cols = PANEL.min(n - p * PANEL);
            let panel = unsafe { data.add(p * k * PANEL) };
            let mut row = 0;
            for t in 0..tiles {
                let rows = m / tiles + usize::from(t < m % tiles);
                // SAFETY: rows row..row+rows of a ([M, K]) and of c's columns
                // 64p..64p+cols ([M, N]) are in bounds; the panel holds K·64 floats.
                unsafe {
                    let a0 = a.as_ptr().add(row * k);
                    let c0 = c.as_mut_ptr().add(row * n + p * PANEL);
                    match rows {
                        6 => tile::<6>(a0, k, panel, c0, n, cols, accumulate),
                        5 => tile::<5>(a0, k, panel, c0, n, cols, accumulate),
                        4 => tile::<4>(a0, k, panel, c0, n, cols, accumulate),
                        3 => tile::<3>(a0, k, panel, c0, n, cols, accumulate),
                        2 => tile::<2>(a0, k, panel, c0, n, cols, accumulate),
                        _ => tile::<1>(a0, k, panel, c0, n, cols, accumulate),
                    }
                }
                row += rows;
            }
        }
    }

    /// c[r, 0..cols] (+)= Σ_k a[r, k] · panel[k, 0..cols] for r < R, with a's rows `k` apart
    /// and c's rows `ldc` apart.
    #[inline(always)]
    unsafe fn tile<const R: usize>(
        a: *const f32,
        k: usize,
        panel: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 4]; R];
            for kk in 0..k {
                let b = panel.add(kk * PANEL);
                let bv = [
                    _mm512_load_ps(b),
                    _mm512_load_ps(b.add(16)),
                    _mm512_load_ps(b.add(32)),
                    _mm512_load_ps(b.add(48)),
                ];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(r * k + kk));
                    for (acc, bv) in acc.iter_mut().zip(bv) {
                        *acc = _mm512_fmadd_ps(av, bv, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let cr = c.add(r * ldc);
                for (j, &v) in acc.iter().enumerate() {
                    let lo = j * 16;
                    if lo >= cols {
                        break;
                    }
                    let mask: __mmask16 = if cols - lo >= 16 {
                        0xffff
                    } else {
                        ((1u32 << (cols - lo)) - 1) as u16
                    };
                    let v = if accumulate {
                        _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, cr.add(lo)))
                    } else {
                        v
                    };
                    _mm512_mask_storeu_ps(cr.add(lo), mask, v);
                }
            }
        }
    }
}

// Coefficients of a [13/6] odd rational minimax approximation of tanh on [-7.9, 7.9], as
// published in Eigen's `generic_fast_tanh_float` (numbers, not code, taken from there),
// kept with the digits published even where f32 cannot hold them all.
const TANH_CLAMP: f32 = 7.905_311;
const A1: f32 = 4.893_524_6e-3;
const A3: f32 = 6.372_619_3e-4;
const A5: f32 = 1.485_722_4e-5;
const A7: f32 = 5.122_297e-8;
#[allow(clippy::excessive_precision)]
const A9: f32 = -8.604_671_5e-11;
const A11: f32 = 2.000_188e-13;
const A13: f32 = -2.760_768_5e-16;
#[allow(clippy::excessive_precision)]
const B0: f32 = 4.893_525_2e-3;
const B2: f32 = 2.268_434_6e-3;
const B4: f32 = 1.185_347_1e-4;
const B6: f32 = 1.198_258_4e-6;

/// tanh(x) to within 1e-6, branch-free so that loops over it vectorise.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let p = x2 * (x2 * (x2 * (x2 * (x2 * (x2 * A13 + A11) + A9) + A7) + A5) + A3) + A1;
    let q = x2 * (x2 * (x2 * B6 + B4) + B2) + B0;
    x * p / q
}

/// e^x for x ≤ 0 (softmax after subtracting the maximum), to within 2e-7 relative, branch-free
/// so that loops over it vectorise. Cody–Waite range reduction x = n·ln 2 + r, then a degree-6
/// polynomial for e^r (Cephes `expf`'s coefficients) and 2^n built in the exponent bits.
/// Below -87.3 the result is flushed to 0 (e^-87.3 ≈ 1.2e-38, the smallest normal f32).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let under = x < -87.3;
    let x = x.clamp(-87.3, 0.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if under { 0.0 } else { e * scale }
}

/// σ(x) = 1 / (1 + e^-x), computed as (1 + tanh(x/2)) / 2.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * tanh(0.5 * x)
}

/// `ys += xs`, element-wise.
pub fn add_assign(ys: &mut [f32], xs: &[f32]) {
    for (y, x) in ys.iter_mut().zip(xs) {
        *y += x;
    }
}

/// Adds each row of `m` into `out`: out[j] += Σ_i m[i, j]. m: [R, C] row-major, out: [C].
pub fn add_row_sums(out: &mut [f32], m: &[f32]) {
    if out.is_empty() {
        return;
    }
    for row in m.chunks_exact(out.len()) {
        add_assign(out, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn exp_neg_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f64;
        while x <= 0.0 {
            let got = exp_neg(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max((got - want).abs() / want);
            x += 1e-3;
        }
        assert!(worst < 2e-7, "exp max relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-100.0), 0.0);
        assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn tanh_and_sigmoid_match_std() {
        let mut worst_t = 0.0f64;
        let mut worst_s = 0.0f64;
        let mut x = -20.0f64;
        while x <= 20.0 {
            let t = tanh(x as f32) as f64;
            let s = sigmoid(x as f32) as f64;
            worst_t = worst_t.max((t - x.tanh()).abs());
            worst_s = worst_s.max((s - 1.0 / (1.0 + (-x).exp())).abs());
            x += 1e-3;
        }
        assert!(worst_t < 1e-6, "tanh max error {worst_t}");
        assert!(worst_s < 1e-6, "sigmoid max error {worst_s}");
        assert_eq!(tanh(0.0), 0.0);
        assert!(tanh(f32::INFINITY) <= 1.0 && tanh(f32::NEG_INFINITY) >= -1.0);
    }

    fn naive(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                c[[i, j]] = (0..a.ncols()).map(|k| a[[i, k]] * b[[k, j]]).sum();
            }
        }
        c
    }

    fn lcg_matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut s = seed;
        Array2::from_shape_fn((rows, cols), |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
    }

    #[test]
    fn packed_product_matches_naive_for_every_tile_shape() {
        // M covers every tile size (1..6 rows) and uneven splits; N covers a partial
        // 16-column register, a partial panel, and several panels; K includes 1.
        for (m, k, n) in [
            (1, 1, 1),
            (1, 7, 64),
            (5, 3, 17),
            (7, 33, 100),
            (13, 64, 128),
            (32, 40, 130),
            (3, 129, 15),
        ] {
            let a = lcg_matrix(m, k, 1 + m as u64);
            let b = lcg_matrix(k, n, 7 + n as u64);
            let want = naive(&a, &b);
            // From a row-major B, from the transpose of a row-major W = Bᵀ, and from a view
            // that is neither (columns 1..n+1 of a wider matrix); into both layouts.
            let bt = b.t().to_owned();
            let mut wide = Array2::zeros((k, n + 2));
            wide.slice_mut(ndarray::s![.., 1..n + 1]).assign(&b);
            for (source, panels) in [b.view(), bt.t(), wide.slice(ndarray::s![.., 1..n + 1])]
                .into_iter()
                .flat_map(|s| [(s, true), (s, false)])
            {
                let mut packed = PackedMatrix::with_layout(k, n, panels);
                packed.pack(source);
                let a_s = a.as_slice().unwrap();
                let mut c = vec![0.5f32; m * n];
                matmul_packed(&mut c, a_s, &packed, true);
                let mut c_portable = vec![9.0f32; m * n];
                matmul_packed_portable(&mut c_portable, a_s, &packed, m, false);
                for ((x, y), w) in c.iter().zip(&c_portable).zip(&want) {
                    assert!((x - 0.5 - w).abs() < 1e-5, "{m}x{k}x{n}: {x} - 0.5 vs {w}");
                    assert!((y - w).abs() < 1e-5, "{m}x{k}x{n} portable: {y} vs {w}");
                }
                matmul_packed(&mut c, a_s, &packed, false);
                assert!(c.iter().zip(&want).all(|(x, w)| (x - w).abs() < 1e-5));
            }
        }
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
