//! A directory belongs to one run (issue 17, items 1, 3, 4, 14): every run has an id,
//! recorded in its checkpoints and log lines; a checkpoint that is not the directory's
//! latest state is not resumed there without --force, and with --force nothing of the
//! replaced run is kept; a rollback goes back to this run's own state; the log never blocks
//! a run; a resumed run says what it changes. On the real binary.

mod common;
use common::*;

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn resume(dir: &TempDir, file: &str, extra: &[&str]) -> std::process::Output {
    let args = [&["train", "--resume", file, "--sample-len", "0"][..], extra].concat();
    run(dir, &args)
}

fn run_id(path: &Path) -> String {
    json(path)["run"].as_str().unwrap().to_string()
}

/// Validation points drawn in a loss.svg (one circle each).
fn points(svg: &Path) -> usize {
    std::fs::read_to_string(svg)
        .unwrap()
        .matches("<circle")
        .count()
}

/// Every run has an id: in its checkpoints, in every log line, on its header; two runs of
/// one seed train the same bits under two ids; resuming the directory's latest state keeps
/// the id.
#[test]
fn every_run_has_an_id_in_its_checkpoints_and_log_lines() {
    let dir = TempDir::new().unwrap();
    let o = train(&dir, "a", &["--max-steps", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(train(&dir, "b", &["--max-steps", "10"]).status.success());
    let (a, b) = (
        json(&dir.path().join("a/latest.json")),
        json(&dir.path().join("b/latest.json")),
    );
    let id = a["run"].as_str().unwrap();
    assert!(
        id.len() == 16 && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(
        stderr(&o).contains(&format!("charrnn: run {id}: ")),
        "{}",
        stderr(&o)
    );
    assert_ne!(a["run"], b["run"]);
    assert_eq!(a["version"], 2);
    for key in ["tensors", "optimizer", "hidden"] {
        assert_eq!(a[key], b[key], "same seed, same {key}");
    }
    assert_eq!(
        a["progress"]["best_val_loss"],
        b["progress"]["best_val_loss"]
    );
    assert_eq!(run_id(&dir.path().join("a/best.json")), id);
    let o = resume(&dir, "a/latest.json", &["--max-steps", "15"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(run_id(&dir.path().join("a/latest.json")), id);
    let log = records(&dir.path().join("a/metrics.jsonl"));
    assert!(log.len() > 5);
    assert!(log.iter().all(|r| r["run"] == id), "{log:?}");
}

/// Issue 17, item 1, first case: a copy of latest.json taken at step 20, resumed after the
/// run went on to step 100, used to replace best.json (step 100) with step 30 and cut the
/// log back to step 20.
#[test]
fn an_earlier_snapshot_is_not_resumed_over_its_own_run() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "runD", &["--max-steps", "20"]).status.success());
    let d = dir.path().join("runD");
    std::fs::copy(d.join("latest.json"), d.join("snap-step20.json")).unwrap();
    let o = resume(&dir, "runD/latest.json", &["--max-steps", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = run_id(&d.join("latest.json"));
    let files = ["latest.json", "best.json", "metrics.jsonl", "loss.svg"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();

    let o = resume(&dir, "runD/snap-step20.json", &["--max-steps", "30"]);
    assert_one_line_error(&o, "an earlier state of that run (step 20)");
    let err = stderr(&o);
    assert!(
        err.contains("holds its run at step 100")
            && err.contains("--resume runD/latest.json")
            && err.contains("another --dir")
            && err.contains("--force"),
        "{err}"
    );
    for (f, b) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(d.join(f)).unwrap(), b, "{f} changed");
    }

    // Branched into another directory: a new run there, from step 20.
    let o = resume(
        &dir,
        "runD/snap-step20.json",
        &["--max-steps", "30", "--dir", "branch"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("branched from"), "{}", stderr(&o));
    let branch = json(&dir.path().join("branch/latest.json"));
    assert_eq!(branch["progress"]["step"], 30);
    assert_ne!(branch["run"], id.as_str());

    // Taken back to step 20 on purpose: nothing after step 20 of the old run is kept.
    let o = resume(
        &dir,
        "runD/snap-step20.json",
        &["--max-steps", "30", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let latest = json(&d.join("latest.json"));
    let new = latest["run"].as_str().unwrap();
    assert_eq!(latest["progress"]["step"], 30);
    assert_ne!(new, id);
    for r in records(&d.join("metrics.jsonl")) {
        let step = r["step"].as_u64().unwrap();
        assert!(
            (r["run"] == id.as_str() && step <= 20) || r["run"] == new,
            "a line of the discarded steps is kept: {r}"
        );
    }
    let best = json(&d.join("best.json"));
    let best_step = best["progress"]["step"].as_u64().unwrap();
    assert!(
        best["run"] == new || (best["run"] == id.as_str() && best_step <= 20),
        "best.json of step {best_step} of {} is not this run's",
        best["run"]
    );
    assert_eq!(
        points(&d.join("loss.svg")),
        records(&d.join("metrics.jsonl"))
            .iter()
            .filter(|r| r["kind"] == "val")
            .count()
    );
}

/// Issue 17, item 1, second case: another run's checkpoint copied into a directory and
/// resumed there used to replace the directory's 2-layer model with the other's 1-layer
/// one; and with a learning rate that diverges, the rollback reloaded the directory's own
/// latest.json into the other model's trainer and panicked.
#[test]
fn another_runs_checkpoint_is_not_resumed_over_a_directory() {
    let dir = TempDir::new().unwrap();
    assert!(
        train(&dir, "runA", &["--max-steps", "10", "--layers", "1"])
            .status
            .success()
    );
    assert!(train(&dir, "runB", &["--max-steps", "10"]).status.success());
    let b = dir.path().join("runB");
    std::fs::copy(dir.path().join("runA/latest.json"), b.join("from-a.json")).unwrap();
    let old_b = run_id(&b.join("latest.json"));
    let latest_before = std::fs::read(b.join("latest.json")).unwrap();

    for extra in [
        &["--max-steps", "15"][..],
        &["--max-steps", "15", "--lr", "1e30"],
    ] {
        let o = resume(&dir, "runB/from-a.json", extra);
        assert_one_line_error(&o, "already holds another run");
        assert!(
            stderr(&o).contains("is not its latest state"),
            "{}",
            stderr(&o)
        );
        assert_eq!(std::fs::read(b.join("latest.json")).unwrap(), latest_before);
    }

    // With --force and a rate that diverges: no panic; the run goes back to its own start,
    // the checkpoint it resumed, now runB's latest.json.
    let o = resume(
        &dir,
        "runB/from-a.json",
        &["--max-steps", "15", "--lr", "1e30", "--force"],
    );
    assert_one_line_error(&o, "diverged");
    assert!(
        stderr(&o).contains("the last good checkpoint is runB/latest.json (step 10)"),
        "{}",
        stderr(&o)
    );
    let (latest, a) = (json(&b.join("latest.json")), json(&b.join("from-a.json")));
    assert_eq!(latest["tensors"], a["tensors"]);
    assert_eq!(latest["model"]["layers"], 1);
    assert!(!b.join("best.json").exists() || run_id(&b.join("best.json")) != old_b);
    assert!(
        records(&b.join("metrics.jsonl"))
            .iter()
            .all(|r| r["run"] != old_b.as_str())
    );
}

/// Issue 17, item 4: `--resume runA/latest.json --dir runM --force` kept runM's own records
/// in its log and its plot, mixed with the resumed run's.
#[test]
fn forcing_a_resume_into_another_runs_directory_keeps_nothing_of_it() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "runA", &["--max-steps", "10"]).status.success());
    assert!(
        train(&dir, "runM", &["--max-steps", "30", "--hidden", "16"])
            .status
            .success()
    );
    let m = dir.path().join("runM");
    let old_m = run_id(&m.join("latest.json"));
    let o = resume(
        &dir,
        "runA/latest.json",
        &["--dir", "runM", "--max-steps", "20"],
    );
    assert_one_line_error(&o, "already holds another run");
    let o = resume(
        &dir,
        "runA/latest.json",
        &["--dir", "runM", "--max-steps", "20", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let new = run_id(&m.join("latest.json"));
    assert!(new != old_m && new != run_id(&dir.path().join("runA/latest.json")));
    let log = records(&m.join("metrics.jsonl"));
    assert!(log.iter().all(|r| r["run"] == new.as_str()), "{log:?}");
    let vals = log.iter().filter(|r| r["kind"] == "val").count();
    assert_eq!(vals, 2, "validations at steps 15 and 20 only");
    assert_eq!(points(&m.join("loss.svg")), vals);
    assert_eq!(run_id(&m.join("best.json")), new);
    assert_eq!(json(&m.join("best.json"))["model"]["hidden"], 24);
}

/// A checkpoint written before runs had ids (format version 1) still resumes in its
/// directory; the run gets an id then, and its old log lines are kept.
#[test]
fn a_run_without_an_id_resumes_and_gets_one() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "old", &["--max-steps", "10"]).status.success());
    let d = dir.path().join("old");
    for f in ["latest.json", "best.json"] {
        let mut ck = json(&d.join(f));
        let o = ck.as_object_mut().unwrap();
        o.remove("run");
        o.insert("version".into(), 1.into());
        o["progress"].as_object_mut().unwrap().remove("last_lr");
        std::fs::write(d.join(f), serde_json::to_string(&ck).unwrap()).unwrap();
    }
    let lines: Vec<String> = records(&d.join("metrics.jsonl"))
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("run");
            serde_json::to_string(&r).unwrap()
        })
        .collect();
    std::fs::write(d.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    let o = resume(&dir, "old/latest.json", &["--max-steps", "15"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let latest = json(&d.join("latest.json"));
    assert_eq!(
        (
            latest["version"].as_u64(),
            latest["progress"]["step"].as_u64()
        ),
        (Some(2), Some(15))
    );
    let id = latest["run"].as_str().unwrap();
    let log = records(&d.join("metrics.jsonl"));
    assert_eq!(
        log.iter().filter(|r| r.get("run").is_none()).count(),
        lines.len()
    );
    assert!(log.iter().skip(lines.len()).all(|r| r["run"] == id));
}

/// Issue 17, item 3: an undecodable byte at the end of metrics.jsonl (what a power cut can
/// leave) used to stop --resume and plot with "stream did not contain valid UTF-8".
#[test]
fn a_damaged_metrics_log_never_blocks_resume_or_plot() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "10"]).status.success());
    let log = dir.path().join("ck/metrics.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    let n = records(&log).len();
    bytes.extend_from_slice(b"{\"kind\":\"train\",\"st\xff\xfe\n\xc3");
    std::fs::write(&log, &bytes).unwrap();
    let o = run(&dir, &["plot", "ck", "-o", "p.svg"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped 2 unreadable lines of ck/metrics.jsonl"),
        "{}",
        stderr(&o)
    );
    let o = resume(&dir, "ck/latest.json", &["--max-steps", "15"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let notes = stderr(&o)
        .lines()
        .filter(|l| l.contains("unreadable line"))
        .count();
    assert_eq!(notes, 1, "{}", stderr(&o));
    let after = records(&log);
    assert!(
        after.len() > n,
        "the log goes on, without the damaged lines"
    );
}

/// Issue 17, item 14: a resumed run whose end comes before its checkpoint is refused (it
/// used to print "stopped at step 100 … 0 chars/s" and exit 0); a resumed run whose
/// schedule puts the rate elsewhere says from what to what, and why.
#[test]
fn a_resumed_run_says_what_its_new_length_changes() {
    let dir = TempDir::new().unwrap();
    assert!(train(&dir, "ck", &["--max-steps", "30"]).status.success());
    let before = std::fs::read(dir.path().join("ck/latest.json")).unwrap();
    for n in ["10", "30"] {
        let o = resume(&dir, "ck/latest.json", &["--max-steps", n]);
        assert_one_line_error(
            &o,
            &format!("--max-steps {n} ends the run at step {n}: nothing to train"),
        );
        assert!(stderr(&o).contains("at step 30"), "{}", stderr(&o));
    }
    let o = resume(&dir, "ck/latest.json", &["--epochs", "1"]);
    assert_one_line_error(&o, "--epochs 1 ends the run");
    assert_eq!(
        std::fs::read(dir.path().join("ck/latest.json")).unwrap(),
        before
    );
    // The cosine schedule ended at step 30 at its floor; to step 60 it is half-way down.
    let o = resume(&dir, "ck/latest.json", &["--max-steps", "60"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stderr(&o)
        .lines()
        .find(|l| l.contains("the learning rate goes from"))
        .unwrap_or_else(|| panic!("no rate line: {}", stderr(&o)))
        .to_string();
    assert!(
        line.contains("fitted to this run's end at step 60"),
        "{line}"
    );
    // A schedule that does not depend on the run's end carries on without a word.
    assert!(
        train(
            &dir,
            "flat",
            &[
                "--max-steps",
                "10",
                "--lr-schedule",
                "epochs",
                "--lr-decay",
                "1"
            ]
        )
        .status
        .success()
    );
    let o = resume(&dir, "flat/latest.json", &["--max-steps", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("the learning rate goes"),
        "{}",
        stderr(&o)
    );
    let o = resume(
        &dir,
        "flat/latest.json",
        &["--max-steps", "25", "--lr", "0.001"],
    );
    assert!(
        stderr(&o).contains("--lr 0.001 sets a new base rate"),
        "{}",
        stderr(&o)
    );
}

/// Issue 17, items 15 and 16: a fine-tuned run prints what it takes from the model (its
/// mode among it), and every fresh run prints the dropout and rate it trains with, and
/// which were given.
#[test]
fn runs_say_what_they_inherit_and_what_was_chosen() {
    let dir = TempDir::new().unwrap();
    let o = train(
        &dir,
        "base",
        &["--max-steps", "5", "--mode", "lines", "--dropout", "0.1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("width 24 (given), dropout 0.1 (given), weight drop 0.3 (chosen), lr 4.0e-3 (chosen) falling over"),
        "{err}"
    );
    let o = train(&dir, "plain", &["--max-steps", "5", "--lr", "0.01"]);
    assert!(
        stderr(&o).contains(" (chosen), lr 1.0e-2 (given) falling over"),
        "{}",
        stderr(&o)
    );
    let o = run(
        &dir,
        &[
            &[
                "train",
                "corpus.txt",
                "--init-from",
                "base/best.json",
                "--max-steps",
                "2",
            ][..],
            &[
                "--dir",
                "tuned",
                "--sample-len",
                "0",
                "--seq-len",
                "16",
                "--batch-size",
                "4",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("takes lstm 2x24, dropout 0.1, weight drop 0.3, lines mode from the model"),
        "{err}"
    );
    // Its rates are the model's too, not chosen anew; its schedule is new.
    assert!(
        err.contains(
            "width 24 (the model's), dropout 0.1 (the model's), weight drop 0.3 (the model's), lr 4.0e-3 (chosen)"
        ),
        "{err}"
    );
    assert!(err.contains(", lines mode |"), "{err}");
}
