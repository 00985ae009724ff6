//! Reading a corpus from files and directories, with errors that say what is wrong where.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

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
