//! `charrnn score` and `charrnn export` against PyTorch's own numbers.
//!
//! `tests/fixtures/score_reference.json` and `export_reference.json` were made by
//! `tests/fixtures/make_score_reference.py` (PyTorch 2.15, float64): each line of
//! `tests/fixtures/score/lines.txt` scored on its own by `torch.nn.RNN/LSTM/GRU` +
//! `torch.nn.Linear` with the weights of the small checkpoints in `tests/fixtures/score/`,
//! and what torch's safetensors loader read from `charrnn export` of each checkpoint. The
//! tests run the real binary and need no PyTorch.

mod common;
use common::*;
use std::collections::BTreeMap;

const CELLS: [&str; 3] = ["rnn", "lstm", "gru"];

fn fixture(name: &str) -> Value {
    json(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

fn checkpoint(cell: &str) -> String {
    format!(
        "{}/tests/fixtures/score/{cell}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn lines_file() -> String {
    format!(
        "{}/tests/fixtures/score/lines.txt",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `charrnn score --json --per-char` of lines.txt with a cell's checkpoint, by line number.
fn charrnn_scores(cell: &str) -> BTreeMap<u64, Value> {
    let o = charrnn()
        .args([
            "score",
            &lines_file(),
            "--checkpoint",
            &checkpoint(cell),
            "--json",
            "--per-char",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["line"].as_u64().unwrap(), v)
        })
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

/// Each line's total -ln p and every position's surprisal agree with PyTorch to 1e-3
/// relative; lines with characters the model never saw get an error, not a score.
#[test]
fn scores_agree_with_pytorch() {
    let reference = fixture("score_reference.json");
    let mut worst = 0.0f64;
    for cell in CELLS {
        let got = charrnn_scores(cell);
        let want = reference["cells"][cell].as_array().unwrap();
        let scored: Vec<&Value> = got.values().filter(|v| !v["nats"].is_null()).collect();
        assert_eq!(scored.len(), want.len(), "{cell}: lines scored");
        for w in want {
            let g = &got[&w["line"].as_u64().unwrap()];
            let (gn, wn) = (g["nats"].as_f64().unwrap(), w["nats"].as_f64().unwrap());
            assert!(
                close(gn, wn, 1e-3),
                "{cell} line {}: {gn} vs {wn}",
                w["line"]
            );
            worst = worst.max((gn - wn).abs() / wn.abs());
            let (gs, ws) = (
                g["surprisal_nats"].as_array().unwrap(),
                w["surprisal"].as_array().unwrap(),
            );
            assert_eq!(gs.len(), ws.len());
            for (a, b) in gs.iter().zip(ws) {
                assert!(
                    close(a.as_f64().unwrap(), b.as_f64().unwrap(), 1e-3),
                    "{cell}"
                );
            }
            let chars = g["chars"].as_f64().unwrap();
            let bpc = gn / std::f64::consts::LN_2 / (chars + 1.0);
            assert!(close(g["bits_per_char"].as_f64().unwrap(), bpc, 1e-9));
        }
        let failed: Vec<&Value> = got.values().filter(|v| v["nats"].is_null()).collect();
        assert_eq!(failed.len(), 3, "{cell}");
        assert!(failed.iter().all(|v| {
            v["error"]
                .as_str()
                .unwrap()
                .contains("not in the vocabulary")
        }));
    }
    eprintln!("worst relative difference from PyTorch: {worst:.2e}");
}

/// The default output is TSV with a header, one row per non-empty line, in file order.
#[test]
fn score_writes_tsv_with_na_for_unscorable_lines() {
    let o = charrnn()
        .args(["score", &lines_file(), "--checkpoint", &checkpoint("gru")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows[0],
        ["line", "nats", "bits_per_char", "chars", "text", "error"]
    );
    assert_eq!(rows.len(), 1 + 38);
    assert!(rows[1..].iter().all(|r| r.len() == 6));
    let lines: Vec<u64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "file order");
    let tab = rows.iter().find(|r| r[4] == "the\\ttab").unwrap();
    assert_eq!((tab[1], tab[2]), ("NA", "NA"));
    assert!(stderr(&o).contains("3 lines have characters the model never saw"));
}

/// `charrnn export` writes what PyTorch's safetensors loader reads as nn.LSTM/GRU/RNN and
/// nn.Linear weights: the same names, shapes and values, the config and vocabulary in the
/// metadata, and the loaded weights score the lines as charrnn does.
#[test]
fn export_loads_in_pytorch() {
    let reference = fixture("export_reference.json");
    let dir = TempDir::new().unwrap();
    for cell in CELLS {
        let out = dir.path().join(format!("{cell}.safetensors"));
        let o = charrnn()
            .args(["export", "--checkpoint", &checkpoint(cell), "--output"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let want = &reference["cells"][cell];
        let names = st.names();
        assert_eq!(
            names.len(),
            want["tensors"].as_object().unwrap().len(),
            "{cell}"
        );
        for (name, w) in want["tensors"].as_object().unwrap() {
            let t = st.tensor(name).unwrap();
            assert_eq!(t.dtype(), safetensors::Dtype::F32);
            let shape: Vec<usize> = w["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), shape.as_slice(), "{cell} {name}");
            let sum: f64 = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .sum();
            assert!(
                close(sum, w["sum"].as_f64().unwrap(), 1e-9),
                "{cell} {name}"
            );
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        for (k, v) in want["metadata"].as_object().unwrap() {
            assert_eq!(
                meta.get(k).map(String::as_str),
                v.as_str(),
                "{cell} metadata {k}"
            );
        }
        let got = charrnn_scores(cell);
        for w in want["scores"].as_array().unwrap() {
            let g = got[&w["line"].as_u64().unwrap()]["nats"].as_f64().unwrap();
            assert!(close(g, w["nats"].as_f64().unwrap(), 1e-3), "{cell}");
        }
    }
}
