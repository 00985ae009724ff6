//! Labelled lines for classification: one example per line, in fastText's format
//! (`__label__fr bonjour`) or as `label<TAB>text`; the label set; a stratified
//! train/validation split; the examples as character ids.
//!
//! fastText's format: a line starts with one label token `__label__<name>`, then whitespace,
//! then the text (fastText allows several labels per line; a classifier with a softmax over
//! labels takes one, so a second label is an error that names the line). Empty lines are
//! skipped. A line without a label is an error: a silently dropped example would change
//! the data set.

use crate::text::corpus::read_utf8;
use crate::text::vocab::Vocab;
use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How a labelled line is written. The names are those of the command line and checkpoints.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LabelFormat {
    /// `__label__<name> <text>`, as fastText reads it
    Fasttext,
    /// `<name><TAB><text>`
    Tsv,
}

crate::value_enum_display!(LabelFormat);

pub const LABEL_PREFIX: &str = "__label__";

/// One labelled line: its number in the file (from 1), its label's name and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub no: usize,
    pub label: &'a str,
    pub text: &'a str,
}

/// The labelled lines of `text`, in order; errors name `source` and the line.
pub fn parse<'a>(text: &'a str, format: LabelFormat, source: &str) -> Result<Vec<Line<'a>>> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let no = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let (label, rest) = match format {
            LabelFormat::Fasttext => {
                let line = raw.trim_start();
                let Some(after) = line.strip_prefix(LABEL_PREFIX) else {
                    bail!(
                        "{source}:{no}: no label: a line must start with {LABEL_PREFIX}<name> (or pass --format tsv for label<TAB>text)"
                    );
                };
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], after[end..].trim())
            }
            LabelFormat::Tsv => match raw.split_once('\t') {
                Some((label, text)) => (label.trim(), text.trim()),
                None => bail!("{source}:{no}: no tab: with --format tsv a line is label<TAB>text"),
            },
        };
        if label.is_empty() {
            bail!("{source}:{no}: the label is empty");
        }
        if format == LabelFormat::Fasttext && rest.starts_with(LABEL_PREFIX) {
            bail!(
                "{source}:{no}: a second label: charrnn gives each line one label (a softmax over labels)"
            );
        }
        if rest.is_empty() {
            bail!("{source}:{no}: label {label:?} has no text");
        }
        out.push(Line {
            no,
            label,
            text: rest,
        });
    }
    Ok(out)
}

/// The text of a line to classify: fastText's label tokens at its start, if any, are not
/// part of it (so that a labelled test file can be given to `predict`).
pub fn unlabelled(line: &str) -> &str {
    let mut rest = line.trim();
    while let Some(after) = rest.strip_prefix(LABEL_PREFIX) {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        rest = after[end..].trim_start();
    }
    rest
}

/// The ids of the first `max_len` characters of `text` that `vocab` knows, and how many of
/// those characters it does not know (left out: a classifier reads what it can of a line).
pub fn encode(vocab: &Vocab, text: &str, max_len: usize) -> (Vec<u32>, usize) {
    let mut dropped = 0;
    let ids = text
        .chars()
        .take(max_len)
        .filter_map(|c| {
            let id = vocab.id(c);
            dropped += usize::from(id.is_none());
            id
        })
        .collect();
    (ids, dropped)
}

/// Sequences of character ids with a label each, stored end to end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Examples {
    /// Every sequence's ids, one after the other.
    pub ids: Vec<u32>,
    /// [n + 1]: sequence `i` is `ids[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<usize>,
    /// [n]: label ids (indices into the label names).
    pub labels: Vec<u32>,
}

impl Examples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn seq(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i]..self.offsets[i + 1]]
    }

    fn push(&mut self, ids: impl IntoIterator<Item = u32>, label: u32) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.ids.extend(ids);
        self.offsets.push(self.ids.len());
        self.labels.push(label);
    }

    /// Examples per label, [C].
    pub fn counts(&self, labels: usize) -> Vec<usize> {
        let mut c = vec![0; labels];
        for &y in &self.labels {
            c[y as usize] += 1;
        }
        c
    }
}

/// Where a classifier's data came from and how it was split; stored in its checkpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabeledInfo {
    pub format: LabelFormat,
    pub sources: Vec<String>,
    pub val_fraction: f64,
    /// Seed of the split (the run's seed).
    pub split_seed: u64,
    /// Characters kept of each line; longer lines are cut.
    pub max_len: usize,
    pub train_examples: usize,
    pub val_examples: usize,
}

impl LabeledInfo {
    /// The data as this record says it was read and split (by a run being resumed, or to
    /// evaluate on its validation split), with the model's labels and vocabulary; an error
    /// if the files no longer give the split recorded.
    pub fn reload(&self, labels: &[String], vocab: &Vocab) -> Result<(LabeledData, usize)> {
        let paths: Vec<PathBuf> = self.sources.iter().map(PathBuf::from).collect();
        let known = Known::Fixed { labels, vocab };
        let loaded = LabeledData::load(
            &paths,
            self.format,
            self.val_fraction,
            self.split_seed,
            self.max_len,
            known,
        )?;
        let (tr, va) = (loaded.0.train.len(), loaded.0.val.len());
        if (tr, va) != (self.train_examples, self.val_examples) {
            bail!(
                "the data has changed since training: its split now has {tr} training and {va} validation lines, the checkpoint recorded {} and {}",
                self.train_examples,
                self.val_examples
            );
        }
        Ok(loaded)
    }

    /// Labelled lines of `path` in this record's format, all as `train`, for evaluation.
    pub fn read_other(
        &self,
        path: &std::path::Path,
        labels: &[String],
        vocab: &Vocab,
    ) -> Result<(LabeledData, usize)> {
        let known = Known::Fixed { labels, vocab };
        let paths = [path.to_path_buf()];
        LabeledData::load(&paths, self.format, 0.0, 0, self.max_len, known)
    }
}

/// A labelled data set read from files: label names (sorted), the vocabulary, and the split.
#[derive(Debug, Clone)]
pub struct LabeledData {
    pub labels: Vec<String>,
    pub vocab: Vocab,
    pub train: Examples,
    pub val: Examples,
    pub info: LabeledInfo,
    /// Lines cut to `max_len` characters.
    pub truncated: usize,
}

/// What a reader of labelled files starts from: a fresh run finds the labels and characters;
/// a resumed one (or an evaluation) has them fixed.
pub enum Known<'a> {
    Fresh,
    Fixed {
        labels: &'a [String],
        vocab: &'a Vocab,
    },
}

impl LabeledData {
    /// Reads `paths`, each line one example, and splits them: from every label,
    /// `round(val_fraction · count)` examples chosen at random (seeded by `seed`) are held
    /// out. With `known` fixed, a label the model does not have is an error, and characters
    /// it does not know are dropped (their number is returned beside the data).
    pub fn load(
        paths: &[PathBuf],
        format: LabelFormat,
        val_fraction: f64,
        seed: u64,
        max_len: usize,
        known: Known,
    ) -> Result<(LabeledData, usize)> {
        let texts: Vec<String> = paths.iter().map(|p| read_utf8(p)).collect::<Result<_>>()?;
        let mut lines = Vec::new();
        for (p, t) in paths.iter().zip(&texts) {
            lines.extend(parse(t, format, &p.display().to_string())?);
        }
        if lines.is_empty() {
            bail!(
                "no labelled lines in {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let (labels, vocab) = match known {
            Known::Fixed { labels, vocab } => (labels.to_vec(), vocab.clone()),
            Known::Fresh => {
                let set: std::collections::BTreeSet<&str> = lines.iter().map(|l| l.label).collect();
                let labels: Vec<String> = set.into_iter().map(String::from).collect();
                if labels.len() < 2 {
                    bail!(
                        "only one label ({}) in the data: a classifier needs at least two",
                        labels[0]
                    );
                }
                (labels, Vocab::from_texts(lines.iter().map(|l| l.text)))
            }
        };
        let index: BTreeMap<&str, u32> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i as u32))
            .collect();
        let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); labels.len()];
        for (i, l) in lines.iter().enumerate() {
            match index.get(l.label) {
                Some(&y) => by_label[y as usize].push(i),
                None => bail!(
                    "line {}: label {:?} is not one the model was trained with ({})",
                    l.no,
                    l.label,
                    labels.join(", ")
                ),
            }
        }
        let mut in_val = vec![false; lines.len()];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for ids in &mut by_label {
            ids.shuffle(&mut rng);
            let k = (val_fraction * ids.len() as f64).round() as usize;
            for &i in &ids[..k.min(ids.len())] {
                in_val[i] = true;
            }
        }
        let (mut train, mut val) = (Examples::default(), Examples::default());
        let (mut truncated, mut dropped) = (0, 0);
        for (i, l) in lines.iter().enumerate() {
            if l.text.chars().count() > max_len {
                truncated += 1;
            }
            let (ids, d) = encode(&vocab, l.text, max_len);
            dropped += d;
            if ids.is_empty() {
                bail!(
                    "line {}: no character of its text is in the model's vocabulary",
                    l.no
                );
            }
            let dst = if in_val[i] { &mut val } else { &mut train };
            dst.push(ids, index[l.label]);
        }
        let info = LabeledInfo {
            format,
            sources: paths.iter().map(|p| p.display().to_string()).collect(),
            val_fraction,
            split_seed: seed,
            max_len,
            train_examples: train.len(),
            val_examples: val.len(),
        };
        let data = LabeledData {
            labels,
            vocab,
            train,
            val,
            info,
            truncated,
        };
        Ok((data, dropped))
    }

    /// What was read, for a run's summary: labels and lines per label; lines cut and
    /// characters left out (`dropped`), if any.
    pub fn describe(&self, dropped: usize) -> Vec<String> {
        let mut lines = vec![format!(
            "{} labels, {} training / {} validation lines (stratified): {}",
            self.labels.len(),
            self.train.len(),
            self.val.len(),
            self.describe_counts()
        )];
        if self.truncated > 0 || dropped > 0 {
            lines.push(format!(
                "{} lines cut to --seq-len {} characters; {dropped} characters not in the model's vocabulary left out",
                self.truncated, self.info.max_len
            ));
        }
        lines
    }

    /// One line per label: its name and its training and validation examples.
    pub fn describe_counts(&self) -> String {
        let (tr, va) = (
            self.train.counts(self.labels.len()),
            self.val.counts(self.labels.len()),
        );
        self.labels
            .iter()
            .zip(tr.iter().zip(&va))
            .map(|(l, (t, v))| format!("{l} {t}+{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The batches of one epoch, as indices into `lens` (each sequence's length): examples in an
/// order drawn from `(seed, epoch)`, cut into buckets of 64 batches, each bucket sorted by
/// length and cut into batches of `batch`, and the batches shuffled. A batch thus holds
/// sequences of about one length (little padding), and still different ones every epoch.
/// The fewer than `batch` examples left over are left out of this epoch (others next time).
pub fn epoch_batches(lens: &[usize], batch: usize, seed: u64, epoch: usize) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    let mut order: Vec<u32> = (0..lens.len() as u32).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::with_capacity(lens.len() / batch);
    for bucket in order.chunks_mut(64 * batch) {
        bucket.sort_by_key(|&i| lens[i as usize]);
        batches.extend(bucket.chunks_exact(batch).map(|b| b.to_vec()));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_formats_and_names_bad_lines() {
        let ft = "__label__fr bonjour le monde\n\n  __label__en   hello\n";
        let lines = parse(ft, LabelFormat::Fasttext, "f").unwrap();
        assert_eq!(
            lines,
            [
                Line {
                    no: 1,
                    label: "fr",
                    text: "bonjour le monde"
                },
                Line {
                    no: 3,
                    label: "en",
                    text: "hello"
                },
            ]
        );
        let tsv = parse("de\tHallo Welt\nen\thi\n", LabelFormat::Tsv, "t").unwrap();
        assert_eq!(
            (tsv[0].label, tsv[0].text, tsv[1].no),
            ("de", "Hallo Welt", 2)
        );
        for (text, format, want) in [
            ("hello\n", LabelFormat::Fasttext, "f:1: no label"),
            (
                "__label__a __label__b x\n",
                LabelFormat::Fasttext,
                "f:1: a second label",
            ),
            ("ok\n__label__a\n", LabelFormat::Fasttext, "f:1: no label"),
            ("__label__a\n", LabelFormat::Fasttext, "has no text"),
            ("a b\n", LabelFormat::Tsv, "f:1: no tab"),
            ("\tx\n", LabelFormat::Tsv, "label is empty"),
        ] {
            let e = parse(text, format, "f").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert_eq!(unlabelled("__label__x  __label__y bonjour "), "bonjour");
        assert_eq!(unlabelled("plain text"), "plain text");
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.txt");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("__label__a w{i}\n"));
        }
        for i in 0..20 {
            text.push_str(&format!("__label__b v{i}xyzxyz\n"));
        }
        std::fs::write(&path, text).unwrap();
        let load = |seed| {
            LabeledData::load(
                std::slice::from_ref(&path),
                LabelFormat::Fasttext,
                0.1,
                seed,
                5,
                Known::Fresh,
            )
            .unwrap()
            .0
        };
        let d = load(1);
        assert_eq!(d.labels, ["a", "b"]);
        assert_eq!(d.val.counts(2), [10, 2]);
        assert_eq!(d.train.counts(2), [90, 18]);
        assert_eq!(d.truncated, 20);
        assert!((0..d.train.len()).all(|i| d.train.seq(i).len() <= 5));
        assert_eq!(d.val, load(1).val);
        assert_ne!(d.val, load(2).val);
        assert!(d.describe_counts().contains("b 18+2"));
        // A model's fixed labels: an unknown label is an error, unknown characters dropped.
        let other = dir.path().join("o.txt");
        std::fs::write(&other, "__label__a w1Ω\n__label__c q\n").unwrap();
        let (labels, vocab) = (d.labels.clone(), d.vocab.clone());
        let known = || Known::Fixed {
            labels: &labels,
            vocab: &vocab,
        };
        let e = LabeledData::load(
            std::slice::from_ref(&other),
            LabelFormat::Fasttext,
            0.0,
            1,
            9,
            known(),
        );
        assert!(e.unwrap_err().to_string().contains("label \"c\""));
        std::fs::write(&other, "__label__a w1Ω\n").unwrap();
        let (d2, dropped) =
            LabeledData::load(&[other], LabelFormat::Fasttext, 0.0, 1, 9, known()).unwrap();
        assert_eq!((d2.train.seq(0).len(), dropped), (2, 1));
    }

    #[test]
    fn epoch_batches_bucket_by_length() {
        let lens: Vec<usize> = (0..1000).map(|i| 1 + (i * 7919) % 23).collect();
        let b = epoch_batches(&lens, 8, 3, 0);
        assert_eq!(b.len(), 125);
        let mut seen: Vec<u32> = b.iter().flatten().copied().collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
        // Padding: positions computed beyond each sequence's end, against the lengths.
        let pad: usize = b
            .iter()
            .map(|b| {
                let max = b.iter().map(|&i| lens[i as usize]).max().unwrap();
                b.iter().map(|&i| max - lens[i as usize]).sum::<usize>()
            })
            .sum();
        let total: usize = lens.iter().sum();
        assert!(pad * 20 < total, "padding {pad} of {total}");
        assert_ne!(b, epoch_batches(&lens, 8, 3, 1));
        assert_eq!(b, epoch_batches(&lens, 8, 3, 0));
    }
}
