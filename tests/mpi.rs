//! Training over MPI (the `mpi` feature): `mpirun --oversubscribe -np N` on this machine's
//! loopback, held to the one-process run bit for bit, and its faults. Needs Open MPI's
//! `mpirun` (Debian: openmpi-bin); `.ci/run` installs it and runs these with
//! `cargo test --release --features mpi --test mpi`.

mod common;

use common::*;
use std::process::{Child, Command as Std, Output, Stdio};
use std::time::{Duration, Instant};

/// `mpirun -np n charrnn args…` in `dir`, allowed as root (CI runs as root) and on more
/// ranks than cores.
fn mpirun(dir: &TempDir, n: usize) -> Std {
    let mut c = Std::new("mpirun");
    c.current_dir(dir.path())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np", &n.to_string()])
        .arg(assert_cmd::cargo::cargo_bin("charrnn"));
    c
}

fn train_args(corpus: &Path, out: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["train".into(), corpus.display().to_string()];
    let small = [
        "--hidden",
        "24",
        "--seq-len",
        "16",
        "--batch-size",
        "8",
        "--sample-len",
        "0",
        "--dropout",
        "0.1",
        "--out",
        out,
    ];
    v.extend(small.iter().chain(extra).map(|s| s.to_string()));
    v
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// The checkpoint sections that must agree bit for bit (floats are stored exactly), and
/// every history point's losses.
fn assert_same_run(a: &Path, b: &Path, what: &str) {
    assert_same_state(a, b, what);
    let (a, b) = (json(a), json(b));
    let losses = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["progress"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["step"].clone(),
                    h["train_loss"].clone(),
                    h["val_loss"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(losses(&a), losses(&b), "history: {what}");
    assert_eq!(a["progress"]["step"], b["progress"]["step"], "{what}");
}

/// Weights, optimizer moments, carried state, step and last validation loss.
fn assert_same_state(a: &Path, b: &Path, what: &str) {
    let (a, b) = (json(a), json(b));
    for key in ["tensors", "optimizer", "hidden"] {
        assert!(a[key] == b[key], "{key} differs: {what}");
    }
    assert_eq!(a["progress"]["step"], b["progress"]["step"], "{what}");
    let last = |v: &Value| {
        v["progress"]["history"].as_array().unwrap().last().unwrap()["val_loss"].clone()
    };
    assert_eq!(last(&a), last(&b), "{what}");
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// N ranks of T threads give the checkpoint of one process with N·T shards, for every cell
/// type with dropout on: 1, 2 and 4 ranks of 4 shards in all, and 3 ranks of one thread
/// (any number of ranks of one thread is exact). Rank 0 alone speaks and writes.
#[test]
fn ranks_train_the_bits_of_one_process() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let steps = ["--max-steps", "24", "--eval-every", "8"];
    for cell in ["rnn", "lstm", "gru"] {
        let extra = [&steps[..], &["--cell", cell]].concat();
        let local = format!("{cell}-local");
        ok(charrnn()
            .current_dir(dir.path())
            .args(train_args(
                &c,
                &local,
                &[&extra[..], &["--threads", "4"]].concat(),
            ))
            .output()
            .unwrap());
        for (n, t) in [(1, 4), (2, 2), (4, 1)] {
            let out = format!("{cell}-{n}x{t}");
            let args = train_args(
                &c,
                &out,
                &[&extra[..], &["--threads", &t.to_string()]].concat(),
            );
            let o = ok(mpirun(&dir, n).args(&args).output().unwrap());
            let what = format!("{cell}, {n} ranks x {t} threads");
            assert_same_run(
                &dir.path().join(&local).join("latest.json"),
                &dir.path().join(&out).join("latest.json"),
                &what,
            );
            let err = stderr(&o);
            assert_eq!(err.matches(" parameters, ").count(), 1, "one voice: {err}");
            assert_eq!(err.matches("stopped at step 24").count(), 1, "{err}");
            if n > 1 {
                assert!(err.contains(&format!("{n} ranks x {t}")), "{err}");
            }
            assert_eq!(
                files(&dir.path().join(&local)),
                files(&dir.path().join(&out))
            );
        }
    }
    let three = train_args(&c, "three", &[&steps[..], &["--threads", "1"]].concat());
    ok(mpirun(&dir, 3).args(&three).output().unwrap());
    let local = train_args(
        &c,
        "three-local",
        &[&steps[..], &["--threads", "3"]].concat(),
    );
    ok(charrnn()
        .current_dir(dir.path())
        .args(&local)
        .output()
        .unwrap());
    assert_same_run(
        &dir.path().join("three-local/latest.json"),
        &dir.path().join("three/latest.json"),
        "3 ranks x 1 thread",
    );
}

/// A checkpoint of 2 ranks of one thread resumes in one process of 2 threads with the bits
/// of a run that was never split; 4 ranks cannot share its 2 shards and are refused.
#[test]
fn a_run_resumes_on_another_number_of_ranks() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let extra = [
        "--lr-schedule",
        "epochs",
        "--eval-every",
        "10",
        "--cell",
        "gru",
    ];
    let half = [&extra[..], &["--max-steps", "20", "--threads", "1"]].concat();
    ok(mpirun(&dir, 2)
        .args(train_args(&c, "run", &half))
        .output()
        .unwrap());
    let resume = [
        "train",
        "--resume",
        "run/latest.json",
        "--max-steps",
        "40",
        "--sample-len",
        "0",
    ];
    let o = ok(charrnn()
        .current_dir(dir.path())
        .args(resume)
        .output()
        .unwrap());
    assert!(stderr(&o).contains("resuming at step 20"), "{}", stderr(&o));
    let whole = [&extra[..], &["--max-steps", "40", "--threads", "2"]].concat();
    ok(charrnn()
        .current_dir(dir.path())
        .args(train_args(&c, "whole", &whole))
        .output()
        .unwrap());
    assert_same_run(
        &dir.path().join("whole/latest.json"),
        &dir.path().join("run/latest.json"),
        "2 ranks, then 1 process",
    );
    let o = mpirun(&dir, 4)
        .args(["train", "--resume", "run/latest.json", "--max-steps", "60"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("cannot resume on 4 ranks") && err.contains("use 1, 2 ranks"),
        "{err}"
    );
    assert_eq!(
        json(&dir.path().join("run/latest.json"))["progress"]["step"],
        40
    );
}

/// Spawns `mpirun -np n charrnn train …` and returns once rank 0 has said what it trains
/// (so that every rank is running), with what it printed so far and the rest to come.
fn spawn(dir: &TempDir, n: usize, args: &[String], env: &[(&str, &str)]) -> Running {
    use std::io::BufRead;
    let mut c = mpirun(dir, n);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains(" parameters, ") {
            break;
        }
        line.clear();
    }
    // Read the rest as it comes, so that a full pipe never blocks the run.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut reader, &mut s).unwrap();
        s
    });
    Running { child, seen, rest }
}

struct Running {
    child: Child,
    seen: String,
    rest: std::thread::JoinHandle<String>,
}

/// Waits until `path` exists (a first checkpoint).
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: u32, signal: &str) {
    assert!(
        Std::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Waits for the run at most `limit`; whether it succeeded, its stderr and how long it
/// took.
fn finish(mut r: Running, limit: Duration) -> (bool, String, Duration) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = r.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = r.seen + &r.rest.join().unwrap();
    (status.success(), err, start.elapsed())
}

/// The ranks `mpirun` (pid `parent`) started: (rank, pid).
fn ranks_of(parent: u32) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid: u32 = stat
            .rsplit(") ")
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        if ppid != parent {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let rank = env
            .split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(b"OMPI_COMM_WORLD_RANK="))
            .and_then(|r| std::str::from_utf8(r).ok()?.parse().ok());
        if let Some(rank) = rank {
            out.push((rank, pid));
        }
    }
    out.sort();
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(") ").next().unwrap().starts_with('Z'))
}

fn loads(dir: &TempDir, checkpoint: &str) {
    ok(charrnn()
        .current_dir(dir.path())
        .args([
            "sample",
            "--checkpoint",
            checkpoint,
            "--len",
            "20",
            "--seed",
            "1",
        ])
        .output()
        .unwrap());
}

/// SIGTERM to `mpirun` (Open MPI passes it to every rank): the step finishes, rank 0 saves
/// once, every rank stops at the same step, and the run resumes to the bits of one that
/// was never stopped.
#[test]
fn sigterm_to_mpirun_saves_once_and_the_run_resumes_exactly() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let extra = [
        "--hidden",
        "64",
        "--max-steps",
        "12000",
        "--eval-every",
        "1000000",
        "--threads",
        "1",
    ];
    let cut = train_args(&c, "cut", &extra);
    // Open MPI waits this long before it passes the signal on, and as long again before
    // SIGKILL: the time a step and a save may take.
    let env = [("OMPI_MCA_odls_base_sigkill_timeout", "1")];
    let run = spawn(&dir, 2, &cut, &env);
    kill(run.child.id(), "TERM");
    let (success, err, _) = finish(run, Duration::from_secs(30));
    assert!(!success);
    assert_eq!(err.matches("interrupted at step").count(), 1, "{err}");
    let step = json(&dir.path().join("cut/latest.json"))["progress"]["step"]
        .as_u64()
        .unwrap();
    assert!(step > 0 && step < 12000, "stopped at step {step}");
    assert!(
        err.contains(&format!("interrupted at step {step} ")),
        "{err}"
    );
    // Saved once: one validation record, at the step it stopped.
    let log = std::fs::read_to_string(dir.path().join("cut/metrics.jsonl")).unwrap();
    let vals: Vec<&str> = log.lines().filter(|l| l.contains("\"val\"")).collect();
    assert_eq!(vals.len(), 1, "{log}");
    assert!(
        vals[0].contains(&format!("\"step\":{step},")),
        "{}",
        vals[0]
    );
    loads(&dir, "cut/latest.json");

    let resume = [
        "train",
        "--resume",
        "cut/latest.json",
        "--max-steps",
        "12000",
        "--sample-len",
        "0",
    ];
    ok(mpirun(&dir, 2).args(resume).output().unwrap());
    ok(mpirun(&dir, 2)
        .args(train_args(&c, "whole", &extra))
        .output()
        .unwrap());
    assert_same_state(
        &dir.path().join("whole/latest.json"),
        &dir.path().join("cut/latest.json"),
        "stopped by SIGTERM and resumed",
    );
}

/// A rank killed with SIGKILL: the others end within seconds, `mpirun` names the rank, and
/// the checkpoint on disk loads.
#[test]
fn a_killed_rank_ends_the_run_within_seconds() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let args = train_args(
        &c,
        "k",
        &["--epochs", "100000", "--eval-every", "20", "--threads", "1"],
    );
    let run = spawn(&dir, 3, &args, &[]);
    wait_for(&dir.path().join("k/latest.json"));
    let ranks = ranks_of(run.child.id());
    assert_eq!(ranks.len(), 3, "{ranks:?}");
    kill(ranks[1].1, "KILL");
    let (success, err, took) = finish(run, Duration::from_secs(20));
    assert!(!success);
    assert!(err.contains("rank 1"), "{err}");
    let start = Instant::now();
    while ranks.iter().any(|&(_, pid)| alive(pid)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "ranks left running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(took < Duration::from_secs(10), "took {took:?}");
    loads(&dir, "k/latest.json");
}

/// A rank that stops answering (stopped with SIGSTOP) does not hang the others: after
/// CHARRNN_MPI_TIMEOUT seconds a rank says what it waited for and the job ends.
#[test]
fn a_rank_that_stops_answering_ends_the_run_after_the_timeout() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let args = train_args(
        &c,
        "s",
        &["--epochs", "100000", "--eval-every", "20", "--threads", "1"],
    );
    let run = spawn(&dir, 2, &args, &[("CHARRNN_MPI_TIMEOUT", "2")]);
    wait_for(&dir.path().join("s/latest.json"));
    let ranks = ranks_of(run.child.id());
    kill(ranks[1].1, "STOP");
    let (success, err, took) = finish(run, Duration::from_secs(30));
    assert!(!success);
    assert!(
        err.contains("charrnn: rank 0: ") && err.contains("for 2 s while"),
        "{err}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    for (_, pid) in ranks {
        if alive(pid) {
            kill(pid, "KILL");
        }
    }
    loads(&dir, "s/latest.json");
}

/// An error on rank 0 alone (here: its directory holds another run) ends every rank at
/// once with rank 0's one line, instead of leaving the others waiting for it.
#[test]
fn an_error_on_rank_0_ends_every_rank_at_once() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let steps = ["--max-steps", "5", "--threads", "1"];
    ok(charrnn()
        .current_dir(dir.path())
        .args(train_args(&c, "taken", &steps))
        .output()
        .unwrap());
    let start = Instant::now();
    let o = mpirun(&dir, 2)
        .args(train_args(&c, "taken", &steps))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    let err = stderr(&o);
    assert_eq!(err.matches("charrnn: rank 0: ").count(), 1, "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(!err.contains("charrnn: rank 1: "), "{err}");
}

/// With `--time-limit`, rank 0 measures the machine and every rank builds the model it
/// chose: the run trains, stops on rank 0's clock at the same step everywhere, and saves.
#[test]
fn a_time_limited_run_agrees_on_its_recipe() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let mut args = train_args(&c, "t", &["--time-limit", "3", "--threads", "1"]);
    // The width is the recipe's, not the small one the other tests give.
    let at = args.iter().position(|a| a == "--hidden").unwrap();
    args.drain(at..at + 2);
    let o = ok(mpirun(&dir, 2).args(&args).output().unwrap());
    let err = stderr(&o);
    assert_eq!(err.matches("GFLOP/s of training").count(), 1, "{err}");
    assert!(err.contains("2 ranks x 1"), "{err}");
    loads(&dir, "t/latest.json");
}
