//! Beam search: the most probable continuation the search can find, rather than a random
//! one. `width` partial continuations are kept, each step every one is extended by every
//! character, and the `width` most probable extensions survive; a continuation ends when the
//! model produces `<end>`, or at `max_len` characters.
//!
//! The greedy continuation (`--argmax`) is followed beside the beams, step by step in a
//! stream of its own, and never pruned, so the result is never less probable than greedy
//! decoding's. With a length penalty `α > 0`, continuations are compared by `ln p / len^α`
//! (Wu et al. 2016 use ((5 + len)/6)^α; the plain power is enough here), which stops short
//! endings from winning only by being short.
//!
//! The beams are a tree of back-pointers (each node a character and its parent), not copies
//! of their texts, so a step costs `width × V` whatever the length so far. The root of the
//! tree moves down as soon as every continuation that can still win shares it: those
//! characters are fixed and handed to the caller at once, so a long search prints its text
//! as it goes wherever the candidates agree.

use crate::nn::infer::Stepper;
use crate::nn::{Model, ModelConfig, Workspace};
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

/// Bytes a search with `width` beams holds before its first step: a stepper of `width + 1`
/// streams (weights packed for inference, a one-step workspace, the state) and a copy of
/// its logits; with checked arithmetic, `None` if it overflows. The back-pointers grow with
/// the characters searched (16 bytes per node kept), as the text itself does.
pub fn memory_bytes(model: &ModelConfig, width: usize) -> Option<u64> {
    let streams = width.checked_add(1)?;
    let (l, h, v) = (
        model.layers as u64,
        model.hidden as u64,
        model.vocab_size as u64,
    );
    let state = l
        .checked_mul(h)?
        .checked_mul(2)?
        .checked_mul(streams as u64)?;
    let logits = v.checked_mul(streams as u64)?;
    let params = model.param_count()? as u64;
    params
        .checked_mul(2)?
        .checked_add(state)?
        .checked_add(logits)?
        .checked_mul(4)?
        .checked_add(Workspace::bytes(model, streams, 1, false)?)
}

/// Refuses a search whose buffers would not fit in memory, before allocating them.
pub fn check_memory(model: &ModelConfig, width: usize) -> anyhow::Result<()> {
    crate::fs::check_fits(
        memory_bytes(model, width),
        &format!(
            "beam search with {width} beams over a vocabulary of {} ({}x{} {})",
            model.vocab_size, model.layers, model.hidden, model.cell
        ),
        "use a smaller --beam",
    )
}

const NONE: u32 = u32::MAX;

/// A character of a continuation: `token` follows `parent`'s continuation. `children` and
/// `held` (references from the search: a live beam, the best finished continuation) keep it
/// alive.
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    token: u32,
    children: u32,
    held: u32,
}

/// The continuations in the running, sharing their prefixes. `fixed` holds the characters
/// above the root: common to all of them, so they can no longer change.
#[derive(Debug)]
struct Tree {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    fixed: Vec<u32>,
}

impl Tree {
    /// Just the root (the empty continuation), held once.
    fn new() -> Tree {
        let root = Node {
            parent: NONE,
            token: NONE,
            children: 0,
            held: 1,
        };
        Tree {
            nodes: vec![root],
            free: Vec::new(),
            root: 0,
            fixed: Vec::new(),
        }
    }

    /// A new node `token` under `parent`, held once.
    fn add(&mut self, parent: u32, token: u32) -> u32 {
        let node = Node {
            parent,
            token,
            children: 0,
            held: 1,
        };
        self.nodes[parent as usize].children += 1;
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn hold(&mut self, n: u32) {
        self.nodes[n as usize].held += 1;
    }

    /// Drops one reference to `n`; a node nothing refers to any more is freed, and so, in
    /// turn, are its ancestors that it alone kept.
    fn release(&mut self, n: u32) {
        self.nodes[n as usize].held -= 1;
        let mut n = n;
        while n != self.root {
            let node = self.nodes[n as usize];
            if node.held > 0 || node.children > 0 {
                break;
            }
            self.free.push(n);
            n = node.parent;
            self.nodes[n as usize].children -= 1;
        }
    }

    /// The characters from below the root down to `n`.
    fn path(&self, mut n: u32) -> Vec<u32> {
        let mut out = Vec::new();
        while n != self.root {
            out.push(self.nodes[n as usize].token);
            n = self.nodes[n as usize].parent;
        }
        out.reverse();
        out
    }

    /// Moves the root down towards `live` (any live node) while it is the only child of an
    /// unreferenced root: each step fixes one character.
    fn advance(&mut self, live: u32) {
        let root = self.nodes[self.root as usize];
        if root.held > 0 || root.children != 1 {
            return;
        }
        let mut chain = Vec::new();
        let mut n = live;
        while n != self.root {
            chain.push(n);
            n = self.nodes[n as usize].parent;
        }
        for &c in chain.iter().rev() {
            let root = self.nodes[self.root as usize];
            if root.held > 0 || root.children != 1 {
                break;
            }
            self.free.push(self.root);
            self.fixed.push(self.nodes[c as usize].token);
            self.nodes[c as usize].parent = NONE;
            self.root = c;
        }
    }
}

/// A candidate extension: beam `beam` followed by `token`, with `ln p` `total`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    total: f64,
    beam: usize,
    token: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    /// By probability; ties by the earlier beam and the smaller token, so that the search
    /// does not depend on the order candidates arrive in.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.total
            .total_cmp(&o.total)
            .then(o.beam.cmp(&self.beam))
            .then(o.token.cmp(&self.token))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// A continuation in the tree (the best finished one so far).
#[derive(Debug, Clone, Copy)]
struct InTree {
    node: u32,
    log_prob: f64,
    /// Characters (not counting `<end>`).
    len: usize,
    ended: bool,
}

impl InTree {
    fn score(&self, alpha: f32) -> f64 {
        score(self.log_prob, self.len + self.ended as usize, alpha)
    }
}

fn score(log_prob: f64, len: usize, alpha: f32) -> f64 {
    if alpha == 0.0 {
        log_prob
    } else {
        log_prob / (len.max(1) as f64).powf(alpha as f64)
    }
}

/// Beam search from `<start>` and `prime` (character ids). `emit(fixed, steps)` is called
/// after every step with the characters that have just become certain (a prefix of the
/// result, in order; often empty) and the steps searched so far; the characters not yet
/// emitted when the search ends are emitted last, so that the calls together give exactly
/// the result's `ids`. An error from `emit` stops the search.
pub fn beam_search<E>(
    model: &Model,
    prime: &[u32],
    config: &BeamConfig,
    mut emit: impl FnMut(&[u32], usize) -> Result<(), E>,
) -> Result<Continuation, E> {
    let v = model.config.vocab_size;
    let width = config.width.max(1);
    let alpha = config.length_penalty;
    // Streams 0..width are the beams, stream `width` the greedy continuation.
    let (mut st, first) = primed(model, prime, width + 1);
    let mut logits = first;
    let mut tree = Tree::new();
    let mut beams: Vec<(u32, f64)> = vec![(tree.root, 0.0)];
    let mut best: Option<InTree> = None;
    let mut greedy = Continuation {
        ids: Vec::new(),
        log_prob: 0.0,
        ended: false,
    };
    let mut lp = vec![0.0; v];
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<Candidate>> =
        std::collections::BinaryHeap::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let (mut printed, mut agree) = (0, 0);
    let (mut from, mut tokens) = (vec![0; width + 1], vec![END; width + 1]);
    let (mut searched_all, mut steps) = (true, 0);
    for step in 0..config.max_len {
        steps = step + 1;
        heap.clear();
        for (b, &(node, base)) in beams.iter().enumerate() {
            log_softmax(&logits[b * v..(b + 1) * v], &mut lp);
            let done = InTree {
                node,
                log_prob: base + lp[END as usize],
                len: step,
                ended: true,
            };
            if best.is_none_or(|b| done.score(alpha) > b.score(alpha)) {
                tree.hold(node);
                if let Some(old) = best.replace(done) {
                    tree.release(old.node);
                }
            }
            for (t, &l) in lp.iter().enumerate().skip(END as usize + 1) {
                let c = Candidate {
                    total: base + l,
                    beam: b,
                    token: t as u32,
                };
                if heap.len() < width {
                    heap.push(std::cmp::Reverse(c));
                } else if heap.peek().is_some_and(|w| c > w.0) {
                    heap.pop();
                    heap.push(std::cmp::Reverse(c));
                }
            }
        }
        if !greedy.ended {
            log_softmax(&logits[width * v..(width + 1) * v], &mut lp);
            let t = (1..v).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap() as u32;
            greedy.log_prob += lp[t as usize];
            if t == END {
                greedy.ended = true;
            } else {
                greedy.ids.push(t);
            }
        }
        cands.clear();
        cands.extend(heap.drain().map(|r| r.0));
        cands.sort_by(|a, b| b.cmp(a));
        // Without a length penalty, extending only lowers a probability: once a finished
        // continuation beats every live one, nothing can overtake it.
        let finished = best
            .map_or(f64::NEG_INFINITY, |b| b.log_prob)
            .max(if greedy.ended {
                greedy.log_prob
            } else {
                f64::NEG_INFINITY
            });
        let live = cands
            .first()
            .map_or(f64::NEG_INFINITY, |c| c.total)
            .max(if greedy.ended {
                f64::NEG_INFINITY
            } else {
                greedy.log_prob
            });
        if cands.is_empty() || (alpha == 0.0 && live <= finished) {
            searched_all = false;
            break;
        }
        let next: Vec<(u32, f64)> = cands
            .iter()
            .map(|c| (tree.add(beams[c.beam].0, c.token), c.total))
            .collect();
        for &(node, _) in &beams {
            tree.release(node);
        }
        beams = next;
        // The stepper keeps `width` beam streams; unused ones follow the best beam.
        for (i, (f, t)) in from
            .iter_mut()
            .zip(tokens.iter_mut())
            .take(width)
            .enumerate()
        {
            let c = cands.get(i).unwrap_or(&cands[0]);
            (*f, *t) = (c.beam, c.token);
        }
        from[width] = width;
        tokens[width] = greedy
            .ids
            .last()
            .copied()
            .filter(|_| !greedy.ended)
            .unwrap_or(END);
        st.reorder(&from);
        logits.copy_from_slice(st.step(&tokens));

        tree.advance(beams[0].0);
        // What is fixed in the tree is certain unless the greedy continuation, which lies
        // outside it, can still win: then only what it agrees with.
        while agree < tree.fixed.len() && greedy.ids.get(agree) == Some(&tree.fixed[agree]) {
            agree += 1;
        }
        let greedy_out = greedy.ended && best.is_some_and(|b| b.score(alpha) > greedy.score(alpha));
        let certain = if greedy_out {
            tree.fixed.len()
        } else {
            agree.min(tree.fixed.len())
        };
        if certain > printed {
            emit(&tree.fixed[printed..certain], step + 1)?;
            printed = certain;
        } else {
            emit(&[], step + 1)?;
        }
    }
    // Continuations cut at max_len compete too.
    if searched_all {
        for &(node, log_prob) in &beams {
            let cut = InTree {
                node,
                log_prob,
                len: config.max_len,
                ended: false,
            };
            if best.is_none_or(|b| cut.score(alpha) > b.score(alpha)) {
                tree.hold(node);
                if let Some(old) = best.replace(cut) {
                    tree.release(old.node);
                }
            }
        }
    }
    let result = match best {
        Some(b) if b.score(alpha) > greedy.score(alpha) => {
            let mut ids = tree.fixed.clone();
            ids.extend(tree.path(b.node));
            Continuation {
                ids,
                log_prob: b.log_prob,
                ended: b.ended,
            }
        }
        _ => greedy,
    };
    emit(&result.ids[printed..], steps)?;
    Ok(result)
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
                output_dropout: 0.0,
                weight_drop: 0.0,
            });
            m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let prime = [3u32, 5, 2];
            let g = greedy(&m, &prime, 12);
            for width in [1, 2, 5] {
                for alpha in [0.0, 0.7] {
                    let mut emitted = Vec::new();
                    let b = beam_search(
                        &m,
                        &prime,
                        &BeamConfig {
                            width,
                            max_len: 12,
                            length_penalty: alpha,
                        },
                        |ids, _| {
                            emitted.extend_from_slice(ids);
                            Ok::<_, ()>(())
                        },
                    )
                    .unwrap();
                    assert_eq!(emitted, b.ids, "what is emitted is the result");
                    // (Up to rounding: a stream's logits differ in their last bits with the
                    // number of streams stepped together.)
                    assert!(
                        b.score(alpha) >= g.score(alpha) - 1e-6,
                        "{cell} seed {seed} width {width} alpha {alpha}: {b:?} {g:?}"
                    );
                    // The reported probability is the model's.
                    assert!((log_prob(&m, &prime, &b) - b.log_prob).abs() < 1e-4);
                    assert!(b.ids.len() <= 12 && b.ids.iter().all(|&t| t >= 2));
                }
            }
            assert!((log_prob(&m, &prime, &g) - g.log_prob).abs() < 1e-4);
        }
    }

    /// A random model, `vocab_size` symbols, whose `<end>` is made unlikely (a stream-mode
    /// model's is), so that a search runs its whole length.
    fn model(seed: u64, vocab_size: usize, end_bias: f32) -> Model {
        let mut m = Model::new(ModelConfig {
            cell: CellKind::Lstm,
            layers: 1,
            hidden: 16,
            vocab_size,
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        });
        m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let bias = m.params.len() - vocab_size;
        m.params[bias + END as usize] = end_bias;
        m
    }

    /// Where the beams and the greedy continuation agree (width 1: the beam is the greedy
    /// continuation), the text is emitted as it is found, a step or two behind, not at the
    /// end. (With a length penalty, each later `<end>` scores better than the last, so the
    /// best finished continuation does not hold the text back.)
    #[test]
    fn agreed_text_is_emitted_as_the_search_goes() {
        let m = model(5, 12, -1e4);
        let mut when = Vec::new();
        let b = beam_search(
            &m,
            &[3],
            &BeamConfig {
                width: 1,
                max_len: 400,
                length_penalty: 1.0,
            },
            |ids, step| {
                when.extend(ids.iter().map(|_| step));
                Ok::<_, ()>(())
            },
        )
        .unwrap();
        assert_eq!((b.ids.len(), b.ended), (400, false));
        assert_eq!(b.ids, greedy(&m, &[3], 400).ids);
        let late = when.iter().enumerate().filter(|&(i, &s)| s > i + 3).count();
        assert!(
            late < 5,
            "{late} characters emitted late: {:?}",
            &when[..20]
        );
    }

    /// A wide search over a long length keeps only the nodes of its live beams and their
    /// common ancestors: the tree does not grow with width × length.
    #[test]
    fn pruned_beams_are_freed() {
        let mut t = Tree::new();
        let mut beams = vec![t.root];
        for step in 0..1000u32 {
            // Every beam gets two children; the first two of all survive.
            let mut next = Vec::new();
            for &b in &beams {
                next.push(t.add(b, step));
                next.push(t.add(b, step + 1));
            }
            for &b in &beams {
                t.release(b);
            }
            for &n in &next[2..] {
                t.release(n);
            }
            next.truncate(2);
            beams = next;
            t.advance(beams[0]);
        }
        assert_eq!(t.fixed.len(), 999, "all but the last step is fixed");
        assert!(
            t.nodes.len() - t.free.len() <= 4,
            "{} live nodes",
            t.nodes.len() - t.free.len()
        );
        let path: Vec<u32> = t.fixed.iter().copied().chain(t.path(beams[1])).collect();
        assert_eq!(path.len(), 1000);
    }

    #[test]
    fn memory_is_estimated_with_checked_arithmetic() {
        let c = ModelConfig {
            cell: CellKind::Lstm,
            layers: 2,
            hidden: 256,
            vocab_size: 65_536,
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        };
        let small = memory_bytes(&c, 8).unwrap();
        let large = memory_bytes(&c, 1000).unwrap();
        // The logits alone: 1001 streams x 65,536 x 4 bytes, twice (the workspace, a copy).
        assert!(large > small + 2 * 992 * 65_536 * 4, "{small} {large}");
        let huge = ModelConfig {
            vocab_size: usize::MAX / 2,
            ..c
        };
        assert_eq!(memory_bytes(&huge, 1000), None);
    }
}
