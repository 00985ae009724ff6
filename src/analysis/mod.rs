//! Measuring a model on text: evaluation (loss, bits per character, perplexity).

pub mod eval;
