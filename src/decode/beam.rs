//! Beam search: the most probable continuation the search can find, rather than a random
//! one. `width` partial continuations are kept, each step every one is extended by every
//! character, and the `width` most probable extensions survive; a continuation ends when the
//! model produces `<end>`, or at `max_len` characters.
//!
//! The greedy continuation (`--argmax`) is followed beside the beams and never pruned, so the
//! result is never less probable than greedy decoding's. With a length penalty `α > 0`,
//! continuations are compared by `ln p / len^α` (Wu et al. 2016 use ((5 + len)/6)^α; the plain
//! power is enough here), which stops short endings from winning only by being short.

use crate::nn::Model;
use crate::nn::infer::Stepper;
use crate::text::vocab::{END, START};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamConfig {
    /// Continuations kept at each step.
    pub width: usize,
    /// Longest continuation, in characters (not counting `<end>`).
    pub max_len: usize,
    /// α: compare continuations by `ln p / len^α`; 0 compares plain probabilities.
    pub length_penalty: f32,
}

/// A continuation and its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    /// Character ids, without `<end>`.
    pub ids: Vec<u32>,
    /// `ln p` of the characters (and of the `<end>`, if it ended).
    pub log_prob: f64,
    /// Whether the model produced `<end>` (else it reached `max_len`).
    pub ended: bool,
}

impl Continuation {
    /// The score continuations are ranked by.
    pub fn score(&self, alpha: f32) -> f64 {
        let len = (self.ids.len() + self.ended as usize).max(1) as f64;
        if alpha == 0.0 {
            self.log_prob
        } else {
            self.log_prob / len.powf(alpha as f64)
        }
    }
}

/// Log-softmax of `logits` into `out`, with `<start>` impossible (it is never an output).
fn log_softmax(logits: &[f32], out: &mut [f64]) {
    let max = logits[1..]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits[1..]
        .iter()
        .map(|&z| (z as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    for (o, &z) in out.iter_mut().zip(logits) {
        *o = z as f64 - lse;
    }
    out[START as usize] = f64::NEG_INFINITY;
}

/// Feeds `<start>` and `prime` to every stream of a stepper with `width` streams; returns
/// the stepper and the logits of the first character to generate (row 0).
fn primed<'m>(model: &'m Model, prime: &[u32], width: usize) -> (Stepper<'m>, Vec<f32>) {
    let mut st = Stepper::new(model, width);
    let mut logits = Vec::new();
    for &t in std::iter::once(&START).chain(prime) {
        logits = st.step(&vec![t; width]).to_vec();
    }
    (st, logits)
}

/// The greedy continuation: always the likeliest character.
pub fn greedy(model: &Model, prime: &[u32], max_len: usize) -> Continuation {
    let v = model.config.vocab_size;
    let (mut st, mut logits) = primed(model, prime, 1);
    let mut lp = vec![0.0; v];
    let mut c = Continuation {
        ids: Vec::new(),
        log_prob: 0.0,
        ended: false,
    };
    while c.ids.len() < max_len {
        log_softmax(&logits[..v], &mut lp);
        let best = (1..v).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap() as u32;
        c.log_prob += lp[best as usize];
        if best == END {
            c.ended = true;
            break;
        }
        c.ids.push(best);
        logits = st.step(&[best]).to_vec();
    }
    c
}

/// Beam search from `<start>` and `prime` (character ids).
pub fn beam_search(model: &Model, prime: &[u32], config: &BeamConfig) -> Continuation {
    let v = model.config.vocab_size;
    let width = config.width.max(1);
    let alpha = config.length_penalty;
    let (mut st, mut logits) = primed(model, prime, width);
    let mut beams: Vec<Continuation> = vec![Continuation {
        ids: Vec::new(),
        log_prob: 0.0,
        ended: false,
    }];
    let mut best = greedy(model, prime, config.max_len);
    let mut lp = vec![0.0; v];
    // (beam, token, log p of the extension)
    let mut cands: Vec<(usize, u32, f64)> = Vec::with_capacity(width * v);
    for _ in 0..config.max_len {
        cands.clear();
        for (b, beam) in beams.iter().enumerate() {
            log_softmax(&logits[b * v..(b + 1) * v], &mut lp);
            for (t, &l) in lp.iter().enumerate().skip(1) {
                let total = beam.log_prob + l;
                if t as u32 == END {
                    let done = Continuation {
                        ids: beam.ids.clone(),
                        log_prob: total,
                        ended: true,
                    };
                    if done.score(alpha) > best.score(alpha) {
                        best = done;
                    }
                } else {
                    cands.push((b, t as u32, total));
                }
            }
        }
        let keep = width.min(cands.len());
        if keep == 0 {
            break;
        }
        cands.select_nth_unstable_by(keep - 1, |a, b| b.2.total_cmp(&a.2));
        cands.truncate(keep);
        cands.sort_by(|a, b| b.2.total_cmp(&a.2));
        // Without a length penalty, extending only lowers a probability: once the best
        // finished continuation beats every live one, nothing can overtake it.
        if alpha == 0.0 && cands[0].2 <= best.log_prob {
            return best;
        }
        let parents: Vec<usize> = cands.iter().map(|c| c.0).collect();
        beams = cands
            .iter()
            .map(|&(b, t, total)| {
                let mut ids = beams[b].ids.clone();
                ids.push(t);
                Continuation {
                    ids,
                    log_prob: total,
                    ended: false,
                }
            })
            .collect();
        // The stepper keeps `width` streams; unused ones follow the best beam.
        let mut from = parents.clone();
        from.resize(width, parents[0]);
        st.reorder(&from);
        let mut tokens: Vec<u32> = beams.iter().map(|b| *b.ids.last().unwrap()).collect();
        tokens.resize(width, tokens[0]);
        logits = st.step(&tokens).to_vec();
    }
    // Continuations cut at max_len compete too.
    for b in beams {
        if b.ids.len() == config.max_len && b.score(alpha) > best.score(alpha) {
            best = b;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{CellKind, ModelConfig};
    use rand::SeedableRng;

    /// `ln p` of a continuation, scored one step at a time by a fresh stepper.
    fn log_prob(model: &Model, prime: &[u32], c: &Continuation) -> f64 {
        let v = model.config.vocab_size;
        let (mut st, mut logits) = primed(model, prime, 1);
        let mut lp = vec![0.0; v];
        let mut total = 0.0;
        let tail: Vec<u32> = c
            .ids
            .iter()
            .copied()
            .chain(c.ended.then_some(END))
            .collect();
        for &t in &tail {
            log_softmax(&logits[..v], &mut lp);
            total += lp[t as usize];
            logits = st.step(&[t]).to_vec();
        }
        total
    }

    #[test]
    fn beam_finds_a_continuation_at_least_as_probable_as_greedy() {
        for (seed, cell) in [(1, CellKind::Lstm), (2, CellKind::Gru), (3, CellKind::Rnn)]
            .into_iter()
            .cycle()
            .take(9)
            .enumerate()
            .map(|(i, (s, c))| (s + 10 * i as u64, c))
        {
            let mut m = Model::new(ModelConfig {
                cell,
                layers: 2,
                hidden: 16,
                vocab_size: 8,
                dropout: 0.0,
            });
            m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let prime = [3u32, 5, 2];
            let g = greedy(&m, &prime, 12);
            for width in [1, 2, 5] {
                for alpha in [0.0, 0.7] {
                    let b = beam_search(
                        &m,
                        &prime,
                        &BeamConfig {
                            width,
                            max_len: 12,
                            length_penalty: alpha,
                        },
                    );
                    assert!(
                        b.score(alpha) >= g.score(alpha) - 1e-9,
                        "{cell} seed {seed}"
                    );
                    // The reported probability is the model's.
                    assert!((log_prob(&m, &prime, &b) - b.log_prob).abs() < 1e-4);
                    assert!(b.ids.len() <= 12 && b.ids.iter().all(|&t| t >= 2));
                }
            }
            assert!((log_prob(&m, &prime, &g) - g.log_prob).abs() < 1e-4);
        }
    }
}
