//! What a model sees in a text, character by character: how surprised it is by each
//! character, what it expected instead, and every hidden unit's activation, plus the units
//! whose activation best follows a few simple properties of the text (position in the line,
//! inside quotes, inside brackets, in an upper-case line). The per-character views are those
//! of Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent Networks"
//! (2015); the page that shows them is [`crate::io::viz_page`].

use crate::nn::infer::Stepper;
use crate::nn::{Model, ModelConfig};
use crate::text::split::Mode;
use crate::text::vocab::{END, START, UnknownChar, Vocab};

/// Predictions kept per position.
pub const TOP: usize = 5;

/// The model's view of a text.
#[derive(Debug, Clone)]
pub struct Activations {
    /// The characters shown (the text, cut to the cap).
    pub chars: Vec<char>,
    /// `-ln p` of each character given what came before it, in nats.
    pub surprisal: Vec<f32>,
    /// For each position, the `TOP` likeliest next tokens (ids) and their probabilities,
    /// predicted *before* the character at that position was read.
    pub top_ids: Vec<[u32; TOP]>,
    pub top_probs: Vec<[f32; TOP]>,
    /// [L][N·H]: layer l's output `h` after reading character n, unit j at `n·H + j`,
    /// quantised to one byte: `round(127 h)` as an `i8` (plenty for a colour; a quarter of
    /// the memory of `f32`, which is what lets the page show long texts).
    pub h: Vec<Vec<i8>>,
    pub hidden: usize,
    /// Units that follow a simple property of the text, best first per property.
    pub tracking: Vec<Tracker>,
}

/// A unit whose activation is correlated with a property of the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    pub property: &'static str,
    pub layer: usize,
    pub unit: usize,
    /// Pearson correlation between the unit's activation and the property.
    pub correlation: f64,
}

/// Bytes kept per character shown, besides the activations (`L·H` bytes): the character,
/// its surprisal, the top predictions and their probabilities, the properties units are
/// correlated with.
const BYTES_PER_CHAR: u64 = 4 + 4 + 8 * TOP as u64 + 8 * PROPERTIES as u64;

/// Bytes [`activations`] holds for `chars` characters with a model of `config` (and the
/// stepper it runs), with checked arithmetic; `None` if it overflows.
pub fn memory_bytes(config: &ModelConfig, chars: usize) -> Option<u64> {
    let (l, h, v) = (
        config.layers as u64,
        config.hidden as u64,
        config.vocab_size as u64,
    );
    let units = l.checked_mul(h)?;
    let per_char = units.checked_add(BYTES_PER_CHAR)?;
    // Per unit: the correlation sums (f64), and the stepper's state.
    let fixed = units
        .checked_mul(8 * (3 + PROPERTIES as u64) + 8)?
        .checked_add(v.checked_mul(16)?)?
        .checked_add((config.param_count()? as u64).checked_mul(8)?)?
        .checked_add(crate::nn::Workspace::bytes(config, 1, 1, false)?)?;
    (chars as u64).checked_mul(per_char)?.checked_add(fixed)
}

/// Refuses a page of `chars` characters whose data would not fit in memory.
pub fn check_memory(config: &ModelConfig, chars: usize) -> anyhow::Result<()> {
    crate::fs::check_fits(
        memory_bytes(config, chars),
        &format!(
            "showing {chars} characters with a {}x{} {}",
            config.layers, config.hidden, config.cell
        ),
        "use a smaller --max-chars",
    )
}

/// Runs `model` over `text` (its first `max_chars` characters; a character outside the
/// vocabulary is an error naming it), one character at a time, as it was trained: `<start>`
/// first, and in lines mode each newline is the `<end>` of a line and the next line starts
/// from `<start>` and a zero state. Call [`check_memory`] first.
pub fn activations(
    model: &Model,
    vocab: &Vocab,
    text: &str,
    mode: Mode,
    max_chars: usize,
) -> Result<Activations, UnknownChar> {
    let chars: Vec<char> = text.chars().take(max_chars).collect();
    let n = chars.len();
    let (layers, h) = (model.config.layers, model.config.hidden);
    let mut st = Stepper::new(model, 1);
    let properties = properties(&chars);
    let mut stats = UnitStats::new(layers * h);
    let mut out = Activations {
        surprisal: Vec::with_capacity(n),
        top_ids: Vec::with_capacity(n),
        top_probs: Vec::with_capacity(n),
        h: vec![Vec::with_capacity(n * h); layers],
        hidden: h,
        tracking: Vec::new(),
        chars: Vec::new(),
    };
    let mut probs = vec![0.0f32; model.config.vocab_size];
    // The logits predicting the next character, from the last token read.
    let mut logits = st.step(&[START]).to_vec();
    for (index, &ch) in chars.iter().enumerate() {
        // (what the model must predict here, what it reads next)
        let (target, input) = if mode == Mode::Lines && ch == '\n' {
            (END, START)
        } else {
            let id = vocab.id(ch).ok_or(UnknownChar { ch, index })?;
            (id, id)
        };
        softmax(&logits, &mut probs);
        out.surprisal.push(-probs[target as usize].max(1e-30).ln());
        let (ti, tp) = top(&probs);
        out.top_ids.push(ti);
        out.top_probs.push(tp);
        logits.copy_from_slice(st.step(&[input]));
        let all = &st.state().h[..layers * h];
        let values: [f64; PROPERTIES] = std::array::from_fn(|p| properties[p].1[index]);
        stats.add(all, &values);
        for (hl, x) in out.h.iter_mut().zip(all.chunks_exact(h)) {
            hl.extend(
                x.iter()
                    .map(|&x| (x.clamp(-1.0, 1.0) * 127.0).round() as i8),
            );
        }
    }
    out.tracking = stats.trackers(&properties, h, n);
    out.chars = chars;
    Ok(out)
}

/// Sums over the characters for every unit's correlation with the properties, gathered as
/// the text is read so that no activation needs keeping at full precision. Activations are
/// shifted by each unit's first value, which keeps the sums of a unit that barely moves
/// free of cancellation.
struct UnitStats {
    shift: Vec<f64>,
    sx: Vec<f64>,
    sxx: Vec<f64>,
    sxv: Vec<[f64; PROPERTIES]>,
    count: usize,
}

impl UnitStats {
    fn new(units: usize) -> UnitStats {
        UnitStats {
            shift: vec![0.0; units],
            sx: vec![0.0; units],
            sxx: vec![0.0; units],
            sxv: vec![[0.0; PROPERTIES]; units],
            count: 0,
        }
    }

    /// One character: every unit's activation `h` [L·H] and the properties' values there.
    fn add(&mut self, h: &[f32], values: &[f64; PROPERTIES]) {
        if self.count == 0 {
            for (s, &x) in self.shift.iter_mut().zip(h) {
                *s = x as f64;
            }
        }
        self.count += 1;
        for (u, &x) in h.iter().enumerate() {
            let x = x as f64 - self.shift[u];
            self.sx[u] += x;
            self.sxx[u] += x * x;
            for (a, v) in self.sxv[u].iter_mut().zip(values) {
                *a += x * v;
            }
        }
    }

    /// For each property that varies in the text, the three units best correlated with it.
    fn trackers(
        &self,
        properties: &[(&'static str, Vec<f64>)],
        hidden: usize,
        n: usize,
    ) -> Vec<Tracker> {
        let mut out = Vec::new();
        for (p, (property, values)) in properties.iter().enumerate() {
            let mean = values.iter().sum::<f64>() / n.max(1) as f64;
            let var: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            if n < 10 || var < 1e-9 {
                continue;
            }
            let mut found: Vec<Tracker> = Vec::new();
            for u in 0..self.sx.len() {
                let xm = self.sx[u] / n as f64;
                let sxx = self.sxx[u] - n as f64 * xm * xm;
                let sxy = self.sxv[u][p] - n as f64 * xm * mean;
                if sxx > 1e-12 {
                    found.push(Tracker {
                        property,
                        layer: u / hidden,
                        unit: u % hidden,
                        correlation: sxy / (sxx * var).sqrt(),
                    });
                }
            }
            found.sort_by(|a, b| b.correlation.abs().total_cmp(&a.correlation.abs()));
            out.extend(found.into_iter().take(3));
        }
        out
    }
}

fn softmax(logits: &[f32], probs: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for (p, &z) in probs.iter_mut().zip(logits) {
        *p = (z - max).exp();
        sum += *p as f64;
    }
    for p in probs.iter_mut() {
        *p = (*p as f64 / sum) as f32;
    }
    probs[START as usize] = 0.0;
}

fn top(probs: &[f32]) -> ([u32; TOP], [f32; TOP]) {
    let mut ids = [0u32; TOP];
    let mut ps = [-1.0f32; TOP];
    for (i, &p) in probs.iter().enumerate() {
        if p > ps[TOP - 1] {
            let mut k = TOP - 1;
            while k > 0 && ps[k - 1] < p {
                ps[k] = ps[k - 1];
                ids[k] = ids[k - 1];
                k -= 1;
            }
            ps[k] = p;
            ids[k] = i as u32;
        }
    }
    (ids, ps.map(|p| p.max(0.0)))
}

/// Properties units are correlated with.
const PROPERTIES: usize = 4;

/// Simple properties of each character of a text, to correlate units with.
fn properties(chars: &[char]) -> Vec<(&'static str, Vec<f64>)> {
    let n = chars.len();
    let mut col = vec![0.0; n];
    let mut quote = vec![0.0; n];
    let mut bracket = vec![0.0; n];
    let mut upper_line = vec![0.0; n];
    let (mut c, mut in_quote, mut depth) = (0.0, false, 0i32);
    let mut line_start = 0;
    for (i, &ch) in chars.iter().enumerate() {
        if ch == '"' {
            in_quote = !in_quote;
        }
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = (depth - 1).max(0),
            _ => {}
        }
        col[i] = c;
        quote[i] = in_quote as u8 as f64;
        bracket[i] = (depth > 0) as u8 as f64;
        c += 1.0;
        if ch == '\n' || i + 1 == n {
            let line = &chars[line_start..=i];
            let letters = line.iter().filter(|c| c.is_alphabetic());
            let upper = letters.clone().count() > 0 && letters.clone().all(|c| c.is_uppercase());
            for u in &mut upper_line[line_start..=i] {
                *u = upper as u8 as f64;
            }
            line_start = i + 1;
            c = 0.0;
            in_quote = false;
        }
    }
    vec![
        ("position in line", col),
        ("inside \"quotes\"", quote),
        ("inside brackets", bracket),
        ("upper-case line", upper_line),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;
    use rand::SeedableRng;

    /// The correlations gathered as the text is read equal the textbook two-pass formula
    /// over the activations kept at full precision; a unit that never moves is not listed.
    #[test]
    fn trackers_equal_the_two_pass_correlation() {
        let text = "KING: \"Go (now)\", he said.\nqueen: (yes) \"no\"\nALL: \"(a) b\"\n".repeat(5);
        let vocab = Vocab::from_texts([text.as_str()]);
        let mut m = Model::new(ModelConfig {
            cell: CellKind::Lstm,
            layers: 2,
            hidden: 6,
            vocab_size: vocab.len(),
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        });
        m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(4));
        let a = activations(&m, &vocab, &text, Mode::Stream, usize::MAX).unwrap();
        assert!(a.tracking.len() >= 9, "{:?}", a.tracking);
        // The activations at full precision, stepped again.
        let chars: Vec<char> = text.chars().collect();
        let mut st = Stepper::new(&m, 1);
        st.step(&[START]);
        let mut h = Vec::new();
        for &c in &chars {
            st.step(&[vocab.id(c).unwrap()]);
            h.push(st.state().h[..12].to_vec());
        }
        let props = properties(&chars);
        for t in &a.tracking {
            let values = &props.iter().find(|p| p.0 == t.property).unwrap().1;
            let xs: Vec<f64> = h.iter().map(|r| r[t.layer * 6 + t.unit] as f64).collect();
            let n = xs.len() as f64;
            let (xm, vm) = (xs.iter().sum::<f64>() / n, values.iter().sum::<f64>() / n);
            let sxy: f64 = xs
                .iter()
                .zip(values)
                .map(|(x, v)| (x - xm) * (v - vm))
                .sum();
            let sxx: f64 = xs.iter().map(|x| (x - xm) * (x - xm)).sum();
            let svv: f64 = values.iter().map(|v| (v - vm) * (v - vm)).sum();
            let want = sxy / (sxx * svv).sqrt();
            assert!((t.correlation - want).abs() < 1e-9, "{t:?}: {want}");
            // The byte kept for the page is the activation, rounded.
            let (i, x) = (chars.len() / 2, h[chars.len() / 2][t.layer * 6 + t.unit]);
            let q = a.h[t.layer][i * 6 + t.unit];
            assert_eq!(q, (x.clamp(-1.0, 1.0) * 127.0).round() as i8);
        }
    }

    #[test]
    fn a_page_too_large_for_memory_is_refused_with_its_size() {
        let c = ModelConfig {
            cell: CellKind::Lstm,
            layers: 2,
            hidden: 512,
            vocab_size: 65,
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        };
        let per_char = memory_bytes(&c, 2_000_000).unwrap() - memory_bytes(&c, 1_000_000).unwrap();
        assert_eq!(per_char, 1_000_000 * (1024 + BYTES_PER_CHAR));
        let e = check_memory(&c, 1 << 50).unwrap_err().to_string();
        assert!(
            e.contains("needs about") && e.contains("--max-chars"),
            "{e}"
        );
        assert!(check_memory(&c, 5000).is_ok());
        assert_eq!(memory_bytes(&c, usize::MAX), None);
    }
}
