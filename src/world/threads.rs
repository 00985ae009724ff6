//! A world of ranks that are threads of one process: what the distributed code does, run
//! without MPI, so that tests can hold a run of N ranks to the local run bit for bit.

use crate::world::{Collective, tree_into};
use std::sync::{Arc, Barrier, Mutex};

/// One rank of an in-process world (see [`ThreadWorld::run`]).
pub struct ThreadWorld {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

struct Shared {
    barrier: Barrier,
    bytes: Mutex<Vec<Vec<u8>>>,
    floats: Mutex<Vec<Vec<f32>>>,
}

impl ThreadWorld {
    /// Runs `f` on `size` threads, each a rank of one world; returns their results in rank
    /// order.
    pub fn run<R: Send>(size: usize, f: impl Fn(&ThreadWorld) -> R + Sync) -> Vec<R> {
        assert!(size > 0, "a world has at least one rank");
        let shared = Arc::new(Shared {
            barrier: Barrier::new(size),
            bytes: Mutex::new(vec![Vec::new(); size]),
            floats: Mutex::new(vec![Vec::new(); size]),
        });
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..size)
                .map(|rank| {
                    let world = ThreadWorld {
                        rank,
                        size,
                        shared: shared.clone(),
                    };
                    let f = &f;
                    s.spawn(move || f(&world))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }
}

impl Collective for ThreadWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, x: &mut [f32]) {
        self.shared.floats.lock().unwrap()[self.rank] = x.to_vec();
        self.shared.barrier.wait();
        let mut all = self.shared.floats.lock().unwrap().clone();
        // Every rank may read every contribution before any rank deposits its next one.
        self.shared.barrier.wait();
        let mut refs: Vec<&mut [f32]> = all.iter_mut().map(|v| &mut v[..]).collect();
        tree_into(&mut refs);
        x.copy_from_slice(&all[0]);
    }

    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        self.shared.bytes.lock().unwrap()[self.rank] = mine.to_vec();
        self.shared.barrier.wait();
        let all = self.shared.bytes.lock().unwrap().clone();
        self.shared.barrier.wait();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{gather_f64, sum_u64};

    #[test]
    fn ranks_see_each_other() {
        let out = ThreadWorld::run(3, |w| {
            let mut x = vec![w.rank() as f32, 1.0];
            w.sum_f32(&mut x);
            let g = gather_f64(w, &vec![w.rank() as f64; w.rank()]);
            (x, g, sum_u64(w, 10 + w.rank() as u64))
        });
        for (x, g, s) in out {
            assert_eq!(x, [3.0, 3.0]);
            assert_eq!(g, [1.0, 2.0, 2.0]);
            assert_eq!(s, 33);
        }
    }
}
