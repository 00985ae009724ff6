//! The compute kernels: matrix products, the packed product of the time loop, the
//! element-wise functions of the hot path, and the choice of instruction set.
//!
//! - [`matmul`]: general products through the `gemm` crate (pure Rust, its own AVX-512/AVX2
//!   kernels chosen at run time, any strides, so a transposed operand `a.t()` costs no copy).
//! - [`PackedMatrix`] and [`matmul_packed`]: a small batch times a weight matrix that stays
//!   fixed for a whole window (`h_{t-1} · W_hhᵀ`), with AVX-512 and AVX2 kernels over a
//!   packed copy.
//! - [`bf16`]: the products of `--precision bf16` (AMX or AVX512_BF16).
//! - [`fastmath`]: vectorisable `tanh`, `sigmoid` and `exp` for x ≤ 0, and slice helpers.
//! - [`simd_dispatch!`] compiles a loop for AVX-512, AVX2+FMA and the baseline and picks one
//!   at run time through [`isa`].
//!
//! Every call is single-threaded: the trainer uses the cores by running batch shards side
//! by side.
//!
//! # Choosing the instruction set
//! [`isa`] is the widest set the CPU has, capped by the environment variable
//! `CHARRNN_ISA` (`avx512`, `avx2` or `portable`), read once per process. The cap lets any
//! machine run, and the tests compare, the paths an older CPU would take (the `gemm` crate
//! keeps choosing its own kernels: it is not capped).

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
pub mod cache;
pub mod fastmath;
mod matmul;
mod packed;

pub use fastmath::{add_assign, add_row_sums, exp_neg, sigmoid, tanh};
pub use matmul::matmul;
pub use packed::{PackedLayout, PackedMatrix, matmul_packed};

/// The precision of the large matrix products. Parameters, gradients, optimizer state, the
/// element-wise cell math, the loss and checkpoints are f32 either way.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bf16 (8 significant bits), products and sums in f32: up to several
    /// times faster where the CPU has bf16 instructions (see [`bf16`]).
    Bf16,
}

crate::value_enum_display!(Precision);

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// Errors, naming what is missing, if this CPU cannot compute in this precision.
    pub fn check_available(self) -> Result<(), String> {
        if self == Precision::F32 || bf16_kernel().is_some() {
            return Ok(());
        }
        let capped = isa() < detected();
        Err(format!(
            "--precision bf16 needs a CPU with AVX512_BF16 (AMD Zen 4 or 5, Intel Sapphire Rapids or later){}",
            if capped {
                "; CHARRNN_ISA caps the kernels below AVX-512 here"
            } else {
                "; this one has none"
            }
        ))
    }

    /// What computes the products: "f32", or "bf16 (AMX-BF16)" and the like.
    pub fn describe(self) -> String {
        match (self, bf16_kernel()) {
            (Precision::Bf16, Some(k)) => format!("bf16 ({})", k),
            _ => self.to_string(),
        }
    }
}

/// The bf16 kernel this CPU runs, if any: "AMX-BF16" or "AVX512_BF16".
pub fn bf16_kernel() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    return bf16::kernel().map(bf16::Kernel::name);
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// `c (+)= a · b` with both operands rounded to bf16; panics where [`bf16_kernel`] is `None`.
/// a: [M, K], b: [K, N], c: [M, N], any strides.
pub fn matmul_bf16(
    c: &mut ArrayViewMut2<f32>,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    bf16::matmul(c, a, b, accumulate);
    #[cfg(not(target_arch = "x86_64"))]
    panic!(
        "bf16 products need AVX512_BF16 ({:?} {:?} {:?} {accumulate})",
        c.dim(),
        a.dim(),
        b.dim()
    );
}

use ndarray::{ArrayView2, ArrayViewMut2};
use std::sync::atomic::{AtomicU8, Ordering};

/// Instruction-set levels that charrnn has code paths for, in increasing width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Whatever the compiler's baseline target gives (SSE2 on x86-64, NEON on aarch64).
    Portable,
    /// AVX2 with FMA (x86-64-v3: Haswell, Zen 1–3).
    Avx2,
    /// AVX-512 F and VL (x86-64-v4: Skylake-X, Sapphire Rapids, Zen 4–5).
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .find(|i| i.name() == s)
    }
}

/// The widest level this CPU supports.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The level the kernels use: [`detected`], capped by `CHARRNN_ISA` if it is set to a
/// narrower level (an unknown value is ignored). Cached after the first call.
pub fn isa() -> Isa {
    static CACHE: AtomicU8 = AtomicU8::new(u8::MAX);
    let levels = [Isa::Portable, Isa::Avx2, Isa::Avx512];
    match CACHE.load(Ordering::Relaxed) {
        u8::MAX => {
            let cap = std::env::var("CHARRNN_ISA")
                .ok()
                .and_then(|s| Isa::parse(&s.to_ascii_lowercase()))
                .unwrap_or(Isa::Avx512);
            let level = detected().min(cap);
            CACHE.store(level as u8, Ordering::Relaxed);
            level
        }
        i => levels[i as usize],
    }
}

/// Defines `$vis fn $name(args)` that runs `$imp(args)` compiled for the level [`isa`]
/// chooses (AVX-512, else AVX2+FMA, else the baseline). `$imp` must be `#[inline(always)]`
/// so that its body is compiled inside each variant. The binary stays portable; the
/// element-wise loops of the cells get 16-wide registers where the CPU has them.
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
                match $crate::kernels::isa() {
                    // SAFETY: `isa()` returns Avx512 only if the CPU has AVX-512F/VL, AVX2
                    // and FMA, the features v4 is compiled for.
                    $crate::kernels::Isa::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: `isa()` returns Avx2 only if the CPU has AVX2 and FMA.
                    $crate::kernels::Isa::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::kernels::Isa::Portable => {}
                }
            }
            $imp($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_named() {
        assert!(Isa::Portable < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
        for i in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            assert_eq!(Isa::parse(i.name()), Some(i));
        }
        assert!(isa() <= detected());
    }
}
