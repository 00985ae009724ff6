//! Property tests that act as bounded fuzzers: mutated real checkpoints (bytes, numbers,
//! shapes, strings, truncation) and random corpus files must never make the readers panic,
//! and whatever loads must be usable. `cargo test --release` runs a few thousand cases per
//! target; set `PROPTEST_CASES` for a longer run (see the README's guarantees table for the
//! executions of the longest one).

use charrnn::io::checkpoint::{Checkpoint, DataSection};
use charrnn::nn::infer::Stepper;
use charrnn::nn::{CellKind, Model, ModelConfig};
use charrnn::text::corpus::{Corpus, VocabSource};
use charrnn::text::{Mode, Vocab, split};
use charrnn::train::{Optimizer, TrainConfig, Trainer};
use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::Value;
use std::sync::OnceLock;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A small real checkpoint of each cell type, as JSON text.
fn seeds() -> &'static Vec<String> {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [CellKind::Rnn, CellKind::Lstm, CellKind::Gru]
            .into_iter()
            .map(|cell| {
                let vocab = Vocab::from_texts(["ab c,é世\n"]);
                let mut model = Model::new(ModelConfig {
                    cell,
                    layers: 2,
                    hidden: 3,
                    vocab_size: vocab.len(),
                    dropout: 0.1,
                    output_dropout: 0.0,
                    weight_drop: 0.0,
                });
                model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
                let train = TrainConfig {
                    batch: 2,
                    seq_len: 4,
                    threads: 1,
                    ..TrainConfig::default()
                };
                let opt = Optimizer::new(train.optimizer, model.param_count());
                let mut progress = Trainer::fresh_progress(&model, &train);
                progress.step = 3;
                let data = DataSection {
                    mode: Mode::Stream,
                    sources: vec!["/nonexistent/corpus.txt".into()],
                    val_fraction: 0.1,
                    train_chars: 90,
                    val_chars: 10,
                    val_file: None,
                };
                let ck = Checkpoint::new("f022", &model, &vocab, data, &train, 5, &opt, &progress);
                serde_json::to_string(&ck).unwrap()
            })
            .collect()
    })
}

/// Loads `text` as a checkpoint file; if it loads, uses it as sample, eval and resume would:
/// nothing may panic, and a loaded model must run.
fn load_and_use(text: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.json");
    std::fs::write(&path, text).unwrap();
    let Ok(ck) = Checkpoint::load(&path) else {
        return;
    };
    let (model, vocab) = ck.model().expect("a checkpoint that loads gives its model");
    let mut st = Stepper::new(&model, 1);
    for t in [0u32, 2, 3] {
        let logits = st.step(&[t]);
        assert_eq!(logits.len(), vocab.len());
    }
    let r = ck.restore().expect("a checkpoint that loads restores");
    let small = Trainer::memory_bytes(&r.model.config, &r.train).is_some_and(|b| b < 50 << 20);
    if small {
        let text: String = vocab.chars().iter().collect::<String>().repeat(8);
        let tokens = split::tokens(&vocab, &split::sequences(&[text], Mode::Stream)).unwrap();
        if tokens.len() > r.train.batch * r.train.seq_len && r.progress.window == 0 {
            let mut t = Trainer::new(r.model, r.optimizer, r.train, &tokens, r.progress);
            let _ = t.step();
        }
    }
}

/// Every path to a leaf or an array of a JSON value.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        // Long number arrays: a few entries are enough.
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(3) {
                at.push(i.to_string());
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, p| match p.parse::<usize>() {
        Ok(i) if v.is_array() => &mut v[i],
        _ => &mut v[p.as_str()],
    })
}

fn hostile_values() -> Vec<Value> {
    serde_json::from_str(
        r#"[0, -1, 1, 2, 3, 7, 2147483648, 4294967296, 9007199254740993, 4611686018427387904,
            18446744073709551615, -9223372036854775808, 1e39, -1e39, 1e-46, 0.5, 1.5, -0.0,
            "", "lstm", "gru", "sgd", "lines", "x\u001b[31m", "\u0000", null, [], {}, true,
            [1e39], [[]], {"name": "head.bias"}]"#,
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Edit {
    /// Replace the value at a path with a hostile one.
    Set(usize, usize),
    /// Remove an element of the array at a path, or duplicate it.
    Remove(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(p, x)| Edit::Set(p, x)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, i)| Edit::Remove(p, i)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, i)| Edit::Duplicate(p, i)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1500), failure_persistence: None, ..ProptestConfig::default() })]

    /// Structural mutations: numbers, strings, shapes and array lengths replaced with
    /// hostile values, one to three at a time.
    #[test]
    fn mutated_checkpoints_never_panic(seed in 0usize..3, edits in proptest::collection::vec(edit(), 1..4)) {
        let mut v: Value = serde_json::from_str(&seeds()[seed]).unwrap();
        let values = hostile_values();
        for e in edits {
            let mut all = Vec::new();
            paths(&v, &mut Vec::new(), &mut all);
            match e {
                Edit::Set(p, x) => {
                    let path = &all[p % all.len()];
                    *get_mut(&mut v, path) = values[x % values.len()].clone();
                }
                Edit::Remove(p, i) | Edit::Duplicate(p, i) => {
                    let path = &all[p % all.len()];
                    if let Value::Array(a) = get_mut(&mut v, path)
                        && !a.is_empty()
                    {
                        let i = i % a.len();
                        if matches!(e, Edit::Remove(..)) {
                            a.remove(i);
                        } else {
                            let x = a[i].clone();
                            a.insert(i, x);
                        }
                    }
                }
            }
        }
        load_and_use(v.to_string().as_bytes());
    }

    /// Byte mutations: truncation, flipped bytes, inserted garbage.
    #[test]
    fn damaged_checkpoint_bytes_never_panic(
        seed in 0usize..3,
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        truncate in any::<bool>(),
    ) {
        let mut bytes = seeds()[seed].clone().into_bytes();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        load_and_use(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(400), failure_persistence: None, ..ProptestConfig::default() })]

    /// Random files as a corpus, in both modes: an error or a corpus whose tokens decode
    /// back to text of that file; never a panic, and errors are one line.
    #[test]
    fn any_bytes_as_a_corpus(bytes in proptest::collection::vec(any::<u8>(), 0..400), text in "\\PC{0,200}", lines in any::<bool>(), val in 0.0f64..0.9) {
        let dir = tempfile::tempdir().unwrap();
        let mode = if lines { Mode::Lines } else { Mode::Stream };
        for (name, content) in [("raw.txt", bytes.clone()), ("text.txt", text.clone().into_bytes())] {
            let path = dir.path().join(name);
            std::fs::write(&path, &content).unwrap();
            match Corpus::load(&[path], mode, val, VocabSource::Corpus) {
                Ok(c) => {
                    let chars: usize = c.info.train_chars + c.info.val_chars;
                    let decoded = c.vocab.decode(&c.train.to_vec()).chars().count() + c.vocab.decode(&c.val.to_vec()).chars().count();
                    prop_assert_eq!(chars, decoded);
                    // A leading byte-order mark is dropped, not learned.
                    let bom = '\u{feff}';
                    let leading_only = content.starts_with("\u{feff}".as_bytes()) && String::from_utf8_lossy(&content).matches(bom).count() == 1;
                    prop_assert!(!(leading_only && c.vocab.chars().contains(&bom)));
                }
                Err(e) => prop_assert!(!format!("{e:#}").contains('\n'), "{e:#}"),
            }
        }
    }
}
