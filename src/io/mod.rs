//! Files: checkpoints, run directories, and the file-system primitives that keep them safe.

pub mod checkpoint;
pub mod export;
pub mod fs;
pub mod metrics;
pub mod plot;
pub mod rundir;
pub mod viz_page;
