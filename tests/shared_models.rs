//! Model files that can be shared (issue 17, item 21): an exported safetensors file is a
//! model for sample, eval, score and viz, with the training mode in its metadata;
//! `--keep-every` keeps copies of the checkpoint; `--val-file` validates on a file of the
//! user's own, recorded for resume and eval. On the real binary.

mod common;
use common::*;

fn exported(dir: &TempDir, run: &str, extra: &[&str]) -> PathBuf {
    let o = train(dir, run, &[&["--max-steps", "20"][..], extra].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = format!("{run}.safetensors");
    let o = run_in(dir, &["export", "--dir", run, "-o", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    dir.path().join(out)
}

fn run_in(dir: &TempDir, args: &[&str]) -> std::process::Output {
    run(dir, args)
}

/// The metadata of a safetensors file (its JSON header's `__metadata__`).
fn metadata(path: &Path) -> Value {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    header["__metadata__"].clone()
}

/// sample, eval, score and viz give the same results from the export as from the
/// checkpoint it was made from.
#[test]
fn an_exported_model_samples_evaluates_scores_and_shows_as_its_checkpoint() {
    let dir = TempDir::new().unwrap();
    let model = exported(&dir, "ck", &[]);
    assert_eq!(metadata(&model)["mode"], "stream");
    let with = |m: &str, args: &[&str]| {
        let o = run_in(&dir, &[args, &["--checkpoint", m]].concat());
        assert!(o.status.success(), "{args:?} {m}: {}", stderr(&o));
        o
    };
    let m = "ck.safetensors";
    let sample = [
        "sample",
        "--len",
        "80",
        "--seed",
        "3",
        "--temperature",
        "1.2",
    ];
    assert_eq!(
        stdout(&with(m, &sample)),
        stdout(&with("ck/best.json", &sample))
    );
    let beam = ["sample", "--prime", "the", "--beam", "3", "--len", "20"];
    assert_eq!(
        stdout(&with(m, &beam)),
        stdout(&with("ck/best.json", &beam))
    );
    let eval = ["eval", "corpus.txt", "--json"];
    let loss = |o: &std::process::Output| {
        serde_json::from_str::<Value>(&stdout(o)).unwrap()["loss_nats_per_char"].as_f64()
    };
    assert_eq!(loss(&with(m, &eval)), loss(&with("ck/best.json", &eval)));
    let score = ["score", "corpus.txt"];
    assert_eq!(
        stdout(&with(m, &score)),
        stdout(&with("ck/best.json", &score))
    );
    for (i, c) in [m, "ck/best.json"].iter().enumerate() {
        let out = format!("page{i}.html");
        with(c, &["viz", "corpus.txt", "--max-chars", "60", "-o", &out]);
    }
    let page = |i: usize| {
        std::fs::read_to_string(dir.path().join(format!("page{i}.html")))
            .unwrap()
            .replace("ck.safetensors", "ck/best.json")
    };
    assert_eq!(page(0), page(1));
    // Without a file, eval needs the checkpoint's record of its text: said so.
    let o = run_in(&dir, &["eval", "--checkpoint", m]);
    assert_one_line_error(
        &o,
        "is an exported model, without a record of its training text",
    );
}

/// The export records the training mode, and a lines model read from it samples lines.
#[test]
fn an_export_records_the_training_mode() {
    let dir = TempDir::new().unwrap();
    let model = exported(&dir, "names", &["--mode", "lines"]);
    assert_eq!(metadata(&model)["mode"], "lines");
    let o = run_in(
        &dir,
        &[
            "sample",
            "--checkpoint",
            "names.safetensors",
            "--num",
            "4",
            "--seed",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("--- sample"), "one line per sample: {out}");
    assert_eq!(out.lines().count(), 4, "{out}");
}

/// A damaged or hostile export is one line naming the problem, before anything of the
/// size it claims is allocated.
#[test]
fn a_damaged_export_is_refused_in_one_line() {
    let dir = TempDir::new().unwrap();
    let model = exported(&dir, "ck", &[]);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(
        dir.path().join("cut.safetensors"),
        &bytes[..bytes.len() - 100],
    )
    .unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let big = header.replace("\"hidden\":\"24\"", "\"hidden\":\"999999\"");
    assert_ne!(big, header);
    let mut hostile = (big.len() as u64).to_le_bytes().to_vec();
    hostile.extend_from_slice(big.as_bytes());
    hostile.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(dir.path().join("big.safetensors"), hostile).unwrap();
    for (file, needle) in [
        (
            "cut.safetensors",
            "neither a checkpoint nor a safetensors file",
        ),
        ("big.safetensors", "the model needs F32"),
    ] {
        for cmd in [
            &["sample"][..],
            &["eval", "corpus.txt"],
            &["score", "corpus.txt"],
        ] {
            let o = run_in(&dir, &[cmd, &["--checkpoint", file]].concat());
            assert_one_line_error(&o, needle);
        }
    }
}

/// `--keep-every 2`: a copy of the checkpoint at every second validation, named by its
/// step, never replaced; a resumed run goes on counting.
#[test]
fn keep_every_keeps_copies_named_by_step() {
    let dir = TempDir::new().unwrap();
    let o = train(&dir, "ck", &["--max-steps", "30", "--keep-every", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = dir.path().join("ck");
    let mut kept: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-10.json", "step-20.json", "step-30.json"]);
    let copy = json(&d.join("step-30.json"));
    assert_eq!(copy, json(&d.join("latest.json")));
    assert_eq!(json(&d.join("step-10.json"))["progress"]["step"], 10);
    // A file of that name is never replaced.
    std::fs::write(d.join("step-40.json"), "mine").unwrap();
    let o = run_in(
        &dir,
        &[
            "train",
            "--resume",
            "ck/latest.json",
            "--max-steps",
            "50",
            "--keep-every",
            "2",
            "--sample-len",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(d.join("step-40.json")).unwrap(), b"mine");
    assert_eq!(json(&d.join("step-50.json"))["progress"]["step"], 50);
    // A kept copy is an earlier state of the run: resumed in its directory, refused.
    let o = run_in(
        &dir,
        &["train", "--resume", "ck/step-20.json", "--max-steps", "60"],
    );
    assert_one_line_error(&o, "an earlier state of that run (step 20)");
}

/// `--val-file`: the whole corpus trains, validation is on the file (recorded in the
/// checkpoint, used again on resume and by eval); a character the training text lacks is
/// named with its line and column.
#[test]
fn val_file_validates_on_a_file_of_ones_own() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("val.txt"), "the fox sleeps over the dog.\n").unwrap();
    let o = train(&dir, "ck", &["--max-steps", "10", "--val-file", "val.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("29 validation chars of /"),
        "{}",
        stderr(&o)
    );
    let ck = json(&dir.path().join("ck/latest.json"));
    assert!(
        ck["data"]["val_file"]
            .as_str()
            .unwrap()
            .ends_with("val.txt")
    );
    assert_eq!(ck["data"]["val_fraction"], 0.0);
    assert_eq!(ck["data"]["train_chars"], TEXT.chars().count() * 20);
    // eval without a file scores the validation file, with the loss training measured.
    let o = run_in(&dir, &["eval", "--checkpoint", "ck/latest.json", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(r["text"].as_str().unwrap().ends_with("val.txt"));
    let measured = ck["progress"]["history"][1]["val_loss"].as_f64().unwrap();
    assert!((r["loss_nats_per_char"].as_f64().unwrap() - measured).abs() < 1e-5);
    // Resume validates on the same file.
    let o = run_in(
        &dir,
        &[
            "train",
            "--resume",
            "ck/latest.json",
            "--max-steps",
            "15",
            "--sample-len",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("validation chars of /"),
        "{}",
        stderr(&o)
    );
    let o = run_in(
        &dir,
        &[
            "train",
            "--resume",
            "ck/latest.json",
            "--val-file",
            "val.txt",
        ],
    );
    assert_one_line_error(&o, "--val-file is fixed by the checkpoint");
    // A run whose validation file is gone says which file it needs.
    std::fs::rename(dir.path().join("val.txt"), dir.path().join("val.bak")).unwrap();
    let o = run_in(
        &dir,
        &["train", "--resume", "ck/latest.json", "--max-steps", "20"],
    );
    assert_one_line_error(&o, "the run validates on /");
    assert!(
        stderr(&o).contains("val.txt (its --val-file)"),
        "{}",
        stderr(&o)
    );
    // Unknown characters, and a conflicting flag.
    std::fs::write(dir.path().join("odd.txt"), "the fox\nZebra & fox\n").unwrap();
    let o = train(&dir, "odd", &["--max-steps", "5", "--val-file", "odd.txt"]);
    assert_one_line_error(
        &o,
        "has 2 characters the training text does not: 'Z' (line 2, column 1), '&' (line 2, column 7)",
    );
    assert!(!dir.path().join("odd/latest.json").exists());
    let o = train(
        &dir,
        "x",
        &["--val-file", "val.txt", "--val-fraction", "0.2"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
