//! Token streams stored in the narrowest integer type their vocabulary allows: one byte per
//! character for a vocabulary of up to 256 symbols (any English text, code), two for up to
//! 65,536 (Chinese, Japanese), four beyond. A 1 GB ASCII corpus is then 1 GB of tokens,
//! not 4.

use std::ops::Range;

/// A token stream; ids are read as `u32` whatever the storage.
///
/// It may hold only a part of its stream (see [`Tokens::part`]): the positions a process
/// of a distributed run reads. Its length is still the whole stream's, and reading a
/// position outside the part is a bug that panics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tokens {
    store: Store,
    /// The positions kept: `keep.start..keep.start + store.len()` once the stream is built.
    keep: Range<usize>,
    /// Tokens in the whole stream.
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Store {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Default for Store {
    fn default() -> Self {
        Store::U8(Vec::new())
    }
}

impl Tokens {
    /// An empty stream for ids below `vocab_size`, with room for `n` tokens.
    pub fn with_capacity(vocab_size: usize, n: usize) -> Tokens {
        Tokens::part(vocab_size, 0..usize::MAX, n)
    }

    /// An empty stream that keeps, of the tokens pushed, those at the positions `keep`
    /// (with room for `n`); the others are only counted.
    pub fn part(vocab_size: usize, keep: Range<usize>, n: usize) -> Tokens {
        let n = n.min(keep.len());
        let store = if vocab_size <= 1 << 8 {
            Store::U8(Vec::with_capacity(n))
        } else if vocab_size <= 1 << 16 {
            Store::U16(Vec::with_capacity(n))
        } else {
            Store::U32(Vec::with_capacity(n))
        };
        Tokens {
            store,
            keep,
            len: 0,
        }
    }

    /// The positions `range` of this stream as a part of it (for tests and tools).
    pub fn slice(&self, range: Range<usize>) -> Tokens {
        let mut out = Tokens::part(self.max_vocab(), range.clone(), range.len());
        for i in 0..self.len {
            out.push(if range.contains(&i) { self.get(i) } else { 0 });
        }
        out
    }

    fn max_vocab(&self) -> usize {
        match self.store {
            Store::U8(_) => 1 << 8,
            Store::U16(_) => 1 << 16,
            Store::U32(_) => usize::MAX,
        }
    }

    /// Appends `t`, which must be below the `vocab_size` the stream was made for (kept only
    /// if its position is).
    #[inline]
    pub fn push(&mut self, t: u32) {
        if self.keep.contains(&self.len) {
            match &mut self.store {
                Store::U8(v) => v.push(u8::try_from(t).expect("token id fits the stream")),
                Store::U16(v) => v.push(u16::try_from(t).expect("token id fits the stream")),
                Store::U32(v) => v.push(t),
            }
        }
        self.len += 1;
    }

    /// Tokens in the whole stream (kept or not).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The positions this stream holds (all of them unless it is a part).
    pub fn held(&self) -> Range<usize> {
        let start = self.keep.start.min(self.len);
        start..start + self.stored()
    }

    fn stored(&self) -> usize {
        match &self.store {
            Store::U8(v) => v.len(),
            Store::U16(v) => v.len(),
            Store::U32(v) => v.len(),
        }
    }

    /// Token `i`.
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        let j = i.wrapping_sub(self.keep.start);
        match &self.store {
            Store::U8(v) => v[j] as u32,
            Store::U16(v) => v[j] as u32,
            Store::U32(v) => v[j],
        }
    }

    /// Bytes per token.
    pub fn width(&self) -> usize {
        match self.store {
            Store::U8(_) => 1,
            Store::U16(_) => 2,
            Store::U32(_) => 4,
        }
    }

    /// Every token of a whole stream (a part panics).
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }

    pub fn shrink_to_fit(&mut self) {
        match &mut self.store {
            Store::U8(v) => v.shrink_to_fit(),
            Store::U16(v) => v.shrink_to_fit(),
            Store::U32(v) => v.shrink_to_fit(),
        }
    }
}

impl From<Vec<u32>> for Tokens {
    /// In the narrowest type that holds its largest id.
    fn from(v: Vec<u32>) -> Tokens {
        let max = v.iter().copied().max().unwrap_or(0) as usize;
        let mut t = Tokens::with_capacity(max + 1, v.len());
        if let Store::U32(_) = t.store {
            t.len = v.len();
            t.store = Store::U32(v);
            return t;
        }
        for x in v {
            t.push(x);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowest_storage_reads_back_the_same_ids() {
        for (max, width) in [(200u32, 1), (255, 1), (256, 2), (65535, 2), (65536, 4)] {
            let ids = vec![0, 1, max, 7];
            let t = Tokens::from(ids.clone());
            assert_eq!(t.width(), width, "max {max}");
            assert_eq!(t.to_vec(), ids);
            assert_eq!((t.len(), t.get(2)), (4, max));
        }
        assert_eq!(Tokens::with_capacity(256, 0).width(), 1);
        assert_eq!(Tokens::with_capacity(257, 0).width(), 2);
    }

    #[test]
    fn a_part_keeps_its_positions_and_the_whole_length() {
        let mut t = Tokens::part(300, 2..5, 100);
        for i in 0..9 {
            t.push(i * 40);
        }
        assert_eq!((t.len(), t.held(), t.width()), (9, 2..5, 2));
        assert_eq!((t.get(2), t.get(4)), (80, 160));
        let whole = Tokens::from((0..9).map(|i| i * 40).collect::<Vec<u32>>());
        assert_eq!(whole.slice(2..5), t);
        assert_eq!(whole.held(), 0..9);
        assert!(std::panic::catch_unwind(|| t.get(5)).is_err());
        assert!(std::panic::catch_unwind(|| t.get(1)).is_err());
    }
}
