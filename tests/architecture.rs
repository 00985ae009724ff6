//! The library's rooms import one way (the rule in `src/lib.rs`): a folder may use only the
//! folders below it. Read from the source, outside test modules and comments.

use std::collections::BTreeSet;
use std::path::Path;

/// The rooms from the ground floor up; each may use those before it.
const FLOORS: [&str; 10] = [
    "fs", "kernels", "world", "text", "nn", "analysis", "train", "decode", "io", "bench",
];

fn floor(name: &str) -> Option<usize> {
    FLOORS.iter().position(|f| *f == name)
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            visit(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

/// The crate's rooms that `code` names as `crate::<room>`.
fn rooms_used(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    used
}

#[test]
fn rooms_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let Some(own) = floor(top.trim_end_matches(".rs")) else {
            continue; // the binary's files (main, cli, cmd/) use everything
        };
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for room in rooms_used(code) {
            if let Some(f) = floor(&room)
                && f > own
            {
                wrong.push(format!("{} uses crate::{room}", rel.display()));
            }
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} library files found");
    assert!(wrong.is_empty(), "imports against the floors: {wrong:#?}");
}

/// The check can fail: an upward import in a made-up file is found.
#[test]
fn an_upward_import_is_seen() {
    let used = rooms_used("use crate::io::checkpoint::Checkpoint;\n// crate::bench in a comment\n");
    assert_eq!(used, BTreeSet::from(["io".to_string()]));
    assert!(floor("io") > floor("text"));
}
