//! Evaluation: the mean cross-entropy of a model over every scored position of a text.

use crate::kernels::Precision;
use crate::nn::{Model, ModelConfig, PackedWeights, State, Workspace};
use crate::text::Tokens;
use crate::text::batches::{Batches, Window, shard_rows};
use crate::world::{self, Collective, LOCAL, tree};
use anyhow::Result;
use rayon::prelude::*;
use std::ops::Range;

/// How a text is scored: cut into `streams` parts scored side by side, each of which first
/// reads the `warmup` characters before it (unscored) so that it starts with the state the
/// text gives rather than a zero state. With a warm-up of a few hundred characters the
/// result no longer depends on the number of streams (a test holds it to scoring the text
/// as one stream within 0.5%), and the streams only set the speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalConfig {
    /// B: parts scored side by side (fewer for a short text, see [`MIN_EVAL_STREAM_LEN`]).
    pub streams: usize,
    /// Steps per window; the state is carried across windows, so this only sets memory
    /// use and speed.
    pub window: usize,
    /// Characters each part reads before its own, unscored.
    pub warmup: usize,
    /// Score at most this many positions, in `streams` evenly spaced segments (`None`: all).
    pub max_chars: Option<usize>,
    /// Threads (stream shards).
    pub threads: usize,
    /// Precision of the products (validation during training is always f32).
    pub precision: Precision,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            streams: 32,
            window: 50,
            warmup: DEFAULT_WARMUP,
            max_chars: None,
            threads: 1,
            precision: Precision::F32,
        }
    }
}

/// Characters each evaluation stream reads before its own part (see [`EvalConfig`]).
pub const DEFAULT_WARMUP: usize = 250;
/// Shortest part evaluation cuts a text into: a short text gets fewer streams, so that the
/// warm-up does not cost more than the scoring.
pub const MIN_EVAL_STREAM_LEN: usize = 100;

/// Mean loss over every scored position of a token stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalStats {
    /// Summed cross-entropy in nats.
    pub loss_sum: f64,
    /// Positions scored.
    pub count: usize,
}

impl EvalStats {
    /// Nats per character.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }

    pub fn bits_per_char(&self) -> f64 {
        self.loss() / std::f64::consts::LN_2
    }

    pub fn perplexity(&self) -> f64 {
        self.loss().exp()
    }
}

/// The streams and windows `config` reads a text of `n_tokens` tokens in: fewer streams for
/// a short text, no warm-up longer than the text before a stream, and no window longer than
/// what a stream reads (so a huge `--window` or `--warmup` costs nothing by itself).
fn plan(n_tokens: usize, config: &EvalConfig) -> Batches {
    let positions = n_tokens.saturating_sub(1);
    let batch = config
        .streams
        .clamp(1, (positions / MIN_EVAL_STREAM_LEN).max(1));
    let whole = Batches::warm(n_tokens, batch, 1, config.warmup, config.max_chars);
    let longest = whole.warmup + whole.stream_len;
    let seq_len = config.window.clamp(1, longest.max(1));
    Batches::warm(n_tokens, batch, seq_len, config.warmup, config.max_chars)
}

/// Bytes [`evaluate`] holds for `model` on a text of `n_tokens` tokens (the shards'
/// workspaces and states, the packed weights), with checked arithmetic; `None` if it
/// overflows.
pub fn memory_bytes(model: &ModelConfig, n_tokens: usize, config: &EvalConfig) -> Option<u64> {
    let b = plan(n_tokens, config);
    let n = config.threads.clamp(1, b.batch);
    let rows = b.batch.div_ceil(n);
    let (l, h) = (model.layers as u64, model.hidden as u64);
    let state = l.checked_mul(h)?.checked_mul(2 * b.batch as u64)?;
    let shard = Workspace::bytes(model, rows, b.seq_len, false)?;
    (model.param_count()? as u64)
        .checked_mul(2)?
        .checked_add(state)?
        .checked_mul(4)?
        .checked_add(shard.checked_mul(n as u64)?)
}

/// Refuses an evaluation of `model` on `n_tokens` tokens whose buffers would not fit in
/// memory, naming the flags that size them, before anything is allocated.
pub fn check_memory(model: &ModelConfig, n_tokens: usize, config: &EvalConfig) -> Result<()> {
    let b = plan(n_tokens, config);
    crate::fs::check_fits(
        memory_bytes(model, n_tokens, config),
        &format!(
            "evaluating a {}x{} {} in {} streams of {}-character windows",
            model.layers, model.hidden, model.cell, b.batch, b.seq_len
        ),
        "use a smaller --window or --streams",
    )
}

/// Scores every position of `tokens` (no dropout), or the sample `config.max_chars` asks
/// for; see [`EvalConfig`].
pub fn evaluate(model: &Model, tokens: &Tokens, config: &EvalConfig) -> EvalStats {
    evaluate_in(&LOCAL, model, tokens, config)
}

/// The streams of [`evaluate`]'s shards that rank `rank` of `ranks` scores (empty when
/// there are more ranks than shards and this one has none).
pub fn eval_rows(
    batches: &Batches,
    config: &EvalConfig,
    ranks: usize,
    rank: usize,
) -> Range<usize> {
    let n = config.threads.clamp(1, batches.batch);
    let mine: Vec<usize> = (0..n).filter(|&i| i * ranks / n == rank).collect();
    match (mine.first(), mine.last()) {
        (Some(&a), Some(&b)) => {
            shard_rows(batches.batch, n, a).start..shard_rows(batches.batch, n, b).end
        }
        _ => 0..0,
    }
}

/// The positions of a text of `len` tokens that rank `rank` of `ranks` reads when
/// [`evaluate_in`] scores it: all it needs to hold.
pub fn token_span(len: usize, config: &EvalConfig, ranks: usize, rank: usize) -> Range<usize> {
    let batches = plan(len, config);
    batches.span(eval_rows(&batches, config, ranks, rank))
}

/// [`evaluate`] over the ranks of `world`: shard `i` of the `threads` shards is scored by
/// rank `i·N/threads` (which needs of `tokens` only those streams), and the shards' sums,
/// each accumulated over the windows in order, are added in the order of
/// [`crate::world::tree`]. The result is the same, bit for bit, for any number of ranks.
pub fn evaluate_in(
    world: &dyn Collective,
    model: &Model,
    tokens: &Tokens,
    config: &EvalConfig,
) -> EvalStats {
    let batches = plan(tokens.len(), config);
    let (batch, seq_len) = (batches.batch, batches.seq_len);
    let n = config.threads.clamp(1, batch);
    let (ranks, rank) = (world.size(), world.rank());
    let mut win = Window::default();
    let packed = PackedWeights::with_mode(model, false, config.precision);
    struct Shard {
        rows: Range<usize>,
        ws: Workspace,
        state: State,
        loss: f64,
        count: usize,
    }
    let mut shards: Vec<Shard> = (0..n)
        .filter(|&i| i * ranks / n == rank)
        .map(|i| {
            let rows = shard_rows(batch, n, i);
            Shard {
                ws: Workspace::inference(&model.config, rows.len(), seq_len),
                state: State::zeros(&model.config, rows.len()),
                rows,
                loss: 0.0,
                count: 0,
            }
        })
        .collect();
    let rows = eval_rows(&batches, config, ranks, rank);
    for w in 0..batches.windows {
        if shards.is_empty() {
            break;
        }
        batches.window_rows(tokens, w, rows.clone(), &mut win);
        let win = &win;
        shards.par_iter_mut().for_each(|s| {
            s.loss += model.forward(&packed, &mut s.ws, win, s.rows.clone(), &mut s.state, None);
            s.count += (0..win.t_len)
                .map(|t| s.rows.clone().filter(|&b| win.valid[t * batch + b]).count())
                .sum::<usize>();
        });
    }
    let losses: Vec<f64> = shards.iter().map(|s| s.loss).collect();
    let count: u64 = shards.iter().map(|s| s.count as u64).sum();
    EvalStats {
        loss_sum: tree(&world::gather_f64(world, &losses)),
        count: world::sum_u64(world, count) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;
    use crate::train::trainer::tests::setup;

    fn config(streams: usize, window: usize, threads: usize) -> EvalConfig {
        EvalConfig {
            streams,
            window,
            threads,
            ..EvalConfig::default()
        }
    }

    /// The state is carried across windows, so the window length changes nothing but the
    /// rounding; the thread count changes nothing at all in the stream split.
    #[test]
    fn evaluation_does_not_depend_on_window_or_threads() {
        let (model, _, toks) = setup(CellKind::Lstm, 1, 0.0);
        let base = evaluate(&model, &toks, &config(4, 25, 1));
        assert_eq!(base.count, crate::text::split::scored_positions(&toks));
        for (seq_len, threads) in [(7, 1), (100, 2), (1, 2)] {
            let e = evaluate(&model, &toks, &config(4, seq_len, threads));
            assert_eq!(e.count, base.count);
            assert!(
                (e.loss() - base.loss()).abs() < 1e-5,
                "T={seq_len}: {} vs {}",
                e.loss(),
                base.loss()
            );
        }
    }

    /// Validation split over ranks gives the local number, bit for bit, whatever the ranks.
    #[test]
    fn ranks_give_the_local_number() {
        use crate::world::threads::ThreadWorld;
        let (model, _, toks) = setup(CellKind::Gru, 1, 0.0);
        for threads in [1, 2, 3, 4] {
            let c = EvalConfig {
                warmup: 20,
                ..config(4, 10, threads)
            };
            let local = evaluate(&model, &toks, &c);
            for ranks in 1..=6 {
                let each = |w: &ThreadWorld| {
                    let part = toks.slice(token_span(toks.len(), &c, ranks, w.rank()));
                    evaluate_in(w, &model, &part, &c)
                };
                for got in ThreadWorld::run(ranks, each) {
                    assert_eq!(got.count, local.count);
                    assert_eq!(
                        got.loss_sum.to_bits(),
                        local.loss_sum.to_bits(),
                        "{threads} shards, {ranks} ranks"
                    );
                }
            }
        }
    }

    /// A window is cut to what a stream reads, so a huge `--window` or `--warmup` costs
    /// nothing by itself; a model too large for the windows asked is refused with the
    /// estimate, naming the flags.
    #[test]
    fn memory_is_checked_with_the_estimate() {
        let (model, _, toks) = setup(CellKind::Lstm, 1, 0.0);
        let c = model.config;
        let huge = EvalConfig {
            window: usize::MAX,
            warmup: usize::MAX,
            ..config(4, 1, 1)
        };
        let normal = memory_bytes(&c, toks.len(), &config(4, 50, 1)).unwrap();
        assert!(memory_bytes(&c, toks.len(), &huge).unwrap() < 4 * normal);
        let big = ModelConfig {
            hidden: 1 << 14,
            vocab_size: 1 << 16,
            ..c
        };
        let e = check_memory(&big, 1 << 30, &config(32, 1 << 20, 2)).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("needs about") && e.contains("--window"), "{e}");
    }

    /// A sample scores at most `max_chars` positions.
    #[test]
    fn a_sample_is_bounded() {
        let (model, _, toks) = setup(CellKind::Gru, 1, 0.0);
        let full = evaluate(&model, &toks, &config(2, 10, 1));
        let sample = evaluate(
            &model,
            &toks,
            &EvalConfig {
                max_chars: Some(60),
                ..config(2, 10, 1)
            },
        );
        assert!(sample.count <= 60 && sample.count >= 50, "{}", sample.count);
        assert!(full.count > 150);
    }
}
