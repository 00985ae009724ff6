//! The cutting of a token stream into `B` parallel streams of `T`-step windows for truncated
//! BPTT (see [`crate::text::split`] for the stream itself).

use crate::text::tokens::Tokens;
use crate::text::vocab::{END, START};
use std::ops::Range;

/// Rows of shard `i` of `n` over `batch` streams: as equal as possible, in order. Training
/// and evaluation run each shard's rows on their own core.
pub fn shard_rows(batch: usize, n: usize, i: usize) -> Range<usize> {
    batch * i / n..batch * (i + 1) / n
}

/// One window of a batch, time-major: entry `t·B + b` is stream `b` at step `t`.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Steps in this window (`<= T`; the last window of an epoch may be shorter).
    pub t_len: usize,
    /// B: streams.
    pub batch: usize,
    /// Input ids, [T, B].
    pub x: Vec<u32>,
    /// Target ids, [T, B].
    pub y: Vec<u32>,
    /// Whether position is scored, [T, B]: false after `<end>` and past the end of the data.
    pub valid: Vec<bool>,
    /// Whether the state entering the step is zeroed, [T, B]: true where the input is
    /// `<start>` and on padding past the end of the data.
    pub reset: Vec<bool>,
    /// Number of scored positions.
    pub count: usize,
}

/// The cutting of a token stream into `B` streams read `T` steps at a time.
///
/// Training ([`Batches::new`]): the `n - 1` positions are divided into `B` contiguous
/// streams of `ceil((n-1)/B)` positions; the last stream may be shorter and is padded with
/// unscored, reset positions. Stream `b`'s targets run one token into stream `b+1`, so every
/// position is predicted exactly once per epoch: nothing is dropped and nothing duplicated.
/// An epoch is `ceil(stream_len / T)` windows, the last of which may be shorter than `T`.
///
/// Evaluation ([`Batches::warm`]) adds two things. Each stream first reads the `warmup`
/// positions before its own, unscored, so that it enters its part of the text with the
/// state the text before it gives instead of a zero state: the score then no longer depends
/// on how many streams the text is cut into. And the scored parts can be a sample: `B`
/// evenly spaced segments of at most `max_scored / B` positions each (`stride` apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    pub batch: usize,
    pub seq_len: usize,
    /// Scored positions per stream.
    pub stream_len: usize,
    /// Distance between the starts of consecutive streams (`stream_len` unless sampling).
    pub stride: usize,
    /// Unscored positions each stream reads before its own.
    pub warmup: usize,
    pub windows: usize,
    positions: usize,
}

impl Batches {
    /// Contiguous streams covering every position, for training.
    pub fn new(n_tokens: usize, batch: usize, seq_len: usize) -> Batches {
        Batches::warm(n_tokens, batch, seq_len, 0, None)
    }

    /// Streams that first read `warmup` positions of the text before their own; with
    /// `max_scored`, at most that many positions are scored, in `batch` evenly spaced
    /// segments.
    pub fn warm(
        n_tokens: usize,
        batch: usize,
        seq_len: usize,
        warmup: usize,
        max_scored: Option<usize>,
    ) -> Batches {
        assert!(
            batch > 0 && seq_len > 0,
            "batch and seq_len must be positive"
        );
        let positions = n_tokens.saturating_sub(1);
        let stride = positions.div_ceil(batch);
        let stream_len = match max_scored {
            Some(m) if m < positions => (m / batch).clamp(1, stride),
            _ => stride,
        };
        // No stream has more text before it than the last one's `(B-1)·stride` positions: a
        // longer warm-up would read only padding, so it is cut there (which changes no
        // score, and keeps `warmup + stream_len` within the text's size).
        let warmup = warmup.min((batch - 1).saturating_mul(stride));
        Batches {
            batch,
            seq_len,
            stream_len,
            stride,
            warmup,
            windows: (warmup + stream_len).div_ceil(seq_len),
            positions,
        }
    }

    /// The positions of the text that the streams `rows` read (inputs and targets): all a
    /// process that runs only those streams needs to hold.
    pub fn span(&self, rows: Range<usize>) -> Range<usize> {
        if rows.is_empty() {
            return 0..0;
        }
        let start = (rows.start * self.stride).saturating_sub(self.warmup);
        let end = ((rows.end - 1) * self.stride + self.stream_len + 1).min(self.positions + 1);
        start.min(end)..end
    }

    /// Fills `out` with window `w` (`0 <= w < windows`) of `tokens`.
    pub fn window(&self, tokens: &Tokens, w: usize, out: &mut Window) {
        self.window_rows(tokens, w, 0..self.batch, out);
    }

    /// [`Batches::window`] for the streams `rows` only: the others are left as unscored
    /// padding, and `count` counts the scored positions of `rows`. A process that trains or
    /// validates some of the streams reads only their part of the text.
    pub fn window_rows(&self, tokens: &Tokens, w: usize, rows: Range<usize>, out: &mut Window) {
        assert!(w < self.windows, "window {w} out of range");
        let t0 = w * self.seq_len;
        let t_len = self.seq_len.min(self.warmup + self.stream_len - t0);
        let n = t_len * self.batch;
        out.t_len = t_len;
        out.batch = self.batch;
        for v in [&mut out.x, &mut out.y] {
            v.clear();
            v.resize(n, END);
        }
        out.valid.clear();
        out.valid.resize(n, false);
        out.reset.clear();
        out.reset.resize(n, true);
        out.count = 0;
        for t in 0..t_len {
            // Step `t0 + t` of every stream: position start + step - warmup of the text.
            let step = t0 + t;
            for b in rows.clone() {
                let Some(p) = (b * self.stride + step).checked_sub(self.warmup) else {
                    continue;
                };
                if p >= self.positions || p >= b * self.stride + self.stream_len {
                    continue;
                }
                let i = t * self.batch + b;
                let (x, y) = (tokens.get(p), tokens.get(p + 1));
                out.x[i] = x;
                out.y[i] = y;
                // A stream's first position starts from a zero state (what came before it in
                // the window was padding).
                let first = p == (b * self.stride).saturating_sub(self.warmup);
                out.reset[i] = x == START || first;
                out.valid[i] = x != END && step >= self.warmup;
                out.count += out.valid[i] as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::split::{scored_positions, tokens};
    use crate::text::vocab::Vocab;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    /// Every scored position of an epoch appears exactly once, whatever B and T.
    #[test]
    fn epoch_covers_every_position_once() {
        let tokens = tokens(
            &Vocab::from_texts(["abcdefg"]),
            &strings(&["abc", "defg", "a", "gfedcba", "bb"]),
        )
        .unwrap();
        for batch in 1..6 {
            for seq_len in 1..7 {
                let bs = Batches::new(tokens.len(), batch, seq_len);
                let mut seen = vec![0usize; tokens.len()];
                let mut w = Window::default();
                let mut total = 0;
                for k in 0..bs.windows {
                    bs.window(&tokens, k, &mut w);
                    total += w.count;
                    for t in 0..w.t_len {
                        for b in 0..batch {
                            let i = t * batch + b;
                            if w.valid[i] {
                                let p = b * bs.stream_len + k * seq_len + t;
                                assert_eq!(w.x[i], tokens.get(p));
                                assert_eq!(w.y[i], tokens.get(p + 1));
                                seen[p] += 1;
                            }
                        }
                    }
                }
                assert_eq!(total, scored_positions(&tokens), "B={batch} T={seq_len}");
                for (p, &n) in seen.iter().enumerate().take(tokens.len() - 1) {
                    let want = (tokens.get(p) != END) as usize;
                    assert_eq!(n, want, "position {p}, B={batch} T={seq_len}");
                }
            }
        }
    }

    #[test]
    fn resets_where_input_is_start() {
        let tokens = Tokens::from(vec![START, 2, END, START, 3, END]);
        let bs = Batches::new(tokens.len(), 1, 5);
        let mut w = Window::default();
        bs.window(&tokens, 0, &mut w);
        assert_eq!(w.reset, vec![true, false, false, true, false]);
        assert_eq!(w.valid, vec![true, true, false, true, true]);
        assert_eq!(w.count, 4);
    }

    /// With a warm-up, every position is still scored exactly once, and each stream reads the
    /// positions just before its own first; with a cap, the scored positions are evenly
    /// spaced segments.
    #[test]
    fn warm_streams_score_each_position_once() {
        let tokens = Tokens::from(
            (0..200)
                .map(|i| if i == 0 { START } else { 2 + i % 5 })
                .collect::<Vec<u32>>(),
        );
        for (batch, seq_len, warmup) in [(1, 7, 5), (4, 9, 13), (7, 3, 40), (3, 50, 100)] {
            let bs = Batches::warm(tokens.len(), batch, seq_len, warmup, None);
            let mut scored = vec![0; tokens.len()];
            let mut read_before = vec![false; batch];
            let mut w = Window::default();
            for k in 0..bs.windows {
                bs.window(&tokens, k, &mut w);
                for t in 0..w.t_len {
                    for b in 0..batch {
                        let i = t * batch + b;
                        let step = k * seq_len + t;
                        if w.valid[i] {
                            scored[b * bs.stride + step - bs.warmup] += 1;
                        } else if step < bs.warmup && w.x[i] != END {
                            read_before[b] = true;
                        }
                    }
                }
            }
            assert!(
                scored[..tokens.len() - 1].iter().all(|&n| n == 1),
                "B={batch} T={seq_len} W={warmup}"
            );
            assert!(read_before[1..].iter().all(|&r| r), "B={batch} W={warmup}");
        }
        let bs = Batches::warm(tokens.len(), 4, 8, 10, Some(40));
        assert_eq!((bs.stream_len, bs.stride), (10, 50));
        // A warm-up longer than the text before the last stream reads only that text.
        let bs = Batches::warm(tokens.len(), 4, 8, usize::MAX, None);
        assert_eq!((bs.warmup, bs.windows), (150, 25));
        assert_eq!(
            Batches::warm(tokens.len(), 1, 8, usize::MAX, None).warmup,
            0
        );
    }

    /// Streams read from a part of the text holding their span the windows a whole text
    /// gives them, for training and for evaluation.
    #[test]
    fn rows_need_only_their_span() {
        let tokens = Tokens::from(
            (0..300)
                .map(|i| if i % 37 == 0 { START } else { 2 + i % 5 })
                .collect::<Vec<u32>>(),
        );
        for bs in [
            Batches::new(tokens.len(), 7, 9),
            Batches::warm(tokens.len(), 5, 11, 30, None),
            Batches::warm(tokens.len(), 4, 8, 10, Some(40)),
        ] {
            for rows in [0..1, 1..3, 2..bs.batch, 0..bs.batch] {
                let part = tokens.slice(bs.span(rows.clone()));
                let (mut a, mut b) = (Window::default(), Window::default());
                for w in 0..bs.windows {
                    bs.window_rows(&tokens, w, rows.clone(), &mut a);
                    bs.window_rows(&part, w, rows.clone(), &mut b);
                    assert_eq!(
                        (&a.x, &a.y, &a.valid, &a.reset),
                        (&b.x, &b.y, &b.valid, &b.reset)
                    );
                    assert_eq!(a.count, b.count);
                }
            }
        }
    }
}
