//! Reading a corpus in two streaming passes, so that a corpus of any size needs memory for
//! its tokens only (one byte per character for up to 254 distinct characters), never for its
//! text:
//!
//! 1. count: the characters (or the kept lines) and the set of characters, file by file,
//!    in chunks;
//! 2. encode: read again and append `<start> … <end>` token streams for training and
//!    validation, cut where the split falls.
//!
//! The result is exactly that of the in-memory definition in [`crate::text::split`]
//! (`sequences`, `split`, `tokens`; a test holds the two equal): UTF-8 only (an error names
//! the byte offset), a leading byte-order mark dropped, `\r\n` read as `\n`; in stream mode
//! each non-empty file one sequence, in lines mode each line with a non-space character.

use crate::fs::human_bytes;
use crate::text::split::Mode;
use crate::text::tokens::Tokens;
use crate::text::vocab::{END, SPECIALS, START, Vocab};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Bytes read at a time (a few in unit tests, so that characters straddle chunks).
const CHUNK: usize = if cfg!(test) { 7 } else { 1 << 22 };

/// What pass 1 learns about one file.
#[derive(Debug, Clone, Default)]
struct FileCount {
    /// Characters of the file's sequences (stream mode: the whole text; lines mode: the
    /// kept lines without their line ends).
    chars: u64,
    /// Sequences (stream mode: 1 if the file has any character; lines mode: kept lines).
    seqs: u64,
}

/// The characters of a file, decoded in chunks: UTF-8 checked with the byte offset of the
/// first bad byte, a leading byte-order mark dropped, `\r\n` turned into `\n`.
fn for_each_char(path: &Path, mut f: impl FnMut(char) -> Result<()>) -> Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    // On the heap: 4 MB is too much for a stack (the lint sees the 7 bytes of tests).
    #[allow(clippy::useless_vec)]
    let mut buf = vec![0u8; CHUNK + 4];
    // Bytes carried over from the previous chunk: the start of a character it cut in two.
    let mut carry = 0usize;
    let mut offset = 0u64;
    let mut first = true;
    let mut pending_cr = false;
    loop {
        let n = file
            .read(&mut buf[carry..carry + CHUNK])
            .with_context(|| format!("cannot read {}", path.display()))?;
        let len = carry + n;
        let (text, rest) = match std::str::from_utf8(&buf[..len]) {
            Ok(t) => (t, 0),
            Err(e) if e.error_len().is_none() && n > 0 => {
                // An incomplete character at the end of the chunk: finish it next time.
                let valid = e.valid_up_to();
                // SAFETY: `from_utf8` just checked these bytes.
                (
                    unsafe { std::str::from_utf8_unchecked(&buf[..valid]) },
                    len - valid,
                )
            }
            Err(e) => {
                let at = offset + e.valid_up_to() as u64;
                let byte = buf[e.valid_up_to()];
                bail!(
                    "{} is not valid UTF-8: byte 0x{byte:02X} at offset {at} (convert it with e.g. `iconv -t UTF-8`)",
                    path.display()
                );
            }
        };
        let mut chars = text.chars();
        if first {
            first = false;
            if text.starts_with('\u{feff}') {
                chars.next();
            }
        }
        for c in chars {
            if pending_cr {
                pending_cr = false;
                if c != '\n' {
                    f('\r')?;
                }
            }
            if c == '\r' {
                pending_cr = true;
            } else {
                f(c)?;
            }
        }
        if n == 0 {
            break;
        }
        let used = len - rest;
        offset += used as u64;
        buf.copy_within(used..len, 0);
        carry = rest;
    }
    if pending_cr {
        f('\r')?;
    }
    Ok(())
}

/// The lines of a text as `str::lines` cuts them (a `\r` just before a `\n` belongs to the
/// line end), keeping those with a non-space character: fed one character at a time, it
/// reports the characters of kept lines in order and the end of every line.
#[derive(Default)]
struct LineCutter {
    /// Leading whitespace of the current line, run-length encoded, until its first other
    /// character shows that the line is kept (a line of spaces is not).
    pending: Vec<(char, u64)>,
    kept: bool,
    /// A `\r` held back: it is dropped if the line ends right after it.
    cr: bool,
}

/// What a character does to the line being cut.
enum LineEvent {
    /// A character of a kept line.
    Char(char),
    /// A line ended (kept or not).
    End { kept: bool },
}

impl LineCutter {
    fn feed(&mut self, c: char, out: &mut impl FnMut(LineEvent) -> Result<()>) -> Result<()> {
        if c == '\n' {
            self.cr = false;
            return self.end(out);
        }
        if self.cr {
            self.cr = false;
            self.push('\r', out)?;
        }
        if c == '\r' {
            self.cr = true;
            return Ok(());
        }
        self.push(c, out)
    }

    fn push(&mut self, c: char, out: &mut impl FnMut(LineEvent) -> Result<()>) -> Result<()> {
        if self.kept {
            return out(LineEvent::Char(c));
        }
        if c.is_whitespace() {
            match self.pending.last_mut() {
                Some((p, n)) if *p == c => *n += 1,
                _ => self.pending.push((c, 1)),
            }
            return Ok(());
        }
        self.kept = true;
        for (w, n) in std::mem::take(&mut self.pending) {
            for _ in 0..n {
                out(LineEvent::Char(w))?;
            }
        }
        out(LineEvent::Char(c))
    }

    fn end(&mut self, out: &mut impl FnMut(LineEvent) -> Result<()>) -> Result<()> {
        let kept = self.kept;
        self.pending.clear();
        self.kept = false;
        out(LineEvent::End { kept })
    }

    /// The end of the text: a last line without a line end (a lone `\r` stays in it).
    fn finish(&mut self, out: &mut impl FnMut(LineEvent) -> Result<()>) -> Result<()> {
        if self.cr {
            self.cr = false;
            self.push('\r', out)?;
        }
        self.end(out)
    }
}

/// Every character of a file as its sequences hold it (see the module docs): `Char` for
/// each character of a sequence, `End` after each sequence (lines mode: each line; stream
/// mode: the file, if it has any character).
fn for_each_event(
    path: &Path,
    mode: Mode,
    mut on: impl FnMut(LineEvent) -> Result<()>,
) -> Result<()> {
    match mode {
        Mode::Stream => {
            let mut any = false;
            for_each_char(path, |c| {
                any = true;
                on(LineEvent::Char(c))
            })?;
            on(LineEvent::End { kept: any })
        }
        Mode::Lines => {
            let mut cut = LineCutter::default();
            for_each_char(path, |c| cut.feed(c, &mut on))?;
            cut.finish(&mut on)
        }
    }
}

/// Pass 1: counts and the character set of each file.
fn count(files: &[PathBuf], mode: Mode, set: &mut CharSet) -> Result<Vec<FileCount>> {
    files
        .iter()
        .map(|path| {
            let mut fc = FileCount::default();
            for_each_event(path, mode, |e| {
                match e {
                    LineEvent::Char(c) => {
                        set.insert(c);
                        fc.chars += 1;
                    }
                    LineEvent::End { kept } => fc.seqs += kept as u64,
                }
                Ok(())
            })?;
            Ok(fc)
        })
        .collect()
}

/// A set of characters: a bitmap for the Basic Multilingual Plane, a tree for the rest.
struct CharSet {
    bmp: Vec<u64>,
    other: BTreeSet<char>,
}

impl CharSet {
    fn new() -> CharSet {
        CharSet {
            bmp: vec![0; 1 << 10],
            other: BTreeSet::new(),
        }
    }

    #[inline]
    fn insert(&mut self, c: char) {
        let u = c as usize;
        if u < 1 << 16 {
            self.bmp[u >> 6] |= 1 << (u & 63);
        } else {
            self.other.insert(c);
        }
    }

    fn chars(&self) -> Vec<char> {
        let mut out: Vec<char> = (0..1usize << 16)
            .filter(|&u| self.bmp[u >> 6] >> (u & 63) & 1 == 1)
            .filter_map(|u| char::from_u32(u as u32))
            .collect();
        out.extend(&self.other);
        out
    }
}

/// Character to id, with a table for the Basic Multilingual Plane.
struct Encoder<'v> {
    table: Vec<u32>,
    vocab: &'v Vocab,
}

impl<'v> Encoder<'v> {
    fn new(vocab: &'v Vocab) -> Encoder<'v> {
        let mut table = vec![u32::MAX; 1 << 16];
        for (i, &c) in vocab.chars().iter().enumerate() {
            if (c as usize) < 1 << 16 {
                table[c as usize] = (i + SPECIALS) as u32;
            }
        }
        Encoder { table, vocab }
    }

    #[inline]
    fn id(&self, c: char) -> Option<u32> {
        let u = c as usize;
        if u < 1 << 16 {
            Some(self.table[u]).filter(|&id| id != u32::MAX)
        } else {
            self.vocab.id(c)
        }
    }
}

/// The corpus as token streams: what [`read_corpus`] returns.
pub struct Streams {
    pub vocab: Vocab,
    pub train: Tokens,
    pub val: Tokens,
    pub train_chars: usize,
    pub val_chars: usize,
}

/// Which vocabulary the streams are encoded with.
#[derive(Debug, Clone, Copy)]
pub enum VocabSource<'a> {
    /// The corpus's own characters.
    Corpus,
    /// A given one (a checkpoint's); a character outside it is an error.
    Fixed(&'a Vocab),
    /// A given one plus the corpus's characters it lacks (fine-tuning a model on new text).
    Extend(&'a Vocab),
}

/// Reads `files` in two passes (see the module docs), holding out the last `val_fraction`
/// for validation as [`crate::text::split::split`] does.
///
/// Refuses, before allocating them, token streams larger than `max_bytes`.
pub fn read_corpus(
    files: &[PathBuf],
    mode: Mode,
    val_fraction: f64,
    source: VocabSource,
    max_bytes: u64,
) -> Result<Streams> {
    let all = |_: usize, _: usize| (0..usize::MAX, 0..usize::MAX);
    read_corpus_part(files, mode, val_fraction, source, max_bytes, &all)
}

/// The token streams' lengths, training then validation: what [`read_corpus_part`] asks
/// which positions to keep.
pub type Keep<'k> = &'k dyn Fn(usize, usize) -> (Range<usize>, Range<usize>);

/// [`read_corpus`] that keeps of each stream only the positions `keep` names, given the
/// streams' lengths (which the first pass finds): what one process of a distributed run
/// reads. The vocabulary and the split are those of the whole corpus, and every position
/// kept is the token a whole read puts there.
pub fn read_corpus_part(
    files: &[PathBuf],
    mode: Mode,
    val_fraction: f64,
    source: VocabSource,
    max_bytes: u64,
    keep: Keep,
) -> Result<Streams> {
    let mut set = CharSet::new();
    let counts = count(files, mode, &mut set)?;
    let own = || Vocab::from_chars(set.chars()).expect("sorted and distinct");
    let vocab = match source {
        VocabSource::Corpus => own(),
        VocabSource::Fixed(v) => v.clone(),
        VocabSource::Extend(v) => v.union(&own()),
    };
    let enc = Encoder::new(&vocab);
    let chars: u64 = counts.iter().map(|c| c.chars).sum();
    let seqs: u64 = counts.iter().map(|c| c.seqs).sum();
    // Where the split falls: after `cut` characters (stream mode) or sequences (lines
    // mode), as `split::split` puts it.
    let cut = match mode {
        _ if val_fraction <= 0.0 || seqs == 0 => u64::MAX,
        Mode::Stream => chars - (chars as f64 * val_fraction).round() as u64,
        Mode::Lines => {
            let n_val =
                ((seqs as f64 * val_fraction).round() as u64).clamp(1.min(seqs - 1), seqs - 1);
            seqs - n_val
        }
    };
    // Room for every character and the two tokens of every sequence (a sequence cut by the
    // split adds two), so that neither stream is copied as it grows.
    let (train_cap, val_cap) = match mode {
        Mode::Stream if cut != u64::MAX => (cut + 2 * seqs, chars - cut + 2 * seqs),
        _ => (
            chars + 2 * seqs,
            if cut == u64::MAX {
                0
            } else {
                chars / 4 + 2 * seqs
            },
        ),
    };
    let (train_len, val_len) = stream_lengths(files, &counts, mode, cut)?;
    let fits = |n: u64| {
        usize::try_from(n).context("the corpus is too large for this machine's address space")
    };
    let (keep_train, keep_val) = keep(fits(train_len)?, fits(val_len)?);
    let kept = |cap: u64, keep: &Range<usize>| cap.min(keep.len() as u64);
    let (train_cap, val_cap) = (kept(train_cap, &keep_train), kept(val_cap, &keep_val));
    let width = Tokens::with_capacity(vocab.len(), 0).width() as u64;
    let bytes = (train_cap + val_cap).saturating_mul(width);
    if bytes > max_bytes {
        bail!(
            "the corpus's {chars} characters need {} of memory as tokens, but {} is available; use less text",
            human_bytes(bytes),
            human_bytes(max_bytes)
        );
    }
    let mut out = Streams {
        train: Tokens::part(vocab.len(), keep_train, fits(train_cap)?),
        val: Tokens::part(vocab.len(), keep_val, fits(val_cap)?),
        vocab: vocab.clone(),
        train_chars: 0,
        val_chars: 0,
    };
    // Stream mode: characters left before the split; lines mode: sequences seen.
    let mut left = cut;
    let mut seen = 0u64;
    let mut in_val = false;
    let mut open = false;
    for (path, fc) in files.iter().zip(&counts) {
        if fc.chars == 0 && fc.seqs == 0 {
            continue;
        }
        let mut at = 0u64;
        for_each_event(path, mode, |e| {
            match e {
                LineEvent::Char(c) => {
                    let id = enc.id(c).ok_or_else(|| {
                        anyhow::anyhow!(
                            "the corpus does not fit the checkpoint's vocabulary: character {c:?} (U+{:04X}) at character {at} of {} is not in the vocabulary",
                            c as u32,
                            path.display()
                        )
                    })?;
                    at += 1;
                    if !open {
                        open = true;
                        in_val = match mode {
                            Mode::Stream => left == 0,
                            Mode::Lines => seen >= cut,
                        };
                        stream(&mut out, in_val).push(START);
                    } else if mode == Mode::Stream && !in_val && left == 0 {
                        // The split falls inside this sequence: cut it in two.
                        out.train.push(END);
                        out.val.push(START);
                        in_val = true;
                    }
                    stream(&mut out, in_val).push(id);
                    if in_val {
                        out.val_chars += 1;
                    } else {
                        out.train_chars += 1;
                        left = left.saturating_sub(1);
                    }
                }
                LineEvent::End { kept: true } => {
                    if open {
                        stream(&mut out, in_val).push(END);
                        open = false;
                        seen += 1;
                    }
                }
                LineEvent::End { kept: false } => {}
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// The lengths of the training and validation token streams that pass 2 writes, from the
/// counts of pass 1 and the split `cut` (characters in stream mode, sequences in lines
/// mode; `u64::MAX` for none). Lines mode reads again the one file the split falls in.
fn stream_lengths(
    files: &[PathBuf],
    counts: &[FileCount],
    mode: Mode,
    cut: u64,
) -> Result<(u64, u64)> {
    let chars: u64 = counts.iter().map(|c| c.chars).sum();
    let (mut train_chars, mut train_seqs, mut val_seqs) = (0u64, 0u64, 0u64);
    let mut at = 0u64;
    for (path, fc) in files.iter().zip(counts) {
        match mode {
            Mode::Stream if fc.chars > 0 => {
                // One sequence: to training if it starts before the cut, to validation if
                // it ends after it (both if the cut falls inside).
                train_seqs += (at < cut) as u64;
                val_seqs += (at + fc.chars > cut) as u64;
                train_chars += fc.chars.min(cut.saturating_sub(at));
                at += fc.chars;
            }
            Mode::Stream => {}
            Mode::Lines => {
                let train_here = fc.seqs.min(cut.saturating_sub(at));
                if train_here == fc.seqs {
                    train_chars += fc.chars;
                } else if train_here > 0 {
                    let mut seen = 0;
                    for_each_event(path, mode, |e| {
                        match e {
                            LineEvent::Char(_) if seen < train_here => train_chars += 1,
                            LineEvent::End { kept: true } => seen += 1,
                            _ => {}
                        }
                        Ok(())
                    })?;
                }
                train_seqs += train_here;
                val_seqs += fc.seqs - train_here;
                at += fc.seqs;
            }
        }
    }
    Ok((
        train_chars + 2 * train_seqs,
        chars - train_chars + 2 * val_seqs,
    ))
}

fn stream(s: &mut Streams, val: bool) -> &mut Tokens {
    if val { &mut s.val } else { &mut s.train }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::split::{split, tokens};
    use proptest::prelude::*;

    /// The in-memory definition: read each file whole, cut, split, encode.
    fn in_memory(files: &[PathBuf], mode: Mode, vf: f64) -> (Vocab, Vec<u32>, Vec<u32>) {
        let texts: Vec<String> = files
            .iter()
            .map(|f| crate::text::corpus::read_utf8(f).unwrap())
            .collect();
        let seqs = crate::text::split::sequences(&texts, mode);
        let (train, val) = split(seqs, mode, vf);
        let vocab = Vocab::from_texts(train.iter().chain(&val).map(|s| s.as_str()));
        let t = tokens(&vocab, &train).unwrap().to_vec();
        let v = tokens(&vocab, &val).unwrap().to_vec();
        (vocab, t, v)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        /// Streaming in two passes gives exactly the in-memory result, for any text of
        /// lines, spaces, carriage returns, multi-byte characters and byte-order marks, in
        /// several files, in both modes.
        #[test]
        fn streaming_equals_the_in_memory_definition(
            texts in proptest::collection::vec("(\u{feff})?[ab é世😀\t\r\n]{0,40}", 1..4),
            lines in any::<bool>(),
            vf in prop_oneof![Just(0.0), Just(0.1), Just(0.5), 0.0f64..0.95],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let files: Vec<PathBuf> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let p = dir.path().join(format!("{i}.txt"));
                    std::fs::write(&p, t).unwrap();
                    p
                })
                .collect();
            let mode = if lines { Mode::Lines } else { Mode::Stream };
            let (vocab, train, val) = in_memory(&files, mode, vf);
            let s = read_corpus(&files, mode, vf, VocabSource::Corpus, u64::MAX).unwrap();
            prop_assert_eq!(&s.vocab, &vocab);
            prop_assert_eq!(&s.train.to_vec(), &train);
            prop_assert_eq!(&s.val.to_vec(), &val);
            // A part: the same lengths, the same tokens where it keeps them.
            let (a, b) = (train.len() / 3, train.len() / 2 + 1);
            let keep = |n: usize, m: usize| (a.min(n)..b.min(n), m / 2..m);
            let p = read_corpus_part(&files, mode, vf, VocabSource::Corpus, u64::MAX, &keep)
                .unwrap();
            prop_assert_eq!((p.train.len(), p.val.len()), (train.len(), val.len()));
            prop_assert_eq!(p.train.held(), a.min(train.len())..b.min(train.len()));
            for i in p.train.held() {
                prop_assert_eq!(p.train.get(i), train[i]);
            }
            for i in p.val.held() {
                prop_assert_eq!(p.val.get(i), val[i]);
            }
            prop_assert_eq!(p.val.held().len(), val.len() - val.len() / 2);
        }
    }

    #[test]
    fn bad_utf8_is_named_with_its_offset_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, b"abcdefghij\xff\xfe").unwrap();
        let e = read_corpus(
            std::slice::from_ref(&p),
            Mode::Stream,
            0.1,
            VocabSource::Corpus,
            u64::MAX,
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("byte 0xFF at offset 10"), "{e:#}");
        // A multi-byte character cut off by the end of the file.
        std::fs::write(&p, &"abcdefg世".as_bytes()[..9]).unwrap();
        let e = read_corpus(&[p], Mode::Stream, 0.1, VocabSource::Corpus, u64::MAX)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("offset 7"), "{e:#}");
    }

    #[test]
    fn token_memory_is_checked_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "hello world\n".repeat(100)).unwrap();
        let e = read_corpus(&[p], Mode::Stream, 0.1, VocabSource::Corpus, 1000)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("need"), "{e:#}");
    }
}
