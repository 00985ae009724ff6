//! The cutting of a token stream into `B` parallel streams of `T`-step windows for truncated
//! BPTT (see [`crate::text::split`] for the stream itself).

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

/// The cutting of a token stream into `B` contiguous streams read `T` steps at a time.
///
/// The `n - 1` positions are divided into `B` streams of `ceil((n-1)/B)` positions; the last
/// stream may be shorter and is padded with unscored, reset positions. Stream `b`'s targets
/// run one token into stream `b+1`, so every position is predicted exactly once per epoch:
/// nothing is dropped and nothing duplicated. An epoch is `ceil(stream_len / T)` windows, the
/// last of which may be shorter than `T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    pub batch: usize,
    pub seq_len: usize,
    pub stream_len: usize,
    pub windows: usize,
    positions: usize,
}

impl Batches {
    pub fn new(n_tokens: usize, batch: usize, seq_len: usize) -> Batches {
        assert!(
            batch > 0 && seq_len > 0,
            "batch and seq_len must be positive"
        );
        let positions = n_tokens.saturating_sub(1);
        let stream_len = positions.div_ceil(batch);
        Batches {
            batch,
            seq_len,
            stream_len,
            windows: stream_len.div_ceil(seq_len),
            positions,
        }
    }

    /// Fills `out` with window `w` (`0 <= w < windows`) of `tokens`.
    pub fn window(&self, tokens: &[u32], w: usize, out: &mut Window) {
        assert!(w < self.windows, "window {w} out of range");
        let t0 = w * self.seq_len;
        let t_len = self.seq_len.min(self.stream_len - t0);
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
            for b in 0..self.batch {
                let p = b * self.stream_len + t0 + t;
                if p >= self.positions {
                    continue;
                }
                let i = t * self.batch + b;
                out.x[i] = tokens[p];
                out.y[i] = tokens[p + 1];
                out.reset[i] = tokens[p] == START;
                out.valid[i] = tokens[p] != END;
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
        let tokens: Vec<u32> = tokens(
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
                                assert_eq!(w.x[i], tokens[p]);
                                assert_eq!(w.y[i], tokens[p + 1]);
                                seen[p] += 1;
                            }
                        }
                    }
                }
                assert_eq!(total, scored_positions(&tokens), "B={batch} T={seq_len}");
                for (p, &n) in seen.iter().enumerate().take(tokens.len() - 1) {
                    let want = (tokens[p] != END) as usize;
                    assert_eq!(n, want, "position {p}, B={batch} T={seq_len}");
                }
            }
        }
    }

    #[test]
    fn resets_where_input_is_start() {
        let tokens = vec![START, 2, END, START, 3, END];
        let bs = Batches::new(tokens.len(), 1, 5);
        let mut w = Window::default();
        bs.window(&tokens, 0, &mut w);
        assert_eq!(w.reset, vec![true, false, false, true, false]);
        assert_eq!(w.valid, vec![true, true, false, true, true]);
        assert_eq!(w.count, 4);
    }
}
