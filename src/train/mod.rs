//! Training: optimizers and clipping, the learning-rate schedule, one optimizer step over
//! batch shards (the [`Trainer`]), and the loop that runs steps, validates and checkpoints.

pub mod optim;
pub mod recipe;
pub mod report;
pub mod run;
pub mod schedule;
pub mod setup;
pub mod trainer;

pub use optim::{OptimConfig, Optimizer, OptimizerKind};
pub use trainer::{Diverged, HistoryPoint, Progress, StepReport, TrainConfig, Trainer};
