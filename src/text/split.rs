//! Sequences bracketed by `<start>`/`<end>`, the train/validation split, and the token
//! stream they make.
//!
//! The token stream is the concatenation `<start> s1 <end> <start> s2 <end> …`. Position
//! `p` of it is the prediction "token p+1 given tokens up to p". Two rules make sequences
//! independent of each other:
//! - where the input is `<start>`, the hidden state entering that step is zero (a *reset*),
//!   so nothing before a sequence can influence it;
//! - where the input is `<end>`, nothing is predicted (the next `<start>` is not a fact
//!   about the text).

use crate::text::tokens::Tokens;
use crate::text::vocab::{END, START, UnknownChar, Vocab};

/// How a corpus is cut into sequences.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each file is one long text: classic char-rnn
    Stream,
    /// Each non-empty line is its own sequence (names, words, one-liners); the model learns
    /// where a line ends by predicting `<end>`
    Lines,
}

crate::value_enum_display!(Mode);

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

/// The token stream `<start> s1 <end> <start> s2 <end> …`, in the narrowest storage the
/// vocabulary allows.
pub fn tokens(vocab: &Vocab, seqs: &[String]) -> Result<Tokens, UnknownChar> {
    let mut out = Tokens::with_capacity(vocab.len(), seqs.iter().map(|s| s.len() + 2).sum());
    for s in seqs {
        out.push(START);
        for (index, ch) in s.chars().enumerate() {
            out.push(vocab.id(ch).ok_or(UnknownChar { ch, index })?);
        }
        out.push(END);
    }
    Ok(out)
}

/// Number of positions that are predicted (inputs other than `<end>`) in a token stream.
pub fn scored_positions(tokens: &Tokens) -> usize {
    tokens
        .iter()
        .take(tokens.len().saturating_sub(1))
        .filter(|&t| t != END)
        .count()
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
        assert_eq!(t.to_vec(), vec![START, 2, 3, END, START, 3, END]);
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
}
