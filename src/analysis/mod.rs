//! Measuring a model on text: evaluation (loss, bits per character, perplexity of a whole
//! text) and scoring (the probability of each line on its own); a classifier's accuracy,
//! F1 and confusion matrix.

pub mod classify;
pub mod eval;
pub mod score;
pub mod viz;
