//! The AVX-512 kernel of [`super::matmul_packed`]: 6x64 register tiles over 64-column panels.

use super::packed::{LINE_FLOATS, PANEL, PackedMatrix, Prefetch};
use std::arch::x86_64::*;

/// Rows per tile: 6 rows × 4 registers = 24 accumulators, leaving room for the 4 panel
/// registers and a broadcast.
const MAX_ROWS: usize = 6;

/// c (+)= a · b for a: [M, K] and c: [M, N] row-major, b in the panel layout.
///
/// # Safety
/// The CPU must have AVX-512F; `a.len() == m·K`, `c.len() == m·N`, and `b` must be in
/// `PackedLayout::Panels` (its data holds ceil(N/64)·K·64 floats, each panel row starting
/// on a 64-byte boundary, as the aligned loads require).
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
    let panels = n.div_ceil(PANEL);
    // W_hh is larger than L2 (4 MB at 512 units), so each panel comes from L3 or memory.
    // Left alone, the first row tile would wait for it at the full rate of its FMAs while
    // the other tiles find it in L2 (a 2x512 trained a seventh slower on 32 streams).
    // Instead the tiles of panel p spread prefetches of panel p+1 into L2 evenly over their
    // K loops, so that the L3 traffic overlaps the arithmetic; the last panel fetches the
    // first, which the next time step reads. Only where two panels fit in L2 with room to
    // spare, so that the prefetches never evict the panel being read.
    let panel_bytes = k * PANEL * 4;
    let lines = if 2 * panel_bytes <= super::cache::l2().0 / 4 * 3 {
        k * PANEL_LINES
    } else {
        0
    };
    for p in 0..panels {
        let cols = PANEL.min(n - p * PANEL);
        // SAFETY: panel p starts at p·K·64 < ceil(N/64)·K·64, inside the data.
        let panel = unsafe { data.add(p * k * PANEL) };
        // SAFETY: as for `panel`, for panel (p+1) mod panels.
        let next = unsafe { data.add((p + 1) % panels * k * PANEL) };
        let mut row = 0;
        for t in 0..tiles {
            let rows = m / tiles + usize::from(t < m % tiles);
            let pf = Prefetch::new(next, LINE_FLOATS, lines, k, tiles, t);
            // SAFETY: rows row..row+rows of a ([M, K]) and of c's columns 64p..64p+cols
            // ([M, N]) are in bounds; the panel holds K·64 floats on 64-byte lines.
            unsafe {
                let a0 = a.as_ptr().add(row * k);
                let c0 = c.as_mut_ptr().add(row * n + p * PANEL);
                match rows {
                    6 => tile::<6>(a0, k, panel, c0, n, cols, accumulate, pf),
                    5 => tile::<5>(a0, k, panel, c0, n, cols, accumulate, pf),
                    4 => tile::<4>(a0, k, panel, c0, n, cols, accumulate, pf),
                    3 => tile::<3>(a0, k, panel, c0, n, cols, accumulate, pf),
                    2 => tile::<2>(a0, k, panel, c0, n, cols, accumulate, pf),
                    _ => tile::<1>(a0, k, panel, c0, n, cols, accumulate, pf),
                }
            }
            row += rows;
        }
    }
}

/// Cache lines in one panel row (64 floats).
const PANEL_LINES: usize = PANEL / LINE_FLOATS;

/// c[r, 0..cols] (+)= Σ_k a[r, k] · panel[k, 0..cols] for r < R, with a's rows `k` apart
/// and c's rows `ldc` apart.
///
/// # Safety
/// AVX-512F; `a` readable for R rows of `k`, `panel` for `k` rows of 64 floats starting on
/// a 64-byte boundary, `c` writable at R rows of `cols` ≤ 64 floats.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    a: *const f32,
    k: usize,
    panel: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
    mut pf: Prefetch,
) {
    // SAFETY: every pointer offset stays inside the regions the caller guarantees; the
    // aligned loads read panel rows, which start on 64-byte lines. A prefetch reads nothing
    // (it is only a hint), and its addresses stay inside the next panel anyway.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for kk in 0..k {
            pf.tick();
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
