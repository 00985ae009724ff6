//! The AMX kernel of the bf16 products (Sapphire Rapids and later Intel CPUs).
//!
//! AMX adds eight tile registers of up to 16 rows x 64 bytes and `tdpbf16ps`, which
//! multiplies a 16 x 32 bf16 tile of A by a 32 x 16 tile of B (as 16 rows of 16 pairs: the
//! layout of [`super::bf16`]) into a 16 x 16 f32 tile of C: 8,192 multiply-adds in one
//! instruction. On the development machine one core ran 2.5 TFLOP/s of it from registers,
//! against 240 GFLOP/s of f32 FMAs (and 90-110 of `vdpbf16ps`, which Sapphire Rapids runs at
//! a fraction of the FMA rate: there AMX is the only fast bf16 path).
//!
//! Rust has no stable AMX intrinsics, so the instructions are written with `asm!`. The tile
//! registers are not registers the compiler allocates: nothing else in the program touches
//! them, and every product configures them first and releases them at the end.

use std::arch::asm;

/// Rows of C per step of the kernel: two A tiles of 16 rows.
pub(super) const ROWS: usize = 32;
/// Pairs of K per tile: 16 pairs = 32 bf16 = 64 bytes, one tile row.
pub(super) const PAIRS: usize = 16;

/// The tile configuration (`ldtilecfg`'s 64-byte operand): palette 1, every tile 16 rows of
/// 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Whether the CPU has AMX-BF16 and the kernel lets this process use the tiles (Linux asks a
/// process to request the 8 KB of tile state once, with `arch_prctl`).
pub(super) fn usable() -> bool {
    // Leaf 7 exists on every CPU with AVX-512, which the caller has checked first.
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (bf16, tile) = (leaf7.edx >> 22 & 1 == 1, leaf7.edx >> 24 & 1 == 1);
    bf16 && tile && request_tile_state()
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    const SYS_ARCH_PRCTL: i64 = 158;
    let ret: i64;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) only grants this process
    // permission to use the AMX state; it reads and writes no memory of ours.
    unsafe {
        asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
             in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// Configures the tiles for this thread (every product starts with it: a thread of the pool
/// may run its first product at any time).
///
/// # Safety
/// [`usable`] must have returned true in this process.
pub(super) unsafe fn configure() {
    // SAFETY: CONFIG is a valid palette-1 configuration, 64 bytes, aligned.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack)) };
}

/// Returns the tiles to their initial state, so that the kernel need not save 8 KB of them
/// at every context switch.
///
/// # Safety
/// [`usable`] must have returned true in this process.
pub(super) unsafe fn release() {
    // SAFETY: tilerelease only resets the tile state.
    unsafe { asm!("tilerelease", options(nostack)) };
}

/// C[0..32, 0..32] = (C +) A[0..32, pairs] · B[pairs, 0..32], for `kc` pairs (a multiple of
/// 16): the four 16 x 16 result tiles start from C's values when `load`, from zero
/// otherwise, and are stored back into C.
///
/// `a`: 32 rows of `kc` pairs, rows `lda` pairs apart. `b`: `kc` rows of at least 32 pairs,
/// rows `ldb` pairs apart. `c`: 32 rows of 32 floats, rows `ldc` floats apart.
///
/// # Safety
/// [`configure`] ran on this thread; `a` readable for 32 rows of kc pairs, `b` for kc rows of
/// 32 pairs, `c` readable and writable for 32 rows of 32 floats.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block(
    a: *const u32,
    lda: usize,
    b: *const u32,
    ldb: usize,
    kc: usize,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    let (sa, sb, sc) = (lda * 4, ldb * 4, ldc * 4);
    let (c01, c10, c11) = (
        c.wrapping_add(16),
        c.wrapping_add(16 * ldc),
        c.wrapping_add(16 * ldc + 16),
    );
    // SAFETY: every tile load reads 16 rows of 64 bytes inside the regions above; the stores
    // write the four 16 x 16 quarters of C.
    unsafe {
        if load {
            asm!(
                "tileloadd tmm0, [{c00} + {s}*1]",
                "tileloadd tmm1, [{c01} + {s}*1]",
                "tileloadd tmm2, [{c10} + {s}*1]",
                "tileloadd tmm3, [{c11} + {s}*1]",
                c00 = in(reg) c, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11,
                s = in(reg) sc, options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack)
            );
        }
        for q in (0..kc).step_by(PAIRS) {
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(q), a1 = in(reg) a.add(16 * lda + q),
                b0 = in(reg) b.add(q * ldb), b1 = in(reg) b.add(q * ldb + 16),
                sa = in(reg) sa, sb = in(reg) sb,
                options(nostack, readonly),
            );
        }
        asm!(
            "tilestored [{c00} + {s}*1], tmm0",
            "tilestored [{c01} + {s}*1], tmm1",
            "tilestored [{c10} + {s}*1], tmm2",
            "tilestored [{c11} + {s}*1], tmm3",
            c00 = in(reg) c, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11,
            s = in(reg) sc, options(nostack),
        );
    }
}
