//! Generating text from a model: sampling (temperature, top-k, top-p, greedy) and beam
//! search.

pub mod beam;
pub mod sample;
