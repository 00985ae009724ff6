//! The vocabulary: a corpus's Unicode characters in sorted order plus `<start>`/`<end>`.
//!
//! Ids are fixed: `<start>` is 0, `<end>` is 1, and the characters follow in code-point
//! order from 2. Sorting (rather than first-seen order) makes the same text give the same
//! ids whatever order its files were read in.

use std::collections::BTreeSet;
use std::fmt;

/// Id of the `<start>` token: the model sees it as the first input of every sequence.
pub const START: u32 = 0;
/// Id of the `<end>` token: the model learns to predict it after a sequence's last char.
pub const END: u32 = 1;
/// Number of special tokens before the first character id.
pub const SPECIALS: usize = 2;

/// A character that the vocabulary does not contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChar {
    pub ch: char,
    /// Position of the character in the encoded text, counted in characters.
    pub index: usize,
}

impl fmt::Display for UnknownChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "character {:?} (U+{:04X}) at position {} is not in the vocabulary",
            self.ch, self.ch as u32, self.index
        )
    }
}

impl std::error::Error for UnknownChar {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    /// The distinct characters of all `texts`, sorted by code point.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vocab {
        let mut set = BTreeSet::new();
        for text in texts {
            set.extend(text.chars());
        }
        Vocab {
            chars: set.into_iter().collect(),
        }
    }

    /// Rebuilds a vocabulary from its characters (as stored in a checkpoint); they must be
    /// strictly increasing so that ids mean the same thing as when the model was trained.
    pub fn from_chars(chars: Vec<char>) -> Result<Vocab, String> {
        if let Some(w) = chars.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!(
                "characters must be sorted and distinct, found {:?} before {:?}",
                w[0], w[1]
            ));
        }
        Ok(Vocab { chars })
    }

    /// The characters of both vocabularies, sorted.
    pub fn union(&self, other: &Vocab) -> Vocab {
        let mut chars = self.chars.clone();
        chars.extend(&other.chars);
        chars.sort_unstable();
        chars.dedup();
        Vocab { chars }
    }

    /// The characters, in id order (id = index + SPECIALS).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The characters of this vocabulary that `other` lacks, in id order.
    pub fn chars_not_in(&self, other: &Vocab) -> Vec<char> {
        self.chars
            .iter()
            .copied()
            .filter(|c| other.id(*c).is_none())
            .collect()
    }

    /// V: characters plus the two special tokens.
    pub fn len(&self) -> usize {
        self.chars.len() + SPECIALS
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    pub fn id(&self, ch: char) -> Option<u32> {
        self.chars
            .binary_search(&ch)
            .ok()
            .map(|i| (i + SPECIALS) as u32)
    }

    /// Ids of the characters of `text`, without start/end tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, UnknownChar> {
        text.chars()
            .enumerate()
            .map(|(index, ch)| self.id(ch).ok_or(UnknownChar { ch, index }))
            .collect()
    }

    /// The character of a character id; `None` for `<start>`, `<end>` or an id out of range.
    pub fn char_of(&self, id: u32) -> Option<char> {
        (id as usize)
            .checked_sub(SPECIALS)
            .and_then(|i| self.chars.get(i).copied())
    }

    /// Text of `ids`, skipping the special tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().filter_map(|&id| self.char_of(id)).collect()
    }

    /// A printable name for any id: the character, or `<start>` / `<end>`.
    pub fn token_name(&self, id: u32) -> String {
        match id {
            START => "<start>".into(),
            END => "<end>".into(),
            _ => self.char_of(id).map(String::from).unwrap_or("<?>".into()),
        }
    }
}

/// One-hot encoding: row `n` of the result is the unit vector of `ids[n]`.
///
/// ids: [N] -> [N, V]. The model never multiplies by this matrix: `one_hot(x) · W^T` is
/// column `x` of `W`, so the input layer gathers columns instead (see `model`). The function
/// exists to state the definition and to test the gather against it.
pub fn one_hot(ids: &[u32], vocab_size: usize) -> ndarray::Array2<f32> {
    let mut out = ndarray::Array2::zeros((ids.len(), vocab_size));
    for (n, &id) in ids.iter().enumerate() {
        out[[n, id as usize]] = 1.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_points_sorted_with_fixed_specials() {
        let v = Vocab::from_texts(["héllo 世界", "😀b"]);
        assert_eq!(v.chars(), &[' ', 'b', 'h', 'l', 'o', 'é', '世', '界', '😀']);
        assert_eq!(v.len(), 11);
        assert_eq!(v.id(' '), Some(2));
        assert_eq!(v.id('😀'), Some(10));
        assert_eq!(v.id('e'), None);
        assert_eq!(v.token_name(START), "<start>");
        assert_eq!(v.token_name(END), "<end>");
    }

    #[test]
    fn encode_decode_round_trip() {
        let text = "世界 héllo 😀";
        let v = Vocab::from_texts([text]);
        let ids = v.encode(text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(v.decode(&ids), text);
        let mut with_specials = vec![START];
        with_specials.extend(&ids);
        with_specials.push(END);
        assert_eq!(v.decode(&with_specials), text);
    }

    #[test]
    fn unknown_char_is_named() {
        let v = Vocab::from_texts(["abc"]);
        let err = v.encode("abz").unwrap_err();
        assert_eq!(err, UnknownChar { ch: 'z', index: 2 });
        assert!(err.to_string().contains("'z'"));
        assert!(err.to_string().contains("U+007A"));
    }

    #[test]
    fn from_chars_rejects_unsorted() {
        assert!(Vocab::from_chars(vec!['a', 'b']).is_ok());
        assert!(Vocab::from_chars(vec!['b', 'a']).is_err());
        assert!(Vocab::from_chars(vec!['a', 'a']).is_err());
    }

    #[test]
    fn one_hot_rows_are_unit_vectors() {
        let m = one_hot(&[3, 0, 3], 5);
        assert_eq!(m.shape(), &[3, 5]);
        assert_eq!(m.sum(), 3.0);
        assert_eq!(m[[0, 3]], 1.0);
        assert_eq!(m[[1, 0]], 1.0);
        assert_eq!(m[[2, 3]], 1.0);
    }
}
