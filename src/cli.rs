//! Command-line definitions (clap) and the checks that turn raw flags into typed values.

use charrnn::nn::classifier::{ClassifierConfig, Pool};
use charrnn::nn::{CellKind, ModelConfig};
use charrnn::text::Mode;
use charrnn::text::labeled::LabelFormat;
use charrnn::train::classify::ClassWeights;
use charrnn::train::classify::setup as classify;
use charrnn::train::optim::{OptimConfig, OptimizerKind};
use charrnn::train::recipe::Recipe;
use charrnn::train::schedule::{LrSchedule, Shape};
use charrnn::train::trainer::TrainConfig;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "charrnn",
    version,
    args_override_self = true,
    about = "Train character-level RNN, LSTM and GRU language models on any UTF-8 text, on the CPU.",
    after_help = "Examples:\n  charrnn train data/plays.txt --time-limit 60\n  charrnn sample --len 300 --temperature 0.8\n  charrnn eval"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on text files; writes latest.json, best.json, metrics.jsonl and
    /// loss.svg into --dir.
    #[command(
        after_help = "Examples:\n  charrnn train data/plays.txt --time-limit 600          # ten minutes, the schedule fitted to them\n  charrnn train names.txt --mode lines --dir names        # one sequence per line\n  charrnn train corpus.txt --cell gru --layers 3 --hidden 512 --dropout 0.2\n  charrnn train --resume checkpoints/latest.json          # continue where it stopped\n  charrnn train new.txt --init-from checkpoints/best.json --dir tuned   # fine-tune\n  charrnn train data/words/train.txt --task classify --bidirectional --dir langs   # a label per line"
    )]
    Train(Box<TrainArgs>),
    /// Generate text from a checkpoint, streamed to stdout.
    #[command(
        after_help = "Examples:\n  charrnn sample --len 500 --temperature 0.8\n  charrnn sample --prime \"ROMEO:\" --seed 7 --top-k 5\n  charrnn sample --dir names --num 20                     # 20 names, one per line\n  charrnn sample --prime-file start.txt --beam 8 --len 200 # the most probable continuation"
    )]
    Sample(SampleArgs),
    /// Loss, bits per character and perplexity of a checkpoint on held-out text; for a
    /// classifier, accuracy, macro-F1, per-label precision and recall, confusion matrix.
    #[command(
        after_help = "Examples:\n  charrnn eval                                  # the validation split of the training corpus\n  charrnn eval other.txt --json\n  charrnn eval --checkpoint run/latest.json --warmup 0   # PyTorch's reference script's way"
    )]
    Eval(EvalArgs),
    /// Label each line of a file with a classifier: the most probable labels and their
    /// probabilities, as TSV or JSON.
    #[command(
        after_help = "Examples:\n  charrnn predict words.txt --dir langs > labels.tsv\n  echo bonjour | charrnn predict - --dir langs --top-k 3\n  charrnn predict test.txt --dir langs --json | jq -r .label"
    )]
    Predict(PredictArgs),
    /// Score each line of a file on its own: nats and bits per character, as TSV or JSON.
    #[command(
        after_help = "Examples:\n  charrnn score names.txt --dir names-model > scores.tsv\n  charrnn score names.txt | sort -t$'\\t' -k3,3g | head   # most likely lines first\n  charrnn score log.txt --json --per-char | jq 'select(.bits_per_char > 4)'   # anomalies"
    )]
    Score(ScoreArgs),
    /// Write a checkpoint's weights in a format other tools read (safetensors, PyTorch names).
    #[command(
        after_help = "Example:\n  charrnn export --dir checkpoints --output model.safetensors\n(the README shows how to load it into torch.nn.LSTM)"
    )]
    Export(ExportArgs),
    /// Write an HTML page showing what a model sees in a text: surprisal, predictions, units.
    #[command(
        after_help = "Example:\n  charrnn viz data/plays.txt --dir checkpoints --output page.html\nThe page is one self-contained file: open it in any browser."
    )]
    Viz(VizArgs),
    /// Draw the loss curves of one or more run directories in one SVG.
    #[command(
        after_help = "Examples:\n  charrnn plot checkpoints --output loss.svg\n  charrnn plot run-128 run-256 run-512 --output compare.svg --title \"width\" --x time"
    )]
    Plot(PlotArgs),
    /// Measure training, evaluation and sampling speed and peak memory.
    #[command(
        after_help = "Examples:\n  charrnn bench                                  # on the play built into charrnn\n  charrnn bench ../shared/data/tinyshakespeare.txt\n  charrnn bench corpus.txt --hidden 512 --seconds 30 --json"
    )]
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  charrnn completions bash > ~/.local/share/bash-completion/completions/charrnn\n  charrnn completions zsh > ~/.zfunc/_charrnn\n  charrnn completions fish > ~/.config/fish/completions/charrnn.fish"
    )]
    Completions(CompletionsArgs),
}

/// Model and optimisation flags are optional so that `--resume` can tell which ones the user
/// set (those are fixed by the checkpoint); the defaults are the library's (`Default` of
/// the config types), applied in [`TrainArgs::model_config`] and [`TrainArgs::train_config`].
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// UTF-8 text files; a directory means every *.txt file in it. With --resume, defaults
    /// to the files the checkpoint was trained on.
    pub corpus: Vec<PathBuf>,
    /// Recurrent cell [default: lstm]
    #[arg(long)]
    pub cell: Option<CellKind>,
    /// Stacked recurrent layers [default: 2]
    #[arg(long, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub layers: Option<usize>,
    /// Hidden units per layer [default: 256; with --time-limit, the widest the budget allows;
    /// classify: 128 per direction]
    #[arg(long, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub hidden: Option<usize>,
    /// Time steps per window of truncated backpropagation through time [default: 100];
    /// classify: characters kept of each line [default: 256]
    #[arg(long, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub seq_len: Option<usize>,
    /// Parallel streams per step [default: 64]; classify: lines per step [default: 32]
    #[arg(long, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: 0.004 for width ≤ 128, 0.003 up to 512, 0.002 above]; with
    /// --resume, a new rate from here on
    #[arg(long, value_parser = positive_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Multiply the learning rate by this at the end of each epoch after --lr-decay-after
    /// [default: 0.97]
    #[arg(long, value_parser = unit_interval_closed, allow_negative_numbers = true)]
    pub lr_decay: Option<f32>,
    /// Shape of the learning-rate schedule [default: cosine]
    #[arg(long)]
    pub lr_schedule: Option<Shape>,
    /// Cosine schedule: fraction of the run spent warming up [default: 0.02]
    #[arg(long, value_parser = unit_interval_open, allow_negative_numbers = true)]
    pub lr_warmup: Option<f32>,
    /// Cosine schedule: the final learning rate, as a fraction of --lr [default: 0.05]
    #[arg(long, value_parser = unit_interval_open, allow_negative_numbers = true)]
    pub lr_floor: Option<f32>,
    /// Cosine schedule: the last fraction of the run over which the rate falls; before it
    /// the rate holds at --lr [default: a language model 0.4 to 1, more for a model that
    /// could memorise its text; a classifier 0.4]
    #[arg(long, value_parser = unit_interval_closed, allow_negative_numbers = true)]
    pub lr_tail: Option<f32>,
    /// Epochs before the learning rate starts to decay [default: 10]
    #[arg(long)]
    pub lr_decay_after: Option<usize>,
    /// Optimizer [default: adam]
    #[arg(long)]
    pub optimizer: Option<OptimizerKind>,
    /// Momentum of SGD [default: 0.9]
    #[arg(long, value_parser = unit_interval_open, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// Clip the global gradient norm to this; 0 turns clipping off [default: 5]
    #[arg(long, value_parser = non_negative_f32, allow_negative_numbers = true)]
    pub grad_clip: Option<f32>,
    /// Dropout between layers, in [0, 1) [default: 0 to 0.5, by parameters per character
    /// of text and epochs; classify: 0.3, also before the head]
    #[arg(long, value_parser = unit_interval_open, allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Dropout on the top layer's output, the output layer's input, in [0, 1) (Zaremba et al.
    /// 2014); the one dropout a 1-layer model can have [default: 0]
    #[arg(long, value_parser = unit_interval_open, allow_negative_numbers = true)]
    pub output_dropout: Option<f32>,
    /// Weight drop: the probability of dropping each recurrent weight (W_hh) for one
    /// update, in [0, 1) (DropConnect as in AWD-LSTM, Merity et al. 2018); it acts on the
    /// recurrent connections, which --dropout leaves alone [default: 0]
    #[arg(long, value_parser = unit_interval_open, allow_negative_numbers = true)]
    pub weight_drop: Option<f32>,
    /// LSTM only: initial forget-gate bias (e.g. 1.0); default is PyTorch's uniform init
    #[arg(long, value_parser = finite_f32, allow_negative_numbers = true)]
    pub forget_bias: Option<f32>,
    /// How the text is cut into sequences [default: stream]
    #[arg(long)]
    pub mode: Option<Mode>,
    /// Fraction of the corpus held out for validation (its end) [default: 0.1]
    #[arg(long, value_parser = val_fraction, allow_negative_numbers = true)]
    pub val_fraction: Option<f64>,
    /// Validate on this file instead of a held-out part of the corpus (which then all
    /// trains); its characters must all occur in the training text
    #[arg(long, conflicts_with = "val_fraction")]
    pub val_file: Option<PathBuf>,
    /// Batch shards run in parallel; results are bit-identical for a given number
    /// [default: available cores, at most one per 16 streams]
    #[arg(long, value_parser = threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Random seed of initialisation and dropout [default: 1234]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Precision of the large matrix products: bf16 rounds their operands to bf16 and keeps
    /// f32 sums, weights, optimizer state and checkpoints (CPUs with AVX512_BF16 only; may
    /// be changed on --resume) [default: f32]
    #[arg(long)]
    pub precision: Option<charrnn::kernels::Precision>,
    /// Stop after this many epochs in total [default: with no --max-steps or --time-limit,
    /// 20 epochs, or 2000 steps if that is more]
    #[arg(long, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps in total (trained in full: no early stop)
    #[arg(long, value_parser = positive::<u64>, allow_negative_numbers = true)]
    pub max_steps: Option<u64>,
    /// Stop after this many seconds of this run; the model, dropout and schedule are then
    /// chosen to fit them, and the run stops early if the model plainly over-fits (see the
    /// README's Defaults)
    #[arg(long, value_parser = positive_f64, allow_negative_numbers = true)]
    pub time_limit: Option<f64>,
    /// Characters of the validation split scored at each validation, in evenly spaced
    /// segments; 0 scores all of it [default: 1000000]
    #[arg(long)]
    pub val_chars: Option<usize>,
    /// Steps between validations and checkpoints [default: half an epoch, 10 to 1000]
    #[arg(long, value_parser = positive::<u64>, allow_negative_numbers = true)]
    pub eval_every: Option<u64>,
    /// Directory for latest.json, best.json, metrics.jsonl and loss.svg [default:
    /// checkpoints, or with --resume the directory of the checkpoint resumed]
    #[arg(long = "dir", visible_alias = "out")]
    pub out: Option<PathBuf>,
    /// Continue training from a checkpoint (exactly where it stopped)
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Fine-tune: start from this checkpoint's weights with a fresh optimizer and schedule
    /// (characters it has not seen get fresh weights)
    #[arg(long, conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Replace the checkpoints of another run in --out instead of refusing to
    #[arg(long)]
    pub force: bool,
    /// What to learn: a language model of the text, or a label for each line
    #[arg(long, value_enum, default_value = "lm")]
    pub task: Task,
    /// classify: how a line holds its label [default: fasttext]
    #[arg(long)]
    pub format: Option<LabelFormat>,
    /// classify: run every layer over each line forwards and backwards and concatenate
    #[arg(long)]
    pub bidirectional: bool,
    /// classify: how the top layer's outputs over a line become one vector [default: max]
    #[arg(long)]
    pub pool: Option<Pool>,
    /// classify: how the loss weighs labels with different numbers of examples [default: none]
    #[arg(long)]
    pub class_weights: Option<ClassWeights>,
    /// Also keep a copy of the checkpoint every this many validations, as step-<N>.json
    /// (never overwritten)
    #[arg(long, value_parser = positive::<u64>, allow_negative_numbers = true)]
    pub keep_every: Option<u64>,
    /// Characters of sample text printed at the end; 0 for none
    #[arg(long, default_value_t = 300)]
    pub sample_len: usize,
}

impl TrainArgs {
    /// The model a fresh run builds: the flags given, the library's defaults for the rest.
    /// The model a fresh run builds: the flags given, the recipe's choices (see
    /// `charrnn::train::recipe`) and the library's defaults for the rest.
    pub fn model_config(&self, vocab_size: usize, recipe: &Recipe) -> ModelConfig {
        let d = ModelConfig::default();
        ModelConfig {
            cell: self.cell.unwrap_or(d.cell),
            layers: self.layers.unwrap_or(d.layers),
            hidden: self.hidden.unwrap_or(recipe.hidden),
            vocab_size,
            dropout: self.dropout.unwrap_or(recipe.dropout),
            output_dropout: self.output_dropout.unwrap_or(recipe.output_dropout),
            weight_drop: self.weight_drop.unwrap_or(recipe.weight_drop),
        }
    }

    /// The training configuration of a fresh run; `threads` is the default for the batch
    /// when the flag is not given.
    pub fn train_config(
        &self,
        default_threads: impl Fn(usize) -> usize,
        recipe: &Recipe,
    ) -> TrainConfig {
        let d = TrainConfig {
            lr: recipe.lr,
            ..TrainConfig::default()
        };
        let mut optimizer = OptimConfig::new(self.optimizer.unwrap_or(d.optimizer.kind));
        if let Some(m) = self.momentum {
            optimizer.momentum = m;
        }
        let batch = self.batch_size.unwrap_or(d.batch);
        let window = recipe.smaller_step.map_or(d.seq_len, |(_, window)| window);
        TrainConfig {
            batch,
            seq_len: self.seq_len.unwrap_or(window),
            lr: LrSchedule {
                base: self.lr.unwrap_or(d.lr.base),
                decay: self.lr_decay.unwrap_or(d.lr.decay),
                after: self.lr_decay_after.unwrap_or(d.lr.after),
                shape: self.lr_schedule.unwrap_or(d.lr.shape),
                warmup: self.lr_warmup.unwrap_or(d.lr.warmup),
                floor: self.lr_floor.unwrap_or(d.lr.floor),
                tail: self.lr_tail.unwrap_or(d.lr.tail),
            },
            optimizer,
            grad_clip: self.grad_clip.unwrap_or(d.grad_clip),
            threads: self.threads.unwrap_or_else(|| default_threads(batch)),
            seed: self.seed.unwrap_or(d.seed),
            precision: self.precision.unwrap_or_default(),
        }
    }

    /// A fresh classifier's shape: the flags given, the classifier's defaults for the rest
    /// (see `charrnn::train::classify::setup`).
    pub fn classifier_config(&self, vocab_size: usize, labels: usize) -> ClassifierConfig {
        let d = ModelConfig::default();
        ClassifierConfig {
            cell: self.cell.unwrap_or(d.cell),
            layers: self.layers.unwrap_or(d.layers),
            hidden: self.hidden.unwrap_or(classify::HIDDEN),
            bidirectional: self.bidirectional,
            pool: self.pool.unwrap_or(classify::POOL),
            vocab_size,
            labels,
            dropout: self.dropout.unwrap_or(classify::DROPOUT),
        }
    }

    /// A fresh classifier's training configuration: `seq_len` is the characters kept of a
    /// line; the rate is the language model's for the width, on the classifier's schedule.
    pub fn classifier_train_config(
        &self,
        default_threads: impl Fn(usize) -> usize,
        hidden: usize,
    ) -> TrainConfig {
        let recipe = Recipe {
            hidden,
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
            lr: classify::schedule(hidden),
            epochs: None,
            smaller_step: None,
            steps: None,
        };
        let batch = self.batch_size.unwrap_or(classify::BATCH);
        TrainConfig {
            batch,
            seq_len: self.seq_len.unwrap_or(classify::MAX_LEN),
            threads: self.threads.unwrap_or_else(|| default_threads(batch)),
            ..self.train_config(default_threads, &recipe)
        }
    }

    /// The first flag of classification given to a language model, or of the model's shape
    /// and data given when resuming a classifier, with why it is refused.
    pub fn refused_with_task(&self) -> Option<String> {
        let classify_only = [
            ("--format", self.format.is_some()),
            ("--bidirectional", self.bidirectional),
            ("--pool", self.pool.is_some()),
            ("--class-weights", self.class_weights.is_some()),
        ];
        let given = classify_only.iter().find(|(_, g)| *g).map(|(f, _)| *f);
        match (self.task, given) {
            (Task::Lm, Some("--bidirectional")) => Some(
                "--bidirectional applies to --task classify: a language model predicts each next character, and a backward pass would show it that very character".into(),
            ),
            (Task::Lm, Some(flag)) => Some(format!("{flag} applies to --task classify")),
            (Task::Classify, _) if self.output_dropout.is_some() => Some(
                "--output-dropout applies to language models: a classifier's --dropout already acts before its output layer".into(),
            ),
            (Task::Classify, _) if self.weight_drop.is_some() => Some(
                "--weight-drop applies to language models (a classifier reads lines of a few dozen characters)".into(),
            ),
            (Task::Classify, _) if self.mode.is_some() || self.init_from.is_some() => Some(
                "--mode and --init-from apply to language models (a classifier reads one line per example)".into(),
            ),
            (Task::Classify, _) if self.precision.is_some() => Some(
                "--precision applies to language models: a classifier trains in f32".into(),
            ),
            (Task::Classify, Some(flag)) if self.resume.is_some() => Some(format!(
                "{flag} is fixed by the checkpoint being resumed; leave it out with --resume"
            )),
            _ => None,
        }
    }

    /// Flags that define the model, the data or the optimisation, which a resumed run takes
    /// from its checkpoint: the first one given, if any.
    pub fn fixed_by_checkpoint(&self) -> Option<&'static str> {
        let given = [
            ("--cell", self.cell.is_some()),
            ("--layers", self.layers.is_some()),
            ("--hidden", self.hidden.is_some()),
            ("--seq-len", self.seq_len.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr-decay", self.lr_decay.is_some()),
            ("--lr-decay-after", self.lr_decay_after.is_some()),
            ("--lr-schedule", self.lr_schedule.is_some()),
            ("--lr-warmup", self.lr_warmup.is_some()),
            ("--lr-floor", self.lr_floor.is_some()),
            ("--lr-tail", self.lr_tail.is_some()),
            ("--optimizer", self.optimizer.is_some()),
            ("--momentum", self.momentum.is_some()),
            ("--grad-clip", self.grad_clip.is_some()),
            ("--dropout", self.dropout.is_some()),
            ("--output-dropout", self.output_dropout.is_some()),
            ("--weight-drop", self.weight_drop.is_some()),
            ("--forget-bias", self.forget_bias.is_some()),
            ("--mode", self.mode.is_some()),
            ("--val-fraction", self.val_fraction.is_some()),
            ("--val-file", self.val_file.is_some()),
            ("--threads", self.threads.is_some()),
            ("--seed", self.seed.is_some()),
        ];
        given.iter().find(|(_, g)| *g).map(|(flag, _)| *flag)
    }

    /// Refuses a flag that another makes meaningless (see the README's conventions): one
    /// line naming both. `layers`: the model's layers (given, inherited or the default).
    pub fn check_flags(&self, layers: usize) -> Result<(), String> {
        let epochs = self.lr_schedule == Some(Shape::Epochs);
        let cosine_only = [
            ("--lr-warmup", self.lr_warmup.is_some()),
            ("--lr-floor", self.lr_floor.is_some()),
            ("--lr-tail", self.lr_tail.is_some()),
        ];
        let epochs_only = [
            ("--lr-decay", self.lr_decay.is_some()),
            ("--lr-decay-after", self.lr_decay_after.is_some()),
        ];
        let first = |flags: &[(&'static str, bool)]| flags.iter().find(|f| f.1).map(|f| f.0);
        match (epochs, first(&cosine_only), first(&epochs_only)) {
            (true, Some(f), _) => {
                return Err(format!(
                    "{f} shapes the cosine schedule, not --lr-schedule epochs; leave one out"
                ));
            }
            (false, _, Some(f)) if self.resume.is_none() => {
                return Err(format!(
                    "{f} applies only to --lr-schedule epochs (the default schedule is cosine); add --lr-schedule epochs or leave it out"
                ));
            }
            _ => {}
        }
        let optimizer = self.optimizer.unwrap_or(OptimizerKind::Adam);
        if self.momentum.is_some() && optimizer != OptimizerKind::Sgd {
            return Err(format!(
                "--momentum applies only to --optimizer sgd, not {optimizer}; leave it out"
            ));
        }
        if let (Some(0.0), Some(_)) = (self.val_fraction, self.val_chars) {
            return Err(
                "--val-chars has no effect with --val-fraction 0 (nothing is held out to validate on); leave one out".into(),
            );
        }
        if let (Some(d), 1) = (self.dropout.filter(|&d| d > 0.0), layers) {
            return Err(format!(
                "--dropout {d} has no effect on a 1-layer model (dropout acts between layers); leave it out, use --layers 2 or more, or drop the output layer's input with --output-dropout"
            ));
        }
        Ok(())
    }
}

/// What `charrnn train` learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// A character-level language model of the text (sample, score, eval)
    Lm,
    /// A label for each line, from its characters (predict, eval); lines as `__label__x text`
    Classify,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Checkpoint to sample from [default: <checkpoints>/best.json, else latest.json]
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory searched when --checkpoint is not given
    #[arg(long, default_value = "checkpoints")]
    pub dir: PathBuf,
    /// Maximum characters to generate per sequence. Generation stops earlier if the model
    /// produces the <end> token
    #[arg(long, visible_alias = "sample-len", default_value_t = 500)]
    pub len: usize,
    /// Softmax temperature: lower is more conservative, higher more surprising (> 0)
    /// [default: 0.8]
    #[arg(long, value_parser = positive_f32, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Sample only from the k most likely characters (0 = all) [default: 0]
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only from the most likely characters whose probabilities add up to p, in
    /// (0, 1] [default: 1]
    #[arg(long, value_parser = top_p, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Text the generated text continues (printed first)
    #[arg(long, default_value = "")]
    pub prime: String,
    /// Read the prime from a file instead (- for standard input); with a lines-mode model,
    /// one line (its line end is not part of the prime)
    #[arg(long)]
    pub prime_file: Option<PathBuf>,
    /// Beam search with this many beams: print the most probable continuation found
    /// (at least as probable as --argmax's) instead of a random one
    #[arg(long, value_parser = beam_width, allow_negative_numbers = true)]
    pub beam: Option<usize>,
    /// Beam search: rank continuations by ln p / length^alpha (0: plain probability, which
    /// favours ending early) [default: 0]
    #[arg(long, value_parser = non_negative_f32, allow_negative_numbers = true)]
    pub length_penalty: Option<f32>,
    /// Random seed; the same seed and checkpoint give the same text [default: from the clock]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Always pick the most likely character (greedy: --temperature, --top-k, --top-p and
    /// --seed do not apply)
    #[arg(long)]
    pub argmax: bool,
    /// Number of sequences to generate, one per line (for models trained with --mode lines)
    #[arg(long, default_value_t = 1, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub num: usize,
}

impl SampleArgs {
    /// Refuses a flag that another makes meaningless (see the README's conventions): one
    /// line naming both.
    pub fn check_flags(&self) -> Result<(), String> {
        let random = [
            ("--temperature", self.temperature.is_some()),
            ("--top-k", self.top_k.is_some()),
            ("--top-p", self.top_p.is_some()),
            ("--seed", self.seed.is_some()),
        ];
        let given = |flags: &[(&'static str, bool)]| flags.iter().find(|f| f.1).map(|f| f.0);
        if self.beam.is_some() {
            if let Some(f) = given(&[random.as_slice(), &[("--argmax", self.argmax)]].concat()) {
                return Err(format!(
                    "{f} has no effect with --beam (beam search is deterministic); leave one out"
                ));
            }
            if self.num > 1 {
                return Err("--beam finds one continuation; --num does not apply".into());
            }
        } else if self.length_penalty.is_some() {
            return Err(
                "--length-penalty applies only to --beam; leave it out or add --beam N".into(),
            );
        }
        if let (true, Some(f)) = (self.argmax, given(&random)) {
            return Err(format!(
                "{f} has no effect with --argmax (greedy decoding always takes the likeliest character); leave one out"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Text file to score, - for standard input [default: the validation split of the
    /// checkpoint's corpus]; for a classifier, a file of labelled lines in the format it was
    /// trained on
    pub file: Option<PathBuf>,
    /// Checkpoint to evaluate [default: <checkpoints>/best.json, else latest.json]
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory searched when --checkpoint is not given
    #[arg(long, default_value = "checkpoints")]
    pub dir: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Parts of the text scored side by side; each first reads the --warmup characters
    /// before it, so this sets only the speed
    #[arg(long, visible_alias = "batch-size", default_value_t = 32, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub streams: usize,
    /// Characters per window; the state is carried across windows, so this sets only the
    /// speed and memory
    #[arg(long, visible_alias = "seq-len", default_value_t = 50, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub window: usize,
    /// Characters each part reads before its own, unscored (0: each part starts from a zero
    /// state, as PyTorch's reference script scores)
    #[arg(long, default_value_t = charrnn::analysis::eval::DEFAULT_WARMUP)]
    pub warmup: usize,
    /// Score at most this many characters, in evenly spaced segments [default: all]
    #[arg(long, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub max_chars: Option<usize>,
    /// Threads (stream shards) [default: available cores, at most one per 16 streams]
    #[arg(long, value_parser = threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Leave out the characters the model never saw (stderr counts them) instead of
    /// refusing the file at the first one
    #[arg(long)]
    pub skip_unknown: bool,
    /// Precision of the products: bf16 is faster where the CPU has AVX512_BF16, and its
    /// number is a bf16 number, not the f32 one training validates with
    #[arg(long, default_value = "f32")]
    pub precision: charrnn::kernels::Precision,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Lines to label, one per line ("-" reads stdin); __label__ tokens at a line's start are
    /// ignored, so a labelled file can be given
    pub file: PathBuf,
    /// Classifier checkpoint [default: <dir>/best.json, else latest.json]
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory searched when --checkpoint is not given
    #[arg(long, default_value = "checkpoints")]
    pub dir: PathBuf,
    /// The k most probable labels of each line
    #[arg(long, default_value_t = 1, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub top_k: usize,
    /// One JSON object per line instead of TSV
    #[arg(long)]
    pub json: bool,
    /// Threads [default: available cores]
    #[arg(long, value_parser = threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Text file, - for standard input: every non-empty line is scored on its own
    pub file: PathBuf,
    /// Checkpoint to score with [default: <dir>/best.json, else latest.json]
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory searched when --checkpoint is not given
    #[arg(long, default_value = "checkpoints")]
    pub dir: PathBuf,
    /// One JSON object per line instead of TSV
    #[arg(long)]
    pub json: bool,
    /// Add each character's surprisal, -ln p in nats, then the end's (see --end)
    #[arg(long)]
    pub per_char: bool,
    /// What is scored after a line's characters [default: end for a lines-mode model,
    /// newline for a stream-mode one]
    #[arg(long)]
    pub end: Option<charrnn::analysis::score::LineEnd>,
    /// Threads [default: available cores]
    #[arg(long, value_parser = threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint to export [default: <dir>/best.json, else latest.json]
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory searched when --checkpoint is not given
    #[arg(long, default_value = "checkpoints")]
    pub dir: PathBuf,
    /// File format
    #[arg(long, default_value = "safetensors")]
    pub format: ExportFormat,
    /// File to write; - for standard output. Never a checkpoint, the file read, or a file in
    /// a directory a trainer is writing
    #[arg(long, short)]
    pub output: PathBuf,
    /// Replace --output if it exists (never a checkpoint or the file read)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// Hugging Face safetensors: f32 tensors with PyTorch's names, config and vocabulary
    /// in the metadata
    Safetensors,
}

#[derive(Debug, Args)]
pub struct VizArgs {
    /// Text to show (its first --max-chars characters), - for standard input
    pub file: PathBuf,
    /// Checkpoint [default: <dir>/best.json, else latest.json]
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory searched when --checkpoint is not given
    #[arg(long, default_value = "checkpoints")]
    pub dir: PathBuf,
    /// HTML file to write; - for standard output. Never a checkpoint, a file read, or a file
    /// in a directory a trainer is writing
    #[arg(long, short, default_value = "viz.html")]
    pub output: PathBuf,
    /// Replace --output if it exists (never a checkpoint or a file read)
    #[arg(long)]
    pub force: bool,
    /// Characters shown; the page holds every unit's activation for each, about
    /// 55 + 1.34 x layers x hidden bytes per character (measured)
    #[arg(long, default_value_t = 5000, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub max_chars: usize,
    /// Leave out the characters the model never saw (stderr counts them) instead of
    /// refusing the text at the first one
    #[arg(long)]
    pub skip_unknown: bool,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories (each with metrics.jsonl, or at least a checkpoint)
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// SVG file to write; - for standard output. Never a checkpoint, a file read, or a file
    /// in a directory a trainer is writing
    #[arg(long, short, default_value = "plot.svg")]
    pub output: PathBuf,
    /// Replace --output if it exists (never a checkpoint or a file read)
    #[arg(long)]
    pub force: bool,
    /// Title of the plot [default: "charrnn: loss"]
    #[arg(long)]
    pub title: Option<String>,
    /// Horizontal axis: optimizer steps, or training time (to compare runs of different
    /// speed: another width, batch or program)
    #[arg(long, value_enum, default_value = "steps")]
    pub x: charrnn::io::plot::XAxis,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to complete for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Text file to train on [default: data/plays.txt, built into charrnn]
    pub corpus: Option<PathBuf>,
    /// Recurrent cell
    #[arg(long, default_value = "lstm")]
    pub cell: CellKind,
    /// Stacked layers
    #[arg(long, default_value_t = 2, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub layers: usize,
    /// Hidden units per layer
    #[arg(long, default_value_t = 256, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub hidden: usize,
    /// Parallel streams per step
    #[arg(long, default_value_t = 64, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub batch_size: usize,
    /// Time steps per window
    #[arg(long, default_value_t = 100, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub seq_len: usize,
    /// Seconds of timed training (after warm-up)
    #[arg(long, default_value_t = 20.0, value_parser = positive_f64, allow_negative_numbers = true)]
    pub seconds: f64,
    /// Threads (stream shards) [default: available cores, at most one per 16 streams]
    #[arg(long, value_parser = threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Precision of the products of training and evaluation (bf16: AVX512_BF16 only)
    #[arg(long, default_value = "f32")]
    pub precision: charrnn::kernels::Precision,
    /// Characters generated for the sampling measurement
    #[arg(long, default_value_t = 2000, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub sample_chars: usize,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err(format!("must be a positive whole number, got {s:?}")),
    }
}

fn parse_f64(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("must be a number, got {s:?}"))
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be greater than 0, got {s}"))
    }
}

/// The f32 the model computes with, checked after the cast: a value that is fine as an f64
/// can become 0 or infinity as an f32 (`1e-50`, `1e39`).
fn to_f32(v: f64, s: &str) -> Result<f32, String> {
    let x = v as f32;
    if !x.is_finite() || (v != 0.0 && x.abs() < f32::MIN_POSITIVE) {
        return Err(format!(
            "{s} is outside the range of 32-bit floats (about 1.2e-38 to 3.4e38 in size)"
        ));
    }
    Ok(x)
}

fn positive_f32(s: &str) -> Result<f32, String> {
    to_f32(positive_f64(s)?, s)
}

fn finite_f32(s: &str) -> Result<f32, String> {
    to_f32(parse_f64(s)?, s)
}

fn non_negative_f32(s: &str) -> Result<f32, String> {
    let v = parse_f64(s)?;
    if v >= 0.0 {
        to_f32(v, s)
    } else {
        Err(format!("must be 0 or more, got {s}"))
    }
}

/// Batch shards (threads): each holds a gradient buffer the size of the model, so the count
/// is bounded; more shards than cores only cost memory.
fn threads(s: &str) -> Result<usize, String> {
    match positive::<usize>(s)? {
        n if n <= MAX_THREADS => Ok(n),
        _ => Err(format!("must be at most {MAX_THREADS}, got {s}")),
    }
}

const MAX_THREADS: usize = 256;

/// Beams are extended by every character at every step: a few hundred is already slow.
fn beam_width(s: &str) -> Result<usize, String> {
    match positive::<usize>(s)? {
        n if n <= 1000 => Ok(n),
        _ => Err(format!("must be at most 1000, got {s}")),
    }
}

fn unit_interval_open(s: &str) -> Result<f32, String> {
    let v = parse_f64(s)?;
    if (0.0..1.0).contains(&v) {
        to_f32(v, s)
    } else {
        Err(format!("must be in [0, 1), got {s}"))
    }
}

fn unit_interval_closed(s: &str) -> Result<f32, String> {
    let v = parse_f64(s)?;
    if v > 0.0 && v <= 1.0 {
        to_f32(v, s)
    } else {
        Err(format!("must be in (0, 1], got {s}"))
    }
}

fn top_p(s: &str) -> Result<f32, String> {
    unit_interval_closed(s)
}

fn val_fraction(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be in [0, 1), got {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// The rule for flags that change nothing: refused when another flag makes them
    /// meaningless, accepted where they act.
    #[test]
    fn flags_that_change_nothing() {
        let sample = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["charrnn", "sample"][..], args].concat()).unwrap();
            let Command::Sample(a) = cli.command else {
                unreachable!()
            };
            a.check_flags()
        };
        assert!(sample(&["--beam", "3", "--top-p", "0.5"]).is_err());
        assert!(sample(&["--beam", "3", "--length-penalty", "0.6", "--len", "9"]).is_ok());
        assert!(sample(&["--length-penalty", "0.6"]).is_err());
        assert!(sample(&["--argmax", "--seed", "1"]).is_err());
        assert!(sample(&["--top-k", "3", "--top-p", "0.5", "--seed", "1"]).is_ok());
        let train = |args: &[&str], layers| {
            let cli =
                Cli::try_parse_from([&["charrnn", "train", "x.txt"][..], args].concat()).unwrap();
            let Command::Train(a) = cli.command else {
                unreachable!()
            };
            a.check_flags(layers)
        };
        assert!(train(&["--lr-schedule", "epochs", "--lr-floor", "0.1"], 2).is_err());
        assert!(train(&["--lr-schedule", "cosine", "--lr-decay-after", "3"], 2).is_err());
        assert!(train(&["--lr-schedule", "epochs", "--lr-decay-after", "3"], 2).is_ok());
        assert!(train(&["--optimizer", "rmsprop", "--momentum", "0.5"], 2).is_err());
        assert!(train(&["--dropout", "0.2"], 1).is_err());
        assert!(train(&["--dropout", "0"], 1).is_ok() && train(&["--dropout", "0.2"], 3).is_ok());
    }

    #[test]
    fn validators() {
        assert_eq!(positive::<usize>("3"), Ok(3));
        assert!(positive::<usize>("0").is_err() && positive::<usize>("-1").is_err());
        assert!(
            positive_f32("0").is_err()
                && positive_f32("-0.1").is_err()
                && positive_f32("nan").is_err()
        );
        assert!(unit_interval_open("1").is_err() && unit_interval_open("0").is_ok());
        assert!(top_p("0").is_err() && top_p("1").is_ok() && top_p("1.5").is_err());
        // f64 values that do not survive the cast to f32.
        assert!(positive_f32("1e39").is_err() && positive_f32("1e-46").is_err());
        assert!(non_negative_f32("1e39").is_err() && non_negative_f32("0").is_ok());
        assert!(finite_f32("-1e39").is_err() && finite_f32("-1").is_ok());
        assert!(threads("256").is_ok() && threads("257").is_err());
    }
}
