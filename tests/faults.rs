//! What charrnn guarantees when things go wrong, tried on the real binary: a run directory
//! belongs to one run; only finite weights are saved; a killed run leaves a checkpoint that
//! loads; a full disk ends with one line and loadable files; hostile checkpoints, special
//! files and extreme flags are refused before anything is allocated. (README: "What charrnn
//! guarantees".)

mod common;
use common::*;

/// Checkpoints in `dir` that load with all checks; panics naming the one that does not.
fn assert_loadable(dir: &Path) {
    for f in ["latest.json", "best.json"] {
        let p = dir.join(f);
        if p.exists() {
            charrnn::io::checkpoint::Checkpoint::load(&p)
                .unwrap_or_else(|e| panic!("{} does not load: {e:#}", p.display()));
        }
    }
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

// ---- a run directory belongs to one run ----

#[test]
fn a_new_run_does_not_replace_another_runs_checkpoints() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "3"]).status.success());
    let before = std::fs::read(dir.path().join("ck/latest.json")).unwrap();
    let o = train(&dir, "ck", &["--max-steps", "3", "--hidden", "16"]);
    assert_one_line_error(&o, "already holds another run");
    let err = stderr(&o);
    assert!(
        err.contains("--resume ck/latest.json") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("ck/latest.json")).unwrap(),
        before
    );
    // The refusal comes before the text is read (a large corpus would take seconds): a file
    // that could not be decoded is not even looked at.
    std::fs::write(dir.path().join("bad.txt"), b"abc \xff def").unwrap();
    let o = run(&dir, &["train", "bad.txt", "--dir", "ck"]);
    assert_one_line_error(&o, "already holds another run");
    // Resuming it is fine, and so is replacing it on purpose.
    let o = run(
        &dir,
        &[
            "train",
            "--resume",
            "ck/latest.json",
            "--max-steps",
            "4",
            "--sample-len",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(
        &dir,
        "ck",
        &["--max-steps", "3", "--hidden", "16", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&dir.path().join("ck/latest.json"))["model"]["hidden"],
        16
    );
}

#[test]
fn a_second_trainer_on_the_same_directory_is_refused_at_once() {
    let dir = TempDir::new().unwrap();
    let (mut first, _, _reader) = spawn_training(&dir, "ck", &["--eval-every", "1000000"]);
    let t0 = std::time::Instant::now();
    let o = train(&dir, "ck", &["--max-steps", "3", "--force"]);
    let waited = t0.elapsed();
    kill(first.id(), "KILL");
    first.wait().unwrap();
    assert_one_line_error(&o, "in use by another charrnn run");
    assert!(
        stderr(&o).contains(&format!("pid {}", first.id())),
        "{}",
        stderr(&o)
    );
    assert!(waited.as_secs_f64() < 5.0, "took {waited:?}");
}

// ---- only finite weights are ever saved ----

#[test]
fn learning_rates_that_are_not_f32_are_refused() {
    let dir = TempDir::new().unwrap();
    for (flag, value) in [("--lr", "1e39"), ("--lr", "1e-50"), ("--grad-clip", "1e39")] {
        let o = train(&dir, "ck", &[flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert_one_line_error(&o, flag);
    }
    assert!(!dir.path().join("ck").exists());
    let o = run(&dir, &["sample", "--temperature", "1e-46"]);
    assert_one_line_error(&o, "--temperature");
}

/// A learning rate so large that the update itself overflows: the run stops, says which
/// checkpoint is intact, and every file on disk loads.
#[test]
fn an_update_to_non_finite_weights_rolls_back() {
    let dir = TempDir::new().unwrap();
    let o = train(
        &dir,
        "ck",
        &[
            "--lr",
            "1e30",
            "--grad-clip",
            "0",
            "--eval-every",
            "1",
            "--max-steps",
            "50",
        ],
    );
    assert_one_line_error(&o, "diverged");
    let err = stderr(&o);
    assert!(
        err.contains("was not changed") || err.contains("no checkpoint was written"),
        "{err}"
    );
    assert_loadable(&dir.path().join("ck"));
    assert!(temp_files(&dir.path().join("ck")).is_empty());
}

// ---- kills, signals, full disks ----

/// SIGKILL at random moments of a run that saves at every step: latest.json always loads,
/// and the next run in the directory removes the killed run's temporary file.
#[test]
fn sigkill_at_any_moment_leaves_a_loadable_checkpoint() {
    use rand::RngExt;
    let mut rng = rand::rng();
    for _ in 0..6 {
        let dir = TempDir::new().unwrap();
        let (mut child, _, _reader) =
            spawn_training(&dir, "ck", &["--eval-every", "1", "--hidden", "160"]);
        let ms = rng.random_range(50..600);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        kill(child.id(), "KILL");
        child.wait().unwrap();
        let ck = dir.path().join("ck");
        assert_loadable(&ck);
        if !ck.join("latest.json").exists() {
            continue;
        }
        let step = json(&ck.join("latest.json"))["progress"]["step"]
            .as_u64()
            .unwrap();
        let more = (step + 1).to_string();
        let o = run(
            &dir,
            &[
                "train",
                "--resume",
                "ck/latest.json",
                "--max-steps",
                &more,
                "--sample-len",
                "0",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(temp_files(&ck).is_empty(), "{:?}", temp_files(&ck));
        assert_loadable(&ck);
    }
}

/// A disk that fills up mid-run: one line naming the problem, a non-zero exit, and the
/// checkpoints on disk still load. A small tmpfs when the test may mount one (root),
/// otherwise a file-size limit.
#[test]
fn a_full_disk_ends_with_one_line_and_loadable_files() {
    let dir = TempDir::new().unwrap();
    let ck = dir.path().join("ck");
    std::fs::create_dir(&ck).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=380k", "tmpfs"])
        .arg(&ck)
        .output()
        .is_ok_and(|o| o.status.success());
    let c = corpus(&dir);
    let bin = assert_cmd::cargo::cargo_bin("charrnn");
    // Each checkpoint of this model is 151 KB at first, growing by ~110 bytes per validation
    // (its history): on the 380 KB tmpfs two files fit and a third (the temporary of the
    // next save) does not; under the 160 KB file-size limit a file fails once its history
    // has grown.
    let args = format!(
        "{} train {} --hidden 16 --layers 1 --seq-len 16 --batch-size 4 --eval-every 2 --max-steps 400 --sample-len 0 --out ck",
        bin.display(),
        c.display()
    );
    let script = if mounted {
        args
    } else {
        eprintln!("note: cannot mount a tmpfs here; using a 160 KB file-size limit instead");
        format!("ulimit -f 160; {args}")
    };
    let o = std::process::Command::new("bash")
        .current_dir(dir.path())
        .args(["-c", &script])
        .output()
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        assert_one_line_error(&o, "cannot write");
        assert_loadable(&ck);
        assert!(ck.join("latest.json").exists());
    });
    if mounted {
        let _ = std::process::Command::new("umount").arg(&ck).status();
    }
    result.unwrap();
}

// ---- hostile checkpoints ----

/// A small real checkpoint as JSON, and the directory it is in.
fn good_checkpoint() -> (TempDir, Value) {
    let dir = TempDir::new().unwrap();
    assert!(
        train(&dir, "ck", &["--max-steps", "2", "--hidden", "8"])
            .status
            .success()
    );
    let v = json(&dir.path().join("ck/latest.json"));
    (dir, v)
}

/// Writes `v` as `name` and checks that sample, eval and train --resume each refuse it with
/// one line naming `needle`.
fn refused(dir: &TempDir, name: &str, v: &Value, needle: &str) {
    std::fs::write(dir.path().join(name), v.to_string()).unwrap();
    for args in [
        vec!["sample", "--checkpoint", name, "--len", "5"],
        vec!["eval", "--checkpoint", name],
        vec![
            "train",
            "--resume",
            name,
            "--out",
            "elsewhere",
            "--max-steps",
            "5",
        ],
    ] {
        let o = run(dir, &args);
        assert_eq!(o.status.code(), Some(1), "{name} {args:?}: {}", stderr(&o));
        assert_one_line_error(&o, needle);
    }
}

#[test]
fn hostile_sizes_are_refused_before_allocating() {
    let (dir, good) = good_checkpoint();
    let set = |path: &[&str], x: Value| {
        let mut v = good.clone();
        let mut at = &mut v;
        for p in path {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        *at = x;
        v
    };
    let empty_tensors = |mut v: Value| {
        for t in v["tensors"].as_array_mut().unwrap() {
            t["data"] = Value::Array(vec![]);
        }
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "hidden40.json",
            set(&["model", "hidden"], (1u64 << 40).into()),
            "too many parameters",
        ),
        (
            "layers40.json",
            set(&["model", "layers"], (1u64 << 40).into()),
            "head.weight",
        ),
        (
            "layers7.json",
            set(&["model", "layers"], 10_000_000u64.into()),
            "head.weight",
        ),
        (
            "hidden62.json",
            empty_tensors(set(&["model", "hidden"], (1u64 << 62).into())),
            "too many parameters",
        ),
        (
            "batch55.json",
            set(&["hidden", "batch"], (1u64 << 55).into()),
            "hidden.h",
        ),
        (
            "optim.json",
            set(&["optimizer", "kind"], "sgd".into()),
            "optimizer.kind",
        ),
        (
            "lr.json",
            set(&["training", "lr"], (1e39).into()),
            "training.lr",
        ),
        (
            "negative_lr.json",
            set(&["training", "lr"], (-0.1).into()),
            "training.lr",
        ),
        (
            "beta.json",
            set(&["training", "beta2"], (1.5).into()),
            "training.beta2",
        ),
        (
            "eps.json",
            set(&["training", "eps"], (0.0).into()),
            "training.eps",
        ),
        (
            "clip.json",
            set(&["training", "grad_clip"], (-1.0).into()),
            "training.grad_clip",
        ),
        (
            "valfrac.json",
            set(&["data", "val_fraction"], (2.0).into()),
            "data.val_fraction",
        ),
        (
            "step.json",
            set(&["optimizer", "step"], u64::MAX.into()),
            "optimizer.step",
        ),
        (
            "seq.json",
            set(&["training", "seq_len"], 0.into()),
            "training.seq_len",
        ),
    ];
    for (name, v, needle) in cases {
        refused(&dir, name, &v, needle);
    }
}

/// Names from a file are escaped before they are printed: a checkpoint cannot send
/// terminal escape sequences.
#[test]
fn names_from_a_checkpoint_are_escaped() {
    let (dir, mut v) = good_checkpoint();
    v["tensors"][1]["name"] = "\u{1b}[31mred\u{1b}[0m".into();
    std::fs::write(dir.path().join("esc.json"), v.to_string()).unwrap();
    let o = run(&dir, &["sample", "--checkpoint", "esc.json"]);
    assert_one_line_error(&o, "tensors[1]");
    assert!(!stderr(&o).contains('\u{1b}'), "{:?}", stderr(&o));
}

/// Corpus files named by a checkpoint are read like any corpus: a device or a FIFO is an
/// error, not a read without end.
#[test]
fn special_files_are_refused_everywhere() {
    let (dir, mut v) = good_checkpoint();
    v["data"]["sources"] = Value::Array(vec!["/dev/zero".into()]);
    std::fs::write(dir.path().join("zero.json"), v.to_string()).unwrap();
    let o = run(&dir, &["eval", "--checkpoint", "zero.json"]);
    assert_one_line_error(&o, "is a device");
    let o = run(
        &dir,
        &[
            "train",
            "--resume",
            "zero.json",
            "--out",
            "z",
            "--max-steps",
            "9",
        ],
    );
    assert_one_line_error(&o, "is a device");
    let o = run(&dir, &["sample", "--checkpoint", "/dev/zero"]);
    assert_one_line_error(&o, "is a device");
    let o = run(&dir, &["train", "/dev/zero"]);
    assert_one_line_error(&o, "is a device");

    let fifo = dir.path().join("fifo.txt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let t0 = std::time::Instant::now();
    let o = run(&dir, &["train", "fifo.txt"]);
    assert_one_line_error(&o, "named pipe");
    let o = run(&dir, &["eval", "--dir", "ck", "fifo.txt"]);
    assert_one_line_error(&o, "named pipe");
    assert!(t0.elapsed().as_secs() < 10, "a FIFO blocked");
}

/// In a directory: `.txt` files in any case are read, everything else is named as skipped,
/// and a byte-order mark does not become a character of the vocabulary.
#[test]
fn directories_report_what_they_skip_and_boms_are_dropped() {
    let dir = TempDir::new().unwrap();
    let texts = dir.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    std::fs::write(texts.join("a.TXT"), format!("\u{feff}{}", TEXT.repeat(10))).unwrap();
    std::fs::write(texts.join("b.txt"), TEXT.repeat(10)).unwrap();
    std::fs::write(texts.join("notes.md"), "skip me").unwrap();
    std::process::Command::new("mkfifo")
        .arg(texts.join("pipe.txt"))
        .status()
        .unwrap();
    let o = run(
        &dir,
        &[
            &["train", "texts", "--max-steps", "2", "--out", "ck"][..],
            SMALL,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("read 2 files: a.TXT, b.txt"), "{err}");
    assert!(
        err.contains("notes.md (not .txt)") && err.contains("pipe.txt (not a regular file)"),
        "{err}"
    );
    let vocab = json(&dir.path().join("ck/latest.json"))["vocab"].clone();
    assert!(
        !vocab.as_array().unwrap().iter().any(|c| c == "\u{feff}"),
        "{vocab}"
    );
}

// ---- extreme flags ----

#[test]
fn extreme_flags_get_one_line_errors_or_work() {
    let dir = TempDir::new().unwrap();
    corpus(&dir);
    for (args, needle) in [
        (vec!["--hidden", "4294967296"], "memory"),
        (vec!["--layers", "1099511627776"], "memory"),
        (vec!["--hidden", "100000", "--layers", "100"], "memory"),
        (vec!["--threads", "100000"], "--threads"),
    ] {
        let o = train(&dir, "big", &args);
        assert_one_line_error(&o, needle);
    }
    // These are large but harmless: they must run, not panic.
    let o = train(&dir, "t", &["--time-limit", "1e20", "--max-steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&dir, &["eval", "--dir", "t", "--seq-len", "1000000000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &dir,
        &[
            "train",
            "corpus.txt",
            "--batch-size",
            "4611686018427387904",
            "--seq-len",
            "4",
            "--max-steps",
            "2",
            "--out",
            "b",
            "--sample-len",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &dir,
        &[
            "bench",
            "corpus.txt",
            "--batch-size",
            "4611686018427387904",
            "--seq-len",
            "4",
        ],
    );
    assert_one_line_error(&o, "too short");
}
