//! Text: the vocabulary, reading a corpus from disk, cutting it into sequences and a
//! train/validation split, and the batches of windows that training and evaluation read;
//! labelled lines for classification.

pub mod batches;
pub mod corpus;
pub mod labeled;
pub mod reader;
pub mod split;
pub mod tokens;
pub mod unknown;
pub mod vocab;

pub use batches::{Batches, Window};
pub use split::Mode;
pub use tokens::Tokens;
pub use vocab::{END, START, Vocab};
