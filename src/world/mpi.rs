//! The ranks of a run started by `mpirun` or `srun`, talking over MPI (the `mpi` feature).
//!
//! Gradients are summed by a reduce-scatter then an allgather, written out here with
//! point-to-point messages rather than left to `MPI_Allreduce`, whose order of addition is
//! the library's choice. With a power-of-two number of ranks it is Rabenseifner's
//! algorithm (recursive halving, then doubling: `2 log2 N` rounds), whose partial sums are
//! exactly those of [`crate::world::tree`]; with another number, rank `r` receives every
//! rank's copy of segment `r` of the vector, adds them in the order of the tree over the
//! ranks, and sends the sum to all (`2(N-1)` messages in flight at once). Either way each
//! rank sends `(N-1)/N` of the vector twice, the volume of a ring. Gathers move bytes
//! without arithmetic, so they use the library's own `MPI_Iallgatherv`.
//!
//! Nothing waits forever: every wait polls its requests and, after [`Mpi::timeout`]
//! without completion, prints one line naming what it waited for and ends the whole job
//! with `MPI_Abort`. (A rank that dies is normally noticed sooner by `mpirun`, which ends
//! the others.)

use crate::world::{Collective, Traffic, segment, tree_into};
use mpi::Count;
use mpi::datatype::PartitionMut;
use mpi::request::{RequestCollection, multiple_scope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use std::cell::Cell;
use std::time::{Duration, Instant};

const TAG_SCATTER: i32 = 11;
const TAG_GATHER: i32 = 12;

/// This process's place among the ranks `mpirun` started.
pub struct Mpi {
    // Dropped last: finalises MPI.
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// How long a collective may wait for the other ranks before the job is ended.
    pub timeout: Duration,
    traffic: Cell<Traffic>,
    _universe: mpi::environment::Universe,
}

/// Seconds a collective waits by default (`CHARRNN_MPI_TIMEOUT` overrides): long enough for
/// rank 0 to write a large checkpoint while the others wait for the next step.
pub const DEFAULT_TIMEOUT: f64 = 600.0;

impl Mpi {
    /// Joins the run's ranks (a process started without `mpirun` is a world of one).
    /// `None` if MPI cannot start.
    pub fn init() -> Option<Mpi> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        let world = universe.world();
        let timeout = std::env::var("CHARRNN_MPI_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(DEFAULT_TIMEOUT);
        Some(Mpi {
            rank: world.rank() as usize,
            size: world.size() as usize,
            world,
            timeout: Duration::from_secs_f64(timeout),
            traffic: Cell::new(Traffic::default()),
            _universe: universe,
        })
    }

    fn count(&self, bytes: usize, start: Instant) {
        let t = self.traffic.get();
        self.traffic.set(Traffic {
            bytes_sent: t.bytes_sent + bytes as u64,
            seconds: t.seconds + start.elapsed().as_secs_f64(),
        });
    }

    /// `MPI_Allreduce` of `x` (sum): the library's own algorithm and order of addition, for
    /// comparison with [`Collective::sum_f32`] (`examples/allreduce.rs`); not used in
    /// training, whose sums must not depend on the library.
    pub fn library_sum_f32(&self, x: &mut [f32]) {
        use mpi::collective::SystemOperation;
        let send = x.to_vec();
        self.world
            .all_reduce_into(&send[..], x, SystemOperation::sum());
    }

    /// Ends every rank of the job after printing `message` (one line, naming this rank).
    pub fn abort(&self, message: &str) -> ! {
        eprintln!("charrnn: rank {}: {message}", self.rank);
        self.world.abort(1)
    }

    /// Polls `requests` until all are done; `peers[i]` is the rank request `i` waits on.
    fn wait<D: ?Sized>(
        &self,
        requests: &mut RequestCollection<'_, D>,
        peers: &[usize],
        what: &str,
    ) {
        let start = Instant::now();
        let mut done = vec![false; peers.len()];
        let mut completed = Vec::new();
        let mut polls = 0u64;
        while requests.incomplete() > 0 {
            requests.test_some(&mut completed);
            for (i, _, _) in &completed {
                done[*i] = true;
            }
            polls += 1;
            // Spin first (a step's messages arrive within microseconds of each other), then
            // let the core go while rank 0 writes a checkpoint.
            if polls > 10_000 {
                std::thread::sleep(Duration::from_micros(200));
            }
            if polls.is_multiple_of(64) && start.elapsed() > self.timeout {
                let missing = done.iter().position(|d| !d).map_or(0, |i| peers[i]);
                self.abort(&format!(
                    "no answer from rank {missing} for {:.0} s while {what}; ending the run (the last checkpoint written is kept; CHARRNN_MPI_TIMEOUT sets the wait)",
                    self.timeout.as_secs_f64()
                ));
            }
        }
    }

    fn wait_one<'a, R: ?Sized>(
        &self,
        mut request: mpi::request::Request<'a, R, &mpi::request::LocalScope<'a>>,
        what: &str,
    ) {
        let start = Instant::now();
        let mut polls = 0u64;
        loop {
            match request.test() {
                Ok(_) => return,
                Err(r) => request = r,
            }
            polls += 1;
            if polls > 10_000 {
                std::thread::sleep(Duration::from_micros(200));
            }
            if polls.is_multiple_of(64) && start.elapsed() > self.timeout {
                self.abort(&format!(
                    "the other ranks did not answer for {:.0} s while {what}; ending the run (the last checkpoint written is kept; CHARRNN_MPI_TIMEOUT sets the wait)",
                    self.timeout.as_secs_f64()
                ));
            }
        }
    }
}

impl Mpi {
    /// [`Collective::sum_f32`] for a power-of-two number of ranks, by Rabenseifner's
    /// algorithm: a reduce-scatter by recursive halving, partners 1, 2, 4, … apart (after
    /// the step with partners d apart, a rank holds for its part of the vector the sum of
    /// the aligned block of 2d ranks around it, added as [`crate::world::tree`] adds them:
    /// its block of d, the partner's block of d, then the two), then an allgather by
    /// recursive doubling in the reverse order. log2 N rounds each way, and `(N-1)/N` of
    /// the vector sent each way.
    fn sum_halving(&self, x: &mut [f32]) {
        let start = Instant::now();
        let (n, r) = (self.size, self.rank);
        let (mut lo, mut hi) = (0, x.len());
        let mut taken = Vec::new();
        let mut inbox = vec![0.0f32; x.len().div_ceil(2)];
        let mut sent = 0;
        let mut d = 1;
        while d < n {
            let mid = lo + (hi - lo) / 2;
            let (keep, give) = if r & d == 0 {
                (lo..mid, mid..hi)
            } else {
                (mid..hi, lo..mid)
            };
            let got = &mut inbox[..keep.len()];
            self.exchange(r ^ d, &x[give.clone()], got, "summing gradients");
            // a + b and b + a are the same float: both partners hold the same sum.
            for (y, g) in x[keep.clone()].iter_mut().zip(got.iter()) {
                *y += g;
            }
            sent += give.len();
            taken.push((lo, hi));
            (lo, hi) = (keep.start, keep.end);
            d <<= 1;
        }
        while let Some((outer_lo, outer_hi)) = taken.pop() {
            d >>= 1;
            // My part is one half of the outer range; the partner holds the other.
            let (head, tail) = x[outer_lo..outer_hi].split_at_mut(if lo == outer_lo {
                hi - outer_lo
            } else {
                lo - outer_lo
            });
            let (mine, theirs) = if lo == outer_lo {
                (head, tail)
            } else {
                (tail, head)
            };
            self.exchange(r ^ d, mine, theirs, "sharing summed gradients");
            sent += mine.len();
            (lo, hi) = (outer_lo, outer_hi);
        }
        self.count(sent * 4, start);
    }

    /// Sends `give` to rank `peer` and receives `take` from it, at once.
    fn exchange(&self, peer: usize, give: &[f32], take: &mut [f32], what: &str) {
        let p = self.world.process_at_rank(peer as i32);
        multiple_scope(2, |scope, coll: &mut RequestCollection<'_, [f32]>| {
            coll.add(p.immediate_receive_into_with_tag(scope, take, TAG_SCATTER));
            coll.add(p.immediate_send_with_tag(scope, give, TAG_SCATTER));
            self.wait(coll, &[peer, peer], what);
        });
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn traffic(&self) -> Traffic {
        self.traffic.get()
    }

    fn end_all(&self, message: &str) -> ! {
        self.abort(message)
    }

    fn sum_f32(&self, x: &mut [f32]) {
        let (n, r, len) = (self.size, self.rank, x.len());
        if n == 1 {
            return;
        }
        if n.is_power_of_two() {
            return self.sum_halving(x);
        }
        let start = Instant::now();
        let mine = segment(len, n, r);
        assert!(
            len / n < Count::MAX as usize,
            "a segment of {len} floats is too long for one MPI message"
        );
        // Reduce-scatter: every rank's copy of my segment, then their sum in tree order.
        let mut inbox: Vec<Vec<f32>> = (0..n)
            .map(|j| {
                if j == r {
                    x[mine.clone()].to_vec()
                } else {
                    vec![0.0; mine.len()]
                }
            })
            .collect();
        {
            let (x, world) = (&*x, &self.world);
            let mut peers = Vec::with_capacity(2 * n);
            multiple_scope(2 * n, |scope, coll: &mut RequestCollection<'_, [f32]>| {
                for (j, buf) in inbox.iter_mut().enumerate().filter(|(j, _)| *j != r) {
                    let p = world.process_at_rank(j as i32);
                    coll.add(p.immediate_receive_into_with_tag(scope, &mut buf[..], TAG_SCATTER));
                    peers.push(j);
                }
                for j in (0..n).filter(|&j| j != r) {
                    let p = world.process_at_rank(j as i32);
                    let seg = &x[segment(len, n, j)];
                    coll.add(p.immediate_send_with_tag(scope, seg, TAG_SCATTER));
                    peers.push(j);
                }
                self.wait(coll, &peers, "summing gradients");
            });
        }
        let mut refs: Vec<&mut [f32]> = inbox.iter_mut().map(|v| &mut v[..]).collect();
        tree_into(&mut refs);
        x[mine.clone()].copy_from_slice(&inbox[0]);
        // Allgather: my summed segment to every rank, theirs into place.
        let mut segs: Vec<Option<&mut [f32]>> = Vec::with_capacity(n);
        let mut rest = x;
        for j in 0..n {
            let (a, b) = rest.split_at_mut(segment(len, n, j).len());
            segs.push(Some(a));
            rest = b;
        }
        let own: &[f32] = segs[r].take().unwrap();
        let world = &self.world;
        let mut peers = Vec::with_capacity(2 * n);
        multiple_scope(2 * n, |scope, coll: &mut RequestCollection<'_, [f32]>| {
            for (j, seg) in segs.iter_mut().enumerate() {
                if let Some(seg) = seg.take() {
                    let p = world.process_at_rank(j as i32);
                    coll.add(p.immediate_receive_into_with_tag(scope, seg, TAG_GATHER));
                    peers.push(j);
                }
            }
            for j in (0..n).filter(|&j| j != r) {
                let p = world.process_at_rank(j as i32);
                coll.add(p.immediate_send_with_tag(scope, own, TAG_GATHER));
                peers.push(j);
            }
            self.wait(coll, &peers, "sharing summed gradients");
        });
        let sent = (len - mine.len()) + mine.len() * (n - 1);
        self.count(sent * 4, start);
    }

    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        let n = self.size;
        if n == 1 {
            return vec![mine.to_vec()];
        }
        let start = Instant::now();
        let len = [Count::try_from(mine.len()).expect("a gather under 2 GB")];
        let mut lens = vec![0 as Count; n];
        mpi::request::scope(|scope| {
            let req = self
                .world
                .immediate_all_gather_into(scope, &len[..], &mut lens[..]);
            self.wait_one(req, "agreeing on the next step");
        });
        let displs: Vec<Count> = lens
            .iter()
            .scan(0, |at, &l| {
                let d = *at;
                *at += l;
                Some(d)
            })
            .collect();
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        let mut all = vec![0u8; total];
        {
            let mut part = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
            mpi::request::scope(|scope| {
                let req = self
                    .world
                    .immediate_all_gather_varcount_into(scope, mine, &mut part);
                self.wait_one(req, "agreeing on the next step");
            });
        }
        self.count((mine.len() + 4) * (n - 1), start);
        lens.iter()
            .zip(&displs)
            .map(|(&l, &d)| all[d as usize..(d + l) as usize].to_vec())
            .collect()
    }
}
