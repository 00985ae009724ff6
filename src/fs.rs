//! File-system primitives that keep files whole: atomic replacement with the directory
//! flushed, a lock that gives a directory to one process, removal of a killed process's
//! temporary files, and readers that accept only regular files of a bounded size.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Prefix and infix of the temporary files of [`write_atomic`]: `.<name>.tmp<pid>`.
const TMP_INFIX: &str = ".tmp";

/// The directory a path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `path` through `fill` into a temporary file in the same directory, flushes it to
/// disk, renames it over `path` and flushes the directory, so that the rename itself survives
/// a power cut. A crash leaves the old file or the new one, never half of one; on an error
/// (a full disk, say) the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().context("path has no file name")?;
    let tmp = dir.join(format!(
        ".{}{TMP_INFIX}{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> Result<()> {
        let mut file = File::create(&tmp)?;
        fill(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)?;
        Ok(())
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Flushes a directory's entries (the result of a rename) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // Opening a directory read-only and calling fsync on it is how POSIX persists its
    // entries; on systems where that is not possible the rename is still atomic.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush directory {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes the temporary files that [`write_atomic`] leaves when its process is killed
/// mid-write (`.<name>.tmp<pid>` for a pid other than ours). Call it only while holding the
/// directory's [`DirLock`], so that no live writer's file is taken. Returns what it removed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(TMP_INFIX))
            .map(|(_, pid)| pid)
        else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && pid != me {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// An exclusive lock on a directory, held until dropped (or the process ends, however it
/// ends: the operating system releases it). The lock file `.lock` holds the holder's pid.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

impl DirLock {
    /// Takes the lock on `dir` without waiting; if another process holds it, the error
    /// names the directory and the holder's pid.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder.trim();
                let by = if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                bail!(
                    "{} is in use by another charrnn run{by}; wait for it to finish or choose another --dir",
                    dir.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(DirLock { _file: file, path })
    }
}

/// Whether a process holds the [`DirLock`] of `dir` (a trainer is writing into it), and
/// if so the pid its lock file names. Looked at without taking the lock or changing the
/// lock file; a directory without a lock file is not held.
pub fn lock_holder(dir: &Path) -> Option<String> {
    let path = dir.join(LOCK_FILE);
    let mut file = File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = holder.trim();
            Some(if pid.bytes().all(|b| b.is_ascii_digit()) {
                pid.to_string()
            } else {
                String::new()
            })
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// What a reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimit {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
}

/// Reads a whole regular file of at most `limit.max_bytes`. FIFOs, devices, sockets and
/// directories are refused with an error naming what the path is, so that `/dev/zero` or a
/// pipe cannot make a reader allocate without end or block forever.
pub fn read_regular(path: &Path, what: &str, limit: ReadLimit) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    check_regular(path, what, &meta)?;
    if meta.len() > limit.max_bytes {
        bail!(
            "{what} {} is {} bytes, more than the {} this machine can hold",
            path.display(),
            meta.len(),
            limit.max_bytes
        );
    }
    let mut file =
        File::open(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    // Read at most one byte more than the size we checked, in case the file grows.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(limit.max_bytes + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > limit.max_bytes {
        bail!("{what} {} grew while it was read", path.display());
    }
    Ok(bytes)
}

/// The path that means standard input: `charrnn score -`, `--prime-file -`.
pub const STDIN: &str = "-";

/// Whether `path` is [`STDIN`].
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// How messages name an input: its path, or "standard input" for `-`.
pub fn input_name(path: &Path) -> String {
    if is_stdin(path) {
        "standard input".into()
    } else {
        path.display().to_string()
    }
}

/// The most standard input may hold: a quarter of the memory available, so that the
/// growing buffer (which may double) and what is built from the text still fit. A larger
/// text belongs in a file, whose size is known before it is read.
pub fn stdin_limit() -> u64 {
    available_memory() / 4
}

/// Reads `path` as [`read_regular`] does, or standard input for `-` (at most
/// [`stdin_limit`] bytes).
pub fn read_input(path: &Path, what: &str, limit: ReadLimit) -> Result<Vec<u8>> {
    if is_stdin(path) {
        let limit = ReadLimit {
            max_bytes: stdin_limit().min(limit.max_bytes),
        };
        read_bounded(std::io::stdin().lock(), limit)
    } else {
        read_regular(path, what, limit)
    }
}

/// Everything `reader` gives, refused as soon as it is more than `limit.max_bytes`
/// (standard input has no size to check first).
pub fn read_bounded(reader: impl Read, limit: ReadLimit) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .context("cannot read standard input")?;
    if bytes.len() as u64 > limit.max_bytes {
        bail!(
            "standard input holds more than {}, the most charrnn reads from a pipe (a quarter of the memory available); save the text to a file and pass its name",
            human_bytes(limit.max_bytes)
        );
    }
    Ok(bytes)
}

/// Errors unless `meta` is a regular file's, naming what it is instead.
pub fn check_regular(path: &Path, what: &str, meta: &std::fs::Metadata) -> Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let kind = file_kind(meta);
    bail!("{what} {} is {kind}, not a regular file", path.display())
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// Memory this machine could give a reader: `MemAvailable` from /proc/meminfo where there is
/// one, else 16 GiB. Used to refuse inputs and models that cannot fit before allocating.
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kb.checked_mul(1024)
        })
        .unwrap_or(16 << 30)
}

/// Errors unless `bytes` (an estimate; `None` if it overflowed) fits in the memory
/// available, naming `what` needs it and `hint` (the flags to lower).
pub fn check_fits(bytes: Option<u64>, what: &str, hint: &str) -> Result<()> {
    let available = available_memory();
    match bytes {
        Some(b) if b <= available => Ok(()),
        Some(b) => bail!(
            "{what} needs about {} of memory, but {} is available; {hint}",
            human_bytes(b),
            human_bytes(available)
        ),
        None => bail!("{what} is too large to exist in any machine's memory; {hint}"),
    }
}

/// `1.5 GB`, `230.0 MB`: decimal units, one decimal.
pub fn human_bytes(b: u64) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1000.0 && u + 1 < units.len() {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, |f| Ok(f.write_all(b"one")?)).unwrap();
        write_atomic(&p, |f| Ok(f.write_all(b"two")?)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // A failing writer leaves the old file and no temporary.
        let e = write_atomic(&p, |f| {
            f.write_all(b"half")?;
            bail!("disk full")
        });
        assert!(format!("{:#}", e.unwrap_err()).contains("disk full"));
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
    }

    #[test]
    fn stale_temps_of_other_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            ".latest.json.tmp12345",
            ".best.json.tmp7",
            "keep.json",
            ".x.tmp",
        ] {
            std::fs::write(d.join(name), b"x").unwrap();
        }
        let mine = format!(".latest.json.tmp{}", std::process::id());
        std::fs::write(d.join(&mine), b"x").unwrap();
        let mut removed: Vec<String> = remove_stale_temps(d)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        assert_eq!(removed, [".best.json.tmp7", ".latest.json.tmp12345"]);
        assert!(d.join("keep.json").exists() && d.join(".x.tmp").exists() && d.join(mine).exists());
    }

    #[test]
    fn a_locked_directory_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let e = format!("{:#}", DirLock::acquire(dir.path()).unwrap_err());
        assert!(e.contains("in use by another charrnn run"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert_eq!(
            lock_holder(dir.path()),
            Some(std::process::id().to_string())
        );
        drop(lock);
        assert_eq!(lock_holder(dir.path()), None);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn standard_input_is_read_up_to_its_limit() {
        let limit = ReadLimit { max_bytes: 5 };
        assert_eq!(read_bounded(&b"hello"[..], limit).unwrap(), b"hello");
        let e = format!("{:#}", read_bounded(&b"hello!"[..], limit).unwrap_err());
        assert!(
            e.contains("more than 5 bytes") && e.contains("save the text"),
            "{e}"
        );
        assert!(is_stdin(Path::new("-")) && !is_stdin(Path::new("./-")));
        assert_eq!(input_name(Path::new("-")), "standard input");
    }

    #[test]
    fn readers_accept_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let limit = ReadLimit { max_bytes: 10 };
        let e = format!(
            "{:#}",
            read_regular(dir.path(), "corpus", limit).unwrap_err()
        );
        assert!(e.contains("is a directory"), "{e}");
        #[cfg(unix)]
        {
            let e = read_regular(Path::new("/dev/zero"), "checkpoint", limit).unwrap_err();
            assert!(format!("{e:#}").contains("is a device"), "{e:#}");
        }
        let big = dir.path().join("big.txt");
        std::fs::write(&big, [b'a'; 11]).unwrap();
        let e = format!("{:#}", read_regular(&big, "corpus", limit).unwrap_err());
        assert!(e.contains("11 bytes"), "{e}");
        std::fs::write(&big, b"0123456789").unwrap();
        assert_eq!(read_regular(&big, "corpus", limit).unwrap().len(), 10);
    }
}
