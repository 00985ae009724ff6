//! The processes of one run and what they say to each other. A run is one process
//! ([`Local`]) or several started by `mpirun`/`srun` ([`mpi`](crate::world) with the `mpi`
//! feature); the trainer and the run loop are the same code either way and talk through a
//! [`Collective`].
//!
//! # One order of summation
//!
//! Floating-point addition is commutative but not associative: `(a + b) + c` and
//! `a + (b + c)` may differ in the last bit. A step's gradient is the sum of the gradients
//! of its S batch shards, and for a distributed run to be *the* local run, bit for bit, both
//! must add them in the same grouping. That grouping is [`tree`]: the shards `0..S` split in
//! halves (`0..S/2` and `S/2..S`, the first half the smaller when S is odd), each half
//! summed the same way, then the two halves added.
//!
//! N processes ("ranks") with T shards each hold the contiguous blocks `r·T..(r+1)·T`. Each
//! sums its block by [`tree`], and the ranks' sums are added by [`tree`] over the ranks.
//! When N is a power of two, every split of [`tree`] over `0..N·T` above the blocks falls on
//! a block boundary, so the two are the same sum: `mpirun -np N` with T threads gives the
//! bits of one process with N·T shards, whatever T (and with T = 1, whatever N). With
//! another N and T > 1 the ranks' blocks are not all subtrees of one tree over N·T, the
//! grouping is by rank, and the run is exact and repeatable for that N and T but differs
//! from a one-process run in the last bits.
//!
//! Scalars (a step's loss, a validation's per-shard sums) are gathered to every rank and
//! added by [`tree`] over all shards, which is the local order for any N.

#[cfg(feature = "mpi")]
pub mod mpi;
pub mod threads;

/// How the ranks of a run talk. Every rank calls the same methods in the same order (they
/// are collective); each returns on every rank with the same result.
pub trait Collective {
    /// This process's index, `0..size()`. Rank 0 speaks for the run.
    fn rank(&self) -> usize;
    /// Processes in the run.
    fn size(&self) -> usize;
    /// Replaces `x` on every rank by the element-wise sum of all ranks' `x` (all of the same
    /// length), added in the order of [`tree`] over the ranks.
    fn sum_f32(&self, x: &mut [f32]);
    /// Every rank's `mine`, in rank order (lengths may differ).
    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>>;
    /// Prints `message` as this rank's one-line error and ends every rank of the run (an
    /// error the other ranks cannot see, which would leave them waiting).
    fn end_all(&self, message: &str) -> ! {
        eprintln!("charrnn: {message}");
        std::process::exit(1)
    }
    /// What this rank has sent and how long it has spent in collectives so far (zero where
    /// nothing is measured, as in one process).
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

/// A rank's communication, summed over its collectives.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    /// Bytes sent (a gather counted as if sent to every other rank directly).
    pub bytes_sent: u64,
    /// Seconds inside collectives, waiting for the other ranks included.
    pub seconds: f64,
}

/// One process: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

/// The world of a run that is one process.
pub static LOCAL: Local = Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        vec![mine.to_vec()]
    }
}

/// Every rank's `f64`s, concatenated in rank order.
pub fn gather_f64(world: &dyn Collective, mine: &[f64]) -> Vec<f64> {
    let bytes: Vec<u8> = mine.iter().flat_map(|x| x.to_le_bytes()).collect();
    world
        .all_gather(&bytes)
        .iter()
        .flat_map(|b| b.chunks_exact(8))
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Every rank's `f32`s, one vector per rank.
pub fn gather_f32(world: &dyn Collective, mine: &[f32]) -> Vec<Vec<f32>> {
    let bytes: Vec<u8> = mine.iter().flat_map(|x| x.to_le_bytes()).collect();
    world
        .all_gather(&bytes)
        .iter()
        .map(|b| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect()
}

/// Every rank's `u64`s, concatenated in rank order.
pub fn gather_u64(world: &dyn Collective, mine: &[u64]) -> Vec<u64> {
    let bytes: Vec<u8> = mine.iter().flat_map(|x| x.to_le_bytes()).collect();
    world
        .all_gather(&bytes)
        .iter()
        .flat_map(|b| b.chunks_exact(8))
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The sum over ranks of one integer (exact, so in any order).
pub fn sum_u64(world: &dyn Collective, mine: u64) -> u64 {
    if world.size() == 1 {
        return mine;
    }
    gather_u64(world, &[mine]).iter().sum()
}

/// Rank 0's `x` on every rank.
pub fn broadcast_f64(world: &dyn Collective, x: &mut [f64]) {
    if world.size() == 1 {
        return;
    }
    let mine = if world.rank() == 0 { &x[..] } else { &[] };
    let all = gather_f64(world, mine);
    x.copy_from_slice(&all[..x.len()]);
}

/// Waits until every rank has called it.
pub fn barrier(world: &dyn Collective) {
    if world.size() > 1 {
        world.all_gather(&[]);
    }
}

/// Where [`tree`] splits `0..n` (`n >= 2`): the first half is `0..n/2`.
#[inline]
pub fn split(n: usize) -> usize {
    n / 2
}

/// The sum of `xs` in the canonical order: the two halves at [`split`], each summed the
/// same way, then added. (The identity for one term; 0 for none.)
pub fn tree(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => 0.0,
        1 => xs[0],
        n => {
            let (a, b) = xs.split_at(split(n));
            tree(a) + tree(b)
        }
    }
}

/// [`tree`] over buffers, element by element: `bufs[0]` becomes the sum, the others are
/// used as scratch.
pub fn tree_into(bufs: &mut [&mut [f32]]) {
    let n = bufs.len();
    if n < 2 {
        return;
    }
    let (a, b) = bufs.split_at_mut(split(n));
    tree_into(a);
    tree_into(b);
    for (y, x) in a[0].iter_mut().zip(b[0].iter()) {
        *y += x;
    }
}

/// The rows of `0..len` that rank `rank` of `ranks` owns in a collective that cuts a
/// vector into one segment per rank (as equal as possible, in order).
pub fn segment(len: usize, ranks: usize, rank: usize) -> std::ops::Range<usize> {
    len * rank / ranks..len * (rank + 1) / ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers whose sum depends on the grouping, so that a wrong order shows.
    fn awkward(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let x = (i as f64 * 12.9898).sin() * 43758.5453;
                (x - x.floor() - 0.5) * 10f64.powi((i % 7) as i32 * 2)
            })
            .collect()
    }

    /// The tree over N·T terms is the tree over N blocks of T each when N is a power of two,
    /// for any T; with another N it is the rank grouping only for T = 1.
    #[test]
    fn blocks_of_a_power_of_two_are_subtrees() {
        for n in [1, 2, 4, 8, 16] {
            for t in 1..12 {
                let xs = awkward(n * t);
                let blocks: Vec<f64> = xs.chunks(t).map(tree).collect();
                assert_eq!(tree(&xs).to_bits(), tree(&blocks).to_bits(), "N={n} T={t}");
            }
        }
        let xs = awkward(7);
        let ones: Vec<f64> = xs.chunks(1).map(tree).collect();
        assert_eq!(tree(&xs).to_bits(), tree(&ones).to_bits());
        // The grouping matters: a left fold and a tree differ, and 3 ranks of 2 terms
        // group otherwise than the tree over 6.
        let xs = [1.0, 1e16, -1e16, 1.0, 0.0, 0.0];
        assert_eq!(xs[..4].iter().sum::<f64>(), 1.0);
        assert_eq!(tree(&xs[..4]), 0.0);
        let blocks: Vec<f64> = xs.chunks(2).map(tree).collect();
        assert_eq!((tree(&xs), tree(&blocks)), (2.0, 0.0));
    }

    #[test]
    fn tree_into_adds_like_tree() {
        for n in 1..10 {
            let xs = awkward(n * 3);
            let mut bufs: Vec<Vec<f32>> = xs
                .chunks(3)
                .map(|c| c.iter().map(|&x| x as f32).collect())
                .collect();
            let want: Vec<f32> = (0..3)
                .map(|j| {
                    let col: Vec<f32> = bufs.iter().map(|b| b[j]).collect();
                    tree_f32(&col)
                })
                .collect();
            let mut refs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            tree_into(&mut refs);
            assert_eq!(bufs[0], want, "n={n}");
        }
    }

    fn tree_f32(xs: &[f32]) -> f32 {
        match xs.len() {
            1 => xs[0],
            n => {
                let (a, b) = xs.split_at(split(n));
                tree_f32(a) + tree_f32(b)
            }
        }
    }

    #[test]
    fn segments_cover_the_vector() {
        for len in [0, 1, 5, 100] {
            for ranks in 1..6 {
                let segs: Vec<_> = (0..ranks).map(|r| segment(len, ranks, r)).collect();
                assert_eq!(segs[0].start, 0);
                assert_eq!(segs[ranks - 1].end, len);
                assert!(segs.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
    }
}
