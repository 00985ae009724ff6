//! charrnn: character-level language models (vanilla RNN, LSTM, GRU) trained on a CPU,
//! and character-level classifiers of lines on the same cells (optionally bidirectional),
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
//! | `C` | a classifier's labels |
//! | `S` | a classifier's directions per layer: 1, or 2 when bidirectional |
//! | `D` | `S·H`, the width of a classifier layer's output `[h_fwd ‖ h_rev]` |
//!
//! Activations are stored time-major, `[T, B, ·]`, so that one time step is one contiguous
//! `[B, ·]` block: the recurrent product of a step is a single matrix product on it.
//!
//! # Code map
//! - [`fs`]: file-system primitives (atomic writes with the directory flushed, the lock that
//!   gives a directory to one process, readers of regular files of a bounded size, the
//!   memory check). The ground floor: it uses nothing of the crate.
//! - [`text`]: the text side.
//!   [`vocab`](text::vocab): characters plus `<start>`/`<end>`, sorted; encode, decode,
//!   one-hot. [`corpus`](text::corpus): reading files and directories, the token streams of
//!   training and validation. [`split`](text::split): sequences bracketed by start/end, the
//!   train/validation split. [`batches`](text::batches): `B x T` windows for truncated BPTT.
//!   [`labeled`](text::labeled): labelled lines (fastText's `__label__` or TSV), the
//!   stratified split, length-bucketed batches. [`unknown`](text::unknown): characters a
//!   vocabulary lacks, by line and column.
//! - [`world`]: the processes of a run and the one order in which their shards' gradients
//!   are summed ([`tree`](world::tree)); the local world, a world of threads for tests, and
//!   MPI's (the `mpi` feature).
//! - [`kernels`]: matrix products (general, and packed for the time loop), vectorised
//!   element-wise functions, and the run-time choice of instruction set.
//! - [`nn`]: the network. [`params`](nn::params): flat buffers with named views.
//!   [`loss`](nn::loss): softmax cross-entropy, per position or summed, and its fused
//!   backward. [`cell`](nn::cell): RNN, LSTM and GRU, one file each, forward/backward over a
//!   window plus each cell's unit equations. [`model`](nn::model): the stack plus the output
//!   layer, a window's forward pass and BPTT. [`state`](nn::state),
//!   [`workspace`](nn::workspace): what is carried and what is reused.
//!   [`infer`](nn::infer): step-by-step inference (a batch of streams, or one stream on two
//!   cores). [`classifier`](nn::classifier): many-to-one over lines of different lengths,
//!   each layer optionally bidirectional, pooling (final, mean, max) and a linear head.
//! - [`train`]: [`optim`](train::optim) (clipping, Adam, RMSprop, SGD),
//!   [`schedule`](train::schedule) (the learning rate), [`trainer`](train::trainer) (one
//!   optimizer step over batch shards), [`run`](train::run) (the loop: stop rules, validation
//!   cadence, best checkpoint, divergence, early stop; emits events),
//!   [`recipe`](train::recipe) (the defaults for a corpus and a time budget, the run's length
//!   and cadence), [`setup`](train::setup) (what a new, resumed or fine-tuned run reads and
//!   starts from, checked before it is built), [`report`](train::report) (the lines a run
//!   prints about itself); [`classify`](train::classify): a classifier's trainer, label
//!   weights and setup (the run loop drives both through [`Learner`](train::run::Learner)).
//! - [`decode`]: generating text ([`sample`](decode::sample)), and the most probable
//!   continuation ([`beam`](decode::beam)).
//! - [`analysis`]: measuring a model on text ([`eval`](analysis::eval)); a classifier's
//!   accuracy, F1 and confusion matrix ([`classify`](analysis::classify)).
//! - [`io`]: [`checkpoint`](io::checkpoint) (versioned JSON, checked on load; a
//!   classifier's in [`classifier`](io::classifier)),
//!   [`rundir`](io::rundir) (a run's directory: its id, locked, best before latest, no
//!   other run's state resumed in it), the metrics log, plots, exports,
//!   [`model_file`](io::model_file) (a checkpoint or an export read as a model),
//!   [`output`](io::output) (where a command may write a file it makes) and the
//!   activation page.
//! - [`bench`]: one configuration's speed, memory and checkpoint cost, measured.
//!
//! Dependencies run one way, folder by folder and file by file: `fs`, `kernels` and `world`
//! use nothing of the crate; `text` uses `fs`; `nn` uses `text` and `kernels`; `analysis` uses
//! `nn`; `train` uses `nn` and `analysis::eval` (to validate); `decode` and `io` use those;
//! `bench` uses everything and nothing uses it. No two files import each other.
//!
//! # Example
//!
//! Train a small LSTM on a text with the library's run loop, then sample from it:
//!
//! ```
//! use charrnn::analysis::eval::{EvalConfig, evaluate};
//! use charrnn::decode::sample::{SampleConfig, Sampler};
//! use charrnn::nn::{CellKind, Model, ModelConfig};
//! use charrnn::text::{Mode, Vocab, split};
//! use charrnn::train::run::{self, NoCheckpoints, RunConfig, StopReason};
//! use charrnn::train::schedule::LrSchedule;
//! use charrnn::train::{Optimizer, TrainConfig, Trainer};
//! use rand::SeedableRng;
//!
//! let text = "to be or not to be, that is the question.\n".repeat(20);
//! let vocab = Vocab::from_texts([text.as_str()]);
//! let tokens = split::tokens(&vocab, &split::sequences(&[text], Mode::Stream)).unwrap();
//!
//! let config = ModelConfig { cell: CellKind::Lstm, hidden: 32, layers: 1, vocab_size: vocab.len(), ..ModelConfig::default() };
//! let mut model = Model::new(config);
//! model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
//! let tc = TrainConfig {
//!     batch: 4,
//!     seq_len: 16,
//!     lr: LrSchedule { base: 1e-2, decay: 1.0, after: 0, ..LrSchedule::default() },
//!     ..TrainConfig::default()
//! };
//! let eval = EvalConfig { streams: 4, ..EvalConfig::default() };
//! let before = evaluate(&model, &tokens, &eval).loss();
//! let opt = Optimizer::new(tc.optimizer, model.param_count());
//! let progress = Trainer::fresh_progress(&model, &tc);
//! let mut trainer = Trainer::new(model, opt, tc, &tokens, progress);
//! let rc = RunConfig {
//!     max_steps: 100,
//!     time_limit: None,
//!     eval_every: 50,
//!     eval,
//!     stop_when_overfitting: false,
//! };
//! let mut validations = 0;
//! let outcome = run::run(&mut trainer, &tokens, &rc, &mut NoCheckpoints, &|| false, &mut |e| {
//!     if let run::Event::Validated { .. } = e { validations += 1; }
//! }).unwrap();
//! assert_eq!((outcome.reason, validations), (StopReason::MaxSteps, 2));
//! assert!(evaluate(&trainer.model, &tokens, &eval).loss() < before);
//!
//! let mut sampler = Sampler::new(&trainer.model, &vocab, SampleConfig::default());
//! sampler.prime("to be").unwrap();
//! let mut out = String::new();
//! sampler.generate(40, |c| { out.push(c); Ok::<_, ()>(()) }).unwrap();
//! assert!(out.chars().all(|c| vocab.id(c).is_some()));
//! ```

// Shapes in doc comments, like `[H]` or `[V]`, are not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]

pub mod analysis;
pub mod bench;
pub mod decode;
pub mod fs;
pub mod io;
pub mod kernels;
pub mod nn;
pub mod text;
pub mod train;
pub mod world;

/// `Display` for a `clap::ValueEnum`: its command-line name, which is also its name in
/// checkpoints (serde's `rename_all = "lowercase"`; a test per enum checks they agree).
#[macro_export]
#[doc(hidden)]
macro_rules! value_enum_display {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let v = clap::ValueEnum::to_possible_value(self).expect("no skipped variants");
                f.write_str(v.get_name())
            }
        }
    };
}
