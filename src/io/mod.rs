//! Files: checkpoints, run directories, and the file-system primitives that keep them safe.

pub mod checkpoint;
pub mod fs;
pub mod rundir;
