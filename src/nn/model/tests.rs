//! Checks of the model's math: gradients against central finite differences for every
//! cell type, one and three layers, with a reset inside the window; the one-hot gather
//! against the explicit product; the loss of a fresh model; independence of lines.

use super::*;
use crate::text::Batches;
use crate::text::split::{Mode, tokens};
use crate::text::vocab::{END, START, Vocab, one_hot};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Finite-difference tolerance: |fd - analytic| <= ATOL + RTOL·|fd| (see [`grad_check`]).
const ATOL: f64 = 1e-5;
const RTOL: f64 = 2e-3;

const CELLS: [CellKind; 3] = [CellKind::Rnn, CellKind::Lstm, CellKind::Gru];

fn model(cell: CellKind, layers: usize, vocab_size: usize, hidden: usize, seed: u64) -> Model {
    let mut m = Model::new(ModelConfig {
        cell,
        vocab_size,
        hidden,
        layers,
        dropout: 0.0,
        output_dropout: 0.0,
        weight_drop: 0.0,
    });
    m.init(&mut ChaCha8Rng::seed_from_u64(seed));
    m
}

/// A [T=7, B=3] window over V=6 with a sequence start at step 3 of stream 0 and at step 5
/// of stream 2, an unscored position after `<end>`, and every other position scored.
fn test_window() -> Window {
    let (t_len, batch) = (7, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut w = Window {
        t_len,
        batch,
        ..Window::default()
    };
    for _ in 0..t_len * batch {
        w.x.push(rng.random_range(2..6));
        w.y.push(rng.random_range(1..6));
        w.valid.push(true);
        w.reset.push(false);
    }
    for &(t, b) in &[(3, 0), (5, 2)] {
        let i = t * batch + b;
        w.x[i] = START;
        w.reset[i] = true;
        // the step before a start has input <end> and is not scored
        w.x[i - batch] = END;
        w.valid[i - batch] = false;
    }
    w.count = w.valid.iter().filter(|&&v| v).count();
    w
}

/// A non-zero initial state, so that the carried state's path is exercised too.
fn test_state(config: &ModelConfig, batch: usize) -> State {
    let mut s = State::zeros(config, batch);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for x in s.h.iter_mut().chain(s.c.iter_mut()) {
        *x = rng.random::<f32>() - 0.5;
    }
    s
}

/// Mean loss of the window (one shard holding every stream) and, if asked, its gradient.
fn loss_and_grad(m: &Model, win: &Window, state: &State, grad: bool) -> (f64, Vec<f32>) {
    loss_and_grad_dropped(m, win, state, grad, None)
}

/// [`loss_and_grad`] with dropout on, its masks drawn from `dropout_seed`: the same seed
/// draws the same masks in every pass, so the loss is a smooth function of the parameters
/// and the finite-difference check applies to dropout too.
fn loss_and_grad_dropped(
    m: &Model,
    win: &Window,
    state: &State,
    grad: bool,
    dropout_seed: Option<u64>,
) -> (f64, Vec<f32>) {
    let mut ws = Workspace::new(&m.config, win.batch, win.t_len);
    let mut packed = PackedWeights::training(m);
    // Weight drop's masks from a generator of their own, as the trainer draws them.
    let mut masks = dropout_seed.map(|s| ChaCha8Rng::seed_from_u64(s ^ 0xd0));
    packed.sync_dropping(m, masks.as_mut());
    let mut s = state.clone();
    let mut rng = dropout_seed.map(ChaCha8Rng::seed_from_u64);
    let loss = m.forward(&packed, &mut ws, win, 0..win.batch, &mut s, rng.as_mut());
    let loss = loss / win.count as f64;
    let mut g = vec![0.0; m.param_count()];
    if grad {
        m.backward(&packed, &mut ws, &mut g, 1.0 / win.count as f32);
    }
    (loss, g)
}

/// Compares `analytic` with central differences of the loss, tensor by tensor.
///
/// Runs in f32 (the training precision), with the loss summed in f64 and a step of 1e-2:
/// the worst element measured uses about a tenth of this tolerance (printed by the test).
/// An element passes when |fd - an| <= 1e-5 + 2e-3·|fd|; a wrong term in a backward
/// formula is off by a sizeable fraction of the gradient and fails.
fn grad_check(m: &Model, win: &Window, state: &State, analytic: &[f32]) -> Result<f64, String> {
    grad_check_of(m, win, state, analytic, None, None)
}

/// [`grad_check`] with dropout masks drawn from `dropout_seed` (see
/// [`loss_and_grad_dropped`]), on the tensors named in `only` (all if `None`).
fn grad_check_of(
    m: &Model,
    win: &Window,
    state: &State,
    analytic: &[f32],
    dropout_seed: Option<u64>,
    only: Option<&[&str]>,
) -> Result<f64, String> {
    let eps = 1e-2f32;
    let mut probe = m.clone();
    let mut worst = 0.0f64;
    let checked = |name: &String| only.is_none_or(|names| names.contains(&name.as_str()));
    for spec in m.layout.tensors.iter().filter(|s| checked(&s.name)) {
        for i in spec.range() {
            let orig = probe.params[i];
            probe.params[i] = orig + eps;
            let (lp, _) = loss_and_grad_dropped(&probe, win, state, false, dropout_seed);
            probe.params[i] = orig - eps;
            let (lm, _) = loss_and_grad_dropped(&probe, win, state, false, dropout_seed);
            probe.params[i] = orig;
            let fd = (lp - lm) / (2.0 * eps as f64);
            let an = analytic[i] as f64;
            let err = (fd - an).abs();
            worst = worst.max(err / (ATOL + RTOL * fd.abs()));
            if err > ATOL + RTOL * fd.abs() {
                return Err(format!(
                    "{}[{}]: analytic {an:.6e}, finite difference {fd:.6e}",
                    spec.name,
                    i - spec.offset
                ));
            }
        }
    }
    Ok(worst)
}

#[test]
fn gradients_match_finite_differences() {
    let win = test_window();
    for cell in CELLS {
        for layers in [1, 3] {
            let m = model(cell, layers, 6, 5, 1);
            let state = test_state(&m.config, win.batch);
            let (_, g) = loss_and_grad(&m, &win, &state, true);
            assert!(g.iter().all(|x| x.is_finite()));
            match grad_check(&m, &win, &state, &g) {
                Ok(worst) => eprintln!("{} x{layers}: worst error / tolerance {worst:.3}", cell),
                Err(e) => panic!("{} with {layers} layers: {e}", cell),
            }
        }
    }
}

#[test]
fn grad_check_catches_a_wrong_gradient() {
    let win = test_window();
    for cell in CELLS {
        let m = model(cell, 2, 6, 5, 2);
        let state = test_state(&m.config, win.batch);
        let (_, mut g) = loss_and_grad(&m, &win, &state, true);
        // Make one element of W_hh of the first layer 3% too large.
        let spec = m.layout.spec(m.layout.find("weight_hh_l0").unwrap());
        let i = spec
            .range()
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        g[i] *= 1.03;
        assert!(
            grad_check(&m, &win, &state, &g).is_err(),
            "{} not caught",
            cell
        );
    }
}

/// [`grad_check_of`] with dropout on, on every element of the tensors `names`; and dropout
/// does change the loss.
fn check_dropout_gradients(m: &Model, names: &[&str]) {
    let (win, seed) = (test_window(), Some(5));
    assert!(
        names.iter().all(|n| m.layout.find(n).is_some()),
        "{names:?}"
    );
    let state = test_state(&m.config, win.batch);
    let (dropped, g) = loss_and_grad_dropped(m, &win, &state, true, seed);
    if let Err(e) = grad_check_of(m, &win, &state, &g, seed, Some(names)) {
        panic!("{} with dropout: {e}", m.config.cell);
    }
    assert_ne!(loss_and_grad(m, &win, &state, false).0, dropped);
}

#[test]
fn dropout_gradients_match_with_a_fixed_mask() {
    for cell in CELLS {
        let mut m = model(cell, 2, 6, 5, 3);
        m.config.dropout = 0.3;
        check_dropout_gradients(&m, &["weight_ih_l1", "weight_hh_l0", "bias_ih_l0"]);
    }
}

#[test]
fn output_dropout_gradients_match_with_a_fixed_mask() {
    // Alone on a 1-layer model (where it is the only dropout), and with dropout between
    // layers on a 2-layer one: the head's gradient and every layer's below it.
    for cell in CELLS {
        let mut m = model(cell, 1, 6, 5, 3);
        m.config.output_dropout = 0.4;
        check_dropout_gradients(&m, &["head.weight", "weight_hh_l0", "bias_ih_l0"]);
        let mut m = model(cell, 2, 6, 5, 4);
        m.config.dropout = 0.3;
        m.config.output_dropout = 0.4;
        let names = [
            "head.weight",
            "head.bias",
            "weight_ih_l1",
            "weight_hh_l1",
            "weight_ih_l0",
        ];
        check_dropout_gradients(&m, &names);
    }
}

#[test]
fn weight_drop_gradients_match_with_a_fixed_mask() {
    // Alone on one layer, and with dropout between layers on two and three: every layer's
    // W_hh (masked) and the tensors whose gradients flow through the masked recurrence.
    for cell in CELLS {
        let mut m = model(cell, 1, 6, 5, 6);
        m.config.weight_drop = 0.4;
        check_dropout_gradients(&m, &["weight_hh_l0", "bias_hh_l0", "weight_ih_l0"]);
        for layers in [2, 3] {
            let mut m = model(cell, layers, 6, 5, 7);
            m.config.weight_drop = 0.3;
            m.config.dropout = 0.2;
            let top = format!("weight_hh_l{}", layers - 1);
            let names = [
                "weight_hh_l0",
                "weight_hh_l1",
                &top,
                "weight_ih_l1",
                "head.weight",
            ];
            check_dropout_gradients(&m, &names);
        }
    }
}

/// The mask drops about a fraction p of W_hh and scales the rest by 1/(1-p); a training
/// pack synced without a generator, and every inference pack, use W_hh as it is.
#[test]
fn weight_drop_masks_a_fraction_and_only_while_training() {
    let mut m = model(CellKind::Gru, 2, 6, 40, 8);
    m.config.weight_drop = 0.25;
    let mut packed = PackedWeights::training(&m);
    packed.sync_dropping(&m, Some(&mut ChaCha8Rng::seed_from_u64(1)));
    for l in 0..2 {
        let mask = packed.hh_mask(l).expect("a mask while dropping");
        let dropped = mask.iter().filter(|&&k| k == 0.0).count() as f64 / mask.len() as f64;
        assert!(
            (dropped - 0.25).abs() < 0.02,
            "layer {l}: dropped {dropped}"
        );
        assert!(mask.iter().all(|&k| k == 0.0 || k == 1.0 / 0.75));
    }
    let win = test_window();
    let state = test_state(&m.config, win.batch);
    let plain = {
        let mut p = m.clone();
        p.config.weight_drop = 0.0;
        loss_and_grad(&p, &win, &state, false).0
    };
    assert_eq!(loss_and_grad(&m, &win, &state, false).0, plain);
    assert_ne!(
        loss_and_grad_dropped(&m, &win, &state, false, Some(3)).0,
        plain
    );
    packed.sync(&m);
    assert!(packed.hh_mask(0).is_none());
    assert!(PackedWeights::inference(&m).hh_mask(0).is_none());
    let json = serde_json::to_string(&m.config).unwrap();
    assert!(json.contains("\"weight_drop\":0.25"), "{json}");
}

/// The weight-drop masks drawn in chunks on all cores, words in bulk, are the ones a single
/// loop of `random::<f32>() < p` over the generator draws, layer after layer, and leave the
/// generator where it would: a run's masks do not depend on the number of cores (layers of
/// 4·300·300 weights, several chunks each, the second starting inside a chunk's span).
#[test]
fn weight_drop_masks_drawn_in_chunks_are_those_of_one_loop() {
    let mut m = model(CellKind::Lstm, 2, 6, 300, 9);
    m.config.weight_drop = 0.3;
    let mut packed = PackedWeights::training(&m);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    rng.set_stream(7);
    let mut one = rng.clone();
    packed.sync_dropping(&m, Some(&mut rng));
    for (l, ids) in m.layers.iter().enumerate() {
        let w = m.vec(ids.w_hh);
        assert!(w.len() > 2 * MASK_CHUNK && !w.len().is_multiple_of(MASK_CHUNK));
        // The definition: each weight kept unless a uniform draw falls under p.
        let mask: Vec<f32> = (0..w.len())
            .map(|_| {
                if one.random::<f32>() < 0.3 {
                    0.0
                } else {
                    1.0 / 0.7
                }
            })
            .collect();
        let dropped: Vec<f32> = w.iter().zip(&mask).map(|(w, m)| w * m).collect();
        assert_eq!(packed.hh_mask(l).unwrap(), &mask[..], "layer {l}");
        assert_eq!(packed.hh_masks[l].1, dropped, "layer {l}");
    }
    assert_eq!(rng.get_word_pos(), one.get_word_pos());
    assert_eq!(rng.next_u32(), one.next_u32());
}

#[test]
fn output_dropout_is_off_in_evaluation_and_absent_from_files_without_it() {
    let mut m = model(CellKind::Lstm, 2, 6, 5, 3);
    let win = test_window();
    let state = test_state(&m.config, win.batch);
    let plain = loss_and_grad(&m, &win, &state, false).0;
    m.config.output_dropout = 0.4;
    assert_eq!(plain, loss_and_grad(&m, &win, &state, false).0);
    let json = |c: &ModelConfig| serde_json::to_string(c).unwrap();
    assert!(json(&m.config).contains("\"output_dropout\":0.4"));
    m.config.output_dropout = 0.0;
    assert!(!json(&m.config).contains("output_dropout"));
    assert!(!json(&m.config).contains("weight_drop"));
    let old: ModelConfig = serde_json::from_str(&json(&m.config)).unwrap();
    assert_eq!(old, m.config);
}

#[test]
fn gather_equals_one_hot_product() {
    let m = model(CellKind::Lstm, 1, 9, 4, 4);
    let packed = PackedWeights::inference(&m);
    let x: Vec<u32> = vec![0, 3, 8, 3, 1];
    let w_ih = m.mat(m.layers[0].w_ih);
    let b_ih = m.vec(m.layers[0].b_ih);
    let explicit = one_hot(&x, 9).dot(&w_ih.t()) + ndarray::ArrayView1::from(b_ih);
    let gh = w_ih.nrows();
    for (n, &id) in x.iter().enumerate() {
        for g in 0..gh {
            let gathered = packed.w_ih0_t[id as usize * gh + g] + b_ih[g];
            assert_eq!(gathered, explicit[[n, g]], "position {n}, gate row {g}");
        }
    }
}

#[test]
fn fresh_model_loss_is_about_ln_v() {
    let v = 65;
    for cell in CELLS {
        let m = model(cell, 2, v, 128, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let toks: Vec<u32> = (0..2000).map(|_| rng.random_range(2..v as u32)).collect();
        let toks = crate::text::Tokens::from(toks);
        let bs = Batches::new(toks.len(), 4, 50);
        let mut win = Window::default();
        bs.window(&toks, 0, &mut win);
        let state = State::zeros(&m.config, 4);
        let (loss, _) = loss_and_grad(&m, &win, &state, false);
        let ln_v = (v as f64).ln();
        assert!(
            (loss - ln_v).abs() < 0.1,
            "{}: {loss} vs ln V = {ln_v}",
            cell
        );
    }
}

#[test]
fn state_rows_round_trip() {
    let m = model(CellKind::Lstm, 2, 5, 3, 1);
    let s = test_state(&m.config, 5);
    let parts = [s.rows(0..2), s.rows(2..5)];
    assert_eq!(parts[1].h.len(), 2 * 3 * 3);
    assert_eq!(State::concat(&parts), s);
}

/// In lines mode no prediction may depend on an earlier line: the summed loss over the
/// second line is the same whatever the first line says, for windows that cut the text
/// at different places.
#[test]
fn lines_are_independent() {
    let vocab = Vocab::from_texts(["abcdef"]);
    let line2 = "fedcbaab".to_string();
    for cell in CELLS {
        let m = model(cell, 2, vocab.len(), 6, 11);
        let loss_of_line2 = |line1: &str, seq_len: usize| {
            let seqs = crate::text::split::sequences(&[format!("{line1}\n{line2}\n")], Mode::Lines);
            let toks = tokens(&vocab, &seqs).unwrap();
            let start2 = line1.chars().count() + 2;
            let bs = Batches::new(toks.len(), 1, seq_len);
            let mut ws = Workspace::new(&m.config, 1, seq_len);
            let packed = PackedWeights::inference(&m);
            let mut state = test_state(&m.config, 1);
            let mut win = Window::default();
            let mut total = 0.0;
            for k in 0..bs.windows {
                bs.window(&toks, k, &mut win);
                for t in 0..win.t_len {
                    win.valid[t] &= k * seq_len + t >= start2;
                }
                total += m.forward(&packed, &mut ws, &win, 0..1, &mut state, None);
            }
            total
        };
        let reference = loss_of_line2("abc", 4);
        for (line1, seq_len) in [("abc", 3), ("ffffffe", 4), ("d", 5), ("bbbbbbbbbbbbbbb", 2)] {
            let other = loss_of_line2(line1, seq_len);
            assert!(
                (other - reference).abs() < 1e-5,
                "{}: {line1:?} T={seq_len}: {other} vs {reference}",
                cell
            );
        }
    }
}

/// A model moved to a larger vocabulary gives the known characters the logits it gave
/// before, and its other tensors are unchanged.
#[test]
fn a_larger_vocabulary_keeps_what_the_model_knew() {
    let old = Vocab::from_texts(["acd"]);
    let new = Vocab::from_texts(["abcdz"]);
    for cell in CELLS {
        let m = model(cell, 2, old.len(), 6, 3);
        let big = m.with_vocab(&old, &new, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(big.config.vocab_size, new.len());
        let (mut a, mut b) = (
            crate::nn::infer::Stepper::new(&m, 1),
            crate::nn::infer::Stepper::new(&big, 1),
        );
        for ch in [None, Some('c'), Some('a'), Some('d')] {
            let (x, y) = match ch {
                None => (START, START),
                Some(c) => (old.id(c).unwrap(), new.id(c).unwrap()),
            };
            let (la, lb) = (a.step(&[x]).to_vec(), b.step(&[y]).to_vec());
            for c in ['a', 'c', 'd'] {
                assert_eq!(
                    la[old.id(c).unwrap() as usize],
                    lb[new.id(c).unwrap() as usize],
                    "{cell}"
                );
            }
            assert_eq!(la[END as usize], lb[END as usize]);
        }
        assert_eq!(m.w_hh(1), big.w_hh(1));
    }
}

/// With bf16 products (where the CPU has them) the loss and every tensor's gradient stay
/// within bf16's rounding of the f32 ones: each operand moves by at most 2^-8 relative, so
/// a tensor's gradient may move by a few tenths of a percent of its norm, not more.
#[test]
fn bf16_products_track_f32() {
    if crate::kernels::Precision::Bf16.check_available().is_err() {
        eprintln!("note: no AVX512_BF16 on this CPU; bf16 training is not tested here");
        return;
    }
    let win = test_window();
    for cell in CELLS {
        let m = model(cell, 2, 6, 40, 5);
        let state = test_state(&m.config, win.batch);
        let run = |precision| {
            let mut ws = Workspace::new(&m.config, win.batch, win.t_len);
            let packed = PackedWeights::with_mode(&m, true, precision);
            let mut s = state.clone();
            let n = win.count as f64;
            let loss = m.forward(&packed, &mut ws, &win, 0..win.batch, &mut s, None) / n;
            let mut g = vec![0.0; m.param_count()];
            m.backward(&packed, &mut ws, &mut g, 1.0 / n as f32);
            (loss, g, s)
        };
        let (l32, g32, s32) = run(Precision::F32);
        let (l16, g16, s16) = run(Precision::Bf16);
        assert!(
            (l16 - l32).abs() < 2e-3 * l32,
            "{cell}: loss {l16} vs {l32}"
        );
        let norm = |x: &[f32]| x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        for spec in &m.layout.tensors {
            let (a, b) = (&g16[spec.range()], &g32[spec.range()]);
            let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
            let rel = norm(&diff) / norm(b).max(1e-12);
            assert!(
                rel < 1e-2,
                "{cell} {}: gradient off by {rel:.2e} of its norm",
                spec.name
            );
        }
        let dh = norm(
            &s16.h
                .iter()
                .zip(&s32.h)
                .map(|(x, y)| x - y)
                .collect::<Vec<_>>(),
        );
        assert!(dh < 1e-2 * norm(&s32.h), "{cell}: final state");
        // The products really ran in bf16.
        assert_ne!(g16, g32, "{cell}: bf16 gave the f32 gradient bit for bit");
    }
}
