//! The AVX2 kernel of [`super::matmul_packed`]: 6x16 register tiles over 16-column strips
//! of the same 64-column panels the AVX-512 kernel reads.
//!
//! AVX2 has 16 registers of 8 floats: a tile of 6 rows x 16 columns keeps 12 accumulators,
//! 2 panel registers and a broadcast in them (the shape the usual AVX2 kernels use, e.g.
//! BLIS's haswell 6x16). Each strip of a panel (K rows x 64 bytes) is read by every row tile
//! in turn while it is in L2 (in blocks of rows sized from the L2 cache, see
//! [`super::cache`]), so W_hh passes through the cache hierarchy once per time step,
//! without the re-packing a general product does per call.

use super::packed::{PANEL, PackedMatrix, Prefetch};
use std::arch::x86_64::*;

/// Rows per tile: 6 rows x 2 registers = 12 accumulators.
const MAX_ROWS: usize = 6;
/// Columns per strip: two 8-float registers.
const STRIP: usize = 16;

/// c (+)= a · b for a: [M, K] and c: [M, N] row-major, b in the panel layout.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a.len() == m·K`, `c.len() == m·N`, and `b` must be in
/// `PackedLayout::Panels` (ceil(N/64)·K·64 floats).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn matmul_packed(
    c: &mut [f32],
    a: &[f32],
    b: &PackedMatrix,
    m: usize,
    accumulate: bool,
) {
    // A block of a strip (kc rows of 64 bytes) is read by every row tile in turn: kc is
    // chosen so that it takes at most a quarter of L2, leaving room for the rows of A and C.
    let kc = (super::cache::l2().0 / 4 / (STRIP * 4)).max(64);
    // SAFETY: as for this function.
    unsafe { matmul_packed_kc(c, a, b, m, accumulate, kc) }
}

/// [`matmul_packed`] with strips read in blocks of `kc` rows.
///
/// # Safety
/// As for [`matmul_packed`]; `kc` > 0.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn matmul_packed_kc(
    c: &mut [f32],
    a: &[f32],
    b: &PackedMatrix,
    m: usize,
    accumulate: bool,
    kc: usize,
) {
    let (k, n) = b.dim();
    let data = b.data().as_ptr();
    let tiles = m.div_ceil(MAX_ROWS);
    let panels = n.div_ceil(PANEL);
    // The blocks in the order they are read: panel, strip, rows k0.. of the strip.
    let blocks = (0..panels).flat_map(|p| {
        let cols = PANEL.min(n - p * PANEL);
        (0..cols)
            .step_by(STRIP)
            .flat_map(move |s| (0..k).step_by(kc).map(move |k0| (p, cols, s, k0)))
    });
    // While a block is read from L2 by every row tile, the tiles fetch the next one (after
    // the last, the first, which the next time step reads): see `Prefetch`. Two blocks take
    // at most half of L2.
    let next = blocks.clone().skip(1).chain(blocks.clone().take(1));
    for ((p, cols, s, k0), (np, _, ns, nk0)) in blocks.zip(next) {
        let w = STRIP.min(cols - s);
        let kb = kc.min(k - k0);
        let acc = accumulate || k0 > 0;
        // SAFETY: panel p starts at p·K·64; row k0 < K and column s < 64 of it.
        let strip = unsafe { data.add(p * k * PANEL + k0 * PANEL + s) };
        // SAFETY: as for `strip`, for the next block.
        let next_strip = unsafe { data.add(np * k * PANEL + nk0 * PANEL + ns) };
        let next_lines = kc.min(k - nk0);
        let mut row = 0;
        for t in 0..tiles {
            let pf = Prefetch::new(next_strip, PANEL, next_lines, kb, tiles, t);
            // Rows split as equally as possible: a tile of 1-3 rows has too few
            // independent accumulators to hide the FMA latency.
            let rows = m / tiles + usize::from(t < m % tiles);
            // SAFETY: rows row..row+rows of a ([M, K], from column k0) and of c's
            // columns 64p+s..64p+s+w ([M, N]) are in bounds; the strip holds kb
            // rows of 16 floats, 64 floats apart.
            unsafe {
                let a0 = a.as_ptr().add(row * k + k0);
                let c0 = c.as_mut_ptr().add(row * n + p * PANEL + s);
                let args = (a0, k, kb, strip, c0, n, w, acc, pf);
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

type TileArgs = (
    *const f32,
    usize,
    usize,
    *const f32,
    *mut f32,
    usize,
    usize,
    bool,
    Prefetch,
);

/// c[r, 0..w] (+)= Σ_k a[r, k] · strip[k, 0..w] for r < R and k < kb, with a's rows `lda`
/// apart, the strip's rows 64 floats apart and c's rows `ldc` apart.
///
/// # Safety
/// AVX2 and FMA; `a` readable for R rows of `kb` (`lda` apart), `strip` for `kb` rows of 16
/// floats (64 apart), `c` writable at R rows of `w` ≤ 16 floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(args: TileArgs) {
    let (a, lda, kb, strip, c, ldc, w, accumulate, mut pf) = args;
    // SAFETY: every pointer offset stays inside the regions the caller guarantees.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for kk in 0..kb {
            pf.tick();
            let b = strip.add(kk * PANEL);
            let bv = [_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))];
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r * lda + kk));
                acc[0] = _mm256_fmadd_ps(av, bv[0], acc[0]);
                acc[1] = _mm256_fmadd_ps(av, bv[1], acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let cr = c.add(r * ldc);
            for (j, &v) in acc.iter().enumerate() {
                let lo = j * 8;
                if lo >= w {
                    break;
                }
                let mask = lane_mask(w - lo);
                let v = if accumulate {
                    _mm256_add_ps(v, _mm256_maskload_ps(cr.add(lo), mask))
                } else {
                    v
                };
                _mm256_maskstore_ps(cr.add(lo), mask, v);
            }
        }
    }
}

/// The first `n` (at most 8) of 8 lanes, as the sign bits `vmaskmovps` reads.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_mask(n: usize) -> __m256i {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes)
}
