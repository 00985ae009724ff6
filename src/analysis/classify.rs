//! Measuring a classifier: the log-probability of every label for each sequence, and from
//! them the loss, accuracy, per-class precision and recall, macro-F1 and the confusion matrix.

use crate::nn::classifier::{Classifier, ClassifierPacked, ClassifierWorkspace};
use crate::text::labeled::Examples;
use rayon::prelude::*;

/// Sequences per forward pass when scoring.
pub const BATCH: usize = 64;

/// `ln p(label | sequence)` for every label of each of `seqs` (each 1 or more ids long),
/// [n, C] row-major, in the order given. The sequences are run in batches of similar length
/// (so little padding is computed), the batches split over `threads` cores.
pub fn log_probs(model: &Classifier, seqs: &[&[u32]], threads: usize) -> Vec<f32> {
    let c = model.config.labels;
    let mut out = vec![0.0f32; seqs.len() * c];
    if seqs.is_empty() {
        return out;
    }
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| seqs[i].len());
    let t_cap = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
    let batch = BATCH.min(seqs.len());
    let packed = ClassifierPacked::inference(model);
    let batches: Vec<&[usize]> = order.chunks(batch).collect();
    let per_thread = batches.len().div_ceil(threads.max(1));
    let rows: Vec<(usize, Vec<f32>)> = batches
        .par_chunks(per_thread)
        .flat_map_iter(|group| {
            let mut ws = ClassifierWorkspace::inference(&model.config, batch, t_cap);
            let mut done = Vec::new();
            for idx in group {
                // A short last batch is filled with copies of its last sequence, whose rows
                // are not read back: the workspace keeps one shape.
                let mut rows: Vec<&[u32]> = idx.iter().map(|&i| seqs[i]).collect();
                rows.resize(batch, rows[rows.len() - 1]);
                model.forward(&packed, &mut ws, &rows, None);
                for (&i, z) in idx.iter().zip(ws.logits.chunks_exact(c)) {
                    done.push((i, log_softmax(z)));
                }
            }
            done
        })
        .collect();
    for (i, lp) in rows {
        out[i * c..(i + 1) * c].copy_from_slice(&lp);
    }
    out
}

/// `z - max - ln Σ exp(z - max)`, exact where a probability would underflow.
fn log_softmax(z: &[f32]) -> Vec<f32> {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = z.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let ln = sum.ln();
    z.iter().map(|&x| ((x - max) as f64 - ln) as f32).collect()
}

/// Labels ranked by probability for one row of [`log_probs`]: the `k` best as (label id,
/// probability), most probable first.
pub fn top_k(log_probs: &[f32], k: usize) -> Vec<(usize, f64)> {
    let mut ranked: Vec<(usize, f64)> = log_probs
        .iter()
        .map(|&l| (l as f64).exp())
        .enumerate()
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

/// A classifier's results on labelled examples.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassStats {
    /// C.
    pub labels: usize,
    /// Σ w_y · (-ln p_y), and Σ w_y (w = 1 without label weights).
    pub loss_sum: f64,
    pub weight_sum: f64,
    /// [C, C]: row = true label, column = predicted label (the most probable).
    pub confusion: Vec<u64>,
}

impl ClassStats {
    pub fn count(&self) -> u64 {
        self.confusion.iter().sum()
    }

    /// The (weighted) mean cross-entropy, nats per example.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.weight_sum.max(1e-300)
    }

    pub fn accuracy(&self) -> f64 {
        let right: u64 = (0..self.labels).map(|c| self.cell(c, c)).sum();
        right as f64 / self.count().max(1) as f64
    }

    /// Examples of true label `t` predicted as `p`.
    pub fn cell(&self, t: usize, p: usize) -> u64 {
        self.confusion[t * self.labels + p]
    }

    fn predicted(&self, c: usize) -> u64 {
        (0..self.labels).map(|t| self.cell(t, c)).sum()
    }

    fn actual(&self, c: usize) -> u64 {
        (0..self.labels).map(|p| self.cell(c, p)).sum()
    }

    /// Of the examples predicted as `c`, the fraction that are `c` (0 if none is).
    pub fn precision(&self, c: usize) -> f64 {
        self.cell(c, c) as f64 / self.predicted(c).max(1) as f64
    }

    /// Of the examples of `c`, the fraction predicted as `c` (0 if there are none).
    pub fn recall(&self, c: usize) -> f64 {
        self.cell(c, c) as f64 / self.actual(c).max(1) as f64
    }

    pub fn f1(&self, c: usize) -> f64 {
        let (p, r) = (self.precision(c), self.recall(c));
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }

    /// The mean F1 over the labels that occur in the data or in the predictions (as
    /// scikit-learn's `f1_score(average="macro")`): every label counts the same, however rare.
    pub fn macro_f1(&self) -> f64 {
        let present: Vec<usize> = (0..self.labels)
            .filter(|&c| self.actual(c) + self.predicted(c) > 0)
            .collect();
        present.iter().map(|&c| self.f1(c)).sum::<f64>() / present.len().max(1) as f64
    }
}

impl ClassStats {
    /// Per-label precision, recall, F1 and support, then the confusion matrix (rows: the
    /// true label, columns: the predicted one), as aligned text.
    pub fn table(&self, labels: &[String]) -> String {
        let w = labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!("{:w$}  precision  recall  f1      support\n", "label");
        for (c, l) in labels.iter().enumerate() {
            s += &format!(
                "{l:w$}  {:.4}     {:.4}  {:.4}  {}\n",
                self.precision(c),
                self.recall(c),
                self.f1(c),
                self.actual(c)
            );
        }
        let cw = self
            .confusion
            .iter()
            .map(|n| n.to_string().len())
            .max()
            .unwrap_or(1)
            .max(w.min(8));
        s += "confusion matrix (rows: true label, columns: predicted)\n";
        s += &format!("{:w$}", "");
        for l in labels {
            let short: String = l.chars().take(cw).collect();
            s += &format!(" {short:>cw$}");
        }
        s.push('\n');
        for (t, l) in labels.iter().enumerate() {
            s += &format!("{l:w$}");
            for p in 0..self.labels {
                s += &format!(" {:>cw$}", self.cell(t, p));
            }
            s.push('\n');
        }
        s
    }

    /// Everything [`ClassStats::table`] shows, and the totals, as JSON.
    pub fn json(&self, labels: &[String]) -> serde_json::Value {
        let per_label: Vec<serde_json::Value> = labels
            .iter()
            .enumerate()
            .map(|(c, l)| {
                serde_json::json!({
                    "label": l,
                    "precision": self.precision(c),
                    "recall": self.recall(c),
                    "f1": self.f1(c),
                    "support": self.actual(c),
                })
            })
            .collect();
        let confusion: Vec<Vec<u64>> = self
            .confusion
            .chunks_exact(self.labels)
            .map(|r| r.to_vec())
            .collect();
        serde_json::json!({
            "lines": self.count(),
            "accuracy": self.accuracy(),
            "macro_f1": self.macro_f1(),
            "loss_nats_per_line": self.loss(),
            "labels": labels,
            "per_label": per_label,
            "confusion": confusion,
        })
    }
}

/// Scores `examples`: the loss (weighted by `weights[label]` if given) and the confusion
/// matrix of the most probable labels.
pub fn evaluate(
    model: &Classifier,
    examples: &Examples,
    weights: Option<&[f32]>,
    threads: usize,
) -> ClassStats {
    let c = model.config.labels;
    let seqs: Vec<&[u32]> = (0..examples.len()).map(|i| examples.seq(i)).collect();
    let lp = log_probs(model, &seqs, threads);
    let mut stats = ClassStats {
        labels: c,
        loss_sum: 0.0,
        weight_sum: 0.0,
        confusion: vec![0; c * c],
    };
    for (row, &y) in lp.chunks_exact(c).zip(&examples.labels) {
        let w = weights.map_or(1.0, |w| w[y as usize]) as f64;
        stats.loss_sum -= w * row[y as usize] as f64;
        stats.weight_sum += w;
        let best = top_k(row, 1)[0].0;
        stats.confusion[y as usize * c + best] += 1;
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;
    use crate::nn::classifier::{ClassifierConfig, Pool};
    use rand::SeedableRng;

    #[test]
    fn metrics_by_hand() {
        // true a: 3 right, 1 as b; true b: 2 right; true c: 1 as a. Nothing predicted c.
        let s = ClassStats {
            labels: 3,
            loss_sum: 0.0,
            weight_sum: 1.0,
            confusion: vec![3, 1, 0, 0, 2, 0, 1, 0, 0],
        };
        assert_eq!(s.count(), 7);
        assert!((s.accuracy() - 5.0 / 7.0).abs() < 1e-12);
        assert!((s.precision(0) - 0.75).abs() < 1e-12 && (s.recall(0) - 0.75).abs() < 1e-12);
        assert!((s.precision(1) - 2.0 / 3.0).abs() < 1e-12 && s.recall(1) == 1.0);
        assert_eq!((s.precision(2), s.recall(2), s.f1(2)), (0.0, 0.0, 0.0));
        let f1_b = 2.0 * (2.0 / 3.0) / (2.0 / 3.0 + 1.0);
        assert!((s.macro_f1() - (0.75 + f1_b + 0.0) / 3.0).abs() < 1e-12);
        assert_eq!(top_k(&[-2.0, -0.1, -3.0], 2)[0].0, 1);
        let names = ["a".to_string(), "bb".into(), "c".into()];
        let table = s.table(&names);
        assert!(
            table.contains("bb     0.6667     1.0000  0.8000  2"),
            "{table}"
        );
        assert!(
            table.lines().last().unwrap().ends_with("1     0     0"),
            "{table}"
        );
        let j = s.json(&names);
        assert_eq!(j["confusion"][0], serde_json::json!([3, 1, 0]));
        assert_eq!(j["per_label"][2]["support"], 1);
    }

    /// Batching, ordering and threads do not change a sequence's result.
    #[test]
    fn log_probs_are_per_sequence() {
        let mut m = Classifier::new(ClassifierConfig {
            cell: CellKind::Gru,
            layers: 2,
            hidden: 8,
            bidirectional: true,
            pool: Pool::Mean,
            vocab_size: 9,
            labels: 4,
            dropout: 0.0,
        });
        m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let seqs: Vec<Vec<u32>> = (0..150u32)
            .map(|i| (0..1 + i % 13).map(|t| 2 + (i * 7 + t) % 7).collect())
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
        let all = log_probs(&m, &refs, 2);
        for i in [0, 77, 149] {
            let one = log_probs(&m, &refs[i..i + 1], 1);
            for (a, b) in one.iter().zip(&all[i * 4..(i + 1) * 4]) {
                assert!((a - b).abs() < 1e-5, "{i}");
            }
        }
        let p: f64 = all[..4].iter().map(|&l| (l as f64).exp()).sum();
        assert!((p - 1.0).abs() < 1e-5);
    }
}
