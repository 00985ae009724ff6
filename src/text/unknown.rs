//! Characters of a text that a model's vocabulary lacks: where the first one is (line and
//! column, as editors count them), how many there are, and the text without them for
//! commands that may go on (`eval --skip-unknown`, `viz --skip-unknown`).

use crate::text::split::Mode;
use crate::text::vocab::Vocab;
use std::collections::BTreeMap;

/// A character at a place in a text: 1-based line, and 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub ch: char,
    pub line: usize,
    pub column: usize,
}

/// The characters of a text outside a vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnknownChars {
    /// The first, with its place.
    pub first: Option<Located>,
    /// How often each occurs.
    pub counts: BTreeMap<char, usize>,
}

impl UnknownChars {
    /// All of them, counting repeats.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// `'-' (U+002D) ×3, 'é' (U+00E9) ×1`: at most `most` kinds, the commonest first.
    pub fn list(&self, most: usize) -> String {
        let mut kinds: Vec<(char, usize)> = self.counts.iter().map(|(&c, &n)| (c, n)).collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut s: Vec<String> = kinds
            .iter()
            .take(most)
            .map(|(c, n)| format!("{c:?} (U+{:04X}) ×{n}", *c as u32))
            .collect();
        if kinds.len() > most {
            s.push(format!("… ({} more kinds)", kinds.len() - most));
        }
        s.join(", ")
    }

    /// The one-line refusal for `source`: `names.txt:3:5: character '-' (U+002D) is not in
    /// the vocabulary (4 unknown characters in all: …); pass --skip-unknown to leave them
    /// out`. Empty if there are none.
    pub fn refusal(&self, source: &str) -> Option<String> {
        let f = self.first?;
        let total = self.total();
        let more = if total > 1 {
            format!(" ({total} unknown characters in all: {})", self.list(5))
        } else {
            String::new()
        };
        Some(format!(
            "{source}:{}:{}: character {:?} (U+{:04X}) is not in the model's vocabulary{more}; the model knows only the characters of its training text: pass --skip-unknown to leave such characters out",
            f.line, f.column, f.ch, f.ch as u32
        ))
    }
}

/// Whether `ch` is a character the model reads in `mode`: in lines mode a newline ends a
/// line (it is `<end>`, not a character of the vocabulary).
fn known(vocab: &Vocab, mode: Mode, ch: char) -> bool {
    (mode == Mode::Lines && ch == '\n') || vocab.id(ch).is_some()
}

/// The characters of `text` that `vocab` lacks (for a model trained in `mode`).
pub fn scan(vocab: &Vocab, text: &str, mode: Mode) -> UnknownChars {
    let mut out = UnknownChars::default();
    let (mut line, mut column) = (1, 0);
    for ch in text.chars() {
        column += 1;
        if !known(vocab, mode, ch) {
            out.first.get_or_insert(Located { ch, line, column });
            *out.counts.entry(ch).or_default() += 1;
        }
        if ch == '\n' {
            line += 1;
            column = 0;
        }
    }
    out
}

/// `text` without the characters `vocab` lacks.
pub fn without_unknown(vocab: &Vocab, text: &str, mode: Mode) -> String {
    text.chars().filter(|&c| known(vocab, mode, c)).collect()
}

/// The first `n` characters of `text`.
pub fn prefix(text: &str, n: usize) -> &str {
    text.char_indices().nth(n).map_or(text, |(i, _)| &text[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_lines_and_columns_of_characters() {
        let v = Vocab::from_texts(["abé\n"]);
        let u = scan(&v, "ab\néa-b\nx-", Mode::Stream);
        assert_eq!(
            u.first,
            Some(Located {
                ch: '-',
                line: 2,
                column: 3
            })
        );
        assert_eq!(u.total(), 3);
        let e = u.refusal("f.txt").unwrap();
        assert!(e.starts_with("f.txt:2:3: character '-' (U+002D)"), "{e}");
        assert!(e.contains("3 unknown characters in all: '-' (U+002D) ×2, 'x' (U+0078) ×1"));
        assert_eq!(
            without_unknown(&v, "ab\néa-b\nx-", Mode::Stream),
            "ab\néab\n"
        );
        assert!(scan(&v, "abba", Mode::Stream).refusal("f").is_none());
    }

    #[test]
    fn a_newline_is_a_line_end_in_lines_mode() {
        let v = Vocab::from_texts(["ab"]);
        assert_eq!(scan(&v, "ab\nba\n", Mode::Lines).total(), 0);
        assert_eq!(scan(&v, "ab\nba\n", Mode::Stream).total(), 2);
        assert_eq!(prefix("héllo", 2), "hé");
        assert_eq!(prefix("hé", 5), "hé");
    }
}
