//! Inference: feeding a model one token per stream at a time.
//!
//! Two engines, one set of equations (the cells' `unit` functions and training's forward
//! pass), and the same rule that `<start>` zeroes a stream's state:
//! - [`Stepper`]: any number of streams, one call per step, on training's forward pass with
//!   T = 1; states can be reset, copied and reordered (beam search, scoring, activations).
//! - [`SplitModel`] with [`run`]: one stream, split over two cores, for fast sampling.
//!
//! # The split model
//!
//! Generating a character is a chain of matrix-vector products: for a 2x256 LSTM about
//! 3 MB of weights per character, more than one core's L2 cache, so a single core spends its
//! time waiting for memory. Each [`Part`] owns the gate rows of half of every layer's hidden
//! units and half of the output rows (1.5 MB for that model: it stays in its core's L2). The
//! parts exchange their halves of `h` after each layer. The arithmetic is the same whether
//! the parts run one after the other on one thread or side by side on two, so the generated
//! text does not depend on the number of cores.

use crate::kernels::simd_dispatch;
use crate::nn::cell::{self, CellKind};
use crate::nn::{Model, PackedWeights, State, Workspace};
use crate::text::vocab::START;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Step-by-step inference for a batch of streams: each [`Stepper::step`] feeds one token per
/// stream and returns the next-token logits. It runs training's forward pass with windows of
/// one step, so the equations are training's own, and a stream whose token is `<start>`
/// starts from a zero state.
pub struct Stepper<'m> {
    model: &'m Model,
    packed: PackedWeights,
    ws: Workspace,
    state: State,
}

impl<'m> Stepper<'m> {
    /// `batch` streams, all starting from a zero state.
    pub fn new(model: &'m Model, batch: usize) -> Stepper<'m> {
        Stepper {
            model,
            packed: PackedWeights::inference(model),
            ws: Workspace::inference(&model.config, batch, 1),
            state: State::zeros(&model.config, batch),
        }
    }

    pub fn batch(&self) -> usize {
        self.state.batch
    }

    /// Feeds `tokens[b]` to stream b; returns the logits of the next token, [B, V].
    pub fn step(&mut self, tokens: &[u32]) -> &[f32] {
        self.model
            .step(&self.packed, &mut self.ws, tokens, &mut self.state)
    }

    /// The state after the last step: `h` (and `c` for LSTM) of every layer, [L, B, H].
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Stream b takes the state stream `from[b]` had (`from`: [B]; indices may repeat).
    pub fn reorder(&mut self, from: &[usize]) {
        assert_eq!(
            from.len(),
            self.state.batch,
            "reorder: one source per stream"
        );
        let (b, h) = (self.state.batch, self.state.hidden);
        for v in [&mut self.state.h, &mut self.state.c] {
            if v.is_empty() {
                continue;
            }
            let old = v.clone();
            for (layer, new) in old.chunks_exact(b * h).zip(v.chunks_exact_mut(b * h)) {
                for (dst, &src) in new.chunks_exact_mut(h).zip(from) {
                    dst.copy_from_slice(&layer[src * h..(src + 1) * h]);
                }
            }
        }
    }

    /// Zeroes every stream's state.
    pub fn reset(&mut self) {
        self.state.reset();
    }
}

/// The model's weights rearranged into two parts.
pub struct SplitModel {
    kind: CellKind,
    hidden: usize,
    layers: usize,
    vocab: usize,
    parts: [Part; 2],
}

/// The rows of every weight matrix that produce one range of hidden units (and one range of
/// output logits). Gate blocks keep PyTorch's order: row `g·U + u` is gate `g` of unit
/// `units.start + u`.
struct Part {
    units: Range<usize>,
    head_rows: Range<usize>,
    /// Layer 0: [V, G·U], W_ih's rows for these units, transposed for the one-hot gather.
    w_ih0_t: Vec<f32>,
    /// Per layer ≥ 1: [G·U, H] (entry 0 empty).
    w_ih: Vec<Vec<f32>>,
    /// Per layer: [G·U, H].
    w_hh: Vec<Vec<f32>>,
    /// Per layer: [G·U].
    b_ih: Vec<Vec<f32>>,
    b_hh: Vec<Vec<f32>>,
    /// [V_part, H] and [V_part].
    head_w: Vec<f32>,
    head_b: Vec<f32>,
}

/// One part's working memory and its share of the state.
struct Scratch {
    xw: Vec<f32>,
    hw: Vec<f32>,
    /// [U]: this part's units of the layer being computed.
    h_half: Vec<f32>,
    /// Per layer, [U]: this part's units of the LSTM memory cell.
    c: Vec<Vec<f32>>,
    /// [V_part]
    logits: Vec<f32>,
}

impl Scratch {
    /// Zeroes this part's share of the state (the memory cell; `h` is held by the caller).
    fn reset(&mut self) {
        self.c.iter_mut().for_each(|c| c.fill(0.0));
    }
}

impl SplitModel {
    pub fn new(model: &Model) -> SplitModel {
        let c = model.config;
        let (h, g) = (c.hidden, c.cell.gates());
        let half = |n: usize, k: usize| n * k / 2..n * (k + 1) / 2;
        let part = |k: usize| {
            let units = half(h, k);
            let head_rows = half(c.vocab_size, k);
            // Source rows g·H + j for j in units, gate-major.
            let rows: Vec<usize> = (0..g)
                .flat_map(|gi| units.clone().map(move |j| gi * h + j))
                .collect();
            let pick = |m: ndarray::ArrayView2<f32>| -> Vec<f32> {
                rows.iter().flat_map(|&r| m.row(r).to_vec()).collect()
            };
            let pick_vec = |v: &[f32]| -> Vec<f32> { rows.iter().map(|&r| v[r]).collect() };
            let w0 = model.w_ih(0); // [G·H, V]
            let w_ih0_t = (0..c.vocab_size)
                .flat_map(|x| rows.iter().map(move |&r| w0[[r, x]]))
                .collect();
            let (head, head_b) = (model.head_w(), model.head_b());
            Part {
                w_ih0_t,
                w_ih: (0..c.layers)
                    .map(|l| {
                        if l == 0 {
                            Vec::new()
                        } else {
                            pick(model.w_ih(l))
                        }
                    })
                    .collect(),
                w_hh: (0..c.layers).map(|l| pick(model.w_hh(l))).collect(),
                b_ih: (0..c.layers).map(|l| pick_vec(model.b_ih(l))).collect(),
                b_hh: (0..c.layers).map(|l| pick_vec(model.b_hh(l))).collect(),
                head_w: head_rows
                    .clone()
                    .flat_map(|r| head.row(r).to_vec())
                    .collect(),
                head_b: head_b[head_rows.clone()].to_vec(),
                units,
                head_rows,
            }
        };
        SplitModel {
            kind: c.cell,
            hidden: h,
            layers: c.layers,
            vocab: c.vocab_size,
            parts: [part(0), part(1)],
        }
    }

    fn scratch(&self, k: usize, state: &State) -> Scratch {
        let p = &self.parts[k];
        let gu = self.kind.gates() * p.units.len();
        Scratch {
            xw: vec![0.0; gu],
            hw: vec![0.0; gu],
            h_half: vec![0.0; p.units.len()],
            c: (0..self.layers)
                .map(|l| {
                    if state.c.is_empty() {
                        Vec::new()
                    } else {
                        state.c[l * self.hidden..(l + 1) * self.hidden][p.units.clone()].to_vec()
                    }
                })
                .collect(),
            logits: vec![0.0; p.head_rows.len()],
        }
    }

    /// Part `k`'s new units of layer `l` into `s.h_half`, from the token (layer 0) or the
    /// full output of the layer below (`below`), and the layer's previous full state `h_old`.
    fn layer(&self, k: usize, l: usize, token: u32, below: &[f32], h_old: &[f32], s: &mut Scratch) {
        let p = &self.parts[k];
        let u = p.units.len();
        let gu = self.kind.gates() * u;
        if l == 0 {
            let row = &p.w_ih0_t[token as usize * gu..(token as usize + 1) * gu];
            for ((x, &w), &b) in s.xw.iter_mut().zip(row).zip(&p.b_ih[0]) {
                *x = w + b;
            }
        } else {
            gemv(&p.w_ih[l], below, &p.b_ih[l], &mut s.xw);
        }
        gemv(&p.w_hh[l], h_old, &p.b_hh[l], &mut s.hw);
        let h_prev = &h_old[p.units.clone()];
        match self.kind {
            CellKind::Rnn => rnn_units(&s.xw, &s.hw, &mut s.h_half),
            CellKind::Lstm => lstm_units(&s.xw, &s.hw, &mut s.c[l], &mut s.h_half),
            CellKind::Gru => gru_units(&s.xw, &s.hw, h_prev, &mut s.h_half),
        }
    }

    /// Feeds `token` and returns the next-token logits in `logits` ([V]); runs both parts on
    /// this thread. `h` holds each layer's full state, [L][H].
    fn step_sequential(
        &self,
        token: u32,
        h: &mut [Vec<f32>],
        scratch: &mut [Scratch; 2],
        logits: &mut [f32],
    ) {
        if token == START {
            h.iter_mut().for_each(|hl| hl.fill(0.0));
            scratch.iter_mut().for_each(|s| s.reset());
        }
        let mut below = Vec::new();
        for (l, hl) in h.iter_mut().enumerate() {
            for (k, s) in scratch.iter_mut().enumerate() {
                self.layer(k, l, token, &below, hl, s);
            }
            for (k, s) in scratch.iter().enumerate() {
                hl[self.parts[k].units.clone()].copy_from_slice(&s.h_half);
            }
            below.clone_from(hl);
        }
        for (k, s) in scratch.iter_mut().enumerate() {
            let p = &self.parts[k];
            gemv(&p.head_w, &h[self.layers - 1], &p.head_b, &mut s.logits);
            logits[p.head_rows.clone()].copy_from_slice(&s.logits);
        }
    }
}

/// Generates with a [`SplitModel`]: `state` ([L, 1, H]) is read at the start and written back
/// at the end. `next` receives each step's logits ([V]) and returns the next input token, or
/// `None` to stop. With `threads >= 2` the second part runs on its own thread.
pub fn run(
    model: &SplitModel,
    state: &mut State,
    first_token: u32,
    threads: usize,
    mut next: impl FnMut(&[f32]) -> Option<u32>,
) {
    let hid = model.hidden;
    let mut h: Vec<Vec<f32>> = state.h.chunks_exact(hid).map(|c| c.to_vec()).collect();
    let mut scratch = [model.scratch(0, state), model.scratch(1, state)];
    let mut logits = vec![0.0; model.vocab];
    if threads < 2 {
        let mut token = first_token;
        loop {
            model.step_sequential(token, &mut h, &mut scratch, &mut logits);
            match next(&logits) {
                Some(t) => token = t,
                None => break,
            }
        }
    } else {
        run_threaded(
            model,
            &mut h,
            &mut scratch,
            &mut logits,
            first_token,
            &mut next,
        );
    }
    write_back(model, state, &h, &scratch);
}

fn write_back(model: &SplitModel, state: &mut State, h: &[Vec<f32>], scratch: &[Scratch; 2]) {
    let hid = model.hidden;
    for (l, hl) in h.iter().enumerate() {
        state.h[l * hid..(l + 1) * hid].copy_from_slice(hl);
        if !state.c.is_empty() {
            for (k, s) in scratch.iter().enumerate() {
                let units = model.parts[k].units.clone();
                state.c[l * hid..(l + 1) * hid][units].copy_from_slice(&s.c[l]);
            }
        }
    }
}

/// A value handed from one thread to the other, stamped with a sequence number.
struct Mailbox {
    seq: AtomicU64,
    data: Mutex<Vec<f32>>,
}

impl Mailbox {
    fn new() -> Mailbox {
        Mailbox {
            seq: AtomicU64::new(0),
            data: Mutex::new(Vec::new()),
        }
    }

    fn send(&self, seq: u64, values: &[f32]) {
        {
            let mut d = self.data.lock().unwrap();
            d.clear();
            d.extend_from_slice(values);
        }
        self.seq.store(seq, Ordering::Release);
    }

    /// Spins until message `seq` is there (the wait is a few microseconds: the other thread
    /// is doing the same amount of work), then copies it into `out`.
    fn recv(&self, seq: u64, failed: &AtomicBool, out: &mut [f32]) {
        while self.seq.load(Ordering::Acquire) < seq {
            assert!(
                !failed.load(Ordering::Relaxed),
                "the other sampling thread failed"
            );
            std::hint::spin_loop();
        }
        out.copy_from_slice(&self.data.lock().unwrap());
    }
}

/// A token handed from part 0's thread to part 1's.
struct TokenBox {
    seq: AtomicU64,
    token: AtomicU32,
}

impl TokenBox {
    fn send(&self, seq: u64, token: u32) {
        self.token.store(token, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Release);
    }

    fn recv(&self, seq: u64, failed: &AtomicBool) -> u32 {
        while self.seq.load(Ordering::Acquire) < seq {
            assert!(
                !failed.load(Ordering::Relaxed),
                "the other sampling thread failed"
            );
            std::hint::spin_loop();
        }
        self.token.load(Ordering::Relaxed)
    }
}

/// Sets `flag` if the thread owning it unwinds, so that the other one stops waiting.
struct FailFlag<'a>(&'a AtomicBool);

impl Drop for FailFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

fn run_threaded(
    model: &SplitModel,
    h: &mut [Vec<f32>],
    scratch: &mut [Scratch; 2],
    logits: &mut [f32],
    first_token: u32,
    next: &mut dyn FnMut(&[f32]) -> Option<u32>,
) {
    const STOP: u32 = u32::MAX;
    let layers = model.layers;
    // Mailboxes: per part, one per layer (its half of h) and one for its logits; and the
    // token from part 0 to part 1. A mailbox is rewritten only after the reader has moved
    // past it (a thread starts character n+1 only after the other's results of n arrived).
    let boxes: [Vec<Mailbox>; 2] = [0, 1].map(|_| (0..=layers).map(|_| Mailbox::new()).collect());
    let token_box = TokenBox {
        seq: AtomicU64::new(0),
        token: AtomicU32::new(0),
    };
    let failed = AtomicBool::new(false);
    let (s0, s1) = scratch.split_at_mut(1);
    let (s0, s1) = (&mut s0[0], &mut s1[0]);
    let mut h1: Vec<Vec<f32>> = h.to_vec();

    std::thread::scope(|scope| {
        let (boxes, token_box, failed) = (&boxes, &token_box, &failed);
        let h1 = &mut h1;
        scope.spawn(move || {
            let _guard = FailFlag(failed);
            let mut token = first_token;
            let mut other = vec![0.0; model.parts[0].units.len()];
            for n in 1u64.. {
                part_step(model, 1, n, token, h1, s1, boxes, &mut other, failed);
                let p = &model.parts[1];
                gemv(&p.head_w, &h1[layers - 1], &p.head_b, &mut s1.logits);
                boxes[1][layers].send(n, &s1.logits);
                token = token_box.recv(n, failed);
                if token == STOP {
                    break;
                }
            }
        });
        let _guard = FailFlag(failed);
        let mut token = first_token;
        let mut other = vec![0.0; model.parts[1].units.len()];
        let v1 = model.parts[1].head_rows.clone();
        for n in 1u64.. {
            part_step(model, 0, n, token, h, s0, boxes, &mut other, failed);
            let p = &model.parts[0];
            gemv(&p.head_w, &h[layers - 1], &p.head_b, &mut s0.logits);
            logits[p.head_rows.clone()].copy_from_slice(&s0.logits);
            boxes[1][layers].recv(n, failed, &mut logits[v1.clone()]);
            let t = next(logits).unwrap_or(STOP);
            token_box.send(n, t);
            if t == STOP {
                break;
            }
            token = t;
        }
    });
}

/// Part `k`'s layers for character `n`: compute its half, send it, receive the other half.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn part_step(
    model: &SplitModel,
    k: usize,
    n: u64,
    token: u32,
    h: &mut [Vec<f32>],
    s: &mut Scratch,
    boxes: &[Vec<Mailbox>; 2],
    other: &mut [f32],
    failed: &AtomicBool,
) {
    let mine = model.parts[k].units.clone();
    let theirs = model.parts[1 - k].units.clone();
    if token == START {
        h.iter_mut().for_each(|hl| hl.fill(0.0));
        s.reset();
    }
    for l in 0..model.layers {
        let (below, rest) = h.split_at_mut(l);
        let below: &[f32] = below.last().map_or(&[], |b| b.as_slice());
        model.layer(k, l, token, below, &rest[0], s);
        boxes[k][l].send(n, &s.h_half);
        boxes[1 - k][l].recv(n, failed, other);
        rest[0][mine.clone()].copy_from_slice(&s.h_half);
        rest[0][theirs.clone()].copy_from_slice(other);
    }
}

simd_dispatch! {
    /// y = W·x + b for a row-major W: [R, K], x: [K], b, y: [R]. Four rows at a time, each
    /// summed in 16 lanes, so that x is loaded once per four rows and the sums vectorise.
    fn gemv(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32]) => gemv_imp
}

#[inline(always)]
fn gemv_imp(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32]) {
    const LANES: usize = 16;
    let k = x.len();
    if k == 0 {
        y.copy_from_slice(b);
        return;
    }
    let body = k - k % LANES;
    // `mul_add` is a fused multiply-add: one instruction where the CPU has FMA, and the same
    // correctly rounded result from the library where it has not. Lanes are summed in a
    // fixed order. So the result does not depend on the CPU's features.
    let finish = |acc: &[f32; LANES], row: &[f32]| -> f32 {
        let mut s = acc.iter().sum::<f32>();
        for i in body..k {
            s += row[i] * x[i];
        }
        s
    };
    let mut rows = w.chunks_exact(k).zip(b).zip(y.iter_mut());
    // Four rows at a time: four independent sums hide the add latency, and each load of x
    // serves four rows.
    while let (
        Some(((r0, b0), y0)),
        Some(((r1, b1), y1)),
        Some(((r2, b2), y2)),
        Some(((r3, b3), y3)),
    ) = (rows.next(), rows.next(), rows.next(), rows.next())
    {
        let (mut a0, mut a1, mut a2, mut a3) = (
            [0.0f32; LANES],
            [0.0f32; LANES],
            [0.0f32; LANES],
            [0.0f32; LANES],
        );
        for ((((xc, c0), c1), c2), c3) in x[..body]
            .chunks_exact(LANES)
            .zip(r0.chunks_exact(LANES))
            .zip(r1.chunks_exact(LANES))
            .zip(r2.chunks_exact(LANES))
            .zip(r3.chunks_exact(LANES))
        {
            for i in 0..LANES {
                a0[i] = c0[i].mul_add(xc[i], a0[i]);
                a1[i] = c1[i].mul_add(xc[i], a1[i]);
                a2[i] = c2[i].mul_add(xc[i], a2[i]);
                a3[i] = c3[i].mul_add(xc[i], a3[i]);
            }
        }
        *y0 = b0 + finish(&a0, r0);
        *y1 = b1 + finish(&a1, r1);
        *y2 = b2 + finish(&a2, r2);
        *y3 = b3 + finish(&a3, r3);
    }
    // The last rows (fewer than four), one at a time.
    let n_done = y.len() - y.len() % 4;
    for ((row, &bi), yi) in w.chunks_exact(k).zip(b).zip(y.iter_mut()).skip(n_done) {
        let mut acc = [0.0f32; LANES];
        for (xc, rc) in x[..body].chunks_exact(LANES).zip(row.chunks_exact(LANES)) {
            for i in 0..LANES {
                acc[i] = rc[i].mul_add(xc[i], acc[i]);
            }
        }
        *yi = bi + finish(&acc, row);
    }
}

// The unit loops of one part: the cells' own unit equations (`cell::*::unit`), over the
// part's slice of units, with the input-side (`xw`) and recurrent (`hw`) products apart.

fn rnn_units(xw: &[f32], hw: &[f32], h: &mut [f32]) {
    for ((h, &x), &r) in h.iter_mut().zip(xw).zip(hw) {
        *h = cell::rnn::unit(x + r);
    }
}

fn lstm_units(xw: &[f32], hw: &[f32], c: &mut [f32], h: &mut [f32]) {
    let u = h.len();
    for j in 0..u {
        let a = |g: usize| xw[g * u + j] + hw[g * u + j];
        let unit = cell::lstm::unit(a(0), a(1), a(2), a(3), c[j]);
        c[j] = unit.c;
        h[j] = unit.h;
    }
}

fn gru_units(xw: &[f32], hw: &[f32], h_prev: &[f32], h: &mut [f32]) {
    let u = h.len();
    for j in 0..u {
        let (x, r) = (|g: usize| xw[g * u + j], |g: usize| hw[g * u + j]);
        h[j] = cell::gru::unit(x(0), x(1), x(2), r(0), r(1), r(2), h_prev[j]).h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ModelConfig;
    use rand::SeedableRng;

    /// The split computation gives the batch path's logits, threaded or not.
    #[test]
    fn split_matches_the_batch_model() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let mut m = Model::new(ModelConfig {
                cell,
                vocab_size: 9,
                hidden: 37,
                layers: 3,
                dropout: 0.0,
                output_dropout: 0.0,
                weight_drop: 0.0,
            });
            m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(4));
            // A second <start> inside: both engines reset the state there.
            let tokens = [0u32, 5, 2, 8, 0, 8, 1, 3];
            let mut ws = Workspace::inference(&m.config, 1, 1);
            let packed = PackedWeights::inference(&m);
            let mut state = State::zeros(&m.config, 1);
            let want: Vec<Vec<f32>> = tokens
                .iter()
                .map(|&t| m.step(&packed, &mut ws, &[t], &mut state).to_vec())
                .collect();
            let split = SplitModel::new(&m);
            let mut by_threads = Vec::new();
            for threads in [1, 2] {
                let mut s = State::zeros(&m.config, 1);
                let mut got = Vec::new();
                let mut i = 0;
                run(&split, &mut s, tokens[0], threads, |logits| {
                    got.push(logits.to_vec());
                    i += 1;
                    tokens.get(i).copied()
                });
                assert_eq!(got.len(), tokens.len());
                for (g, w) in got.iter().zip(&want) {
                    for (a, b) in g.iter().zip(w) {
                        assert!(
                            (a - b).abs() < 1e-5,
                            "{} threads={threads}: {a} vs {b}",
                            cell
                        );
                    }
                }
                for (a, b) in s.h.iter().zip(&state.h) {
                    assert!((a - b).abs() < 1e-5);
                }
                for (a, b) in s.c.iter().zip(&state.c) {
                    assert!((a - b).abs() < 1e-5);
                }
                by_threads.push(got);
            }
            // Same sums in the same order: bit-identical whether one thread or two.
            assert_eq!(by_threads[0], by_threads[1]);
        }
    }

    /// `<start>` resets a stream; reordering moves states between streams.
    #[test]
    fn stepper_resets_at_start_and_reorders() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let mut m = Model::new(ModelConfig {
                cell,
                vocab_size: 9,
                hidden: 11,
                layers: 2,
                dropout: 0.0,
                output_dropout: 0.0,
                weight_drop: 0.0,
            });
            m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
            let mut st = Stepper::new(&m, 2);
            let first = st.step(&[START, START]).to_vec();
            st.step(&[5, 3]);
            let after: Vec<f32> = st.step(&[START, 4]).to_vec();
            // Stream 0 saw <start> again: same logits as at the very first step.
            assert_eq!(after[..9], first[..9], "{cell}");
            // Stream 1's history (start, 3, 4) copied into both streams.
            st.reorder(&[1, 1]);
            let both = st.step(&[2, 2]).to_vec();
            assert_eq!(both[..9], both[9..], "{cell}");
            let mut one = Stepper::new(&m, 1);
            for t in [START, 3, 4] {
                one.step(&[t]);
            }
            let want = one.step(&[2]).to_vec();
            for (a, b) in want.iter().zip(&both[..9]) {
                assert!((a - b).abs() < 1e-6, "{cell}: {a} vs {b}");
            }
        }
    }
}
