//! charrnn: character-level language models (vanilla RNN, LSTM, GRU) trained on a CPU,
//! with every forward and backward pass written out by hand on `ndarray` and flat `f32`
//! buffers. No autograd: each layer is a `forward`/`backward` pair whose names and shapes
//! follow the equations in its doc comment.
//!
//! # Shape legend
//! Every doc comment states tensor shapes with these letters:
//!
//! | letter | meaning |
//! |---|---|
//! | `B` | number of parallel streams in a batch (or in one shard of it) |
//! | `T` | window length of truncated BPTT (time steps) |
//! | `V` | vocabulary size, including `<start>` and `<end>` |
//! | `H` | hidden size of each layer |
//! | `L` | number of stacked layers |
//! | `G` | gates per cell: 1 (RNN), 4 (LSTM, order i,f,g,o), 3 (GRU, order r,z,n) |
//! | `N` | `T·B`, the positions of one window, time-major (row `t·B + b`) |
//!
//! Activations are stored time-major, `[T, B, ·]`, so that one time step is one contiguous
//! `[B, ·]` block: the recurrent product of a step is a single matrix product on it.
//!
//! # Module map
//! - [`vocab`]: characters plus `<start>`/`<end>`, sorted; encode, decode, one-hot.
//! - [`corpus`]: reading files and directories of UTF-8 text.
//! - [`data`]: sequences bracketed by start/end; train/validation split; `B x T` windows.
//! - [`infer`]: one-stream inference split over two cores, for sampling.
//! - [`linalg`]: matrix products (general, and packed for the time loop) and the fast
//!   element-wise functions.
//! - [`params`]: parameters, gradients and optimizer moments as flat buffers with named views.
//! - [`cell`]: RNN, LSTM and GRU cells, one file each: a forward/backward pair over a window.
//! - [`model`]: the stack of cells plus the output layer; a window's forward and BPTT.
//! - [`loss`]: softmax cross-entropy and its fused backward `p - onehot`.
//! - [`optim`]: gradient clipping, Adam, RMSprop, SGD with momentum, learning-rate decay.
//! - [`train`]: the training loop over shards; emits progress events.
//! - [`sample`]: priming, temperature, top-k/top-p, seeded generation.
//! - [`checkpoint`]: versioned JSON documents, written atomically, checked on load.

//! # Example
//!
//! Train a small LSTM on a text for a few steps, then sample from it:
//!
//! ```
//! use charrnn::{cell::CellKind, data, model::{Model, ModelConfig}, optim, sample, train, vocab::Vocab};
//! use rand::SeedableRng;
//!
//! let text = "to be or not to be, that is the question.\n".repeat(20);
//! let vocab = Vocab::from_texts([text.as_str()]);
//! let seqs = data::sequences(&[text], data::Mode::Stream);
//! let tokens = data::tokens(&vocab, &seqs).unwrap();
//!
//! let config = ModelConfig { cell: CellKind::Lstm, vocab_size: vocab.len(), hidden: 32, layers: 1, dropout: 0.0 };
//! let mut model = Model::new(config);
//! model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
//! let tc = train::TrainConfig {
//!     batch: 4,
//!     seq_len: 16,
//!     lr: optim::LrSchedule { base: 1e-2, decay: 1.0, after: 0 },
//!     optimizer: optim::OptimConfig::new(optim::OptimizerKind::Adam),
//!     grad_clip: 5.0,
//!     threads: 1,
//!     seed: 1,
//! };
//! let opt = optim::Optimizer::new(tc.optimizer, model.param_count());
//! let progress = train::Trainer::fresh_progress(&model, &tc);
//! let mut trainer = train::Trainer::new(model, opt, tc, &tokens, progress);
//! let first = trainer.step().unwrap().loss;
//! for _ in 0..100 {
//!     trainer.step().unwrap();
//! }
//! assert!(train::evaluate(&trainer.model, &tokens, 4, 16, 1).loss() < first);
//!
//! let mut sampler = sample::Sampler::new(&trainer.model, &vocab, sample::SampleConfig::default());
//! sampler.prime("to be").unwrap();
//! let mut out = String::new();
//! sampler.generate(40, |c| { out.push(c); Ok::<_, ()>(()) }).unwrap();
//! assert!(out.chars().all(|c| vocab.id(c).is_some()));
//! ```

// Shapes in doc comments, like `[H]` or `[V]`, are not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]

pub mod cell;
pub mod checkpoint;
pub mod corpus;
pub mod data;
pub mod infer;
pub mod linalg;
pub mod loss;
pub mod model;
pub mod optim;
pub mod params;
pub mod sample;
pub mod train;
pub mod vocab;
