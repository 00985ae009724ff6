//! The product inside the time loop: a small batch of states times a weight matrix that
//! stays fixed for a whole window, over a copy of the matrix packed for the kernel.

use super::{Isa, matmul};
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

/// Width of a panel of a [`PackedMatrix`]: four 16-float AVX-512 registers.
pub(super) const PANEL: usize = 64;
/// Floats in one 64-byte cache line (and one AVX-512 register).
pub(super) const LINE_FLOATS: usize = 16;

/// One panel row, aligned to a cache line so that the kernel's loads never straddle two.
/// The AVX-512 kernel reads panel rows with aligned loads (`_mm512_load_ps`), which is sound
/// only because every panel row starts on a `Line` (checked at compile time below).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line([f32; LINE_FLOATS]);

const _: () = assert!(std::mem::size_of::<Line>() == 64 && std::mem::align_of::<Line>() == 64);
const _: () = assert!(
    PANEL.is_multiple_of(LINE_FLOATS),
    "a panel row is a whole number of lines"
);

/// How a [`PackedMatrix`] stores B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedLayout {
    /// Columns cut into panels of [`PANEL`]; panel p holds B[.., 64p .. 64p+64] row by row,
    /// zero-padded to 64 columns: the AVX-512 kernel reads it front to back, one aligned
    /// cache line per 16 floats; the AVX2 kernel reads it in 16-column strips.
    Panels,
    /// Plain row-major [K, N], handed to `gemm` whole as one contiguous operand.
    RowMajor,
    /// bf16 pairs in 64-column panels, for the bf16 products (see [`super::bf16`]); only
    /// where [`super::bf16_available`].
    Bf16Pairs,
}

impl PackedLayout {
    /// The layout the kernels of `isa` read.
    pub fn for_isa(isa: Isa) -> PackedLayout {
        if isa >= Isa::Avx2 && cfg!(target_arch = "x86_64") {
            PackedLayout::Panels
        } else {
            PackedLayout::RowMajor
        }
    }
}

/// A matrix B [K, N] stored for [`matmul_packed`].
///
/// W_hh does not change within a window: it is packed once per step of the optimizer and then
/// read T times, where a general product (the `gemm` crate) would re-pack it on every call
/// and keep fewer accumulators busy at these small M.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    layout: PackedLayout,
    lines: Vec<Line>,
}

impl PackedMatrix {
    /// Zeros of shape [K, N], in the layout of the kernels [`super::isa`] chooses.
    ///
    /// Panics if K·N (padded) overflows `usize`, as `vec!` does for impossible sizes.
    pub fn new(k: usize, n: usize) -> PackedMatrix {
        PackedMatrix::with_layout(k, n, PackedLayout::for_isa(super::isa()))
    }

    pub fn with_layout(k: usize, n: usize, layout: PackedLayout) -> PackedMatrix {
        let len = match layout {
            PackedLayout::Panels => n
                .div_ceil(PANEL)
                .checked_mul(k)
                .and_then(|x| x.checked_mul(PANEL)),
            PackedLayout::RowMajor => k.checked_mul(n),
            // u32 pairs, the same size as f32.
            PackedLayout::Bf16Pairs => bf16_len(k, n),
        }
        .expect("PackedMatrix: size overflows usize");
        PackedMatrix {
            k,
            n,
            layout,
            lines: vec![Line([0.0; LINE_FLOATS]); len.div_ceil(LINE_FLOATS)],
        }
    }

    /// (K, N).
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    pub fn layout(&self) -> PackedLayout {
        self.layout
    }

    pub(super) fn data(&self) -> &[f32] {
        // SAFETY: `Line` is 16 f32 with no padding (size 64, align 64, asserted above), so
        // `lines` is `lines.len() * LINE_FLOATS` initialised, contiguous f32.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.lines.len() * LINE_FLOATS)
        }
    }

    fn data_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `data`; the borrow of `self` is unique.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.lines.as_mut_ptr().cast(),
                self.lines.len() * LINE_FLOATS,
            )
        }
    }

    /// Panel p as a [K, width] matrix view (panel layout only).
    fn panel(&self, p: usize) -> ArrayView2<'_, f32> {
        let w = PANEL.min(self.n - p * PANEL);
        let d = &self.data()[p * self.k * PANEL..(p + 1) * self.k * PANEL];
        ArrayView2::from_shape((self.k, w).strides((PANEL, 1)), d).unwrap()
    }

    /// The packed pairs (bf16 layout only).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn pairs(&self) -> &[u32] {
        let len = bf16_len(self.k, self.n).expect("checked at construction");
        // SAFETY: `Line` is 16 plain 4-byte numbers without padding; any bits are a valid
        // u32, and `with_layout` made at least `len` of them.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), len) }
    }

    /// B as a row-major [K, N] view (row-major layout only).
    fn plain(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.k, self.n), &self.data()[..self.k * self.n]).unwrap()
    }

    /// Stores `b` ([K, N], any strides; pass `w.t()` to pack a transpose).
    pub fn pack(&mut self, b: ArrayView2<f32>) {
        assert_eq!(b.dim(), (self.k, self.n), "pack: shape");
        let (k, n) = (self.k, self.n);
        if self.layout == PackedLayout::Bf16Pairs {
            let len = bf16_len(k, n).expect("checked at construction");
            // SAFETY: as in `pairs`, with the borrow of `self` unique.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u32>(), len)
            };
            #[cfg(target_arch = "x86_64")]
            super::bf16::pack_b(b, dst);
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("bf16 layout on a CPU without bf16 products ({})", dst.len());
            return;
        }
        if self.layout == PackedLayout::RowMajor {
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
/// With the panel layout (AVX-512), each 64-column panel of `b` is multiplied by tiles of at
/// most 6 rows of `a` held in 24 accumulator registers for the whole K loop (~215 GFLOP/s on
/// one core of an AVX-512 development machine for M = 32, against 140–190 for `gemm` on the
/// unpacked matrix). Otherwise the product goes to [`matmul`].
///
/// Panics if `a` is not [M, K] or `c` is not [M, N] for one M; sound for any input.
pub fn matmul_packed(c: &mut [f32], a: &[f32], b: &PackedMatrix, accumulate: bool) {
    let (k, n) = b.dim();
    let m = a.len().checked_div(k).unwrap_or(c.len() / n.max(1));
    assert!(
        m.checked_mul(k) == Some(a.len()),
        "matmul_packed: a is not [M, K]"
    );
    assert!(
        m.checked_mul(n) == Some(c.len()),
        "matmul_packed: c is not [M, N]"
    );
    #[cfg(target_arch = "x86_64")]
    if b.layout == PackedLayout::Bf16Pairs {
        let a = ArrayView2::from_shape((m, k), a).unwrap();
        let mut c = ArrayViewMut2::from_shape((m, n), c).unwrap();
        super::bf16::matmul_packed(&mut c, a, b, accumulate);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if b.layout == PackedLayout::Panels && k > 0 && super::isa() == Isa::Avx512 {
        // SAFETY: the CPU has AVX-512F (`isa()` checked it); a is [M, K] and c is [M, N]
        // (asserted above without overflow), and `b`'s panels hold ceil(N/64)·K·64 floats
        // starting on 64-byte lines, which is what `avx512::matmul_packed` requires.
        unsafe { super::avx512::matmul_packed(c, a, b, m, accumulate) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if b.layout == PackedLayout::Panels && k > 0 && super::isa() == Isa::Avx2 {
        // SAFETY: the CPU has AVX2 and FMA (`isa()` checked it); the shapes are as above.
        unsafe { super::avx2::matmul_packed(c, a, b, m, accumulate) };
        return;
    }
    matmul_packed_portable(c, a, b, m, accumulate);
}

/// One row tile's share of the prefetches into L2 of the block of B that the kernel reads
/// after the current one: the row tiles of a block together run `tiles · iters` iterations
/// of their K loops, and fetch the next block's `lines` cache lines evenly over them
/// (iteration i has fetched floor((i+1) · lines / (tiles · iters)) by its end), so that
/// the traffic from L3 overlaps the arithmetic instead of stalling the first tile.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Prefetch {
    base: *const f32,
    /// Floats from one of the block's lines to the next.
    stride: usize,
    line: usize,
    rem: usize,
    step: usize,
    den: usize,
}

#[cfg(target_arch = "x86_64")]
impl Prefetch {
    /// For tile `t` of `tiles`, each running `iters` iterations; `lines` of 0 fetches nothing.
    pub(super) fn new(
        base: *const f32,
        stride: usize,
        lines: usize,
        iters: usize,
        tiles: usize,
        t: usize,
    ) -> Prefetch {
        let den = (tiles * iters).max(1);
        let done = t * iters * lines;
        Prefetch {
            base,
            stride,
            line: done / den,
            rem: done % den,
            step: lines,
            den,
        }
    }

    /// One iteration's share. Only hints: a prefetch never faults or changes a result, and
    /// its addresses stay inside the next block anyway.
    #[inline(always)]
    pub(super) fn tick(&mut self) {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        self.rem += self.step;
        while self.rem >= self.den {
            // SAFETY: `wrapping_add` computes the address without dereferencing it, and a
            // prefetch reads nothing the program can observe.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(self.base.wrapping_add(self.line * self.stride).cast())
            };
            self.line += 1;
            self.rem -= self.den;
        }
    }
}

/// u32 pairs of a bf16 [K, N]: ceil(N/64) panels of K/2 pair rows (padded to 16) of 64.
fn bf16_len(k: usize, n: usize) -> Option<usize> {
    let rows = k.div_ceil(2).checked_next_multiple_of(16)?;
    n.div_ceil(PANEL).checked_mul(rows)?.checked_mul(PANEL)
}

fn matmul_packed_portable(c: &mut [f32], a: &[f32], b: &PackedMatrix, m: usize, accumulate: bool) {
    let (k, n) = b.dim();
    assert!(
        b.layout != PackedLayout::Bf16Pairs,
        "bf16 products need AVX512_BF16"
    );
    let a = ArrayView2::from_shape((m, k), a).unwrap();
    let mut c = ArrayViewMut2::from_shape((m, n), c).unwrap();
    if b.layout == PackedLayout::RowMajor {
        matmul(&mut c, a, b.plain(), accumulate);
        return;
    }
    for p in 0..n.div_ceil(PANEL) {
        let mut cp = c.slice_mut(ndarray::s![.., p * PANEL..n.min((p + 1) * PANEL)]);
        matmul(&mut cp, a, b.panel(p), accumulate);
    }
}

#[cfg(test)]
pub(super) mod tests {
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

    /// A reproducible matrix of values in [-0.5, 0.5) (a linear congruential generator).
    pub(in crate::kernels) fn lcg_matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
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
            for (source, layout) in [b.view(), bt.t(), wide.slice(ndarray::s![.., 1..n + 1])]
                .into_iter()
                .flat_map(|s| [(s, PackedLayout::Panels), (s, PackedLayout::RowMajor)])
            {
                let mut packed = PackedMatrix::with_layout(k, n, layout);
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
                // The AVX2 kernel, wherever the CPU has AVX2 (whatever the widest level).
                #[cfg(target_arch = "x86_64")]
                if layout == PackedLayout::Panels && crate::kernels::detected() >= Isa::Avx2 {
                    // Strips whole and in blocks of 64 and of 7 rows (with L2 as small as
                    // that, K is cut into blocks whose products add up).
                    for (acc, kc) in [(false, usize::MAX), (true, 64), (true, 7), (false, 7)] {
                        let mut c2 = vec![0.5f32; m * n];
                        // SAFETY: the CPU has AVX2 and FMA; the shapes are [m, k], [m, n].
                        unsafe {
                            crate::kernels::avx2::matmul_packed_kc(
                                &mut c2, a_s, &packed, m, acc, kc,
                            )
                        };
                        let off = if acc { 0.5 } else { 0.0 };
                        for (x, w) in c2.iter().zip(&want) {
                            assert!((x - off - w).abs() < 1e-5, "{m}x{k}x{n} avx2: {x} vs {w}");
                        }
                    }
                }
            }
        }
    }

    /// The tiles of a block together fetch each of the next block's lines once, in order,
    /// spread evenly: no iteration fetches more than its share rounded up, and none when
    /// there is nothing to fetch.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn prefetches_cover_the_next_block_once_and_evenly() {
        let buf = vec![0.0f32; 4 * 2048 * 16];
        for (lines, iters, tiles) in [
            (2048usize, 512usize, 3usize),
            (8192, 2048, 3),
            (2048, 512, 6),
            (4, 1, 1),
            (7, 3, 2),
            (64, 64, 5),
            (0, 512, 3),
        ] {
            let share = lines.div_ceil(tiles * iters);
            let mut next = 0;
            for t in 0..tiles {
                let mut pf = Prefetch::new(buf.as_ptr(), 16, lines, iters, tiles, t);
                assert_eq!(pf.line, next, "{lines} {iters} {tiles}: tile {t} starts");
                for _ in 0..iters {
                    let before = pf.line;
                    pf.tick();
                    assert!(pf.line - before <= share, "{lines} {iters} {tiles}");
                }
                next = pf.line;
            }
            assert_eq!(next, lines, "{lines} {iters} {tiles}: all fetched");
        }
    }

    /// Sizes are checked without wrapping: an impossible matrix panics on allocation
    /// instead of wrapping to a small buffer, and mismatched operands are refused.
    #[test]
    fn sizes_are_checked_not_wrapped() {
        for layout in [PackedLayout::Panels, PackedLayout::RowMajor] {
            let r = std::panic::catch_unwind(|| PackedMatrix::with_layout(2, 1 << 63, layout));
            assert!(r.is_err(), "{layout:?}");
        }
        let b = PackedMatrix::with_layout(3, 4, PackedLayout::Panels);
        let r = std::panic::catch_unwind(|| {
            let mut c = vec![0.0; 8];
            matmul_packed(&mut c, &[0.0; 5], &b, false)
        });
        assert!(r.is_err());
    }
}
