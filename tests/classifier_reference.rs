//! The classifier's logits, loss and gradients against PyTorch's numbers.
//!
//! `tests/fixtures/classifier_reference.json` was made by
//! `tests/fixtures/make_classifier_reference.py` (PyTorch 2.15, float64 arithmetic on weights
//! drawn in float32): `nn.RNN/LSTM/GRU(bidirectional=True, num_layers=2, batch_first=True)`
//! over packed sequences of different lengths, pooling (final, mean, max), `nn.Linear` and
//! `cross_entropy`. charrnn computes in f32: every tensor agrees within 1e-5 of the
//! reference, relative to the tensor's largest entry (the worst case is printed).

use charrnn::nn::cell::CellKind;
use charrnn::nn::classifier::{
    Classifier, ClassifierConfig, ClassifierPacked, ClassifierWorkspace, Pool,
};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Largest |a - b| relative to the largest |b|.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn logits_loss_and_gradients_agree_with_pytorch() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/classifier_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let n = |k: &str| doc[k].as_u64().unwrap() as usize;
    let seqs: Vec<Vec<u32>> = doc["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| floats(s).iter().map(|&x| x as u32).collect())
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
    let labels: Vec<u32> = floats(&doc["targets"]).iter().map(|&x| x as u32).collect();
    let mut worst = 0.0f64;
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let cell: CellKind = serde_json::from_value(case["cell"].clone()).unwrap();
        for (pool_name, want) in case["pools"].as_object().unwrap() {
            let pool: Pool = serde_json::from_value(Value::from(pool_name.as_str())).unwrap();
            let mut m = Classifier::new(ClassifierConfig {
                cell,
                layers: n("layers"),
                hidden: n("hidden"),
                bidirectional: true,
                pool,
                vocab_size: n("vocab_size"),
                labels: n("labels"),
                dropout: 0.0,
            });
            let weights = case["weights"].as_array().unwrap();
            assert_eq!(weights.len(), m.layout.tensors.len());
            for (w, spec) in weights.iter().zip(&m.layout.tensors) {
                assert_eq!(w["name"].as_str().unwrap(), spec.name, "tensor order");
                let shape: Vec<usize> = floats(&w["shape"]).iter().map(|&x| x as usize).collect();
                assert_eq!(shape, spec.shape, "{}", spec.name);
                for (p, x) in m.params[spec.range()].iter_mut().zip(floats(&w["data"])) {
                    *p = x as f32;
                }
            }
            let packed = ClassifierPacked::training(&m);
            let mut ws = ClassifierWorkspace::new(&m.config, seqs.len(), 8);
            m.forward(&packed, &mut ws, &refs, None);
            let what = format!("{cell} {pool}");
            let e = rel_err(&ws.logits, &floats(&want["logits"]));
            assert!(e < TOL, "{what} logits: {e:.2e}");
            worst = worst.max(e);
            let loss = m.forward_loss(&packed, &mut ws, &refs, &labels, None, None);
            let loss = loss / seqs.len() as f64;
            let l_want = want["loss"].as_f64().unwrap();
            assert!(
                (loss - l_want).abs() < TOL * l_want,
                "{what} loss {loss} vs {l_want}"
            );
            let mut grads = vec![0.0f32; m.param_count()];
            m.backward(&packed, &mut ws, &mut grads, 1.0 / seqs.len() as f32);
            for spec in &m.layout.tensors {
                let e = rel_err(&grads[spec.range()], &floats(&want["grads"][&spec.name]));
                assert!(e < TOL, "{what} gradient of {}: {e:.2e}", spec.name);
                worst = worst.max(e);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9 * 18, "every tensor of every case");
    eprintln!("worst relative difference from PyTorch: {worst:.2e}");
}

/// `charrnn predict` of each fixture classifier agrees with PyTorch on charrnn's own export
/// of it (`tests/fixtures/classifier_export_reference.json`, made by
/// `tests/fixtures/make_classifier_export_reference.py`): every label's probability of every
/// line within 1e-5, the same lines without a label, and the tensor names and metadata torch
/// read.
#[test]
fn predictions_agree_with_pytorch_on_the_export() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/classifier_export_reference.json")).unwrap(),
    )
    .unwrap();
    let mut worst = 0.0f64;
    for cell in ["rnn", "lstm", "gru"] {
        let want = &doc["cells"][cell];
        let labels: Vec<String> =
            serde_json::from_str(want["metadata"]["labels"].as_str().unwrap()).unwrap();
        assert_eq!(want["metadata"]["task"], "classify");
        assert!(want["tensors"]["weight_hh_l1_reverse"].is_array(), "{cell}");
        let o = assert_cmd::Command::cargo_bin("charrnn")
            .unwrap()
            .args(["predict", &format!("{dir}/classify/lines.txt")])
            .args(["--checkpoint", &format!("{dir}/classify/{cell}.json")])
            .args(["--json", "--top-k", &labels.len().to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got: Vec<Value> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let rows = want["predictions"].as_array().unwrap();
        assert_eq!(got.len(), rows.len(), "{cell}: lines");
        assert!(rows.iter().any(|r| r["probabilities"].is_null()));
        for (g, w) in got.iter().zip(rows) {
            assert_eq!(g["line"], w["line"], "{cell}");
            if w["probabilities"].is_null() {
                assert!(g["label"].is_null(), "{cell} line {}", w["line"]);
                continue;
            }
            for t in g["top"].as_array().unwrap() {
                let p = t["probability"].as_f64().unwrap();
                let q = w["probabilities"][t["label"].as_str().unwrap()]
                    .as_f64()
                    .unwrap();
                assert!(
                    (p - q).abs() < 1e-5,
                    "{cell} line {}: {p} vs {q}",
                    w["line"]
                );
                worst = worst.max((p - q).abs());
            }
        }
    }
    eprintln!("worst probability difference from PyTorch: {worst:.2e}");
}
