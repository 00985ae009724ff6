//! The network: flat parameters with named views, the loss, the three recurrent cells, the
//! stacked model with its forward pass and backpropagation through time, and inference.

pub mod cell;
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
