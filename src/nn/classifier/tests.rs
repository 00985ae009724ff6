//! Checks of the classifier's math: gradients of every parameter of a 2-layer bidirectional
//! stack of each cell and each pooling against central differences, on a batch of sequences
//! of different lengths; padding and batch-mates never change a sequence's logits; the reverse
//! direction is the forward recurrence over the reversed sequence.

use super::*;
use rand::SeedableRng;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 2e-3;
const CELLS: [CellKind; 3] = [CellKind::Rnn, CellKind::Lstm, CellKind::Gru];
const POOLS: [Pool; 3] = [Pool::Final, Pool::Mean, Pool::Max];

fn config(cell: CellKind, pool: Pool, bidirectional: bool) -> ClassifierConfig {
    ClassifierConfig {
        cell,
        layers: 2,
        hidden: 4,
        bidirectional,
        pool,
        vocab_size: 7,
        labels: 3,
        dropout: 0.0,
    }
}

fn model(config: ClassifierConfig, seed: u64) -> Classifier {
    let mut m = Classifier::new(config);
    m.init(&mut ChaCha8Rng::seed_from_u64(seed));
    m
}

/// Four sequences of lengths 5, 2, 7 and 1 over ids 2..7, and their labels.
fn batch() -> (Vec<Vec<u32>>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let seqs = [5, 2, 7, 1]
        .iter()
        .map(|&len| (0..len).map(|_| rng.random_range(2..7)).collect())
        .collect();
    (seqs, vec![0, 2, 1, 2])
}

/// Mean loss over the batch, with optional label weights, and its gradient if asked; also
/// where max pooling took each unit's maximum from.
fn loss_and_grad(
    m: &Classifier,
    seqs: &[Vec<u32>],
    labels: &[u32],
    weights: Option<&[f32]>,
    rng_seed: Option<u64>,
    grad: bool,
) -> (f64, Vec<f32>, Vec<u32>) {
    let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
    let mut ws = ClassifierWorkspace::new(&m.config, seqs.len(), 8);
    let packed = ClassifierPacked::training(m);
    let total: f32 = labels
        .iter()
        .map(|&y| weights.map_or(1.0, |w| w[y as usize]))
        .sum();
    let mut rng = rng_seed.map(ChaCha8Rng::seed_from_u64);
    let loss = m.forward_loss(&packed, &mut ws, &refs, labels, weights, rng.as_mut());
    let mut g = vec![0.0; m.param_count()];
    if grad {
        m.backward(&packed, &mut ws, &mut g, 1.0 / total);
    }
    (loss / total as f64, g, ws.argmax.clone())
}

/// Central differences of the loss against `analytic`, every parameter (see the language
/// model's `grad_check` for the tolerance). `loss` also returns where max pooling took its
/// maxima: max is not differentiable where two positions tie, so where a step of the
/// difference moves a maximum to another position, the step is halved until it does not
/// (the loss is smooth again inside it), and the absolute tolerance grows as the step shrinks
/// (f32 rounding over a smaller step).
fn grad_check(
    m: &Classifier,
    analytic: &[f32],
    loss: impl Fn(&Classifier) -> (f64, Vec<u32>),
) -> Result<f64, String> {
    let mut probe = m.clone();
    let mut worst = 0.0f64;
    let (_, arg0) = loss(m);
    for spec in &m.layout.tensors {
        for i in spec.range() {
            let orig = probe.params[i];
            let mut eps = 1e-2f32;
            let fd = loop {
                probe.params[i] = orig + eps;
                let (lp, ap) = loss(&probe);
                probe.params[i] = orig - eps;
                let (lm, am) = loss(&probe);
                probe.params[i] = orig;
                if (ap == arg0 && am == arg0) || eps < 1e-3 {
                    break (lp - lm) / (2.0 * eps as f64);
                }
                eps /= 2.0;
            };
            let atol = ATOL * (1e-2 / eps as f64);
            let an = analytic[i] as f64;
            let err = (fd - an).abs();
            worst = worst.max(err / (atol + RTOL * fd.abs()));
            if err > atol + RTOL * fd.abs() {
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
    let (seqs, labels) = batch();
    for cell in CELLS {
        for pool in POOLS {
            for bidirectional in [true, false] {
                let m = model(config(cell, pool, bidirectional), 1);
                let (_, g, _) = loss_and_grad(&m, &seqs, &labels, None, None, true);
                assert!(g.iter().all(|x| x.is_finite()));
                // Every tensor gets a gradient: none is cut off from the loss.
                for spec in &m.layout.tensors {
                    assert!(g[spec.range()].iter().any(|&x| x != 0.0), "{}", spec.name);
                }
                let f = |p: &Classifier| {
                    let (l, _, arg) = loss_and_grad(p, &seqs, &labels, None, None, false);
                    (l, arg)
                };
                match grad_check(&m, &g, f) {
                    Ok(w) => eprintln!("{cell} {pool} bi={bidirectional}: worst/tol {w:.3}"),
                    Err(e) => panic!("{cell} {pool} bidirectional={bidirectional}: {e}"),
                }
            }
        }
    }
}

#[test]
fn weighted_and_dropout_gradients_match() {
    // With a fixed seed the dropout masks are the same in every pass, so the loss is smooth.
    let (seqs, labels) = batch();
    let weights = [0.5f32, 2.0, 1.25];
    for cell in CELLS {
        let mut c = config(cell, Pool::Mean, true);
        c.dropout = 0.3;
        let m = model(c, 2);
        let (_, g, _) = loss_and_grad(&m, &seqs, &labels, Some(&weights), Some(9), true);
        let f = |p: &Classifier| {
            let (l, _, arg) = loss_and_grad(p, &seqs, &labels, Some(&weights), Some(9), false);
            (l, arg)
        };
        if let Err(e) = grad_check(&m, &g, f) {
            panic!("{cell} with weights and dropout: {e}");
        }
        // Dropout and the weights do change the loss.
        let plain = loss_and_grad(&m, &seqs, &labels, None, None, false).0;
        assert_ne!(
            plain,
            loss_and_grad(&m, &seqs, &labels, None, Some(9), false).0
        );
        assert_ne!(plain, f(&m).0);
    }
}

#[test]
fn grad_check_catches_a_wrong_gradient() {
    let (seqs, labels) = batch();
    for cell in CELLS {
        let m = model(config(cell, Pool::Final, true), 3);
        let (_, mut g, _) = loss_and_grad(&m, &seqs, &labels, None, None, true);
        let spec = m
            .layout
            .spec(m.layout.find("weight_hh_l0_reverse").unwrap());
        let i = spec
            .range()
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        g[i] *= 1.03;
        let f = |p: &Classifier| {
            let (l, _, arg) = loss_and_grad(p, &seqs, &labels, None, None, false);
            (l, arg)
        };
        assert!(grad_check(&m, &g, f).is_err(), "{cell} not caught");
    }
}

fn logits_of(m: &Classifier, seqs: &[Vec<u32>], t_cap: usize) -> Vec<Vec<f32>> {
    let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
    let mut ws = ClassifierWorkspace::inference(&m.config, seqs.len(), t_cap);
    let packed = ClassifierPacked::inference(m);
    m.forward(&packed, &mut ws, &refs, None);
    ws.logits
        .chunks_exact(m.config.labels)
        .map(|r| r.to_vec())
        .collect()
}

/// A sequence's logits do not depend on the other sequences of its batch, on how much
/// padding they add, or on its row.
#[test]
fn padding_and_batch_mates_change_nothing() {
    let (seqs, _) = batch();
    for cell in CELLS {
        for pool in POOLS {
            let m = model(config(cell, pool, true), 4);
            let alone: Vec<Vec<f32>> = seqs
                .iter()
                .map(|s| logits_of(&m, std::slice::from_ref(s), 8).remove(0))
                .collect();
            let mut reversed = seqs.clone();
            reversed.reverse();
            let together = logits_of(&m, &reversed, 16);
            for (b, s) in alone.iter().enumerate() {
                let t = &together[seqs.len() - 1 - b];
                for (x, y) in s.iter().zip(t) {
                    assert!(
                        (x - y).abs() < 1e-5,
                        "{cell} {pool} row {b}: {s:?} vs {t:?}"
                    );
                }
            }
        }
    }
}

/// With final pooling over one layer, the reverse half is the forward recurrence run over
/// the reversed sequence with the reverse weights: a classifier whose forward weights are
/// the reverse weights gives, on the reversed sequence, the same state.
#[test]
fn reverse_direction_reads_the_sequence_backwards() {
    for cell in CELLS {
        let mut c = config(cell, Pool::Final, true);
        c.layers = 1;
        let bi = model(c, 5);
        let mut uni = Classifier::new(ClassifierConfig {
            bidirectional: false,
            ..c
        });
        uni.init(&mut ChaCha8Rng::seed_from_u64(6));
        // uni's layer = bi's reverse direction.
        for (u, b) in [0, 1, 2, 3].iter().zip([4, 5, 6, 7]) {
            let src = bi.layout.spec(b).range();
            let dst = uni.layout.spec(*u).range();
            uni.params[dst].copy_from_slice(&bi.params[src]);
        }
        let seq: Vec<u32> = vec![2, 5, 3, 6, 6, 4];
        let mut rev = seq.clone();
        rev.reverse();
        let pooled = |m: &Classifier, s: &[u32]| {
            let mut ws = ClassifierWorkspace::inference(&m.config, 1, 8);
            m.forward(&ClassifierPacked::inference(m), &mut ws, &[s], None);
            ws.pooled.clone()
        };
        let (pb, pu) = (pooled(&bi, &seq), pooled(&uni, &rev));
        for (x, y) in pb[4..].iter().zip(&pu) {
            assert!((x - y).abs() < 1e-6, "{cell}: {pb:?} vs {pu:?}");
        }
        assert!(pb[..4].iter().zip(&pu).any(|(x, y)| (x - y).abs() > 1e-3));
    }
}

#[test]
fn fresh_loss_is_about_ln_c() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for cell in CELLS {
        let mut c = config(cell, Pool::Mean, true);
        c.hidden = 64;
        c.labels = 10;
        let m = model(c, 7);
        let seqs: Vec<Vec<u32>> = (0..64)
            .map(|_| {
                (0..rng.random_range(1..9))
                    .map(|_| rng.random_range(2..7))
                    .collect()
            })
            .collect();
        let labels: Vec<u32> = (0..64).map(|_| rng.random_range(0..10)).collect();
        let (loss, _, _) = loss_and_grad(&m, &seqs, &labels, None, None, false);
        assert!((loss - 10f64.ln()).abs() < 0.15, "{cell}: {loss}");
    }
}

#[test]
fn tensor_names_and_shapes_are_pytorchs() {
    let c = config(CellKind::Gru, Pool::Max, true);
    let names: Vec<(String, Vec<usize>)> = (0..c.tensor_count().unwrap())
        .map(|i| c.tensor_spec(i).unwrap())
        .collect();
    assert_eq!(names[4], ("weight_ih_l0_reverse".into(), vec![12, 7]));
    assert_eq!(names[8], ("weight_ih_l1".into(), vec![12, 8]));
    assert_eq!(names[15], ("bias_hh_l1_reverse".into(), vec![12]));
    assert_eq!(names[16], ("head.weight".into(), vec![3, 8]));
    assert_eq!(names.len(), 18);
    let total: usize = names.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(c.param_count(), Some(total));
    assert_eq!(Classifier::new(c).param_count(), total);
    assert!(c.tensor_spec(18).is_none());
}
