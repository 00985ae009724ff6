//! The network: flat parameters with named views, the loss, the three recurrent cells, the
//! stacked model with its forward pass and backpropagation through time, inference, and the
//! many-to-one classifier (optionally bidirectional) on the same cells.

pub mod cell;
pub mod classifier;
pub mod infer;
pub mod loss;
pub mod model;
pub mod params;
pub mod state;
pub mod workspace;

pub use cell::CellKind;
pub use model::{Model, ModelConfig, PackedWeights};
pub use state::State;
pub use workspace::Workspace;
