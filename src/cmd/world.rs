//! Which processes a training run is: one, or (built with the `mpi` feature) the ranks that
//! `mpirun` or `srun` started. Rank 0 speaks for the run; the others print nothing but
//! their own errors (prefixed with their rank).

use anyhow::{Result, bail};
use charrnn::train::TrainConfig;
use charrnn::train::setup::{self, Spread};
use charrnn::world::{Collective, LOCAL};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

static RANK: AtomicUsize = AtomicUsize::new(0);

/// This process's rank (0 in a run of one process).
pub fn rank() -> usize {
    RANK.load(Ordering::Relaxed)
}

/// `eprintln!` on rank 0 only.
macro_rules! note {
    ($($t:tt)*) => {
        if $crate::cmd::world::rank() == 0 {
            eprintln!($($t)*)
        }
    };
}
pub(crate) use note;

/// An exit code to end with once everything is dropped (MPI finalised, locks released).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The processes a launcher says it started with this one (`mpirun` of Open MPI, MPICH's
/// Hydra, `srun` with PMI), if any.
fn launched_as() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The world of a `train` run: MPI's when there is more than one rank.
pub fn join() -> Result<Box<dyn Collective>> {
    let launched = launched_as().unwrap_or(1);
    #[cfg(feature = "mpi")]
    {
        let Some(mpi) = charrnn::world::mpi::Mpi::init() else {
            bail!("MPI did not start");
        };
        RANK.store(mpi.rank(), Ordering::Relaxed);
        if mpi.size() > 1 {
            return Ok(Box::new(mpi));
        }
    }
    if launched > 1 {
        bail!(
            "started as one of {launched} processes (by mpirun or srun), but {}: {}",
            if cfg!(feature = "mpi") {
                "MPI sees only this one"
            } else {
                "this charrnn was built without the `mpi` feature"
            },
            if cfg!(feature = "mpi") {
                "use the mpirun of the MPI library charrnn was built with"
            } else {
                "build it with `cargo build --release --features mpi`"
            }
        );
    }
    Ok(Box::new(LOCAL))
}

/// What this rank keeps of the corpus (see `charrnn::train::setup::keep_for`): a resumed
/// run's shards and batch are its checkpoint's, a fresh run's those the flags `given` and
/// `seq_len` make; `val_chars` is `--val-chars`.
pub fn keep(
    world: &dyn Collective,
    resumed: Option<TrainConfig>,
    seq_len: Option<usize>,
    given: Spread,
    val_chars: usize,
) -> impl Fn(usize, usize) -> (Range<usize>, Range<usize>) + use<> {
    let d = TrainConfig::default();
    let shape = resumed.unwrap_or_else(|| {
        let d = TrainConfig {
            seq_len: seq_len.unwrap_or(d.seq_len),
            ..d
        };
        setup::spread(d, world.size(), super::cores(), given)
    });
    let eval = charrnn::train::recipe::validation(val_chars);
    setup::keep_for(world.size(), world.rank(), shape, eval)
}

/// On rank 0 of a distributed run: what it sent per step and how long it spent in
/// communication (waiting for the other ranks included), from `steps` taking
/// `train_seconds`.
pub fn report_traffic(world: &dyn Collective, steps: u64, train_seconds: f64) {
    if world.size() == 1 || steps == 0 {
        return;
    }
    let t = world.traffic();
    note!(
        "charrnn: rank 0 sent {:.2} MB per step and spent {:.2} ms per step in communication ({:.1}% of the training time)",
        t.bytes_sent as f64 / steps as f64 / 1e6,
        1e3 * t.seconds / steps as f64,
        100.0 * t.seconds / train_seconds.max(1e-9)
    );
}

/// `result` of this rank's run, unless it failed where the other ranks cannot see it (an
/// unreadable file, a full disk on rank 0): then the error is printed (on ranks other than
/// 0 after half a second, so that an error every rank meets is said once, by rank 0, whose
/// end ends the others first) and every rank is ended, instead of the others waiting for
/// this one in their next collective.
pub fn end_if_failed(world: &dyn Collective, result: Result<()>) -> Result<()> {
    match result {
        Err(e) if world.size() > 1 && !e.is::<Exit>() => {
            if world.rank() > 0 {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            world.end_all(&format!("{e:#}"))
        }
        r => r,
    }
}
