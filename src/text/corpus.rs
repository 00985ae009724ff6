//! Reading a corpus from files and directories, with errors that say what is wrong where,
//! and turning it into the token streams of training and validation.

use crate::text::split::{Mode, tokens, train_val};
use crate::text::vocab::Vocab;
use anyhow::{Context, Result, anyhow, bail};
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
}

/// A corpus ready to train on: the vocabulary and the two token streams.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub vocab: Vocab,
    /// `<start> … <end>` token stream of the training sequences.
    pub train: Vec<u32>,
    /// The same for the held-out sequences.
    pub val: Vec<u32>,
    pub info: CorpusInfo,
}

impl Corpus {
    /// Reads `paths` (see [`read`]), cuts them into sequences and a validation split, and
    /// encodes them with `vocab`, or with the vocabulary of the whole corpus if `None`.
    pub fn load(
        paths: &[PathBuf],
        mode: Mode,
        val_fraction: f64,
        vocab: Option<&Vocab>,
    ) -> Result<Corpus> {
        let (sources, texts): (Vec<String>, Vec<String>) = read(paths)?
            .into_iter()
            .map(|s| (s.path.display().to_string(), s.text))
            .unzip();
        let (train_seqs, val_seqs) = train_val(&texts, mode, val_fraction);
        drop(texts);
        if train_seqs.iter().chain(&val_seqs).all(|s| s.is_empty()) {
            bail!("the corpus is empty: {}", list(paths));
        }
        let vocab = match vocab {
            Some(v) => v.clone(),
            None => Vocab::from_texts(train_seqs.iter().chain(&val_seqs).map(|s| s.as_str())),
        };
        let unknown = |e| anyhow!("the corpus does not fit the checkpoint's vocabulary: {e}");
        let count = |seqs: &[String]| seqs.iter().map(|s| s.chars().count()).sum::<usize>();
        let info = CorpusInfo {
            mode,
            sources,
            val_fraction,
            train_chars: count(&train_seqs),
            val_chars: count(&val_seqs),
        };
        Ok(Corpus {
            train: tokens(&vocab, &train_seqs).map_err(unknown)?,
            val: tokens(&vocab, &val_seqs).map_err(unknown)?,
            vocab,
            info,
        })
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One file of a corpus.
#[derive(Debug, Clone)]
pub struct Source {
    /// Absolute path.
    pub path: PathBuf,
    pub text: String,
}

/// Reads every path: a file is read as it is; a directory contributes every `*.txt` file
/// directly inside it, in name order (so that the vocabulary and the data order do not
/// depend on the file system). Each file must be UTF-8.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Source>> {
    let mut files = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list directory {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "txt"))
                .collect();
            if found.is_empty() {
                bail!("directory {} has no .txt files", path.display());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
        .iter()
        .map(|f| {
            let text = read_utf8(f)?;
            let path = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
            Ok(Source { path, text })
        })
        .collect()
}

/// A file's text; invalid UTF-8 is reported with the byte offset of the first bad byte.
pub fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match String::from_utf8(bytes) {
        Ok(mut text) => {
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
                path.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_give_their_txt_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "bee").unwrap();
        std::fs::write(dir.path().join("a.txt"), "ay\r\nay").unwrap();
        std::fs::write(dir.path().join("notes.md"), "skip").unwrap();
        let got = read(&[dir.path().to_path_buf()]).unwrap();
        let texts: Vec<&str> = got.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["ay\nay", "bee"]);
        assert!(got[0].path.is_absolute());
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", read(&[dir.path().to_path_buf()]).unwrap_err());
        assert!(e.contains("no .txt files"), "{e}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, b"ok \xff no").unwrap();
        let e = format!("{:#}", read(&[bad]).unwrap_err());
        assert!(e.contains("byte 0xFF at offset 3"), "{e}");
        let e = format!("{:#}", read(&[dir.path().join("missing.txt")]).unwrap_err());
        assert!(
            e.contains("cannot read") && e.contains("missing.txt"),
            "{e}"
        );
    }
}
