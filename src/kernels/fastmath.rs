//! Element-wise functions of the hot path, written so that loops over them vectorise.
//!
//! `std`'s `f32::tanh` costs ~12 ns and does not vectorise; the gate non-linearities of a
//! large LSTM would cost as much as its recurrent product. [`tanh`] is a rational
//! approximation (max abs error under 1e-6, tested below); [`sigmoid`] is derived from it
//! exactly as `σ(x) = (1 + tanh(x/2)) / 2`, and [`exp_neg`] does the same job for the
//! softmax's exponentials.

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
}
