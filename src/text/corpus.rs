//! Reading a corpus from files and directories, with errors that say what is wrong where,
//! and turning it into the token streams of training and validation.

use crate::fs::{ReadLimit, available_memory, check_regular, input_name, is_stdin, read_input};
use crate::text::reader::{Keep, read_corpus_part};
use crate::text::split::{self, Mode};
use crate::text::tokens::Tokens;
use crate::text::vocab::Vocab;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Where a model's training text came from and how it was cut, so that evaluation can
/// rebuild the validation split (stored as a checkpoint's `data` section).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorpusInfo {
    pub mode: Mode,
    /// Absolute paths of the files read, in order.
    pub sources: Vec<String>,
    pub val_fraction: f64,
    pub train_chars: usize,
    pub val_chars: usize,
    /// A file of the user's own validated on instead of a held-out split (`--val-file`;
    /// absolute path), in which case `val_fraction` is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_file: Option<String>,
}

pub use crate::text::reader::VocabSource;

/// A corpus ready to train on: the vocabulary and the two token streams.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub vocab: Vocab,
    /// `<start> … <end>` token stream of the training sequences.
    pub train: Tokens,
    /// The same for the held-out sequences.
    pub val: Tokens,
    pub info: CorpusInfo,
    /// What the directories given held that was not read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Corpus {
    /// "read 3 files: a.txt, b.txt, c.txt; skipped 1: notes.md (not .txt)", at most ten
    /// names each.
    pub fn describe_files(&self) -> String {
        let name = |p: &Path| {
            p.file_name().map_or(p.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            })
        };
        let some = |names: Vec<String>| {
            let n = names.len();
            let mut s = names.into_iter().take(10).collect::<Vec<_>>().join(", ");
            if n > 10 {
                s.push_str(&format!(", … ({} more)", n - 10));
            }
            s
        };
        let used = self
            .info
            .sources
            .iter()
            .map(|p| name(Path::new(p)))
            .collect();
        let mut s = format!("read {} files: {}", self.info.sources.len(), some(used));
        if !self.skipped.is_empty() {
            let skipped = self
                .skipped
                .iter()
                .map(|(p, why)| format!("{} ({why})", name(p)))
                .collect();
            s.push_str(&format!(
                "; skipped {}: {}",
                self.skipped.len(),
                some(skipped)
            ));
        }
        s
    }

    /// A corpus of one text held in memory (`name` stands for its source), cut as
    /// [`Corpus::load`] cuts files (a test holds the two equal).
    pub fn from_text(name: &str, text: &str, mode: Mode, val_fraction: f64) -> Result<Corpus> {
        use crate::text::split;
        let (train, val) = split::train_val(&[text.to_string()], mode, val_fraction);
        let vocab = Vocab::from_texts(train.iter().chain(&val).map(String::as_str));
        let chars = |s: &[String]| s.iter().map(|s| s.chars().count()).sum::<usize>();
        let (train_chars, val_chars) = (chars(&train), chars(&val));
        if train_chars + val_chars == 0 {
            bail!("the corpus is empty: {name}");
        }
        Ok(Corpus {
            train: split::tokens(&vocab, &train)?,
            val: split::tokens(&vocab, &val)?,
            vocab,
            info: CorpusInfo {
                mode,
                sources: vec![name.to_string()],
                val_fraction,
                train_chars,
                val_chars,
                val_file: None,
            },
            skipped: Vec::new(),
        })
    }

    /// Errors unless the training text holds at least one window of `seq_len` predictions.
    pub fn check_window(&self, seq_len: usize) -> Result<()> {
        if self.train.len().saturating_sub(1) < seq_len {
            bail!(
                "the corpus is too short: {} characters of training text, but one window is {seq_len} (--seq-len); use more text or a smaller --seq-len",
                self.info.train_chars
            );
        }
        Ok(())
    }

    /// Validates on the text of `path` instead of a held-out split: read, cut into sequences
    /// by the corpus's mode and encoded with its vocabulary. A character the training text
    /// does not have is an error naming each such character with its first line and
    /// column: the model could not predict what it never saw, and leaving it out would
    /// score another text than the file.
    pub fn with_val_file(mut self, path: &Path) -> Result<Corpus> {
        let text = read_utf8(path)?;
        let mut unknown: Vec<(char, usize, usize)> = Vec::new();
        for (l, line) in text.lines().enumerate() {
            for (c, ch) in line.chars().enumerate() {
                if self.vocab.id(ch).is_none() && !unknown.iter().any(|u| u.0 == ch) {
                    unknown.push((ch, l + 1, c + 1));
                }
            }
        }
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .take(5)
                .map(|(ch, l, c)| format!("{ch:?} (line {l}, column {c})"))
                .collect();
            bail!(
                "--val-file {} has {} character{} the training text does not: {}{}; the model cannot predict a character it never saw: remove {} from the file, or train on text that has {}",
                path.display(),
                unknown.len(),
                if unknown.len() == 1 { "" } else { "s" },
                list.join(", "),
                if unknown.len() > 5 { ", …" } else { "" },
                if unknown.len() == 1 { "it" } else { "them" },
                if unknown.len() == 1 { "it" } else { "them" },
            );
        }
        let seqs = split::sequences(&[text], self.info.mode);
        self.val = split::tokens(&self.vocab, &seqs).map_err(|e| anyhow::anyhow!("{e}"))?;
        if self.val.len() < 2 {
            bail!("--val-file {} has no text to validate on", path.display());
        }
        self.info.val_chars = seqs.iter().map(|s| s.chars().count()).sum();
        self.info.val_file = Some(
            std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
        );
        Ok(self)
    }

    /// Reads `paths` (see [`read`]), cuts them into sequences and a validation split, and
    /// encodes them with the vocabulary `vocab` says.
    pub fn load(
        paths: &[PathBuf],
        mode: Mode,
        val_fraction: f64,
        vocab: VocabSource,
    ) -> Result<Corpus> {
        let all = |_: usize, _: usize| (0..usize::MAX, 0..usize::MAX);
        Corpus::load_part(paths, mode, val_fraction, vocab, &all)
    }

    /// [`Corpus::load`] keeping of the token streams only the positions `keep` names (see
    /// [`read_corpus_part`]): what one process of a distributed run holds.
    pub fn load_part(
        paths: &[PathBuf],
        mode: Mode,
        val_fraction: f64,
        vocab: VocabSource,
        keep: Keep,
    ) -> Result<Corpus> {
        let list = list_files(paths)?;
        let max = available_memory();
        let s = read_corpus_part(&list.files, mode, val_fraction, vocab, max, keep)?;
        if s.train_chars + s.val_chars == 0 {
            bail!("the corpus is empty: {}", join_paths(paths));
        }
        let sources = list
            .files
            .iter()
            .map(|f| {
                std::fs::canonicalize(f)
                    .unwrap_or_else(|_| f.clone())
                    .display()
                    .to_string()
            })
            .collect();
        Ok(Corpus {
            info: CorpusInfo {
                mode,
                sources,
                val_fraction,
                train_chars: s.train_chars,
                val_chars: s.val_chars,
                val_file: None,
            },
            vocab: s.vocab,
            train: s.train,
            val: s.val,
            skipped: list.skipped,
        })
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files a list of paths names, and what a directory held that was left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileList {
    pub files: Vec<PathBuf>,
    /// Entries of the directories given that are not read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The files `paths` name: a file as it is (it must be a regular file: a FIFO or a device is
/// an error, not something to read without end); a directory contributes every regular file
/// directly inside it whose name ends in `.txt` (any case), in name order, so that the
/// vocabulary and the data order do not depend on the file system. Everything else in a
/// directory is listed in `skipped`.
pub fn list_files(paths: &[PathBuf]) -> Result<FileList> {
    let mut out = FileList::default();
    for path in paths {
        if is_stdin(path) {
            bail!(
                "train reads its corpus twice and records where it came from (to rebuild the validation split): save standard input to a file and pass its name"
            );
        }
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !meta.is_dir() {
            check_regular(path, "corpus file", &meta)?;
            out.files.push(path.clone());
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list directory {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let mut found = 0;
        for p in entries {
            let is_txt = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt"));
            let kind = match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => None,
                Ok(m) if m.is_dir() => Some("a directory"),
                Ok(_) => Some("not a regular file"),
                Err(_) => Some("unreadable"),
            };
            match (kind, is_txt) {
                (None, true) => {
                    out.files.push(p);
                    found += 1;
                }
                (None, false) => out.skipped.push((p, "not .txt".into())),
                (Some(k), _) => out.skipped.push((p, k.into())),
            }
        }
        if found == 0 {
            bail!("directory {} has no .txt files", path.display());
        }
    }
    Ok(out)
}

/// A file's text, or standard input's for `-` (see [`read_input`]); invalid UTF-8 is
/// reported with the byte offset of the first bad byte. Only regular files are read: a
/// named pipe or a device (`/dev/stdin` among them) is refused with a pointer to `-`.
pub fn read_utf8(path: &Path) -> Result<String> {
    let limit = ReadLimit {
        max_bytes: available_memory(),
    };
    if !is_stdin(path) {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if let (false, Err(e)) = (meta.is_dir(), check_regular(path, "text file", &meta)) {
            bail!("{e:#}; to read a pipe, pass - (standard input) instead");
        }
    }
    let bytes = read_input(path, "text file", limit)?;
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            // A byte-order mark is an encoding signature, not text.
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            // Windows line endings would otherwise make '\r' a character of the model.
            if text.contains("\r\n") {
                text = text.replace("\r\n", "\n");
            }
            Ok(text)
        }
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let byte = e.as_bytes()[at];
            bail!(
                "{} is not valid UTF-8: byte 0x{byte:02X} at offset {at} (convert it with e.g. `iconv -t UTF-8`)",
                input_name(path)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(paths: &[PathBuf]) -> Result<Corpus> {
        Corpus::load(paths, Mode::Stream, 0.0, VocabSource::Corpus)
    }

    #[test]
    fn directories_give_their_txt_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "bee").unwrap();
        std::fs::write(dir.path().join("a.txt"), "ay\r\nay").unwrap();
        std::fs::write(dir.path().join("notes.md"), "skip").unwrap();
        let c = load(&[dir.path().to_path_buf()]).unwrap();
        let text = c.vocab.decode(&c.train.to_vec());
        assert_eq!(text, "ay\naybee");
        assert!(c.info.sources.iter().all(|s| Path::new(s).is_absolute()));
        assert!(c.info.sources[0].ends_with("a.txt"));
        assert_eq!(c.skipped.len(), 1);
    }

    #[test]
    fn a_validation_file_is_encoded_with_the_corpus_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let (train, val) = (dir.path().join("t.txt"), dir.path().join("v.txt"));
        std::fs::write(&train, "abc abc\nab\n").unwrap();
        std::fs::write(&val, "cab\nba\n").unwrap();
        let c = load(std::slice::from_ref(&train))
            .unwrap()
            .with_val_file(&val)
            .unwrap();
        assert_eq!(c.vocab.decode(&c.val.to_vec()), "cab\nba\n");
        assert_eq!(c.info.val_chars, 7);
        assert!(c.info.val_file.as_deref().unwrap().ends_with("v.txt"));
        std::fs::write(&val, "ab\nxa ü\nxx\n").unwrap();
        let e = format!(
            "{:#}",
            load(&[train]).unwrap().with_val_file(&val).unwrap_err()
        );
        assert!(
            e.contains("2 characters the training text does not: 'x' (line 2, column 1), 'ü' (line 2, column 4)"),
            "{e}"
        );
    }

    #[test]
    fn a_text_in_memory_is_cut_as_a_file_is() {
        let dir = tempfile::tempdir().unwrap();
        let text = "one line\nand another, longer\n\nthird é\n".repeat(7);
        let p = dir.path().join("t.txt");
        std::fs::write(&p, &text).unwrap();
        for mode in [Mode::Stream, Mode::Lines] {
            let a = Corpus::load(std::slice::from_ref(&p), mode, 0.2, VocabSource::Corpus).unwrap();
            let b = Corpus::from_text("t", &text, mode, 0.2).unwrap();
            assert_eq!(a.vocab, b.vocab);
            assert_eq!(
                (a.train.to_vec(), a.val.to_vec()),
                (b.train.to_vec(), b.val.to_vec())
            );
            assert_eq!(
                (a.info.train_chars, a.info.val_chars),
                (b.info.train_chars, b.info.val_chars)
            );
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", load(&[dir.path().to_path_buf()]).unwrap_err());
        assert!(e.contains("no .txt files"), "{e}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, b"ok \xff no").unwrap();
        let e = format!("{:#}", load(&[bad]).unwrap_err());
        assert!(e.contains("byte 0xFF at offset 3"), "{e}");
        let e = format!("{:#}", load(&[dir.path().join("missing.txt")]).unwrap_err());
        assert!(
            e.contains("cannot read") && e.contains("missing.txt"),
            "{e}"
        );
    }
}
