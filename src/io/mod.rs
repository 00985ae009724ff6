//! Files: checkpoints, run directories, metrics, plots and exports (the file-system
//! primitives they stand on are in [`crate::fs`]).

pub mod checkpoint;
pub mod export;
pub mod metrics;
pub mod model_file;
pub mod output;
pub mod plot;
pub mod rundir;
pub mod viz_page;
