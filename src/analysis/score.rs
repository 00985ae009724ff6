//! Scoring sequences one by one: the probability the model gives each line of a file, as
//! lines mode trains it. Each sequence starts from a zero state with `<start>`, and its
//! score is `-ln p` of each of its characters and of the `<end>` after them.
//!
//! Sequences are scored side by side: sorted by length and taken in groups, one stream
//! per sequence, over windows of at most [`MAX_WINDOW`] steps with the state carried, the
//! groups' streams split over the threads.

use crate::nn::{Model, PackedWeights, State, Workspace};
use crate::text::batches::{Window, shard_rows};
use crate::text::vocab::{END, START};
use rayon::prelude::*;
use std::ops::Range;

/// Sequences scored side by side.
pub const GROUP: usize = 64;
/// Longest window: a longer sequence is scored in several, its state carried.
pub const MAX_WINDOW: usize = 256;
/// Logits of one window stay under this many bytes (a large vocabulary gets shorter
/// windows).
const WINDOW_BYTES: usize = 64 << 20;

/// The score of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqScore {
    /// `-ln p` of the sequence's characters and its `<end>`, summed (nats).
    pub nats: f64,
    /// Characters in the sequence (positions scored: `chars + 1`).
    pub chars: usize,
    /// `-ln p` of each character, then of the `<end>` (`chars + 1` values; empty unless
    /// asked for).
    pub surprisal: Vec<f32>,
}

impl SeqScore {
    /// Bits per predicted symbol: `nats / ln 2 / (chars + 1)`, the `+ 1` being the `<end>`.
    pub fn bits_per_char(&self) -> f64 {
        self.nats / std::f64::consts::LN_2 / (self.chars + 1) as f64
    }
}

/// Scores every sequence (character ids, without `<start>` and `<end>`); the result is in
/// the order given. `per_char` keeps each position's surprisal.
pub fn score_sequences(
    model: &Model,
    seqs: &[Vec<u32>],
    threads: usize,
    per_char: bool,
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
            .map(|&i| SeqScore {
                nats: 0.0,
                chars: seqs[i].len(),
                surprisal: Vec::with_capacity(if per_char { seqs[i].len() + 1 } else { 0 }),
            })
            .collect();
        let mut win = Window::default();
        for t0 in (0..steps).step_by(t_cap) {
            let t_len = t_cap.min(steps - t0);
            fill_window(&mut win, seqs, group, t0, t_len);
            let win = &win;
            shards.par_iter_mut().for_each(|(rows, ws, state, nll)| {
                model.forward_each(&packed, ws, win, rows.clone(), state, nll);
            });
            for (rows, _, _, nll) in &shards {
                let width = rows.len();
                for t in 0..t_len {
                    for (r, b) in rows.clone().enumerate() {
                        let s = &mut scores[b];
                        if t0 + t <= s.chars {
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
fn fill_window(win: &mut Window, seqs: &[Vec<u32>], group: &[usize], t0: usize, t_len: usize) {
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
            win.y[i] = if step == seq.len() { END } else { seq[step] };
            win.reset[i] = step == 0;
            win.valid[i] = true;
            win.count += 1;
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
    fn scores_equal_one_sequence_at_a_time() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let mut m = Model::new(ModelConfig {
                cell,
                layers: 2,
                hidden: 9,
                vocab_size: 7,
                dropout: 0.0,
            });
            m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(8));
            let seqs: Vec<Vec<u32>> = (0..150)
                .map(|i| {
                    (0..(i * 7) % 300)
                        .map(|j| 2 + ((i + j * j) % 5) as u32)
                        .collect()
                })
                .collect();
            let got = score_sequences(&m, &seqs, 2, true);
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
                assert!(
                    (want - s.nats).abs() < 1e-3 * (1.0 + want),
                    "{cell}: {want} vs {}",
                    s.nats
                );
            }
        }
    }
}
