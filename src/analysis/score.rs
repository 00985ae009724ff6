//! Scoring sequences one by one: the probability the model gives each line of a file, as
//! lines mode trains it. Each sequence starts from a zero state with `<start>`, and its
//! score is `-ln p` of each of its characters and of the `<end>` after them.
//!
//! Sequences are scored side by side: sorted by length and taken in groups, one stream
//! per sequence, over windows of at most [`MAX_WINDOW`] steps with the state carried, the
//! groups' streams split over the threads.

use crate::nn::{Model, PackedWeights, State, Workspace};
use crate::text::batches::{Window, shard_rows};
use crate::text::split::Mode;
use crate::text::vocab::{END, START, Vocab};
use rayon::prelude::*;
use std::ops::Range;

/// Sequences scored side by side.
pub const GROUP: usize = 64;
/// Longest window: a longer sequence is scored in several, its state carried.
pub const MAX_WINDOW: usize = 256;
/// Logits of one window stay under this many bytes (a large vocabulary gets shorter
/// windows).
const WINDOW_BYTES: usize = 64 << 20;

/// What is scored after a line's characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LineEnd {
    /// `<end>`, as lines mode trains (the default for a lines-mode model)
    End,
    /// The newline that ends the line in the text (the default for a stream-mode model,
    /// which saw `<end>` only once per file)
    Newline,
    /// Nothing: only the line's characters
    #[value(name = "none")]
    Omit,
}

crate::value_enum_display!(LineEnd);

impl LineEnd {
    /// What ends a line for a model of `mode` over `vocab`: `given`, or by default `<end>`
    /// for a lines-mode model and the newline for a stream-mode one (which saw `<end>` once
    /// per file: its surprisal there says nothing about a line and would inflate every
    /// score alike), or nothing if it never saw a newline. Returns it with the token id
    /// scored.
    pub fn resolve(
        given: Option<LineEnd>,
        mode: Mode,
        vocab: &Vocab,
    ) -> Result<(LineEnd, Option<u32>), String> {
        let newline = vocab.id('\n');
        let end = given.unwrap_or(match (mode, newline) {
            (Mode::Lines, _) => LineEnd::End,
            (Mode::Stream, Some(_)) => LineEnd::Newline,
            (Mode::Stream, None) => LineEnd::Omit,
        });
        let id = match end {
            LineEnd::End => Some(END),
            LineEnd::Omit => None,
            LineEnd::Newline => Some(newline.ok_or(
                "--end newline: the model has no newline in its vocabulary (a lines-mode model ends a line with <end>); use --end end or none",
            )?),
        };
        Ok((end, id))
    }
}

/// The score of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqScore {
    /// `-ln p` of the sequence's characters and of what ends it (if scored), summed (nats).
    pub nats: f64,
    /// Characters in the sequence.
    pub chars: usize,
    /// Positions scored: `chars`, plus one if an end is scored.
    pub scored: usize,
    /// `-ln p` of each character, then of the end (`scored` values; empty unless asked
    /// for).
    pub surprisal: Vec<f32>,
}

impl SeqScore {
    /// Bits per predicted symbol: `nats / ln 2 / scored` (the end counts as a symbol).
    pub fn bits_per_char(&self) -> f64 {
        self.nats / std::f64::consts::LN_2 / self.scored.max(1) as f64
    }
}

/// Scores every sequence (character ids, without `<start>` and `<end>`) and then `end`,
/// the token that ends it (`<end>`, a newline's id, or none); the result is in the order
/// given. `per_char` keeps each position's surprisal.
pub fn score_sequences(
    model: &Model,
    seqs: &[Vec<u32>],
    threads: usize,
    per_char: bool,
    end: Option<u32>,
) -> Vec<SeqScore> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
    let mut out: Vec<Option<SeqScore>> = vec![None; seqs.len()];
    let packed = PackedWeights::inference(model);
    let v = model.config.vocab_size;
    for group in order.chunks(GROUP) {
        let batch = group.len();
        let steps = seqs[group[0]].len() + 1;
        let fit = (WINDOW_BYTES / (batch * v * 4)).max(1);
        let t_cap = steps.min(MAX_WINDOW).min(fit);
        let n = threads.clamp(1, batch);
        let mut shards: Vec<(Range<usize>, Workspace, State, Vec<f32>)> = (0..n)
            .map(|i| {
                let rows = shard_rows(batch, n, i);
                let ws = Workspace::inference(&model.config, rows.len(), t_cap);
                let state = State::zeros(&model.config, rows.len());
                let nll = vec![0.0; t_cap * rows.len()];
                (rows, ws, state, nll)
            })
            .collect();
        let mut scores: Vec<SeqScore> = group
            .iter()
            .map(|&i| {
                let scored = seqs[i].len() + end.is_some() as usize;
                SeqScore {
                    nats: 0.0,
                    chars: seqs[i].len(),
                    scored,
                    surprisal: Vec::with_capacity(if per_char { scored } else { 0 }),
                }
            })
            .collect();
        let mut win = Window::default();
        for t0 in (0..steps).step_by(t_cap) {
            let t_len = t_cap.min(steps - t0);
            fill_window(&mut win, seqs, group, t0, t_len, end);
            let win = &win;
            shards.par_iter_mut().for_each(|(rows, ws, state, nll)| {
                model.forward_each(&packed, ws, win, rows.clone(), state, nll);
            });
            for (rows, _, _, nll) in &shards {
                let width = rows.len();
                for t in 0..t_len {
                    for (r, b) in rows.clone().enumerate() {
                        let s = &mut scores[b];
                        if t0 + t < s.scored {
                            let x = nll[t * width + r];
                            s.nats += x as f64;
                            if per_char {
                                s.surprisal.push(x);
                            }
                        }
                    }
                }
            }
        }
        for (&i, s) in group.iter().zip(scores) {
            out[i] = Some(s);
        }
    }
    out.into_iter()
        .map(|s| s.expect("every sequence scored"))
        .collect()
}

/// Steps `t0 .. t0 + t_len` of the group's sequences: input `<start>` then the characters,
/// target the characters then `<end>`; past a sequence's end, unscored padding.
fn fill_window(
    win: &mut Window,
    seqs: &[Vec<u32>],
    group: &[usize],
    t0: usize,
    t_len: usize,
    end: Option<u32>,
) {
    let batch = group.len();
    let n = t_len * batch;
    win.t_len = t_len;
    win.batch = batch;
    win.x.clear();
    win.x.resize(n, END);
    win.y.clear();
    win.y.resize(n, END);
    win.valid.clear();
    win.valid.resize(n, false);
    win.reset.clear();
    win.reset.resize(n, true);
    win.count = 0;
    for t in 0..t_len {
        let step = t0 + t;
        for (b, &s) in group.iter().enumerate() {
            let seq = &seqs[s];
            if step > seq.len() {
                continue;
            }
            let i = t * batch + b;
            win.x[i] = if step == 0 { START } else { seq[step - 1] };
            win.y[i] = if step == seq.len() {
                end.unwrap_or(END)
            } else {
                seq[step]
            };
            win.reset[i] = step == 0;
            win.valid[i] = step < seq.len() || end.is_some();
            win.count += win.valid[i] as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::infer::Stepper;
    use crate::nn::{CellKind, ModelConfig};
    use rand::SeedableRng;

    /// Scores equal what stepping the model through each sequence on its own gives, for
    /// any grouping, window and thread count.
    #[test]
    fn a_line_ends_as_the_model_was_trained() {
        let v = Vocab::from_texts(["ab\n"]);
        let nl = v.id('\n');
        assert_eq!(
            LineEnd::resolve(None, Mode::Lines, &v),
            Ok((LineEnd::End, Some(END)))
        );
        assert_eq!(
            LineEnd::resolve(None, Mode::Stream, &v),
            Ok((LineEnd::Newline, nl))
        );
        let no_nl = Vocab::from_texts(["ab"]);
        assert_eq!(
            LineEnd::resolve(None, Mode::Stream, &no_nl),
            Ok((LineEnd::Omit, None))
        );
        assert!(LineEnd::resolve(Some(LineEnd::Newline), Mode::Lines, &no_nl).is_err());
        assert_eq!(
            LineEnd::resolve(Some(LineEnd::End), Mode::Stream, &v),
            Ok((LineEnd::End, Some(END)))
        );
    }

    #[test]
    fn scores_equal_one_sequence_at_a_time() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let mut m = Model::new(ModelConfig {
                cell,
                layers: 2,
                hidden: 9,
                vocab_size: 7,
                dropout: 0.0,
                output_dropout: 0.0,
                weight_drop: 0.0,
            });
            m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(8));
            let seqs: Vec<Vec<u32>> = (0..150)
                .map(|i| {
                    (0..(i * 7) % 300)
                        .map(|j| 2 + ((i + j * j) % 5) as u32)
                        .collect()
                })
                .collect();
            let got = score_sequences(&m, &seqs, 2, true, Some(END));
            // Without an end, the characters' scores are the same and nothing follows.
            let bare = score_sequences(&m, &seqs, 2, true, None);
            for (g, b) in got.iter().zip(&bare) {
                assert_eq!(b.surprisal[..], g.surprisal[..g.chars], "{cell}");
                assert_eq!(b.scored, b.chars);
            }
            let newline = score_sequences(&m, &seqs, 2, true, Some(4));
            for (seq, s) in seqs.iter().zip(&got).step_by(13) {
                let mut st = Stepper::new(&m, 1);
                let mut want = 0.0f64;
                let inputs = std::iter::once(START).chain(seq.iter().copied());
                let targets = seq.iter().copied().chain(std::iter::once(END));
                for (k, (x, y)) in inputs.zip(targets).enumerate() {
                    let logits = st.step(&[x]);
                    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let lse = logits
                        .iter()
                        .map(|&z| ((z - max) as f64).exp())
                        .sum::<f64>()
                        .ln()
                        + max as f64;
                    let nll = lse - logits[y as usize] as f64;
                    assert!((nll - s.surprisal[k] as f64).abs() < 1e-4, "{cell}");
                    want += nll;
                }
                assert_eq!(s.surprisal.len(), seq.len() + 1);
                let i = seqs.iter().position(|x| std::ptr::eq(x, seq)).unwrap();
                assert_eq!(newline[i].surprisal[..seq.len()], s.surprisal[..seq.len()]);
                assert!(
                    (want - s.nats).abs() < 1e-3 * (1.0 + want),
                    "{cell}: {want} vs {}",
                    s.nats
                );
            }
        }
    }
}
