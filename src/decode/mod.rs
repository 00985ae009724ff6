//! Generating text from a model: sampling (temperature, top-k, top-p, greedy).

pub mod sample;
