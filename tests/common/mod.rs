//! Helpers shared by the end-to-end tests: run the real `charrnn` binary in temporary
//! directories and check its output.
#![allow(dead_code)]

pub use assert_cmd::Command;
pub use serde_json::Value;
pub use std::path::{Path, PathBuf};
pub use tempfile::TempDir;

pub const TEXT: &str =
    "the quick brown fox jumps over the lazy dog.\nthe lazy dog sleeps; the fox runs.\n";

/// Small model flags so that each run takes well under a second.
pub const SMALL: &[&str] = &[
    "--hidden",
    "24",
    "--layers",
    "2",
    "--seq-len",
    "16",
    "--batch-size",
    "4",
    "--eval-every",
    "5",
    "--sample-len",
    "0",
    "--threads",
    "2",
];

pub fn charrnn() -> Command {
    Command::cargo_bin("charrnn").unwrap()
}

/// Runs charrnn with `args` in `dir`.
pub fn run(dir: &TempDir, args: &[&str]) -> std::process::Output {
    charrnn()
        .current_dir(dir.path())
        .args(args)
        .output()
        .unwrap()
}

pub fn corpus(dir: &TempDir) -> PathBuf {
    let p = dir.path().join("corpus.txt");
    std::fs::write(&p, TEXT.repeat(20)).unwrap();
    p
}

pub fn train(dir: &TempDir, out: &str, extra: &[&str]) -> std::process::Output {
    let c = corpus(dir);
    charrnn()
        .current_dir(dir.path())
        .arg("train")
        .arg(&c)
        .args(SMALL)
        .args(["--out", out])
        .args(extra)
        .output()
        .unwrap()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A failing run: non-zero exit, never a panic, and the error on one line: the last line of
/// stderr, `charrnn: …` naming `needle` (clap's own usage errors start with `error:`).
pub fn assert_one_line_error(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines[0].starts_with("error:") {
        assert!(lines[0].contains(needle), "expected {needle:?} in: {err}");
    } else {
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("charrnn: ") && last.contains(needle),
            "expected {needle:?} in the last line of: {err}"
        );
    }
}

/// Spawns a training run that goes on until stopped, and waits until it has started (its
/// header line is on stderr); returns the child and what it printed so far.
pub fn spawn_training(
    dir: &TempDir,
    out: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::io::BufReader<std::process::ChildStderr>,
) {
    let c = corpus(dir);
    let bin = assert_cmd::cargo::cargo_bin("charrnn");
    let mut child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .arg("train")
        .arg(&c)
        .args([
            "--hidden",
            "64",
            "--seq-len",
            "16",
            "--batch-size",
            "4",
            "--out",
            out,
        ])
        .args(["--epochs", "100000", "--sample-len", "0"])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.starts_with("charrnn: ") && line.contains(" parameters, ") {
            break;
        }
        line.clear();
    }
    (child, seen, reader)
}

/// Sends `signal` (e.g. "TERM", "KILL") to a process.
pub fn kill(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}
