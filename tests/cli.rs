//! End-to-end tests of the `charrnn` binary in temporary directories: train → sample → eval,
//! determinism, exact resume, Ctrl-C, divergence, and one-line errors for bad input.

mod common;
use common::*;

#[test]
fn train_sample_eval_round_trip() {
    let dir = TempDir::new().unwrap();
    let o = train(&dir, "ck", &["--max-steps", "30", "--sample-len", "50"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("--- sample from"),
        "train prints a sample: {}",
        stdout(&o)
    );
    for f in ["latest.json", "best.json"] {
        let ck = json(&dir.path().join("ck").join(f));
        assert_eq!(ck["format"], "charrnn-checkpoint");
        assert_eq!(ck["progress"]["step"], 30);
    }

    let o = run(
        &dir,
        &[
            "sample", "--dir", "ck", "--len", "80", "--seed", "3", "--prime", "the ",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("the "), "{text}");
    assert!(text.chars().count() > 4);
    assert!(text.chars().all(|c| TEXT.contains(c)), "{text}");

    let o = run(&dir, &["eval", "--dir", "ck", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let loss = r["loss_nats_per_char"].as_f64().unwrap();
    assert!(loss > 0.0 && loss < (30f64).ln(), "{r}");
    let bits = r["bits_per_char"].as_f64().unwrap();
    assert!((bits - loss / std::f64::consts::LN_2).abs() < 1e-9);
    assert!((r["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9);
    // 10% of the 1,600 chars held out: 160 chars and the <end> after them are predicted
    assert_eq!(r["chars_scored"], 161);
    // eval's validation loss equals the one recorded at the end of training
    let best = json(&dir.path().join("ck/best.json"));
    let recorded = best["progress"]["best_val_loss"].as_f64().unwrap();
    assert!((recorded - loss).abs() < 1e-6, "{recorded} vs {loss}");

    // and on an explicit file, in plain text
    let o = run(&dir, &["eval", "--dir", "ck", "corpus.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("bits/char") && stdout(&o).contains("perplexity"));
}

#[test]
fn same_seed_same_sample() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "10"]).status.success());
    let sample = |seed: &str| {
        let o = run(
            &dir,
            &[
                "sample",
                "--dir",
                "ck",
                "--len",
                "200",
                "--temperature",
                "1.5",
                "--seed",
                seed,
            ],
        );
        assert!(o.status.success());
        stdout(&o)
    };
    assert_eq!(sample("7"), sample("7"));
    assert_ne!(sample("7"), sample("8"));
}

#[test]
fn same_seed_same_training() {
    let dir = TempDir::new().unwrap();
    assert!(
        train(&dir, "a", &["--max-steps", "12", "--dropout", "0.2"])
            .status
            .success()
    );
    assert!(
        train(&dir, "b", &["--max-steps", "12", "--dropout", "0.2"])
            .status
            .success()
    );
    let (a, b) = (
        json(&dir.path().join("a/latest.json")),
        json(&dir.path().join("b/latest.json")),
    );
    assert_eq!(a["tensors"], b["tensors"]);
}

/// N steps in one run and N/2 + N/2 with --resume give bit-identical weights, optimizer
/// moments and carried hidden state (floats are stored exactly, so JSON equality is bit
/// equality), across an epoch boundary and with dropout and weight drop on (whose masks
/// depend on the seed and the step alone). The per-epoch schedule does
/// not depend on the run's length, so the first half can be a run of its own.
#[test]
fn resume_is_exact() {
    let dir = TempDir::new().unwrap();
    let extra = [
        "--dropout",
        "0.1",
        "--weight-drop",
        "0.2",
        "--cell",
        "gru",
        "--lr-schedule",
        "epochs",
    ];
    let full = train(&dir, "full", &[&["--max-steps", "40"][..], &extra].concat());
    assert!(full.status.success(), "{}", stderr(&full));
    assert!(
        train(&dir, "half", &[&["--max-steps", "20"][..], &extra].concat())
            .status
            .success()
    );
    let o = run(
        &dir,
        &[
            "train",
            "--resume",
            "half/latest.json",
            "--max-steps",
            "40",
            "--out",
            "half",
            "--sample-len",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming at step 20"));
    let (a, b) = (
        json(&dir.path().join("full/latest.json")),
        json(&dir.path().join("half/latest.json")),
    );
    assert_eq!(a["progress"]["step"], 40);
    assert!(
        a["progress"]["epoch"].as_u64().unwrap() >= 1,
        "the run crosses an epoch boundary"
    );
    for key in ["tensors", "optimizer", "hidden"] {
        assert_eq!(a[key], b[key], "{key} differs after resume");
    }
}

/// The default schedule is fitted to the run's length (--max-steps here): a run interrupted
/// by Ctrl-C at whatever step the signal lands on and resumed with the same limit ends with
/// the bits of the run that was never interrupted.
#[test]
fn an_interrupted_run_resumes_exactly_on_the_fitted_schedule() {
    let dir = TempDir::new().unwrap();
    let extra = [
        "--max-steps",
        "3000",
        "--eval-every",
        "1000000",
        "--dropout",
        "0.1",
        "--cell",
        "gru",
        "--seed",
        "5",
        "--threads",
        "1",
    ];
    let (mut child, _, mut reader) = spawn_training(&dir, "cut", &extra);
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(child.id(), "INT");
    std::io::Read::read_to_string(&mut reader, &mut String::new()).unwrap();
    child.wait().unwrap();
    let cut_at = json(&dir.path().join("cut/latest.json"))["progress"]["step"]
        .as_u64()
        .unwrap();
    assert!(cut_at > 0 && cut_at < 3000, "interrupted at step {cut_at}");
    let resumed = run(
        &dir,
        &[
            "train",
            "--resume",
            "cut/latest.json",
            "--max-steps",
            "3000",
            "--out",
            "cut",
        ],
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let (mut whole, _, mut reader) = spawn_training(&dir, "whole", &extra);
    std::io::Read::read_to_string(&mut reader, &mut String::new()).unwrap();
    assert!(whole.wait().unwrap().success());
    let (a, b) = (
        json(&dir.path().join("whole/latest.json")),
        json(&dir.path().join("cut/latest.json")),
    );
    assert_eq!(a["progress"]["step"], 3000);
    assert_eq!(a["training"]["lr_schedule"], "cosine");
    for key in ["tensors", "optimizer", "hidden"] {
        assert_eq!(
            a[key], b[key],
            "{key} differs after resuming at step {cut_at}"
        );
    }
}

#[test]
fn lines_mode_samples_one_sequence_per_line() {
    let dir = TempDir::new().unwrap();
    let names = dir.path().join("names.txt");
    std::fs::write(
        &names,
        "anna\nbob\ncarla\ndave\nerik\nfrida\ngus\nhanna\n".repeat(30),
    )
    .unwrap();
    let o = charrnn()
        .current_dir(dir.path())
        .args([
            "train",
            "names.txt",
            "--mode",
            "lines",
            "--out",
            "ck",
            "--max-steps",
            "150",
        ])
        .args([
            "--hidden",
            "32",
            "--layers",
            "1",
            "--seq-len",
            "16",
            "--batch-size",
            "8",
            "--lr",
            "0.01",
            "--sample-len",
            "0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &dir,
        &[
            "sample",
            "--dir",
            "ck",
            "--num",
            "5",
            "--seed",
            "1",
            "--temperature",
            "0.5",
        ],
    );
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    // a model that learned where a name ends stops long before the 500-char limit
    assert!(
        lines.iter().all(|l| !l.is_empty() && l.len() < 20),
        "{text}"
    );
}

/// SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, Slurm) and SIGHUP (a closed terminal) each
/// finish the current step, save latest.json and exit with 128 + the signal's number.
#[test]
fn signals_save_latest_and_exit_with_their_status() {
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let dir = TempDir::new().unwrap();
        let (mut child, seen, mut reader) =
            spawn_training(&dir, "ck", &["--eval-every", "1000000"]);
        // Training has started (the header is out); let it take a few steps.
        std::thread::sleep(std::time::Duration::from_millis(800));
        kill(child.id(), signal);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let err = seen + &rest;
        assert_eq!(status.code(), Some(code), "SIG{signal}: {err}");
        assert!(err.contains("interrupted at step"), "{err}");
        assert!(err.contains("resume with"), "{err}");
        let ck = json(&dir.path().join("ck/latest.json"));
        assert!(ck["progress"]["step"].as_u64().unwrap() > 0);
    }
}

#[test]
fn divergence_stops_and_keeps_last_good_checkpoint() {
    let dir = TempDir::new().unwrap();
    let o = train(
        &dir,
        "ck",
        &[
            "--cell",
            "rnn",
            "--lr",
            "1000",
            "--grad-clip",
            "0",
            "--eval-every",
            "1",
            "--max-steps",
            "50",
        ],
    );
    assert_one_line_error(&o, "diverged");
    assert!(
        stderr(&o).contains("last good checkpoint"),
        "{}",
        stderr(&o)
    );
    let ck = json(&dir.path().join("ck/latest.json"));
    let tensors = ck["tensors"].as_array().unwrap();
    assert!(
        tensors
            .iter()
            .all(|t| t["data"].as_array().unwrap().iter().all(|x| x.is_f64()))
    );
}

#[test]
fn sample_streams_into_a_closed_pipe_quietly() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "5"]).status.success());
    let bin = assert_cmd::cargo::cargo_bin("charrnn");
    let o = std::process::Command::new("bash")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "{} sample --dir ck --num 200 --len 500 --seed 1 | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}",
            bin.display()
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "0", "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

// ---- bad input: one line, non-zero exit, never a panic ----

#[test]
fn missing_corpus_file() {
    let o = charrnn()
        .args(["train", "/nonexistent/corpus.txt"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "/nonexistent/corpus.txt");
}

#[test]
fn directory_without_text_files() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("x.bin"), b"data").unwrap();
    let o = charrnn().arg("train").arg(dir.path()).output().unwrap();
    assert_one_line_error(&o, "no .txt files");
}

#[test]
fn empty_corpus() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("e.txt"), "").unwrap();
    let o = run(&dir, &["train", "e.txt"]);
    assert_one_line_error(&o, "empty");
}

#[test]
fn corpus_shorter_than_a_window() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("s.txt"), "short text").unwrap();
    let o = run(&dir, &["train", "s.txt", "--seq-len", "50"]);
    assert_one_line_error(&o, "too short");
}

#[test]
fn invalid_utf8_names_the_offset() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("b.txt"), b"hello \xc3\x28 world").unwrap();
    let o = run(&dir, &["train", "b.txt"]);
    assert_one_line_error(&o, "offset 6");
}

#[test]
fn unwritable_output_directory() {
    let dir = TempDir::new().unwrap();
    corpus(&dir);
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    let o = run(
        &dir,
        &[
            "train",
            "corpus.txt",
            "--out",
            "afile/sub",
            "--max-steps",
            "1",
        ],
    );
    assert_one_line_error(&o, "cannot create output directory afile/sub");
}

#[test]
fn bad_numeric_flags() {
    let dir = TempDir::new().unwrap();
    corpus(&dir);
    let cases: &[(&[&str], &str)] = &[
        (&["train", "corpus.txt", "--hidden", "0"], "--hidden"),
        (&["train", "corpus.txt", "--layers", "-1"], "--layers"),
        (&["train", "corpus.txt", "--seq-len", "0"], "--seq-len"),
        (
            &["train", "corpus.txt", "--batch-size", "0"],
            "--batch-size",
        ),
        (&["train", "corpus.txt", "--lr", "0"], "--lr"),
        (&["train", "corpus.txt", "--lr", "-0.1"], "--lr"),
        (&["train", "corpus.txt", "--dropout", "1"], "--dropout"),
        (&["train", "corpus.txt", "--dropout", "-0.5"], "--dropout"),
        (&["sample", "--temperature", "0"], "--temperature"),
        (&["sample", "--temperature", "-1"], "--temperature"),
        (&["sample", "--top-p", "0"], "--top-p"),
        (&["sample", "--top-p", "1.5"], "--top-p"),
    ];
    for (args, flag) in cases {
        let o = charrnn()
            .current_dir(dir.path())
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_one_line_error(&o, flag);
    }
}

#[test]
fn resume_rejects_fixed_flags() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "2"]).status.success());
    let o = run(
        &dir,
        &["train", "--resume", "ck/latest.json", "--hidden", "64"],
    );
    assert_one_line_error(&o, "--hidden is fixed by the checkpoint");
}

#[test]
fn resume_on_a_changed_corpus() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "20"]).status.success());
    std::fs::write(dir.path().join("short.txt"), TEXT.repeat(5)).unwrap();
    let o = run(
        &dir,
        &[
            "train",
            "short.txt",
            "--resume",
            "ck/latest.json",
            "--max-steps",
            "30",
        ],
    );
    assert_one_line_error(&o, "the corpus has changed");
}

#[test]
fn bad_checkpoints() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "2"]).status.success());
    let good = std::fs::read_to_string(dir.path().join("ck/latest.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&good).unwrap();
    doc["tensors"][0]["shape"][1] = Value::from(999);
    let mut v9: Value = serde_json::from_str(&good).unwrap();
    v9["version"] = Value::from(9);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated.json",
            good[..good.len() / 3].to_string(),
            "truncated",
        ),
        ("garbage.json", "this is not json".into(), "not valid JSON"),
        ("version.json", v9.to_string(), "version 9"),
        ("shape.json", doc.to_string(), "weight_ih_l0"),
    ];
    for (name, text, needle) in cases {
        std::fs::write(dir.path().join(name), text).unwrap();
        for cmd in ["sample", "eval"] {
            let o = run(&dir, &[cmd, "--checkpoint", name]);
            assert_one_line_error(&o, needle);
        }
    }
    let o = run(&dir, &["sample", "--checkpoint", "missing.json"]);
    assert_one_line_error(&o, "missing.json");
    let o = run(&dir, &["sample", "--dir", "nowhere"]);
    assert_one_line_error(&o, "no checkpoint in nowhere");
}

#[test]
fn unknown_prime_character() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "2"]).status.success());
    let o = run(&dir, &["sample", "--dir", "ck", "--prime", "the Zebra"]);
    assert_one_line_error(&o, "'Z'");
}

/// `eval`'s number does not depend on how many streams score the text: each stream first
/// reads the text before its part. Default (32 streams) and one stream agree within 0.5%
/// for every cell; without the warm-up they are further apart.
#[test]
fn evaluation_agrees_with_scoring_the_text_as_one_stream() {
    let dir = TempDir::new().unwrap();
    let text: String = (0..60)
        .map(|i| {
            format!(
                "line {i}: the {} fox jumps over {} dogs.\n",
                ["quick", "slow", "red"][i % 3],
                i % 7
            )
        })
        .collect();
    std::fs::write(dir.path().join("short.txt"), &text).unwrap();
    let loss = |ck: &str, extra: &[&str]| -> f64 {
        let o = run(
            &dir,
            &[&["eval", "--dir", ck, "short.txt", "--json"][..], extra].concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["loss_nats_per_char"].as_f64().unwrap()
    };
    for cell in ["rnn", "lstm", "gru"] {
        let o = run(
            &dir,
            &[
                "train",
                "short.txt",
                "--cell",
                cell,
                "--hidden",
                "48",
                "--seq-len",
                "32",
                "--batch-size",
                "8",
                "--lr",
                "0.01",
                "--max-steps",
                "150",
                "--sample-len",
                "0",
                "--out",
                cell,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let one = loss(cell, &["--streams", "1"]);
        let many = loss(cell, &[]);
        let cold = loss(cell, &["--warmup", "0"]);
        let rel = |x: f64| (x - one).abs() / one;
        assert!(rel(many) < 0.005, "{cell}: 32 streams {many} vs one {one}");
        assert!(
            rel(cold) > rel(many),
            "{cell}: cold {cold}, warm {many}, one {one}"
        );
    }
}

/// The AVX2 and portable code paths, forced with CHARRNN_ISA on any machine, train the same
/// model as the widest path to rounding.
#[test]
fn narrower_instruction_sets_train_the_same_model() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let mut losses = Vec::new();
    for isa in ["avx512", "avx2", "portable"] {
        let o = charrnn()
            .current_dir(dir.path())
            .env("CHARRNN_ISA", isa)
            .arg("train")
            .arg(&c)
            .args(SMALL)
            .args(["--max-steps", "12", "--out", isa])
            .output()
            .unwrap();
        assert!(o.status.success(), "{isa}: {}", stderr(&o));
        // The cap took effect (or the CPU is narrower than asked for).
        let used = ["avx512", "avx2", "portable"]
            .into_iter()
            .find(|k| stderr(&o).contains(&format!("({k} kernels)")))
            .unwrap_or_else(|| panic!("no kernel level in: {}", stderr(&o)));
        let rank = |k: &str| ["portable", "avx2", "avx512"].iter().position(|x| *x == k);
        assert!(rank(used) <= rank(isa), "asked for {isa}, got {used}");
        if isa == "portable" {
            assert_eq!(used, "portable");
        }
        let ck = json(&dir.path().join(isa).join("latest.json"));
        losses.push(ck["progress"]["best_val_loss"].as_f64().unwrap());
    }
    for l in &losses[1..] {
        assert!((l - losses[0]).abs() < 1e-3 * losses[0], "{losses:?}");
    }
}

/// Started by `mpirun` (which says so in the environment) but built without the `mpi`
/// feature: one line saying how to build it, instead of several runs fighting over one
/// directory.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_launch_by_mpirun_without_the_feature_says_how_to_build() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let o = charrnn()
        .current_dir(dir.path())
        .env("OMPI_COMM_WORLD_SIZE", "4")
        .args(["train", c.to_str().unwrap(), "--max-steps", "1"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "--features mpi");
    assert!(!dir.path().join("checkpoints").exists());
}
