//! Outputs never replace what they read (issue 17, items 2, 11, 17, 23): export, plot and
//! viz refuse a checkpoint, their input and a directory a trainer holds, even with
//! --force; other existing files only with --force; `-o -` is standard output. Plots label
//! runs apart and draw one kind of training record. On the real binary.

mod common;
use common::*;

fn trained() -> TempDir {
    let dir = TempDir::new().unwrap();
    let o = train(&dir, "runE", &["--max-steps", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    dir
}

/// Issue 17, item 2: `export --dir runE -o runE/best.json` replaced the checkpoint it read
/// (sample then failed with "not valid JSON"), `plot runE -o runE/latest.json` another.
#[test]
fn export_plot_and_viz_never_replace_a_checkpoint_or_their_input() {
    let dir = trained();
    let e = dir.path().join("runE");
    let keep: Vec<(PathBuf, Vec<u8>)> = ["best.json", "latest.json", "metrics.jsonl", "corpus.txt"]
        .iter()
        .map(|f| {
            let p = if *f == "corpus.txt" {
                dir.path().join(f)
            } else {
                e.join(f)
            };
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    for force in [false, true] {
        let f: &[&str] = if force { &["--force"] } else { &[] };
        let cases: [(&[&str], &str); 6] = [
            (
                &["export", "--dir", "runE", "-o", "runE/best.json"],
                "this command reads",
            ),
            (
                &["export", "--dir", "runE", "-o", "runE/latest.json"],
                "is a charrnn checkpoint",
            ),
            (
                &["plot", "runE", "-o", "runE/latest.json"],
                "is a charrnn checkpoint",
            ),
            (
                &["plot", "runE", "-o", "runE/metrics.jsonl"],
                "this command reads",
            ),
            (
                &["viz", "corpus.txt", "--dir", "runE", "-o", "corpus.txt"],
                "this command reads",
            ),
            (
                &[
                    "viz",
                    "corpus.txt",
                    "--dir",
                    "runE",
                    "-o",
                    "runE/./best.json",
                ],
                "this command reads",
            ),
        ];
        for (args, needle) in cases {
            let o = run(&dir, &[args, f].concat());
            assert_one_line_error(&o, needle);
        }
    }
    for (p, b) in &keep {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} changed", p.display());
    }
    let o = run(
        &dir,
        &["sample", "--dir", "runE", "--len", "5", "--seed", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// An existing file is replaced only with --force; a new one is written whole.
#[test]
fn an_existing_output_is_replaced_only_with_force() {
    let dir = trained();
    for (cmd, out) in [
        (&["export", "--dir", "runE", "-o"][..], "model.safetensors"),
        (&["plot", "runE", "-o"], "loss-copy.svg"),
        (
            &[
                "viz",
                "corpus.txt",
                "--dir",
                "runE",
                "--max-chars",
                "50",
                "-o",
            ],
            "page.html",
        ),
    ] {
        std::fs::write(dir.path().join(out), "mine").unwrap();
        let o = run(&dir, &[cmd, &[out]].concat());
        assert_one_line_error(&o, "already exists; pass --force");
        assert_eq!(std::fs::read(dir.path().join(out)).unwrap(), b"mine");
        let o = run(&dir, &[cmd, &[out, "--force"]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(std::fs::metadata(dir.path().join(out)).unwrap().len() > 4);
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp")
            })
            .count();
        assert_eq!(temps, 0);
    }
}

/// Nothing is written into a directory a trainer holds, even with --force.
#[test]
fn nothing_is_written_inside_a_directory_a_trainer_holds() {
    let dir = trained();
    let (mut child, _, _reader) = spawn_training(&dir, "live", &["--eval-every", "1000000"]);
    for args in [
        &[
            "export",
            "--dir",
            "runE",
            "-o",
            "live/model.safetensors",
            "--force",
        ][..],
        &["plot", "runE", "-o", "live/plot.svg", "--force"],
        &[
            "viz",
            "corpus.txt",
            "--dir",
            "runE",
            "-o",
            "live/page.html",
            "--force",
        ],
    ] {
        let o = run(&dir, args);
        assert_one_line_error(&o, "belongs to a training run that is still going");
        assert!(
            stderr(&o).contains(&format!("pid {}", child.id())),
            "{}",
            stderr(&o)
        );
    }
    kill(child.id(), "KILL");
    child.wait().unwrap();
    let o = run(&dir, &["plot", "runE", "-o", "live/plot.svg"]);
    assert!(
        o.status.success(),
        "once the trainer is gone: {}",
        stderr(&o)
    );
}

/// Issue 17, item 17 (standard output): `-o -` writes the export, the plot and the page to
/// stdout, and the same bytes as a file.
#[test]
fn dash_writes_to_standard_output() {
    let dir = trained();
    for (cmd, file) in [
        (&["export", "--dir", "runE", "-o"][..], "m.safetensors"),
        (&["plot", "runE", "-o"], "p.svg"),
        (
            &[
                "viz",
                "corpus.txt",
                "--dir",
                "runE",
                "--max-chars",
                "40",
                "-o",
            ],
            "v.html",
        ),
    ] {
        let o = run(&dir, &[cmd, &["-"]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!dir.path().join("-").exists());
        assert!(stderr(&o).contains("wrote stdout"), "{}", stderr(&o));
        assert!(run(&dir, &[cmd, &[file]].concat()).status.success());
        let written = std::fs::read(dir.path().join(file)).unwrap();
        if file.ends_with(".safetensors") {
            // The metadata's order is a hash map's; the tensors are the same bytes.
            let data = |b: &[u8]| {
                b[8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize..].to_vec()
            };
            assert_eq!(o.stdout.len(), written.len());
            assert_eq!(data(&o.stdout), data(&written));
        } else {
            assert_eq!(o.stdout, written, "{file}");
        }
    }
}

/// Issue 17, item 11: `plot a/checkpoints b/checkpoints` labelled both "checkpoints".
#[test]
fn plot_labels_runs_apart() {
    let dir = TempDir::new().unwrap();
    for out in ["a/checkpoints", "b/checkpoints"] {
        assert!(train(&dir, out, &["--max-steps", "10"]).status.success());
    }
    let o = run(&dir, &["plot", "a/checkpoints", "b/checkpoints", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = stdout(&o);
    assert!(
        svg.contains(">a/checkpoints validation<") && svg.contains(">b/checkpoints training<"),
        "{svg}"
    );
}

/// Issue 17, item 23: a run's loss.svg drew its training curve through the `val` records'
/// longer averages too, a saw-tooth at every validation; now from `train` records only.
#[test]
fn the_training_curve_is_drawn_from_one_kind_of_record() {
    let dir = TempDir::new().unwrap();
    assert!(
        train(&dir, "ck", &["--max-steps", "40", "--eval-every", "20"])
            .status
            .success()
    );
    let log = std::fs::read_to_string(dir.path().join("ck/metrics.jsonl")).unwrap();
    // loss.svg is drawn at each validation, before that step's training record is written.
    let train_records = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"train\"") && !l.contains("\"step\":40,"))
        .count();
    assert!(train_records >= 8, "{log}");
    let svg = std::fs::read_to_string(dir.path().join("ck/loss.svg")).unwrap();
    let dashed = svg
        .lines()
        .find(|l| l.contains("stroke-dasharray=\"5 3\" opacity"))
        .unwrap();
    assert_eq!(dashed.matches(',').count(), train_records, "{dashed}");
}
