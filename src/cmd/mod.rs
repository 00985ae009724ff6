//! One module per subcommand; each turns validated flags into library calls.

pub mod bench;
pub mod classify;
mod defaults;
pub mod eval;
pub mod export;
pub mod plot;
pub mod predict;
mod progress;
pub mod sample;
pub mod score;
mod signals;
pub mod train;
pub mod viz;
pub mod world;

use anyhow::{Result, bail};
use charrnn::text::unknown;
use charrnn::text::{Mode, Vocab};
use std::path::{Path, PathBuf};

/// `text` (read from `source`) as the model can read it: refused at the first character
/// outside its vocabulary, naming its line and column, or with `skip` that character and any
/// others left out, with a count on stderr.
pub fn known_text(
    vocab: &Vocab,
    mode: Mode,
    text: String,
    source: &str,
    skip: bool,
) -> Result<String> {
    let u = unknown::scan(vocab, &text, mode);
    let Some(refusal) = u.refusal(source) else {
        return Ok(text);
    };
    if !skip {
        bail!("{refusal}");
    }
    eprintln!(
        "charrnn: left out {} characters of {source} that the model never saw: {}",
        u.total(),
        u.list(5)
    );
    Ok(unknown::without_unknown(vocab, &text, mode))
}

/// The default number of batch shards for `batch` streams: one per core available to this
/// process, but no shard under 16 streams (smaller matrix products waste more than a core
/// gains).
pub fn default_threads(batch: usize) -> usize {
    cores().min(batch / 16).max(1)
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The checkpoint to read when none is named: `best.json` in `dir`, else `latest.json`.
pub fn find_checkpoint(explicit: Option<&Path>, dir: &Path) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    for name in ["best.json", "latest.json"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "no checkpoint in {}: train one with `charrnn train <corpus>`, or pass --checkpoint <file>",
        dir.display()
    )
}
