//! Token streams stored in the narrowest integer type their vocabulary allows: one byte per
//! character for a vocabulary of up to 256 symbols (any English text, code), two for up to
//! 65,536 (Chinese, Japanese), four beyond. A 1 GB ASCII corpus is then 1 GB of tokens,
//! not 4.

/// A token stream; ids are read as `u32` whatever the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tokens {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens::U8(Vec::new())
    }
}

impl Tokens {
    /// An empty stream for ids below `vocab_size`, with room for `n` tokens.
    pub fn with_capacity(vocab_size: usize, n: usize) -> Tokens {
        if vocab_size <= 1 << 8 {
            Tokens::U8(Vec::with_capacity(n))
        } else if vocab_size <= 1 << 16 {
            Tokens::U16(Vec::with_capacity(n))
        } else {
            Tokens::U32(Vec::with_capacity(n))
        }
    }

    /// Appends `t`, which must be below the `vocab_size` the stream was made for.
    #[inline]
    pub fn push(&mut self, t: u32) {
        match self {
            Tokens::U8(v) => v.push(u8::try_from(t).expect("token id fits the stream")),
            Tokens::U16(v) => v.push(u16::try_from(t).expect("token id fits the stream")),
            Tokens::U32(v) => v.push(t),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Tokens::U8(v) => v.len(),
            Tokens::U16(v) => v.len(),
            Tokens::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token `i`.
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Tokens::U8(v) => v[i] as u32,
            Tokens::U16(v) => v[i] as u32,
            Tokens::U32(v) => v[i],
        }
    }

    /// Bytes per token.
    pub fn width(&self) -> usize {
        match self {
            Tokens::U8(_) => 1,
            Tokens::U16(_) => 2,
            Tokens::U32(_) => 4,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }

    pub fn shrink_to_fit(&mut self) {
        match self {
            Tokens::U8(v) => v.shrink_to_fit(),
            Tokens::U16(v) => v.shrink_to_fit(),
            Tokens::U32(v) => v.shrink_to_fit(),
        }
    }
}

impl From<Vec<u32>> for Tokens {
    /// In the narrowest type that holds its largest id.
    fn from(v: Vec<u32>) -> Tokens {
        let max = v.iter().copied().max().unwrap_or(0) as usize;
        let mut t = Tokens::with_capacity(max + 1, v.len());
        if let Tokens::U32(_) = t {
            return Tokens::U32(v);
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
}
