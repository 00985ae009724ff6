//! Gradient clipping, optimizers and the learning-rate schedule, each one loop over flat
//! slices (see [`crate::params`]).
//!
//! The update rules are PyTorch's (`torch.optim.Adam`, `RMSprop`, `SGD`, and
//! `clip_grad_norm_`), operation for operation, so that a trajectory can be checked against
//! PyTorch's numbers.

use crate::nn::params::{CHUNK, chunks, chunks_mut, l2_norm};
use rayon::prelude::*;

/// The update rule. The names (`adam`, `rmsprop`, `sgd`) are those of the command line and
/// of checkpoints.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015)
    Adam,
    /// RMSprop (Tieleman & Hinton 2012)
    #[value(name = "rmsprop")]
    RmsProp,
    /// SGD with momentum
    Sgd,
}

crate::value_enum_display!(OptimizerKind);

/// Hyper-parameters; the defaults are PyTorch's. Serialised inside a checkpoint's `training`
/// section, `kind` as `optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimConfig {
    #[serde(rename = "optimizer")]
    pub kind: OptimizerKind,
    /// Adam: decay of the first moment.
    pub beta1: f32,
    /// Adam: decay of the second moment; RMSprop: its `alpha`.
    pub beta2: f32,
    pub eps: f32,
    /// SGD: momentum (0 = plain SGD).
    pub momentum: f32,
}

impl Default for OptimConfig {
    /// Adam with PyTorch's defaults.
    fn default() -> Self {
        OptimConfig::new(OptimizerKind::Adam)
    }
}

impl OptimConfig {
    pub fn new(kind: OptimizerKind) -> OptimConfig {
        OptimConfig {
            kind,
            beta1: 0.9,
            beta2: if kind == OptimizerKind::RmsProp {
                0.99
            } else {
                0.999
            },
            eps: 1e-8,
            momentum: 0.9,
        }
    }
}

/// Sums the gradients of the other shards into `first` (all laid out alike) and returns the
/// Euclidean norm of the sum, computed in the same pass while each chunk is in cache (it is
/// needed for clipping). Chunks run on all cores; the result does not depend on scheduling.
pub fn sum_shards(first: &mut [f32], rest: &[&[f32]]) -> f64 {
    let squares: Vec<f64> = chunks_mut(first)
        .enumerate()
        .map(|(i, g)| {
            for s in rest {
                crate::kernels::add_assign(g, &s[i * CHUNK..i * CHUNK + g.len()]);
            }
            crate::nn::params::sum_squares(g)
        })
        .collect();
    squares.iter().sum::<f64>().sqrt()
}

/// An optimizer and its state: `m` and `v` are laid out like the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub config: OptimConfig,
    /// Updates taken so far (Adam's bias correction uses it).
    pub step: u64,
    /// Adam: first moment; SGD: momentum buffer; RMSprop: unused (empty).
    pub m: Vec<f32>,
    /// Adam, RMSprop: second moment (running mean of g²); SGD: unused (empty).
    pub v: Vec<f32>,
}

impl Optimizer {
    pub fn new(config: OptimConfig, n_params: usize) -> Optimizer {
        let (m, v) = Optimizer::moment_lens(config.kind, n_params);
        Optimizer {
            config,
            step: 0,
            m: vec![0.0; m],
            v: vec![0.0; v],
        }
    }

    /// Lengths of `m` and `v` for `kind` over `n_params` parameters.
    pub fn moment_lens(kind: OptimizerKind, n_params: usize) -> (usize, usize) {
        match kind {
            OptimizerKind::Adam => (n_params, n_params),
            OptimizerKind::RmsProp => (0, n_params),
            OptimizerKind::Sgd => (n_params, 0),
        }
    }

    /// One update of `params` with `grads` at learning rate `lr`. Returns whether every
    /// parameter is still finite afterwards (checked in the same pass, while each chunk is
    /// in cache): a caller must not keep or save parameters after a `false`.
    #[must_use]
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], lr: f32) -> bool {
        let c = self.config;
        self.step += 1;
        // powi takes an i32: past 2^31 steps β^step is 0 in f64 anyway.
        let t = self.step.min(i32::MAX as u64) as i32;
        // Element-wise, so the update is split into chunks run on all cores: the result
        // does not depend on how the chunks are scheduled.
        match c.kind {
            OptimizerKind::Adam => {
                let bc1 = 1.0 - (c.beta1 as f64).powi(t);
                let bc2 = 1.0 - (c.beta2 as f64).powi(t);
                let step_size = (lr as f64 / bc1) as f32;
                let bc2_sqrt = bc2.sqrt() as f32;
                chunks_mut(params)
                    .zip(chunks(grads))
                    .zip(chunks_mut(&mut self.m))
                    .zip(chunks_mut(&mut self.v))
                    .map(|(((p, g), m), v)| {
                        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                            *m += (g - *m) * (1.0 - c.beta1);
                            *v = *v * c.beta2 + (1.0 - c.beta2) * g * g;
                            let denom = v.sqrt() / bc2_sqrt + c.eps;
                            *p -= step_size * *m / denom;
                        }
                        all_finite(p)
                    })
                    .reduce(|| true, |a, b| a & b)
            }
            OptimizerKind::RmsProp => chunks_mut(params)
                .zip(chunks(grads))
                .zip(chunks_mut(&mut self.v))
                .map(|((p, g), v)| {
                    for ((p, &g), v) in p.iter_mut().zip(g).zip(v) {
                        *v = *v * c.beta2 + (1.0 - c.beta2) * g * g;
                        *p -= lr * g / (v.sqrt() + c.eps);
                    }
                    all_finite(p)
                })
                .reduce(|| true, |a, b| a & b),
            OptimizerKind::Sgd => chunks_mut(params)
                .zip(chunks(grads))
                .zip(chunks_mut(&mut self.m))
                .map(|((p, g), m)| {
                    for ((p, &g), m) in p.iter_mut().zip(g).zip(m) {
                        *m = c.momentum * *m + g;
                        *p -= lr * *m;
                    }
                    all_finite(p)
                })
                .reduce(|| true, |a, b| a & b),
        }
    }
}

/// Whether every value is finite; an OR over bits, so that the loop vectorises.
fn all_finite(xs: &[f32]) -> bool {
    !xs.iter().fold(false, |bad, x| bad | !x.is_finite())
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (as PyTorch's
/// `clip_grad_norm_`, including its 1e-6 guard); returns the norm before clipping.
/// A `max_norm` of 0 or less disables clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f64 {
    let norm = l2_norm(grads);
    clip_to(grads, norm, max_norm);
    norm
}

/// The scaling of [`clip_grad_norm`], for gradients whose norm `norm` is already known.
pub fn clip_to(grads: &mut [f32], norm: f64, max_norm: f32) {
    if max_norm > 0.0 {
        let coef = max_norm as f64 / (norm + 1e-6);
        if coef < 1.0 {
            let coef = coef as f32;
            chunks_mut(grads).for_each(|g| g.iter_mut().for_each(|g| *g *= coef));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises f(p) = ½‖p - target‖² (gradient p - target) with each optimizer.
    fn converges(kind: OptimizerKind, lr: f32) -> f32 {
        let target = [1.0f32, -2.0, 0.5];
        let mut p = [0.0f32; 3];
        let mut opt = Optimizer::new(OptimConfig::new(kind), 3);
        for _ in 0..2000 {
            let g: Vec<f32> = p.iter().zip(&target).map(|(p, t)| p - t).collect();
            assert!(opt.update(&mut p, &g, lr));
        }
        p.iter()
            .zip(&target)
            .map(|(p, t)| (p - t).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn every_optimizer_converges_on_a_quadratic() {
        assert!(converges(OptimizerKind::Adam, 0.01) < 1e-3);
        assert!(converges(OptimizerKind::RmsProp, 0.01) < 5e-2);
        assert!(converges(OptimizerKind::Sgd, 0.01) < 1e-3);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction, the first Adam step is lr · g/|g| for each coordinate.
        let mut p = [0.0f32, 0.0];
        let mut opt = Optimizer::new(OptimConfig::new(OptimizerKind::Adam), 2);
        assert!(opt.update(&mut p, &[3.0, -0.5], 0.1));
        assert!(
            (p[0] + 0.1).abs() < 1e-6 && (p[1] - 0.1).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut g = [3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((l2_norm(&g) - 1.0).abs() < 1e-5);
        let mut g = [0.3f32, 0.4];
        clip_grad_norm(&mut g, 1.0);
        assert_eq!(g, [0.3, 0.4]);
        let mut g = [30.0f32, 40.0];
        clip_grad_norm(&mut g, 0.0);
        assert_eq!(g, [30.0, 40.0]);
    }
}
