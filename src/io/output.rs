//! Where a command may write what it makes (an export, a plot, a page): one policy for
//! every command that writes a file named by `--output`, so that none of them can destroy
//! what a user has.
//!
//! - `-` is standard output.
//! - A file the command reads (its checkpoint, its text, a run's log) is never replaced,
//!   nor is a charrnn checkpoint, even with `--force`: a checkpoint is hours of a machine's
//!   time, and a plot or a page written over it cannot be undone.
//! - Nothing is written inside a run directory that a trainer holds (its `.lock`), even
//!   with `--force`: the trainer owns what is in it for as long as it runs.
//! - Any other existing file is replaced only with `--force`.
//! - A file is written atomically ([`write_atomic`]): the old file or the new one, never
//!   half of one.

use crate::fs::{lock_holder, parent_dir, write_atomic};
use crate::io::checkpoint::FORMAT;
use anyhow::{Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where the output goes, once checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout,
    File(PathBuf),
}

impl Output {
    /// Checks `path` (`-`: standard output) against the policy above. `inputs`: the files
    /// the command reads; `force`: replace an existing file that is none of the protected
    /// ones.
    pub fn check(path: &Path, inputs: &[&Path], force: bool) -> Result<Output> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout);
        }
        let shown = path.display();
        if let Some(input) = inputs.iter().find(|i| same_file(path, i)) {
            bail!(
                "refusing to write {shown}: it is {} this command reads; choose another --output",
                if input == &path {
                    "a file".to_string()
                } else {
                    format!("{} (a file)", input.display())
                }
            );
        }
        let meta = std::fs::metadata(path).ok();
        if meta.as_ref().is_some_and(|m| m.is_dir()) {
            bail!("{shown} is a directory; give a file name to --output");
        }
        if meta.is_some() && is_checkpoint(path) {
            bail!(
                "refusing to write {shown}: it is a charrnn checkpoint, which no command but train replaces (not even with --force); choose another --output"
            );
        }
        if let Some((dir, pid)) = held_run_dir(path) {
            let by = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            bail!(
                "refusing to write {shown}: {} belongs to a training run that is still going{by}; write outside it, or wait until it ends",
                dir.display()
            );
        }
        if meta.is_some() && !force {
            bail!("{shown} already exists; pass --force to replace it, or choose another --output");
        }
        Ok(Output::File(path.to_path_buf()))
    }

    /// Writes `bytes`: to standard output, or atomically to the file.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        self.write_with(|out| Ok(out.write_all(bytes)?)).map(drop)
    }

    /// Lets `fill` write the contents as it makes them (a page too large to hold twice):
    /// to standard output, or atomically to the file. Returns the bytes written.
    pub fn write_with(&self, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<u64> {
        match self {
            Output::Stdout => {
                let mut out = Counting(std::io::stdout().lock(), 0);
                fill(&mut out)?;
                out.flush()?;
                Ok(out.1)
            }
            Output::File(p) => {
                let mut n = 0;
                write_atomic(p, |f| {
                    let mut out = Counting(f, 0);
                    fill(&mut out)?;
                    n = out.1;
                    Ok(())
                })?;
                Ok(n)
            }
        }
    }

    /// `stdout` or the file's path, for messages.
    pub fn describe(&self) -> String {
        match self {
            Output::Stdout => "stdout".into(),
            Output::File(p) => p.display().to_string(),
        }
    }
}

/// A writer that counts what passes through it.
struct Counting<W>(W, u64);

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Whether `a` and `b` name one existing file (through links, `..` or another spelling).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Whether the file at `path` is a charrnn checkpoint: its first bytes name the format
/// (checkpoints are written with `format` first).
fn is_checkpoint(path: &Path) -> bool {
    let mut head = [0u8; 64];
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let n = file.take(64).read(&mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    let compact: String = head.chars().filter(|c| !c.is_whitespace()).collect();
    compact.starts_with(&format!("{{\"format\":\"{FORMAT}\""))
}

/// The nearest directory containing `path` whose lock a trainer holds, with the pid.
fn held_run_dir(path: &Path) -> Option<(PathBuf, String)> {
    let parent = std::fs::canonicalize(parent_dir(path)).ok()?;
    parent
        .ancestors()
        .find_map(|d| lock_holder(d).map(|pid| (d.to_path_buf(), pid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::DirLock;

    fn err(path: &Path, inputs: &[&Path], force: bool) -> String {
        format!("{:#}", Output::check(path, inputs, force).unwrap_err())
    }

    #[test]
    fn outputs_never_replace_what_they_must_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            Output::check(Path::new("-"), &[], false).unwrap(),
            Output::Stdout
        );
        let new = d.join("new.svg");
        assert_eq!(
            Output::check(&new, &[], false).unwrap(),
            Output::File(new.clone())
        );
        // An existing file: only with --force.
        std::fs::write(&new, "old").unwrap();
        assert!(err(&new, &[], false).contains("already exists; pass --force"));
        Output::check(&new, &[], true).unwrap();
        // The input, under another spelling: never.
        let input = d.join("text.txt");
        std::fs::write(&input, "abc").unwrap();
        let other = d.join(".").join("text.txt");
        assert!(err(&other, &[&input], true).contains("this command reads"));
        // A checkpoint: never.
        let ck = d.join("best.json");
        std::fs::write(&ck, format!("{{\"format\":\"{FORMAT}\",\"version\":2}}")).unwrap();
        assert!(err(&ck, &[], true).contains("is a charrnn checkpoint"));
        assert!(err(d, &[], true).contains("is a directory"));
        // Inside a directory a trainer holds, at any depth: never.
        let run = d.join("run");
        std::fs::create_dir_all(run.join("sub")).unwrap();
        let lock = DirLock::acquire(&run).unwrap();
        let e = err(&run.join("sub/plot.svg"), &[], true);
        assert!(
            e.contains("belongs to a training run") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(lock);
        Output::check(&run.join("sub/plot.svg"), &[], false).unwrap();
    }

    #[test]
    fn writes_are_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        Output::File(p.clone()).write(b"one").unwrap();
        Output::File(p.clone()).write(b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
