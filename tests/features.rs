//! The features around a trained model, on the real binary: the metrics log and loss plots,
//! sampling options (beam search, a prime file, the seed on stderr, separated samples),
//! fine-tuning from another model, a new learning rate on resume, shell completions.

mod common;
use common::*;

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_writes_a_metrics_log_and_a_loss_plot_and_resume_continues_them() {
    let dir = TempDir::new().unwrap();
    let o = train(&dir, "ck", &["--max-steps", "20", "--eval-every", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = dir.path().join("ck/metrics.jsonl");
    let first = records(&log);
    let vals: Vec<&Value> = first.iter().filter(|r| r["kind"] == "val").collect();
    assert_eq!(vals.len(), 4, "a validation every 5 steps");
    assert!(first.iter().filter(|r| r["kind"] == "train").count() >= 10);
    for r in &first {
        for key in [
            "step",
            "epoch",
            "seconds",
            "train_loss",
            "lr",
            "chars_per_s",
        ] {
            assert!(r[key].is_number(), "{key} in {r}");
        }
    }
    assert!(vals.iter().all(|r| r["val_loss"].is_number()));
    let svg = std::fs::read_to_string(dir.path().join("ck/loss.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("ck validation") && svg.contains("<polyline"));

    // A log line written after the last checkpoint (a crash) is dropped on resume, and the
    // log goes on.
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(&serde_json::to_string(&serde_json::json!({"kind": "train", "step": 999, "epoch": 9.0, "seconds": 1.0, "train_loss": 1.0, "lr": 0.1, "chars_per_s": 1.0})).unwrap());
    text.push_str("\n{\"kind\": \"tr");
    std::fs::write(&log, text).unwrap();
    let o = run(
        &dir,
        &[
            "train",
            "--resume",
            "ck/latest.json",
            "--max-steps",
            "30",
            "--sample-len",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let after = records(&log);
    assert!(after.iter().all(|r| r["step"].as_u64().unwrap() <= 30));
    assert_eq!(after[..first.len()], first[..]);
    assert_eq!(after.iter().filter(|r| r["kind"] == "val").count(), 6);

    // Several runs in one plot.
    assert!(
        train(
            &dir,
            "other",
            &["--max-steps", "10", "--eval-every", "5", "--hidden", "16"]
        )
        .status
        .success()
    );
    let o = run(&dir, &["plot", "ck", "other", "--output", "both.svg"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(dir.path().join("both.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4, "two runs x two splits");
    assert!(svg.contains("ck training") && svg.contains("other validation"));
    let o = run(&dir, &["plot", "nowhere", "--output", "x.svg"]);
    assert_one_line_error(&o, "nowhere");
}

#[test]
fn sampling_options() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "40"]).status.success());
    // Without --seed, the seed used is on stderr, and passing it gives the same text.
    let o = run(&dir, &["sample", "--dir", "ck", "--len", "60"]);
    assert!(o.status.success());
    let err = stderr(&o);
    let seed = err
        .split("--seed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed in {err:?}"))
        .trim_end_matches(')')
        .to_string();
    let again = run(
        &dir,
        &["sample", "--dir", "ck", "--len", "60", "--seed", &seed],
    );
    assert_eq!(stdout(&again), stdout(&o));
    // A prime from a file.
    std::fs::write(dir.path().join("prime.txt"), "the lazy ").unwrap();
    let o = run(
        &dir,
        &[
            "sample",
            "--dir",
            "ck",
            "--prime-file",
            "prime.txt",
            "--len",
            "20",
            "--seed",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("the lazy "));
    let o = run(
        &dir,
        &[
            "sample",
            "--dir",
            "ck",
            "--prime-file",
            "prime.txt",
            "--prime",
            "x",
        ],
    );
    assert_one_line_error(&o, "--prime");
    // Several samples in stream mode are separated visibly.
    let o = run(
        &dir,
        &[
            "sample", "--dir", "ck", "--num", "3", "--len", "30", "--seed", "2",
        ],
    );
    let out = stdout(&o);
    for i in 1..=3 {
        assert!(out.contains(&format!("--- sample {i} of 3 ---")), "{out}");
    }
    // Beam search: one continuation, at least as probable as greedy's.
    let beam = run(
        &dir,
        &[
            "sample", "--dir", "ck", "--prime", "the ", "--beam", "4", "--len", "30",
        ],
    );
    assert!(beam.status.success(), "{}", stderr(&beam));
    assert!(stdout(&beam).starts_with("the "));
    let ln_p = |o: &std::process::Output| -> f64 {
        let e = stderr(o);
        e.split("ln p = ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let greedy = run(
        &dir,
        &[
            "sample", "--dir", "ck", "--prime", "the ", "--beam", "1", "--len", "30",
        ],
    );
    assert!(
        ln_p(&beam) >= ln_p(&greedy) - 1e-9,
        "{} {}",
        stderr(&beam),
        stderr(&greedy)
    );
}

/// `--init-from` starts from another model's weights (its loss, not a fresh model's) with a
/// fresh optimizer, and gives characters it has not seen fresh weights.
#[test]
fn fine_tuning_starts_from_the_given_model() {
    let dir = TempDir::new().unwrap();
    assert!(
        train(&dir, "base", &["--max-steps", "150", "--lr", "0.01"])
            .status
            .success()
    );
    let base = json(&dir.path().join("base/best.json"));
    let base_loss = base["progress"]["best_val_loss"].as_f64().unwrap();
    // New text with new characters (digits and 'Z').
    std::fs::write(
        dir.path().join("new.txt"),
        TEXT.repeat(15) + "Zebra 42 jumps.\n",
    )
    .unwrap();
    let o = run(
        &dir,
        &[
            &[
                "train",
                "new.txt",
                "--init-from",
                "base/best.json",
                "--max-steps",
                "1",
                "--eval-every",
                "1",
                "--out",
                "tuned",
            ][..],
            &SMALL[4..],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("starting from the weights of base/best.json"),
        "{err}"
    );
    assert!(
        err.contains("new characters get fresh weights") && err.contains("'Z'"),
        "{err}"
    );
    let tuned = json(&dir.path().join("tuned/latest.json"));
    assert_eq!(tuned["progress"]["step"], 1, "a fresh schedule");
    assert_eq!(tuned["optimizer"]["step"], 1, "a fresh optimizer");
    let vocab: Vec<&str> = tuned["vocab"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(vocab.contains(&"Z") && vocab.contains(&"4"));
    // After one step its validation loss is the trained model's, far below a fresh model's
    // ln V.
    let tuned_loss = tuned["progress"]["history"][0]["val_loss"]
        .as_f64()
        .unwrap();
    let v = vocab.len() as f64 + 2.0;
    assert!(tuned_loss < 0.6 * v.ln(), "{tuned_loss} vs ln V {}", v.ln());
    assert!(tuned_loss < base_loss + 1.0, "{tuned_loss} vs {base_loss}");
    // The model's shape is the checkpoint's.
    let o = run(
        &dir,
        &[
            "train",
            "new.txt",
            "--init-from",
            "base/best.json",
            "--hidden",
            "99",
            "--out",
            "x",
        ],
    );
    assert_one_line_error(&o, "--hidden 99 differs");
    let o = run(
        &dir,
        &[
            "train",
            "new.txt",
            "--init-from",
            "base/best.json",
            "--resume",
            "base/latest.json",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn resume_may_change_the_learning_rate() {
    let dir = TempDir::new().unwrap();
    assert!(
        train(
            &dir,
            "ck",
            &[
                "--max-steps",
                "5",
                "--lr-schedule",
                "epochs",
                "--lr-decay",
                "1"
            ]
        )
        .status
        .success()
    );
    let o = run(
        &dir,
        &[
            "train",
            "--resume",
            "ck/latest.json",
            "--lr",
            "0.0005",
            "--max-steps",
            "8",
            "--sample-len",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = json(&dir.path().join("ck/latest.json"));
    assert!((ck["training"]["lr"].as_f64().unwrap() - 0.0005).abs() < 1e-9);
    let log = records(&dir.path().join("ck/metrics.jsonl"));
    let last = log.iter().rev().find(|r| r["kind"] == "train").unwrap();
    assert!(
        (last["lr"].as_f64().unwrap() - 0.0005).abs() < 1e-9,
        "{last}"
    );
}

#[test]
fn completions_print_for_each_shell() {
    for (shell, needle) in [
        ("bash", "_charrnn()"),
        ("zsh", "#compdef charrnn"),
        ("fish", "complete -c charrnn"),
    ] {
        let o = charrnn().args(["completions", shell]).output().unwrap();
        assert!(o.status.success());
        let out = stdout(&o);
        assert!(out.contains(needle), "{shell}");
        assert!(
            out.contains("init-from") && out.contains("beam"),
            "{shell} completes the flags"
        );
    }
}

/// Every subcommand's help has an example.
#[test]
fn every_subcommand_has_an_example() {
    for cmd in [
        "train",
        "sample",
        "eval",
        "score",
        "viz",
        "export",
        "plot",
        "bench",
        "completions",
    ] {
        let o = charrnn().args([cmd, "--help"]).output().unwrap();
        assert!(o.status.success());
        let out = stdout(&o);
        assert!(
            out.contains("Example") && out.contains("charrnn "),
            "{cmd} --help has no example"
        );
    }
}

/// A time-limited run ends where the machine's speed puts it; it prints the same recipe as
/// flags with the steps it made, and another --dir (its own holds the run: a command naming
/// it would be refused). Pasted as printed, the command works, and gives the same model
/// twice.
#[test]
fn a_time_limited_run_prints_a_command_that_repeats_its_recipe() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let o = charrnn()
        .current_dir(dir.path())
        .arg("train")
        .arg(&c)
        .args(["--time-limit", "1", "--dir", "timed", "--sample-len", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("reproducible on any machine"))
        .unwrap_or_else(|| panic!("no repeat command in: {err}"));
    let command = line.split_once("): charrnn ").unwrap().1;
    assert!(!command.contains("--time-limit"), "{command}");
    let words: Vec<&str> = command.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "--dir").unwrap();
    assert_eq!(words[at + 1], "timed-repeat", "{command}");
    assert_eq!(
        words.iter().filter(|w| **w == "--dir").count(),
        1,
        "{command}"
    );
    let timed = json(&dir.path().join("timed/latest.json"));
    // Pasted as printed.
    let o = run(&dir, &words);
    assert!(o.status.success(), "{command}: {}", stderr(&o));
    let pasted = json(&dir.path().join("timed-repeat/latest.json"));
    // And once more in another directory: the same bits.
    let mut again = words.clone();
    again[at + 1] = "again";
    let o = run(&dir, &again);
    assert!(o.status.success(), "{command}: {}", stderr(&o));
    let again = json(&dir.path().join("again/latest.json"));
    assert_eq!(pasted["model"], timed["model"], "the recipe's model");
    assert_eq!(pasted["progress"]["step"], timed["progress"]["step"]);
    // A second of training is a short budget: the recipe took a smaller step than 64 x 100,
    // said so, and the command repeats it.
    let step = (&timed["training"]["batch"], &timed["training"]["seq_len"]);
    assert_ne!(
        (step.0.as_u64(), step.1.as_u64()),
        (Some(64), Some(100)),
        "{err}"
    );
    assert!(
        err.contains(&format!("steps of {} x {} (chosen", step.0, step.1)),
        "{err}"
    );
    for key in [
        "lr",
        "lr_tail",
        "lr_schedule",
        "batch",
        "seq_len",
        "threads",
    ] {
        assert_eq!(pasted["training"][key], timed["training"][key], "{key}");
    }
    for key in ["tensors", "optimizer", "hidden"] {
        assert_eq!(pasted[key], again[key], "the repeat is reproducible: {key}");
    }
    assert_ne!(pasted["run"], again["run"], "two runs, two ids");
}

/// A run whose length charrnn chose stops once the model plainly over-fits (random text:
/// nothing to learn but the training characters themselves); a number of steps asked for
/// is trained in full.
#[test]
fn an_overfitting_run_stops_early_unless_its_length_was_asked_for() {
    let dir = TempDir::new().unwrap();
    // A fixed pseudo-random text over eight letters.
    let mut x: u64 = 1;
    let text: String = (0..4000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + (x >> 61) as u8) as char
        })
        .collect();
    std::fs::write(dir.path().join("rand.txt"), text).unwrap();
    let flags = [
        "--hidden",
        "64",
        "--seq-len",
        "16",
        "--batch-size",
        "4",
        "--eval-every",
        "20",
        "--sample-len",
        "0",
    ];
    let timed = run(
        &dir,
        &[
            &["train", "rand.txt", "--time-limit", "60", "--dir", "timed"][..],
            &flags,
        ]
        .concat(),
    );
    assert!(timed.status.success(), "{}", stderr(&timed));
    assert!(
        stderr(&timed).contains("stopped early"),
        "{}",
        stderr(&timed)
    );
    let ck = json(&dir.path().join("timed/latest.json"));
    let vals: Vec<f64> = ck["progress"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["val_loss"].as_f64())
        .collect();
    let best = vals.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        vals[vals.len() - 3..].iter().all(|v| *v > best * 1.05),
        "{vals:?}"
    );
    let steps = ck["progress"]["step"].as_u64().unwrap();
    let asked = (steps + 200).to_string();
    let full = run(
        &dir,
        &[
            &["train", "rand.txt", "--max-steps", &asked, "--dir", "full"][..],
            &flags,
        ]
        .concat(),
    );
    assert!(full.status.success(), "{}", stderr(&full));
    assert!(!stderr(&full).contains("stopped early"));
    assert_eq!(
        json(&dir.path().join("full/latest.json"))["progress"]["step"].as_u64(),
        Some(steps + 200)
    );
}
