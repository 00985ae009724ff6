//! Measuring a model on text: evaluation (loss, bits per character, perplexity of a whole
//! text) and scoring (the probability of each line on its own).

pub mod eval;
pub mod score;
pub mod viz;
