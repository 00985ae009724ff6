//! Generation: prime the state with `<start>` and a text, then draw one character at a time
//! from the softmax of the logits at a temperature, optionally cut to the top k or to the
//! smallest set holding probability p, until `<end>` or a length limit.

use crate::kernels::exp_neg;
use crate::nn::infer::{self, SplitModel};
use crate::nn::{Model, State};
use crate::text::split::Mode;
use crate::text::vocab::{END, START, UnknownChar, Vocab};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleConfig {
    /// Divides the logits: below 1 sharper, above 1 more random. Must be > 0.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to at least p (1 = all).
    pub top_p: f32,
    /// Always take the most likely token (greedy decoding).
    pub argmax: bool,
    pub seed: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            argmax: false,
            seed: 0,
        }
    }
}

/// The prime a model of `mode` continues, from `text` (the `--prime`, or a `--prime-file`'s
/// contents when `from_file`). A lines-mode model generates one line, so its prime is one
/// line: a file's one trailing line end (what editors write) is not part of it, and any
/// other line break is an error. A stream-mode prime is taken as it is (a newline is text).
pub fn prime_text(mode: Mode, mut text: String, from_file: bool) -> Result<String, String> {
    if mode == Mode::Stream {
        return Ok(text);
    }
    if from_file && text.ends_with('\n') {
        text.pop();
    }
    match text.find('\n') {
        None => Ok(text),
        Some(at) => Err(format!(
            "the prime holds a line break after {:?}, but a lines-mode model generates one line from one line; give a single line",
            &text[..at]
        )),
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The model produced `<end>`.
    End,
    /// The length limit was reached first.
    Length,
}

/// A model with its one-stream state, ready to generate.
pub struct Sampler<'m> {
    vocab: &'m Vocab,
    split: SplitModel,
    /// Threads [`Sampler::generate`] runs on (1 or 2); the text does not depend on it.
    threads: usize,
    state: State,
    rng: ChaCha8Rng,
    config: SampleConfig,
    /// Next-token probabilities, [V], and the sorting scratch of top-k/top-p.
    probs: Vec<f32>,
    order: Vec<u32>,
    next_input: u32,
}

impl<'m> Sampler<'m> {
    pub fn new(model: &Model, vocab: &'m Vocab, config: SampleConfig) -> Sampler<'m> {
        // A second thread pays off once the weights outgrow one core's cache.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if cores >= 2 && model.config.hidden >= 128 {
            2
        } else {
            1
        };
        Sampler {
            vocab,
            split: SplitModel::new(model),
            threads,
            state: State::zeros(&model.config, 1),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            probs: vec![0.0; model.config.vocab_size],
            order: Vec::with_capacity(model.config.vocab_size),
            next_input: START,
        }
    }

    /// Starts a new sequence: `<start>` followed by the characters of `prime`.
    pub fn prime(&mut self, prime: &str) -> Result<(), UnknownChar> {
        let mut ids = vec![START];
        ids.extend(self.vocab.encode(prime)?);
        // Feed all but the last id; the last is the input of the first generated step.
        self.next_input = ids.pop().unwrap();
        if !ids.is_empty() {
            let mut rest = ids[1..].iter().copied();
            infer::run(&self.split, &mut self.state, ids[0], 1, |_| rest.next());
        }
        Ok(())
    }

    /// Draws `n` tokens without stopping at `<end>` (for measuring speed); returns the last.
    pub fn run_tokens(&mut self, n: usize) -> u32 {
        self.drive(n, false, |_| Ok::<_, ()>(())).unwrap();
        self.next_input
    }

    /// Generates up to `max_len` characters, handing each to `emit` as it is drawn.
    pub fn generate<E>(
        &mut self,
        max_len: usize,
        mut emit: impl FnMut(char) -> Result<(), E>,
    ) -> Result<Stop, E> {
        let vocab = self.vocab;
        self.drive(max_len, true, |id| match vocab.char_of(id) {
            Some(ch) => emit(ch),
            None => Ok(()),
        })
    }

    /// Writes about `len` characters of fresh text to `out`: in stream mode one sequence of
    /// up to `len` characters; in lines mode one sequence per line until `len` characters
    /// (and at most `len` lines, in case the model ends every line at once).
    pub fn write_sample(
        &mut self,
        mode: Mode,
        len: usize,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let mut written = 0;
        for _ in 0..len {
            if written >= len {
                break;
            }
            self.prime("")
                .expect("the empty prime has no unknown characters");
            self.generate(len - written, |c| {
                written += 1;
                write!(out, "{c}")
            })?;
            writeln!(out)?;
            if mode == Mode::Stream {
                break;
            }
        }
        Ok(())
    }

    /// Draws up to `n` tokens, on `self.threads` threads, handing each to `emit`.
    fn drive<E>(
        &mut self,
        n: usize,
        stop_at_end: bool,
        mut emit: impl FnMut(u32) -> Result<(), E>,
    ) -> Result<Stop, E> {
        if n == 0 {
            return Ok(Stop::Length);
        }
        let (config, rng, probs, order) = (
            &self.config,
            &mut self.rng,
            &mut self.probs,
            &mut self.order,
        );
        let mut drawn = 0;
        let mut result = Ok(Stop::Length);
        let mut last = self.next_input;
        infer::run(
            &self.split,
            &mut self.state,
            self.next_input,
            self.threads,
            |logits| {
                let id = choose(config, rng, probs, order, logits);
                last = id;
                drawn += 1;
                if stop_at_end && id == END {
                    result = Ok(Stop::End);
                    return None;
                }
                if let Err(e) = emit(id) {
                    result = Err(e);
                    return None;
                }
                (drawn < n).then_some(id)
            },
        );
        self.next_input = last;
        result
    }
}

/// Draws a token from `logits` ([V]) under `c`; `probs` ([V]) and `order` are scratch.
fn choose(
    c: &SampleConfig,
    rng: &mut ChaCha8Rng,
    probs: &mut [f32],
    order: &mut Vec<u32>,
    logits: &[f32],
) -> u32 {
    // `<start>` is an input, never an output: it gets no probability.
    let candidates = 1..logits.len();
    if c.argmax {
        return candidates
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as u32;
    }
    let max = logits[1..]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    probs[START as usize] = 0.0;
    let mut sum = 0.0;
    for i in candidates.clone() {
        let p = exp_neg((logits[i] - max) / c.temperature);
        probs[i] = p;
        sum += p;
    }
    order.clear();
    order.extend(candidates.map(|i| i as u32));
    let limit_k = c.top_k > 0 && c.top_k < order.len();
    if limit_k || c.top_p < 1.0 {
        order.sort_unstable_by(|&a, &b| probs[b as usize].total_cmp(&probs[a as usize]));
        let mut keep = if limit_k { c.top_k } else { order.len() };
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            for (n, &i) in order.iter().enumerate().take(keep) {
                acc += probs[i as usize] / sum;
                if acc >= c.top_p {
                    keep = n + 1;
                    break;
                }
            }
        }
        order.truncate(keep);
        sum = order.iter().map(|&i| probs[i as usize]).sum();
    }
    let mut u = rng.random::<f32>() * sum;
    for &i in order.iter() {
        u -= probs[i as usize];
        if u < 0.0 {
            return i;
        }
    }
    *order.last().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cell::CellKind;
    use crate::nn::model::ModelConfig;

    fn setup() -> (Model, Vocab) {
        let vocab = Vocab::from_texts(["abcdefgh"]);
        let mut m = Model::new(ModelConfig {
            cell: CellKind::Gru,
            vocab_size: vocab.len(),
            hidden: 8,
            layers: 1,
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        });
        m.init(&mut ChaCha8Rng::seed_from_u64(2));
        (m, vocab)
    }

    fn text(m: &Model, v: &Vocab, config: SampleConfig, prime: &str) -> (String, Stop) {
        let mut s = Sampler::new(m, v, config);
        s.prime(prime).unwrap();
        let mut out = String::new();
        let stop = s
            .generate(300, |c| {
                out.push(c);
                Ok::<_, ()>(())
            })
            .unwrap();
        (out, stop)
    }

    #[test]
    fn same_seed_same_text_other_seed_other_text() {
        let (m, v) = setup();
        let c = SampleConfig {
            seed: 5,
            ..Default::default()
        };
        let a = text(&m, &v, c, "ab");
        assert_eq!(a, text(&m, &v, c, "ab"));
        let b = text(&m, &v, SampleConfig { seed: 6, ..c }, "ab");
        assert_ne!(a, b);
    }

    #[test]
    fn a_lines_prime_is_one_line() {
        let p = |t: &str, file| prime_text(Mode::Lines, t.to_string(), file);
        assert_eq!(p("Ma\n", true).unwrap(), "Ma");
        assert_eq!(p("Ma", true).unwrap(), "Ma");
        assert!(
            p("Ma\n", false)
                .unwrap_err()
                .contains("line break after \"Ma\"")
        );
        assert!(p("Ma\n\n", true).is_err() && p("a\nb\n", true).is_err());
        let s = prime_text(Mode::Stream, "ROMEO:\n".into(), true).unwrap();
        assert_eq!(s, "ROMEO:\n");
    }

    #[test]
    fn top_k_one_equals_argmax() {
        let (m, v) = setup();
        let greedy = text(
            &m,
            &v,
            SampleConfig {
                argmax: true,
                ..Default::default()
            },
            "c",
        );
        let k1 = text(
            &m,
            &v,
            SampleConfig {
                top_k: 1,
                seed: 9,
                ..Default::default()
            },
            "c",
        );
        let tiny_p = text(
            &m,
            &v,
            SampleConfig {
                top_p: 1e-6,
                seed: 4,
                ..Default::default()
            },
            "c",
        );
        assert_eq!(greedy, k1);
        assert_eq!(greedy, tiny_p);
    }

    #[test]
    fn stops_at_end_or_length() {
        let (mut m, v) = setup();
        // Make <end> overwhelmingly likely through the output bias.
        let b = m.layout.find("head.bias").unwrap();
        m.layout.slice_mut(&mut m.params, b)[END as usize] = 50.0;
        assert_eq!(
            text(&m, &v, SampleConfig::default(), ""),
            (String::new(), Stop::End)
        );
        m.layout.slice_mut(&mut m.params, b)[END as usize] = -50.0;
        let (out, stop) = text(&m, &v, SampleConfig::default(), "");
        assert_eq!((out.chars().count(), stop), (300, Stop::Length));
    }

    #[test]
    fn low_temperature_concentrates_samples() {
        let (m, v) = setup();
        let distinct = |t: f32| {
            let (s, _) = text(
                &m,
                &v,
                SampleConfig {
                    temperature: t,
                    seed: 1,
                    ..Default::default()
                },
                "",
            );
            let mut cs: Vec<char> = s.chars().collect();
            cs.sort();
            cs.dedup();
            cs.len()
        };
        assert!(distinct(0.05) < distinct(2.0));
    }

    #[test]
    fn unknown_prime_character_is_named() {
        let (m, v) = setup();
        let mut s = Sampler::new(&m, &v, SampleConfig::default());
        assert_eq!(s.prime("abz").unwrap_err().ch, 'z');
    }
}
