//! Matrix products with bf16 operands and f32 accumulation (`--precision bf16`), for CPUs
//! with AVX512_BF16 (Zen 4 and 5, Sapphire Rapids and later).
//!
//! `vdpbf16ps` multiplies two pairs of bf16 numbers and adds both products to one f32 lane:
//! one instruction does the work of two f32 FMAs, so the products run at up to twice the f32
//! rate. Each operand is rounded to bf16 (8 significant bits, round to nearest even: a
//! relative error of at most 2⁻⁸) when it is packed; the products and every sum are f32.
//!
//! A *pair* is the two bf16 numbers of k = 2q and 2q+1 in one u32 (2q in the low half), which
//! is what one 32-bit lane of `vdpbf16ps` reads. The layouts:
//! - B [K, N] in panels of 64 columns ([`PackedMatrix`] with `PackedLayout::Bf16Pairs`):
//!   panel p holds, for each pair row q, the 64 pairs (B[2q, j], B[2q+1, j]),
//!   j = 64p .. 64p+64, zero-padded; an odd K is padded with a zero row.
//! - A is packed per call, one block at a time, into a scratch buffer of the calling thread:
//!   pairs along its rows (from a row-major A) or rows along pairs (from a transposed A, such
//!   as `dhᵀ` in a weight gradient), whichever is a contiguous copy; the kernel reads both
//!   through two strides.
//!
//! The blocking follows the usual scheme for a register-tiled product (Goto and van de
//! Geijn, 2008): a block of KC pair rows of one B panel (32 KB) stays in L1 while every
//! 6-row tile of an A block passes over it; the A block (MC x KC pairs, 48 KB) stays in L2.

use super::amx;
use super::packed::{PANEL, PackedMatrix};
use ndarray::{ArrayView2, ArrayViewMut2};
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Pair rows of B (and pairs of A) per block, and rows of A per block, for each kernel. The
/// `vdpbf16ps` kernel keeps a 32 KB block of a B panel in L1 while every 6-row tile of the A
/// block (48 KB, in L2) passes over it; AMX keeps a 32-column strip of the B block (32 KB)
/// in L1 while 256 rows of A (256 KB, in L2) pass over it, 32 at a time.
const DOT_KC: usize = 128;
const DOT_MC: usize = 96;
const AMX_KC: usize = 256;
const AMX_MC: usize = 256;
/// Rows per register tile of the `vdpbf16ps` kernel: 6 rows x 4 registers = 24 accumulators.
const MAX_ROWS: usize = 6;

/// The bf16 kernels, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AMX tiles (`tdpbf16ps`): Sapphire Rapids and later Intel CPUs.
    Amx,
    /// AVX512_BF16 (`vdpbf16ps`): Zen 4 and 5, Cooper Lake, and the Intel CPUs with AMX.
    Avx512,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Amx => "AMX-BF16",
            Kernel::Avx512 => "AVX512_BF16",
        }
    }
}

/// The bf16 kernel of this CPU, or `None` if it has none (or `CHARRNN_ISA` caps the kernels
/// below AVX-512). `CHARRNN_BF16=avx512` chooses `vdpbf16ps` where AMX is present too, so
/// that both kernels can be tested and compared on one machine. Decided once per process.
pub fn kernel() -> Option<Kernel> {
    static KERNEL: OnceLock<Option<Kernel>> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        use std::arch::is_x86_feature_detected as has;
        if super::isa() != super::Isa::Avx512 || !has!("avx512bf16") || !has!("avx512bw") {
            return None;
        }
        let dot_only =
            std::env::var("CHARRNN_BF16").is_ok_and(|v| v.eq_ignore_ascii_case("avx512"));
        Some(if !dot_only && amx::usable() {
            Kernel::Amx
        } else {
            Kernel::Avx512
        })
    })
}

/// Whether the bf16 products can run here (see [`kernel`]).
pub fn available() -> bool {
    kernel().is_some()
}

/// One 64-byte line of packed pairs; scratch and panels are made of these so that every
/// panel row starts on a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

thread_local! {
    /// Packed blocks of A and B of the products this thread runs, and AMX's result tiles;
    /// they grow to the largest block once and are then reused (a product allocates nothing
    /// in steady state).
    static SCRATCH: RefCell<(Vec<Line>, Vec<Line>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Rounds `x` to bf16 as `vcvtne2ps2bf16` does: to nearest, ties to even; a NaN stays a
/// (quiet) NaN. The vector packers use the instruction; this is the scalar path for operands
/// with neither stride 1 and the reference of the tests.
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 value of a bf16 number.
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// Pair rows of a packed K: ceil(K/2), padded to a whole AMX tile (16 pairs) with zeros.
pub(super) fn pair_rows(k: usize) -> usize {
    k.div_ceil(2).next_multiple_of(amx::PAIRS)
}

/// Packs `b` ([K, N], any strides) into `dst` in the pair-panel layout (see the module doc).
/// Must run only where [`available`].
pub(super) fn pack_b(b: ArrayView2<f32>, dst: &mut [u32]) {
    let (k, n) = b.dim();
    let kp = pair_rows(k);
    assert_eq!(
        dst.len(),
        n.div_ceil(PANEL) * kp * PANEL,
        "pack_b: destination size"
    );
    for p in 0..n.div_ceil(PANEL) {
        let panel = &mut dst[p * kp * PANEL..(p + 1) * kp * PANEL];
        // SAFETY: packing runs only where `available()`.
        unsafe { pack_b_panel(b, p, 0..kp, panel) };
    }
}

/// Packs pair rows `rows` of panel `p` of `b` into `dst` ([rows.len(), 64] pairs); rows past
/// K are zeros.
///
/// # Safety
/// AVX512_BF16 and AVX512BW (the packers run only where [`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_b_panel(
    b: ArrayView2<f32>,
    p: usize,
    rows: std::ops::Range<usize>,
    dst: &mut [u32],
) {
    let (k, n) = b.dim();
    let cols = p * PANEL..n.min((p + 1) * PANEL);
    let w = cols.len();
    let (s0, s1) = (b.strides()[0], b.strides()[1]);
    if s0 == 1 && s1 != 1 && k > 0 {
        // B = Wᵀ with W row-major: a column of B is a row of W, contiguous along K. Each
        // column's pairs are converted 16 at a time, and 16 columns are transposed in
        // registers into 16 rows of the panel.
        dst.fill(0);
        let q0 = rows.start;
        for qq in (0..rows.len()).step_by(16) {
            for jj in (0..w).step_by(16) {
                let mut m = [zero(); 16];
                for (i, m) in m.iter_mut().enumerate().take(w - jj) {
                    let first = 2 * (q0 + qq);
                    // SAFETY: column cols.start + jj + i < N of `b`, floats first ..
                    // first + 32 clipped to K; `pairs16` reads only those.
                    unsafe {
                        let col = b.as_ptr().offset((cols.start + jj + i) as isize * s1);
                        *m = pairs16(col.add(first.min(k)), k.saturating_sub(first));
                    }
                }
                transpose16(&mut m);
                for (t, v) in m.iter().enumerate().take(rows.len() - qq) {
                    // SAFETY: row qq + t of the panel block, lanes jj .. jj + 16 ≤ 64.
                    unsafe {
                        _mm512_storeu_si512(dst[(qq + t) * PANEL + jj..].as_mut_ptr().cast(), *v)
                    };
                }
            }
        }
        return;
    }
    for (q, out) in rows.zip(dst.chunks_exact_mut(PANEL)) {
        let (k0, k1) = (2 * q, 2 * q + 1);
        if k0 >= k {
            out.fill(0);
        } else if s1 == 1 {
            // Rows of B are contiguous: two rows, 16 columns at a time, become 16 pairs.
            // SAFETY: rows k0 (and k1 when < K) and columns cols.start + w ≤ N lie inside
            // `b`; the masked loads read only those; `out` has 64 lanes. Packing runs only
            // where `available()`, so the CPU has AVX512_BF16 and AVX512BW.
            unsafe {
                let r0 = b.as_ptr().offset(k0 as isize * s0).add(cols.start);
                let r1 = b
                    .as_ptr()
                    .offset(k1.min(k - 1) as isize * s0)
                    .add(cols.start);
                for c in (0..PANEL).step_by(16) {
                    let v = interleave16(
                        r0.add(c.min(w)),
                        r1.add(c.min(w)),
                        k1 >= k,
                        w.saturating_sub(c),
                    );
                    _mm512_storeu_si512(out.as_mut_ptr().add(c).cast(), v);
                }
            }
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                let hi = |j| if k1 < k { b[[k1, j]] } else { 0.0 };
                *o = if j < w {
                    pair(b[[k0, cols.start + j]], hi(cols.start + j))
                } else {
                    0
                };
            }
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn zero() -> __m512i {
    _mm512_setzero_si512()
}

/// The pairs of min(n, 32) contiguous floats (zeros after them), 16 pairs.
///
/// # Safety
/// AVX512_BF16; `src` readable for min(n, 32) floats.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pairs16(src: *const f32, n: usize) -> __m512i {
    let (m0, m1) = (lane_mask(n), lane_mask(n.saturating_sub(16)));
    // SAFETY: the masked loads read floats 0 .. min(n, 32) only.
    unsafe {
        let lo = _mm512_maskz_loadu_ps(m0, src);
        let hi = _mm512_maskz_loadu_ps(m1, src.add(16.min(n)));
        std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
    }
}

/// Transposes 16 vectors of 16 u32 (a 16 x 16 matrix, one row a vector) in registers:
/// 32-bit, then 64-bit interleaves, then two rounds of 128-bit lane shuffles.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [__m512i; 16]) {
    {
        let mut t = [zero(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        for i in 0..4 {
            r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        for g in [0, 8] {
            for i in 0..4 {
                t[g + i] = _mm512_shuffle_i32x4::<0x88>(r[g + i], r[g + i + 4]);
                t[g + i + 4] = _mm512_shuffle_i32x4::<0xdd>(r[g + i], r[g + i + 4]);
            }
        }
        for i in 0..8 {
            r[i] = _mm512_shuffle_i32x4::<0x88>(t[i], t[i + 8]);
            r[i + 8] = _mm512_shuffle_i32x4::<0xdd>(t[i], t[i + 8]);
        }
    }
}

/// The 16 pairs (r0[j], r1[j]) for j < 16, zero where j ≥ w; r1 read as zeros if `hi_zero`.
///
/// # Safety
/// AVX512_BF16 and AVX512BW; r0 and r1 readable for min(w, 16) floats.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave16(r0: *const f32, r1: *const f32, hi_zero: bool, w: usize) -> __m512i {
    let mask = lane_mask(w);
    // SAFETY: masked loads touch only the first min(w, 16) floats of each row.
    unsafe {
        let x0 = _mm512_maskz_loadu_ps(mask, r0);
        let x1 = if hi_zero {
            _mm512_setzero_ps()
        } else {
            _mm512_maskz_loadu_ps(mask, r1)
        };
        // [r0 as bf16 x16 | r1 as bf16 x16], then interleaved into pairs.
        let halves = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(x1, x0));
        _mm512_permutexvar_epi16(interleave_index(), halves)
    }
}

/// The permutation that turns [a0..a15 | b0..b15] (16-bit lanes) into a0 b0 a1 b1 ...
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn interleave_index() -> __m512i {
    _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    )
}

/// 32 bf16 numbers, as `vdpbf16ps` takes them, from the same 512 bits.
#[inline(always)]
fn bh(v: __m512i) -> __m512bh {
    // SAFETY: both are 64 bytes of plain vector data; every bit pattern is valid in both.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// The first `n` (at most 16) of 16 lanes.
fn lane_mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
    }
}

/// Packs rows `r0..r0+mc`, pair columns `q0..q0+kc` of `a` ([M, K]) into `dst` as rows of
/// `kc` pairs (`kc` a multiple of 16); pairs past K are zeros, and so are the rows from `mc`
/// up to `rows` (the tile multiple the kernel reads).
///
/// # Safety
/// AVX512_BF16 and AVX512BW (the packers run only where [`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_a(
    a: ArrayView2<f32>,
    r0: usize,
    mc: usize,
    rows: usize,
    q0: usize,
    kc: usize,
    dst: &mut [u32],
) {
    let (_, k) = a.dim();
    let (s0, s1) = (a.strides()[0], a.strides()[1]);
    dst[mc * kc..rows * kc].fill(0);
    let floats = (2 * kc).min(k.saturating_sub(2 * q0));
    if s1 == 1 {
        // Row-major A: each row's floats 2q0.. are already in pair order.
        for r in 0..mc {
            let row = &mut dst[r * kc..(r + 1) * kc];
            row[floats.div_ceil(2)..].fill(0);
            // SAFETY: row r0 + r < M; floats 2q0 .. 2q0 + floats ≤ K lie in the row; `row`
            // holds kc ≥ floats/2 pairs. Packing runs only where `available()`.
            unsafe {
                let src = a.as_ptr().offset((r0 + r) as isize * s0).add(2 * q0);
                convert_run(src, floats, row.as_mut_ptr());
            }
        }
    } else if s0 == 1 {
        // A = Xᵀ with X row-major: the block's rows are contiguous in X, its pairs are not.
        // 16 pair columns of 16 rows are made in registers, transposed, and stored as rows.
        for q in (0..kc).step_by(16) {
            for r in (0..mc).step_by(16) {
                let w = (mc - r).min(16);
                let mut v = [zero(); 16];
                for (i, vi) in v.iter_mut().enumerate() {
                    let (k0, k1) = (2 * (q0 + q + i), 2 * (q0 + q + i) + 1);
                    if k0 >= k {
                        break;
                    }
                    // SAFETY: columns k0 (and k1 when < K) of rows r0 + r .. + w lie in `a`;
                    // the masked loads read only those.
                    unsafe {
                        let c0 = a.as_ptr().offset(k0 as isize * s1).add(r0 + r);
                        let c1 = a.as_ptr().offset(k1.min(k - 1) as isize * s1).add(r0 + r);
                        *vi = interleave16(c0, c1, k1 >= k, w);
                    }
                }
                transpose16(&mut v);
                for (j, vj) in v.iter().enumerate().take(w) {
                    // SAFETY: row r + j < mc of the block, pairs q .. q + 16 ≤ kc.
                    unsafe {
                        _mm512_storeu_si512(dst[(r + j) * kc + q..].as_mut_ptr().cast(), *vj)
                    };
                }
            }
        }
    } else {
        for r in 0..mc {
            for q in 0..kc {
                let (k0, k1) = (2 * (q0 + q), 2 * (q0 + q) + 1);
                let x = |kk: usize| if kk < k { a[[r0 + r, kk]] } else { 0.0 };
                dst[r * kc + q] = pair(x(k0), x(k1));
            }
        }
    }
}

/// Converts `n` contiguous floats to `n.div_ceil(2)` pairs (an odd tail paired with zero).
///
/// # Safety
/// AVX512_BF16; `src` readable for n floats, `dst` writable for n.div_ceil(2) pairs.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn convert_run(src: *const f32, n: usize, dst: *mut u32) {
    for i in (0..n).step_by(32) {
        let (m0, m1) = (lane_mask(n - i), lane_mask((n - i).saturating_sub(16)));
        // SAFETY: masked loads read floats i .. min(i + 32, n); the masked store writes pairs
        // i/2 .. (min(i + 32, n) + 1)/2, all inside the caller's regions.
        unsafe {
            let lo = _mm512_maskz_loadu_ps(m0, src.add(i));
            let hi = _mm512_maskz_loadu_ps(m1, src.add(i + 16));
            let v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            let pairs = lane_mask((n - i).div_ceil(2));
            _mm512_mask_storeu_epi32(dst.add(i / 2).cast(), pairs, v);
        }
    }
}

/// `c = a · b`, or `c += a · b` when `accumulate`, with both operands rounded to bf16.
/// a: [M, K], b: [K, N], c: [M, N]; any strides. Runs only where [`available`].
pub fn matmul(
    c: &mut ArrayViewMut2<f32>,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    accumulate: bool,
) {
    assert_eq!(a.ncols(), b.nrows(), "matmul bf16: inner dimensions differ");
    product(
        kernel().expect("bf16 products need AVX512_BF16"),
        c,
        a,
        B::View(b),
        accumulate,
    );
}

/// `c (+)= a · b` with `b` packed as `PackedLayout::Bf16Pairs`; a: [M, K], c: [M, N].
pub(super) fn matmul_packed(
    c: &mut ArrayViewMut2<f32>,
    a: ArrayView2<f32>,
    b: &PackedMatrix,
    accumulate: bool,
) {
    assert_eq!(a.ncols(), b.dim().0, "matmul bf16: inner dimensions differ");
    product(
        kernel().expect("bf16 products need AVX512_BF16"),
        c,
        a,
        B::Packed(b),
        accumulate,
    );
}

enum B<'a> {
    View(ArrayView2<'a, f32>),
    Packed(&'a PackedMatrix),
}

/// The product by `kernel`, which must be one this CPU runs (see [`kernel`]).
fn product(kernel: Kernel, c: &mut ArrayViewMut2<f32>, a: ArrayView2<f32>, b: B, accumulate: bool) {
    let (m, k) = a.dim();
    let n = match &b {
        B::View(v) => v.ncols(),
        B::Packed(p) => p.dim().1,
    };
    assert_eq!(c.dim(), (m, n), "matmul bf16: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    if c.strides()[1] != 1 {
        // The kernels store rows of C; another layout goes through a row-major copy.
        let mut tmp = ndarray::Array2::zeros(c.dim());
        tmp.assign(c);
        product(kernel, &mut tmp.view_mut(), a, b, accumulate);
        c.assign(&tmp);
        return;
    }
    let (kc_max, mc_max, tile_rows) = match kernel {
        Kernel::Amx => (AMX_KC, AMX_MC, amx::ROWS),
        Kernel::Avx512 => (DOT_KC, DOT_MC, 1),
    };
    let out = Out {
        ptr: c.as_mut_ptr(),
        ldc: c.strides()[0] as usize,
        n,
    };
    let kp = pair_rows(k);
    let panels = n.div_ceil(PANEL);
    SCRATCH.with(|s| {
        let (ascratch, bscratch) = &mut *s.borrow_mut();
        grow(
            ascratch,
            mc_max.next_multiple_of(tile_rows) * kc_max + 4 * 256,
        );
        if let B::View(_) = b {
            grow(bscratch, panels * kc_max * PANEL);
        }
        if kernel == Kernel::Amx {
            // SAFETY: `kernel()` chose AMX only after `amx::usable()`.
            unsafe { amx::configure() };
        }
        for q0 in (0..kp).step_by(kc_max) {
            let kc = kc_max.min(kp - q0);
            // B's pair rows q0 .. q0 + kc: panel p at bptr + p·pstride.
            let (bptr, pstride) = match &b {
                B::Packed(pm) => (pm.pairs()[q0 * PANEL..].as_ptr(), kp * PANEL),
                B::View(v) => {
                    let dst = lines_mut(bscratch);
                    for p in 0..panels {
                        let panel = &mut dst[p * kc * PANEL..(p + 1) * kc * PANEL];
                        // SAFETY: `kernel` is this CPU's, so it has AVX512_BF16.
                        unsafe { pack_b_panel(*v, p, q0..q0 + kc, panel) };
                    }
                    (dst.as_ptr(), kc * PANEL)
                }
            };
            let acc = accumulate || q0 > 0;
            for r0 in (0..m).step_by(mc_max) {
                let mc = mc_max.min(m - r0);
                let rows = mc.next_multiple_of(tile_rows);
                let (ablock, tiles) = lines_mut(ascratch).split_at_mut(rows * kc);
                // SAFETY: as for `pack_b_panel`.
                unsafe { pack_a(a, r0, mc, rows, q0, kc, ablock) };
                let block = Block {
                    a: ablock.as_ptr(),
                    mc,
                    kc,
                    r0,
                    b: bptr,
                    pstride,
                    acc,
                };
                // SAFETY: the A block holds `rows` x kc pairs, the B block kc pair rows of
                // every panel, pstride apart; `out` is the caller's C of M x N (row stride
                // ldc, unit column stride); `tiles` holds 1,024 floats; the kernel is this
                // CPU's (checked by `kernel()`).
                unsafe {
                    match kernel {
                        Kernel::Amx => amx_block(&block, &out, tiles.as_mut_ptr().cast()),
                        Kernel::Avx512 => dot_block(&block, &out),
                    }
                }
            }
        }
        if kernel == Kernel::Amx {
            // SAFETY: as for `configure`.
            unsafe { amx::release() };
        }
    });
}

/// The destination C: [M, N], rows `ldc` apart.
struct Out {
    ptr: *mut f32,
    ldc: usize,
    n: usize,
}

/// One block of the product: rows r0 .. r0 + mc of A packed at `a` (rows of `kc` pairs),
/// pair rows of B at `b` (panel p at `b + p·pstride`, rows of 64 pairs); `acc`: add to C.
struct Block {
    a: *const u32,
    mc: usize,
    kc: usize,
    r0: usize,
    b: *const u32,
    pstride: usize,
    acc: bool,
}

/// C[r0 .. r0+mc, ..] (+)= the block's product, by the `vdpbf16ps` kernel.
///
/// # Safety
/// As at the call in [`product`]; the CPU has AVX512_BF16.
unsafe fn dot_block(blk: &Block, out: &Out) {
    let tiles = blk.mc.div_ceil(MAX_ROWS);
    for p in 0..out.n.div_ceil(PANEL) {
        let cols = PANEL.min(out.n - p * PANEL);
        let mut row = 0;
        for t in 0..tiles {
            let rows = blk.mc / tiles + usize::from(t < blk.mc % tiles);
            // SAFETY: the tile's rows and columns are inside C and the blocks (see caller).
            unsafe {
                let a0 = blk.a.add(row * blk.kc);
                let panel = blk.b.add(p * blk.pstride);
                let c0 = out.ptr.add((blk.r0 + row) * out.ldc + p * PANEL);
                let args = (a0, blk.kc, 1, blk.kc, panel, c0, out.ldc, cols, blk.acc);
                match rows {
                    6 => tile::<6>(args),
                    5 => tile::<5>(args),
                    4 => tile::<4>(args),
                    3 => tile::<3>(args),
                    2 => tile::<2>(args),
                    _ => tile::<1>(args),
                }
            }
            row += rows;
        }
    }
}

/// C[r0 .. r0+mc, ..] (+)= the block's product, by AMX, 32 x 32 of C at a time. Each
/// 32-column strip of B stays in cache while every 32 rows of the A block pass over it.
/// Blocks inside C accumulate there directly; those across its edges go through `tiles`.
///
/// # Safety
/// As at the call in [`product`]; AMX usable and configured on this thread; the A block
/// padded with zero rows to a multiple of 32; `tiles` writable for 1,024 floats.
unsafe fn amx_block(blk: &Block, out: &Out, tiles: *mut f32) {
    for c in (0..out.n).step_by(32) {
        let (p, off) = (c / PANEL, c % PANEL);
        // SAFETY: pair columns off .. off + 32 of panel p (64 wide) of the B block.
        let b = unsafe { blk.b.add(p * blk.pstride + off) };
        for r in (0..blk.mc).step_by(amx::ROWS) {
            let (row0, h, w) = (blk.r0 + r, (blk.mc - r).min(32), (out.n - c).min(32));
            // SAFETY: rows r .. r + 32 of the A block (padded) and the B strip above; C's
            // rows row0 .. row0 + h and columns c .. c + w are inside it, so a whole 32 x 32
            // block is written in place and a partial one through `tiles`.
            unsafe {
                let a = blk.a.add(r * blk.kc);
                if h == 32 && w == 32 {
                    let c0 = out.ptr.add(row0 * out.ldc + c);
                    amx::block(a, blk.kc, b, PANEL, blk.kc, c0, out.ldc, blk.acc);
                    continue;
                }
                amx::block(a, blk.kc, b, PANEL, blk.kc, tiles, 32, false);
                for i in 0..h {
                    let src = std::slice::from_raw_parts(tiles.add(i * 32), w);
                    let dst =
                        std::slice::from_raw_parts_mut(out.ptr.add((row0 + i) * out.ldc + c), w);
                    if blk.acc {
                        super::add_assign(dst, src);
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
            }
        }
    }
}

fn grow(v: &mut Vec<Line>, pairs: usize) {
    let lines = pairs.div_ceil(16);
    if v.len() < lines {
        v.resize(lines, Line([0; 16]));
    }
}

fn lines_mut(v: &mut [Line]) -> &mut [u32] {
    // SAFETY: `Line` is 16 u32 without padding, so the lines are len·16 initialised u32.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len() * 16) }
}

type TileArgs = (
    *const u32,
    usize,
    usize,
    usize,
    *const u32,
    *mut f32,
    usize,
    usize,
    bool,
);

/// c[r, 0..cols] (+)= Σ_q a(r, q) · panel[q, 0..cols] over pairs, for r < R.
///
/// # Safety
/// AVX512_BF16; `a` readable at r·rs + q·ks for r < R, q < kc; `panel` readable for kc rows
/// of 64 pairs; `c` writable at R rows (ldc apart) of `cols` ≤ 64 floats.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn tile<const R: usize>(args: TileArgs) {
    let (a, rs, ks, kc, panel, c, ldc, cols, accumulate) = args;
    // SAFETY: every offset stays inside the regions the caller guarantees.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for q in 0..kc {
            let b = panel.add(q * PANEL);
            let bv: [__m512bh; 4] = [
                bh(_mm512_loadu_si512(b.cast())),
                bh(_mm512_loadu_si512(b.add(16).cast())),
                bh(_mm512_loadu_si512(b.add(32).cast())),
                bh(_mm512_loadu_si512(b.add(48).cast())),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let av: __m512bh = bh(_mm512_set1_epi32(*a.add(r * rs + q * ks) as i32));
                for (acc, bv) in acc.iter_mut().zip(bv) {
                    *acc = _mm512_dpbf16_ps(*acc, av, bv);
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
                let mask = lane_mask(cols - lo);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::packed::PackedLayout;
    use crate::kernels::packed::tests::lcg_matrix;
    use ndarray::{Array2, s};

    /// The product of the bf16-rounded operands, in f64: what the kernel must equal up to
    /// f32 summation error.
    fn reference(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f64> {
        let r = |x: f32| from_bf16(to_bf16(x)) as f64;
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|k| r(a[[i, k]]) * r(b[[k, j]])).sum()
        })
    }

    fn skip() -> bool {
        if !available() {
            eprintln!("note: this CPU has no AVX512_BF16; the bf16 kernels are not tested here");
        }
        !available()
    }

    /// Every bf16 kernel this CPU runs (both where it has AMX).
    fn kernels() -> Vec<Kernel> {
        let mut ks = vec![];
        if available() {
            ks.push(Kernel::Avx512);
            if amx::usable() {
                ks.push(Kernel::Amx);
            } else {
                eprintln!("note: no AMX here; only the AVX512_BF16 kernel is tested");
            }
        }
        ks
    }

    fn mm(kernel: Kernel, c: &mut Array2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>, acc: bool) {
        product(kernel, &mut c.view_mut(), a, B::View(b), acc);
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        // Every bf16 is exact; everything else moves by at most half an ulp (2^-8 relative).
        for x in lcg_matrix(1, 1000, 3).iter().map(|x| x * 1e3) {
            let y = from_bf16(to_bf16(x));
            assert!(((y - x) / x).abs() <= 2f32.powi(-8), "{x} -> {y}");
            assert_eq!(from_bf16(to_bf16(y)), y);
        }
    }

    /// The hardware's conversion (used by the vector packers) and [`to_bf16`] (the scalar
    /// packer) agree on normal numbers, halfway cases and infinities, so both packers give
    /// the same operands.
    #[test]
    fn vector_and_scalar_rounding_agree() {
        if skip() {
            return;
        }
        let mut xs: Vec<f32> = lcg_matrix(1, 999, 5).iter().map(|x| x * 77.0).collect();
        xs.extend([
            1.0 + 2f32.powi(-8),
            1.0 + 3.0 * 2f32.powi(-8),
            -0.0,
            f32::INFINITY,
            3e38,
        ]);
        let mut pairs = vec![0u32; xs.len().div_ceil(2)];
        // SAFETY: available() checked above; the buffers have the stated sizes.
        unsafe { convert_run(xs.as_ptr(), xs.len(), pairs.as_mut_ptr()) };
        for (i, &x) in xs.iter().enumerate() {
            let h = (pairs[i / 2] >> (16 * (i % 2))) as u16;
            assert_eq!(h, to_bf16(x), "{x}");
        }
        if xs.len() % 2 == 1 {
            assert_eq!(pairs[xs.len() / 2] >> 16, 0, "odd tail paired with zero");
        }
    }

    /// Every layout of A and B the model passes (row-major, transposed, strided views), every
    /// tile height, partial panels and blocks, odd K, accumulate or not: the kernel equals
    /// the f64 product of the rounded operands to f32 summation error.
    #[test]
    fn products_match_the_rounded_reference() {
        if skip() {
            return;
        }
        for (m, k, n) in [
            (1, 1, 1),
            (5, 3, 17),
            (7, 33, 100),
            (13, 64, 128),
            (32, 301, 130),
            (100, 257, 65),
            (200, 520, 70),
        ] {
            let a = lcg_matrix(m, k, 11 + m as u64);
            let b = lcg_matrix(k, n, 17 + n as u64);
            let want = reference(a.view(), b.view());
            let at = a.t().to_owned();
            let bt = b.t().to_owned();
            // Views with neither stride 1 (every other column of a wider matrix).
            let mut a2 = Array2::zeros((m, 2 * k));
            a2.slice_mut(s![.., ..;2]).assign(&a);
            let mut b2 = Array2::zeros((k, 2 * n));
            b2.slice_mut(s![.., ..;2]).assign(&b);
            let a_views = [a.view(), at.t(), a2.slice(s![.., ..;2])];
            let b_views = [b.view(), bt.t(), b2.slice(s![.., ..;2])];
            let tol = |w: f64| 1e-5 * (1.0 + w.abs()) * (k as f64).sqrt();
            for kernel in kernels() {
                for av in a_views {
                    for bv in b_views {
                        let mut c = Array2::from_elem((m, n), 0.25f32);
                        mm(kernel, &mut c, av, bv, true);
                        for (x, w) in c.iter().zip(&want) {
                            let e = (*x as f64 - 0.25 - w).abs();
                            assert!(e <= tol(*w), "{kernel:?} {m}x{k}x{n}: {x} vs {w}");
                        }
                        let mut packed = PackedMatrix::with_layout(k, n, PackedLayout::Bf16Pairs);
                        packed.pack(bv);
                        let mut c = Array2::from_elem((m, n), 9.0f32);
                        product(kernel, &mut c.view_mut(), av, B::Packed(&packed), false);
                        for (x, w) in c.iter().zip(&want) {
                            let e = (*x as f64 - w).abs();
                            assert!(e <= tol(*w), "{kernel:?} {m}x{k}x{n} packed: {x} vs {w}");
                        }
                    }
                }
                // A transposed destination goes through a copy.
                let mut ct = Array2::from_elem((n, m), 1.0f32);
                product(
                    kernel,
                    &mut ct.view_mut().reversed_axes(),
                    a.view(),
                    B::View(b.view()),
                    true,
                );
                for (x, w) in ct.t().iter().zip(&want) {
                    assert!((*x as f64 - 1.0 - w).abs() <= tol(*w));
                }
            }
        }
    }

    /// Against the exact product of the unrounded operands the error is bf16's: each term
    /// a·b moves by at most (1 + 2^-8)² - 1 ≈ 2^-7 relative, so |Δ| ≤ 2^-7 · Σ|a||b|.
    #[test]
    fn products_are_within_bf16_rounding_of_f32() {
        if skip() {
            return;
        }
        let (m, k, n) = (64, 512, 256);
        let a = lcg_matrix(m, k, 1);
        let b = lcg_matrix(k, n, 2);
        let exact = a.mapv(|x| x as f64).dot(&b.mapv(|x| x as f64));
        let scale = a.mapv(|x| x.abs() as f64).dot(&b.mapv(|x| x.abs() as f64));
        for kernel in kernels() {
            let mut c = Array2::zeros((m, n));
            mm(kernel, &mut c, a.view(), b.view(), false);
            let mut worst = 0f64;
            for ((x, e), s) in c.iter().zip(&exact).zip(&scale) {
                let r = (*x as f64 - e).abs() / s;
                assert!(
                    r <= 2f64.powi(-7) * (1.0 + 1e-3),
                    "{kernel:?}: error {r} of the scale"
                );
                worst = worst.max(r);
            }
            // And it is not exact: the operands really were rounded.
            assert!(worst > 1e-5, "{kernel:?}: worst {worst}");
        }
    }
}
