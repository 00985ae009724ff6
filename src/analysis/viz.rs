//! What a model sees in a text, character by character: how surprised it is by each
//! character, what it expected instead, and every hidden unit's activation, plus the units
//! whose activation best follows a few simple properties of the text (position in the line,
//! inside quotes, inside brackets, in an upper-case line). The per-character views are those
//! of Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent Networks"
//! (2015); the page that shows them is [`crate::io::viz_page`].

use crate::nn::Model;
use crate::nn::infer::Stepper;
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
    /// [L][N·H]: layer l's output `h` after reading character n, unit j at `n·H + j`.
    pub h: Vec<Vec<f32>>,
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

/// Runs `model` over `text` (its first `max_chars` characters; a character outside the
/// vocabulary is an error naming it), one character at a time, as it was trained: `<start>`
/// first, and in lines mode each newline is the `<end>` of a line and the next line starts
/// from `<start>` and a zero state.
pub fn activations(
    model: &Model,
    vocab: &Vocab,
    text: &str,
    mode: Mode,
    max_chars: usize,
) -> Result<Activations, UnknownChar> {
    let chars: Vec<char> = text.chars().take(max_chars).collect();
    let (layers, h) = (model.config.layers, model.config.hidden);
    let mut st = Stepper::new(model, 1);
    let mut out = Activations {
        surprisal: Vec::with_capacity(chars.len()),
        top_ids: Vec::with_capacity(chars.len()),
        top_probs: Vec::with_capacity(chars.len()),
        h: vec![Vec::with_capacity(chars.len() * h); layers],
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
        for (l, hl) in out.h.iter_mut().enumerate() {
            hl.extend_from_slice(&st.state().h[l * h..(l + 1) * h]);
        }
    }
    out.chars = chars;
    out.tracking = trackers(&out);
    Ok(out)
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

/// For each property that varies in the text, the three units best correlated with it.
fn trackers(a: &Activations) -> Vec<Tracker> {
    let n = a.chars.len();
    let mut out = Vec::new();
    for (property, values) in properties(&a.chars) {
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let var: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        if n < 10 || var < 1e-9 {
            continue;
        }
        let mut found: Vec<Tracker> = Vec::new();
        for (layer, hl) in a.h.iter().enumerate() {
            for unit in 0..a.hidden {
                let xs = (0..n).map(|i| hl[i * a.hidden + unit] as f64);
                let xm = xs.clone().sum::<f64>() / n as f64;
                let (mut sxy, mut sxx) = (0.0, 0.0);
                for (x, v) in xs.zip(&values) {
                    sxy += (x - xm) * (v - mean);
                    sxx += (x - xm) * (x - xm);
                }
                if sxx > 1e-12 {
                    found.push(Tracker {
                        property,
                        layer,
                        unit,
                        correlation: sxy / (sxx * var).sqrt(),
                    });
                }
            }
        }
        found.sort_by(|a, b| b.correlation.abs().total_cmp(&a.correlation.abs()));
        out.extend(found.into_iter().take(3));
    }
    out
}
