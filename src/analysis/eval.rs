//! Evaluation: the mean cross-entropy of a model over every scored position of a text.

use crate::nn::{Model, PackedWeights, State, Workspace};
use crate::text::batches::{Batches, Window, shard_rows};
use rayon::prelude::*;
use std::ops::Range;

/// Streams the validation text is cut into. Each stream starts from a zero state, so the
/// measured loss depends (slightly) on this number: training and `charrnn eval` share it so
/// that their figures agree.
pub const EVAL_STREAMS: usize = 32;
/// Shortest stream evaluation cuts a text into (see [`evaluate`]).
pub const MIN_EVAL_STREAM_LEN: usize = 100;
/// Window length of evaluation; the state is carried across windows, so this only sets
/// memory use and speed.
pub const EVAL_WINDOW: usize = 25;

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

/// Scores every position of `tokens` (no dropout), `batch` streams of `seq_len`-step
/// windows with the state carried, the streams split over `threads` shards.
pub fn evaluate(
    model: &Model,
    tokens: &[u32],
    batch: usize,
    seq_len: usize,
    threads: usize,
) -> EvalStats {
    // A short text gets fewer streams, at least MIN_EVAL_STREAM_LEN positions each, so that
    // few predictions start from a zero state. This depends on the text and `batch` only,
    // not on `seq_len`: the window length never changes the result.
    let positions = tokens.len().saturating_sub(1);
    let batch = batch.min((positions / MIN_EVAL_STREAM_LEN).max(1));
    // The workspace is sized by the window, and no window is longer than a stream: a huge
    // `seq_len` costs nothing.
    let seq_len = seq_len.min(positions.div_ceil(batch).max(1));
    let batches = Batches::new(tokens.len(), batch, seq_len);
    let n = threads.clamp(1, batch);
    let mut win = Window::default();
    let packed = PackedWeights::inference(model);
    let mut shards: Vec<(Range<usize>, Workspace, State)> = (0..n)
        .map(|i| {
            let rows = shard_rows(batch, n, i);
            let ws = Workspace::inference(&model.config, rows.len(), seq_len);
            let state = State::zeros(&model.config, rows.len());
            (rows, ws, state)
        })
        .collect();
    let mut stats = EvalStats {
        loss_sum: 0.0,
        count: 0,
    };
    for w in 0..batches.windows {
        batches.window(tokens, w, &mut win);
        stats.count += win.count;
        let win = &win;
        let losses: Vec<f64> = shards
            .par_iter_mut()
            .map(|(rows, ws, state)| model.forward(&packed, ws, win, rows.clone(), state, None))
            .collect();
        stats.loss_sum += losses.iter().sum::<f64>();
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;
    use crate::train::trainer::tests::setup;

    /// The state is carried across windows, so the window length changes nothing but the
    /// rounding; the thread count changes nothing at all in the stream split.
    #[test]
    fn evaluation_does_not_depend_on_window_or_threads() {
        let (model, _, toks) = setup(CellKind::Lstm, 1, 0.0);
        let base = evaluate(&model, &toks, 4, 25, 1);
        assert_eq!(base.count, crate::text::split::scored_positions(&toks));
        for (seq_len, threads) in [(7, 1), (100, 2), (1, 2)] {
            let e = evaluate(&model, &toks, 4, seq_len, threads);
            assert_eq!(e.count, base.count);
            assert!(
                (e.loss() - base.loss()).abs() < 1e-5,
                "T={seq_len}: {} vs {}",
                e.loss(),
                base.loss()
            );
        }
    }
}
