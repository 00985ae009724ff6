//! Sequences bracketed by `<start>`/`<end>`, the train/validation split, and the cutting of
//! a token stream into `B` parallel streams of `T`-step windows for truncated BPTT.
//!
//! The token stream is the concatenation `<start> s1 <end> <start> s2 <end> …`. Position
//! `p` of it is the prediction "token p+1 given tokens up to p". Two rules make sequences
//! independent of each other:
//! - where the input is `<start>`, the hidden state entering that step is zero (a *reset*),
//!   so nothing before a sequence can influence it;
//! - where the input is `<end>`, nothing is predicted (the next `<start>` is not a fact
//!   about the text).

use crate::vocab::{END, START, UnknownChar, Vocab};

/// How a corpus is cut into sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each file is one long sequence: classic char-rnn.
    Stream,
    /// Each non-empty line is its own sequence (lists of names, words, one-liners); the model
    /// learns where a line ends by predicting `<end>`.
    Lines,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Lines => "lines",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "stream" => Some(Mode::Stream),
            "lines" => Some(Mode::Lines),
            _ => None,
        }
    }
}

/// The sequences of some texts (one per file) in the given mode.
pub fn sequences(texts: &[String], mode: Mode) -> Vec<String> {
    match mode {
        Mode::Stream => texts.iter().filter(|t| !t.is_empty()).cloned().collect(),
        Mode::Lines => texts
            .iter()
            .flat_map(|t| t.lines())
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect(),
    }
}

/// Holds out the last `val_fraction` of the sequences for validation.
///
/// Lines mode holds out whole lines (at least one when the fraction is positive and there
/// are two or more). Stream mode holds out the last `val_fraction` of the characters,
/// cutting the sequence in which the cut falls into two.
pub fn split(seqs: Vec<String>, mode: Mode, val_fraction: f64) -> (Vec<String>, Vec<String>) {
    if val_fraction <= 0.0 || seqs.is_empty() {
        return (seqs, Vec::new());
    }
    match mode {
        Mode::Lines => {
            let n = seqs.len();
            let n_val = ((n as f64 * val_fraction).round() as usize).clamp(1.min(n - 1), n - 1);
            let mut train = seqs;
            let val = train.split_off(n - n_val);
            (train, val)
        }
        Mode::Stream => {
            let total: usize = seqs.iter().map(|s| s.chars().count()).sum();
            let mut cut = total - (total as f64 * val_fraction).round() as usize;
            let mut train = Vec::new();
            let mut val = Vec::new();
            for s in seqs {
                let n = s.chars().count();
                if cut >= n {
                    cut -= n;
                    train.push(s);
                } else if cut == 0 {
                    val.push(s);
                } else {
                    let byte = s.char_indices().nth(cut).map(|(i, _)| i).unwrap_or(s.len());
                    train.push(s[..byte].to_string());
                    val.push(s[byte..].to_string());
                    cut = 0;
                }
            }
            (train, val)
        }
    }
}

/// The training and validation sequences of a corpus (one text per file). Training, `eval`
/// and `bench` all cut a corpus through this one function, so that a checkpoint's recorded
/// mode and fraction rebuild exactly the split it was trained on.
pub fn train_val(texts: &[String], mode: Mode, val_fraction: f64) -> (Vec<String>, Vec<String>) {
    split(sequences(texts, mode), mode, val_fraction)
}

/// The token stream `<start> s1 <end> <start> s2 <end> …`.
pub fn tokens(vocab: &Vocab, seqs: &[String]) -> Result<Vec<u32>, UnknownChar> {
    let mut out = Vec::with_capacity(seqs.iter().map(|s| s.len() + 2).sum());
    for s in seqs {
        out.push(START);
        out.extend(vocab.encode(s)?);
        out.push(END);
    }
    Ok(out)
}

/// Number of positions that are predicted (inputs other than `<end>`) in a token stream.
pub fn scored_positions(tokens: &[u32]) -> usize {
    tokens
        .iter()
        .take(tokens.len().saturating_sub(1))
        .filter(|&&t| t != END)
        .count()
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

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lines_mode_skips_empty_lines() {
        let seqs = sequences(&strings(&["ann\n\nbob\r\n  \ncy"]), Mode::Lines);
        assert_eq!(seqs, strings(&["ann", "bob", "cy"]));
    }

    #[test]
    fn tokens_are_bracketed() {
        let v = Vocab::from_texts(["ab"]);
        let t = tokens(&v, &strings(&["ab", "b"])).unwrap();
        assert_eq!(t, vec![START, 2, 3, END, START, 3, END]);
        assert_eq!(scored_positions(&t), 5);
    }

    #[test]
    fn split_lines_holds_out_whole_lines() {
        let seqs: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let (train, val) = split(seqs.clone(), Mode::Lines, 0.1);
        assert_eq!(train.len(), 18);
        assert_eq!(val, seqs[18..]);
        let (train, val) = split(strings(&["a", "b"]), Mode::Lines, 0.1);
        assert_eq!((train.len(), val.len()), (1, 1));
        let (train, val) = split(seqs, Mode::Lines, 0.0);
        assert_eq!((train.len(), val.len()), (20, 0));
    }

    #[test]
    fn split_stream_cuts_characters_not_bytes() {
        let (train, val) = split(strings(&["ééééé", "世界世界世"]), Mode::Stream, 0.3);
        assert_eq!(train, strings(&["ééééé", "世界"]));
        assert_eq!(val, strings(&["世界世"]));
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
