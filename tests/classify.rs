//! `charrnn train --task classify`, `predict`, `eval`, `export` and the refusals, on the real
//! binary with tiny models and data (each run well under a second).

mod common;
use common::*;

/// Three labels that differ in their letters: a tiny model learns them in a few dozen steps.
fn labelled(dir: &TempDir, name: &str, tsv: bool) -> PathBuf {
    let words: [(&str, &[&str]); 3] = [
        (
            "aa",
            &["abba", "baab", "aab", "abab", "bbaa", "ab", "aabb", "baba"],
        ),
        (
            "cc",
            &["cddc", "dcc", "cdcd", "ccdd", "dc", "cdc", "ddcc", "dcdc"],
        ),
        (
            "ee",
            &["efe", "fee", "eeff", "fefe", "ef", "effe", "ffee", "efef"],
        ),
    ];
    let mut text = String::new();
    for rep in 0..4 {
        for (label, ws) in &words {
            for w in ws.iter() {
                let w = format!("{w}{}", &w[..rep % w.len()]);
                text += &if tsv {
                    format!("{label}\t{w}\n")
                } else {
                    format!("__label__{label} {w}\n")
                };
            }
        }
    }
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const TINY: &[&str] = &[
    "--task",
    "classify",
    "--hidden",
    "8",
    "--layers",
    "2",
    "--batch-size",
    "8",
    "--threads",
    "2",
    "--eval-every",
    "10",
    "--seed",
    "3",
    "--dropout",
    "0",
];

fn train_cls(dir: &TempDir, data: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    charrnn()
        .current_dir(dir.path())
        .arg("train")
        .arg(data)
        .args(TINY)
        .args(["--dir", out])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn trains_reports_counts_and_writes_a_classifier_checkpoint() {
    let dir = TempDir::new().unwrap();
    let data = labelled(&dir, "d.txt", false);
    let o = train_cls(
        &dir,
        &data,
        "run",
        &["--bidirectional", "--max-steps", "60"],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "3 labels, 87 training / 9 validation lines (stratified): aa 29+3, cc 29+3, ee 29+3"
        ),
        "{err}"
    );
    assert!(err.contains("labels are not weighted"), "{err}");
    assert!(err.contains("bidirectional lstm 2x8, pool max"), "{err}");
    assert!(err.contains("validation accuracy"), "{err}");
    let ck = json(&dir.path().join("run/latest.json"));
    assert_eq!(ck["format"], "charrnn-classifier");
    assert_eq!(ck["labels"], serde_json::json!(["aa", "cc", "ee"]));
    assert_eq!(ck["model"]["bidirectional"], true);
    // The classifier's schedule: the rate held, then falling over the last 40% of the run
    // to 5% of it at the end (README "Classifying lines").
    let training = &ck["training"];
    assert_eq!(training["lr_schedule"], "cosine", "{training}");
    assert_eq!(training["lr_tail"].as_f64(), Some(0.4), "{training}");
    let (lr, last) = (
        training["lr"].as_f64().unwrap(),
        ck["progress"]["last_lr"].as_f64().unwrap(),
    );
    assert!(last < 0.1 * lr, "last rate {last} of {lr}");
    let names: Vec<&str> = ck["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"weight_hh_l1_reverse") && names.last() == Some(&"head.bias"));
    let h = ck["progress"]["history"].as_array().unwrap();
    assert_eq!(h.len(), 6);
    assert!(h.iter().all(|p| p["val_accuracy"].as_f64().is_some()));
    assert!(
        h.last().unwrap()["val_accuracy"].as_f64().unwrap() > 0.6,
        "{h:?}"
    );
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"val_accuracy\""));
    assert!(dir.path().join("run/best.json").is_file());

    // Another run into the same directory is refused; the TSV format is read with its flag.
    let again = train_cls(&dir, &data, "run", &["--max-steps", "5"]);
    assert_one_line_error(&again, "already holds another run");
    let tsv = labelled(&dir, "d.tsv", true);
    let o = train_cls(
        &dir,
        &tsv,
        "tsv",
        &[
            "--format",
            "tsv",
            "--max-steps",
            "5",
            "--pool",
            "mean",
            "--class-weights",
            "balanced",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("each label counts the same"));
    let ck = json(&dir.path().join("tsv/latest.json"));
    assert_eq!(
        (ck["model"]["pool"].as_str(), ck["data"]["format"].as_str()),
        (Some("mean"), Some("tsv"))
    );
    assert_eq!(ck["label_weights"].as_array().unwrap().len(), 3);
}

#[test]
fn predict_and_eval() {
    let dir = TempDir::new().unwrap();
    let data = labelled(&dir, "d.txt", false);
    assert!(
        train_cls(&dir, &data, "m", &["--max-steps", "200"])
            .status
            .success()
    );
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "abab\n\n__label__zz cdcd\nxyz\neffe\n").unwrap();
    let run_in = |args: &[&str]| {
        charrnn()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run_in(&["predict", "in.txt", "--dir", "m"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0], ["line", "label", "probability"]);
    assert_eq!(rows.len(), 5, "{out}");
    assert_eq!((rows[1][0], rows[1][1]), ("1", "aa"));
    assert_eq!(
        (rows[2][0], rows[2][1]),
        ("3", "cc"),
        "the __label__ token is not text"
    );
    assert_eq!(rows[3], ["4", "NA", "NA"], "no known character");
    assert_eq!((rows[4][0], rows[4][1]), ("5", "ee"));
    let p: f64 = rows[1][2].parse().unwrap();
    assert!(p > 0.34 && p <= 1.0);
    assert!(
        stderr(&o).contains("3 characters the model never saw"),
        "{}",
        stderr(&o)
    );

    // Top k from stdin, and JSON.
    let o = charrnn()
        .current_dir(dir.path())
        .args(["predict", "-", "--dir", "m", "--top-k", "3"])
        .write_stdin("ffe\n")
        .output()
        .unwrap();
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "line\tlabel_1\tprobability_1\tlabel_2\tprobability_2\tlabel_3\tprobability_3"
    );
    let cells: Vec<&str> = lines[1].split('\t').collect();
    let ps: Vec<f64> = [2, 4, 6]
        .iter()
        .map(|&i| cells[i].parse().unwrap())
        .collect();
    assert!((ps.iter().sum::<f64>() - 1.0).abs() < 1e-4 && ps[0] >= ps[1] && ps[1] >= ps[2]);
    let o = run_in(&["predict", "in.txt", "--dir", "m", "--json", "--top-k", "2"]);
    let docs: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0]["label"], "aa");
    assert_eq!(docs[0]["top"].as_array().unwrap().len(), 2);
    assert!(docs[2]["label"].is_null());

    // eval: a file, then the validation split, as text and JSON.
    let o = run_in(&["eval", "d.txt", "--dir", "m"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.starts_with("d.txt: accuracy ") && out.contains("macro-F1") && out.contains("96 lines"),
        "{out}"
    );
    assert!(
        out.contains("confusion matrix (rows: true label, columns: predicted)"),
        "{out}"
    );
    let o = run_in(&["eval", "--dir", "m", "--json"]);
    let doc: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(doc["lines"], 9);
    assert_eq!(doc["text"], "validation split");
    let conf = doc["confusion"].as_array().unwrap();
    let total: u64 = conf
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(total, 9);
    let right: u64 = (0..3).map(|i| conf[i][i].as_u64().unwrap()).sum();
    assert!((doc["accuracy"].as_f64().unwrap() - right as f64 / 9.0).abs() < 1e-12);
    assert_eq!(doc["per_label"].as_array().unwrap().len(), 3);
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "__label__qq abab\n").unwrap();
    assert_one_line_error(
        &run_in(&["eval", "bad.txt", "--dir", "m"]),
        "label \"qq\" is not one the model was trained with",
    );
}

#[test]
fn resume_is_exact() {
    let dir = TempDir::new().unwrap();
    let data = labelled(&dir, "d.txt", false);
    // The per-epoch schedule does not depend on the run's length (the default cosine is
    // fitted to it), so the first part can be a run of its own.
    let extra = [
        "--bidirectional",
        "--dropout",
        "0.2",
        "--lr-schedule",
        "epochs",
        "--max-steps",
    ];
    assert!(
        train_cls(&dir, &data, "full", &[&extra[..], &["30"]].concat())
            .status
            .success()
    );
    assert!(
        train_cls(&dir, &data, "half", &[&extra[..], &["20"]].concat())
            .status
            .success()
    );
    let o = charrnn()
        .current_dir(dir.path())
        .args([
            "train",
            "--task",
            "classify",
            "--resume",
            "half/latest.json",
            "--max-steps",
            "30",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (
        json(&dir.path().join("full/latest.json")),
        json(&dir.path().join("half/latest.json")),
    );
    assert_eq!(a["tensors"], b["tensors"]);
    assert_eq!(a["optimizer"], b["optimizer"]);
    assert_eq!(a["progress"]["step"], 30);
    // What a resumed run may not change.
    let o = charrnn()
        .current_dir(dir.path())
        .args([
            "train",
            "--task",
            "classify",
            "--resume",
            "half/latest.json",
            "--pool",
            "mean",
        ])
        .output()
        .unwrap();
    assert_one_line_error(&o, "--pool is fixed by the checkpoint");
}

#[test]
fn refusals_are_one_line_with_the_reason() {
    let dir = TempDir::new().unwrap();
    let data = labelled(&dir, "d.txt", false);
    let o = train(&dir, "lm", &["--bidirectional"]);
    assert_one_line_error(&o, "a language model predicts each next character");
    let o = train(&dir, "lm", &["--pool", "max"]);
    assert_one_line_error(&o, "--pool applies to --task classify");
    assert!(
        train_cls(&dir, &data, "m", &["--max-steps", "3"])
            .status
            .success()
    );
    for cmd in ["sample", "score"] {
        let mut args = vec![cmd, "--dir", "m"];
        if cmd == "score" {
            args.insert(1, "d.txt");
        }
        let o = charrnn()
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        assert_one_line_error(&o, "holds a classifier");
        assert!(
            stderr(&o).contains("no next-character distribution"),
            "{cmd}"
        );
    }
    // A language model given to predict, or resumed as a classifier.
    assert!(train(&dir, "lmrun", &["--max-steps", "2"]).status.success());
    let o = charrnn()
        .current_dir(dir.path())
        .args(["predict", "d.txt", "--dir", "lmrun"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "so it has no labels to predict");
    let o = charrnn()
        .current_dir(dir.path())
        .args([
            "train",
            "--task",
            "classify",
            "--resume",
            "lmrun/latest.json",
        ])
        .output()
        .unwrap();
    assert_one_line_error(&o, "resume it without --task classify");
    // Bad data: each error names the file and line.
    let bad = dir.path().join("bad.txt");
    for (text, needle) in [
        ("__label__a x\nno label here\n", "bad.txt:2: no label"),
        ("__label__a x\n__label__a y\n", "only one label (a)"),
        (
            "__label__a x\n__label__b\n",
            "bad.txt:2: label \"b\" has no text",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let o = train_cls(&dir, &bad, "bad", &["--max-steps", "2", "--force"]);
        assert_one_line_error(&o, needle);
    }
    let o = train_cls(
        &dir,
        &data,
        "huge",
        &["--hidden", "100000000", "--max-steps", "1"],
    );
    assert_one_line_error(&o, "of memory, but");
}

#[test]
fn export_writes_pytorch_names_and_labels() {
    let dir = TempDir::new().unwrap();
    let data = labelled(&dir, "d.txt", false);
    assert!(
        train_cls(
            &dir,
            &data,
            "m",
            &["--bidirectional", "--cell", "gru", "--max-steps", "3"]
        )
        .status
        .success()
    );
    let o = charrnn()
        .current_dir(dir.path())
        .args(["export", "--dir", "m", "--output", "m.safetensors"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bidirectional gru 2x8 classifier, pool max"),
        "{}",
        stderr(&o)
    );
    let bytes = std::fs::read(dir.path().join("m.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(
        header["weight_ih_l1_reverse"]["shape"],
        serde_json::json!([24, 16])
    );
    assert_eq!(header["head.weight"]["shape"], serde_json::json!([3, 16]));
    let meta = &header["__metadata__"];
    assert_eq!(
        (meta["task"].as_str(), meta["pool"].as_str()),
        (Some("classify"), Some("max"))
    );
    assert_eq!(meta["labels"], "[\"aa\",\"cc\",\"ee\"]");
    // A checkpoint another tool wrote (spaces after the colons) is still told apart.
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/classify/gru.json"
    );
    let o = charrnn()
        .current_dir(dir.path())
        .args([
            "export",
            "--checkpoint",
            fixture,
            "--output",
            "f.safetensors",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// SIGTERM mid-run: the classifier's state is saved, the exit status is the signal's, and
/// the run resumes from there.
#[test]
fn a_signal_saves_and_the_run_resumes() {
    let dir = TempDir::new().unwrap();
    let data = labelled(&dir, "d.txt", false);
    let bin = assert_cmd::cargo::cargo_bin("charrnn");
    let mut child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .arg("train")
        .arg(&data)
        .args(TINY)
        .args([
            "--dir",
            "sig",
            "--epochs",
            "1000000",
            "--eval-every",
            "1000000",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while reader.read_line(&mut seen).unwrap() > 0 && !seen.contains(" parameters, ") {}
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(child.id(), "TERM");
    std::io::Read::read_to_string(&mut reader, &mut seen).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143), "{seen}");
    assert!(
        seen.contains("interrupted at step") && seen.contains("--task classify --resume"),
        "{seen}"
    );
    let step = json(&dir.path().join("sig/latest.json"))["progress"]["step"]
        .as_u64()
        .unwrap();
    assert!(step > 0);
    let o = charrnn()
        .current_dir(dir.path())
        .args([
            "train",
            "--task",
            "classify",
            "--resume",
            "sig/latest.json",
            "--max-steps",
        ])
        .arg((step + 5).to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&dir.path().join("sig/latest.json"))["progress"]["step"],
        step + 5
    );
}
