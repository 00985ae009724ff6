//! Times the gradient sum of a distributed run (`Collective::sum_f32`: a reduce-scatter and
//! an allgather in a fixed order of addition) against the library's `MPI_Allreduce`, for
//! the parameter counts of some models, and says how far apart their results are.
//!
//! `cargo build --release --features mpi --example allreduce`, then
//! `mpirun -np 2 target/release/examples/allreduce`.

use charrnn::nn::{CellKind, ModelConfig};
use charrnn::world::Collective;
use charrnn::world::mpi::Mpi;
use std::time::Instant;

fn main() {
    let world = Mpi::init().expect("MPI did not start");
    let (rank, size) = (world.rank(), world.size());
    for hidden in [128, 256, 512, 1024] {
        let config = ModelConfig {
            cell: CellKind::Lstm,
            layers: 2,
            hidden,
            vocab_size: 65,
            dropout: 0.0,
            output_dropout: 0.0,
            weight_drop: 0.0,
        };
        let n = config.param_count().unwrap();
        // Values of a gradient's spread of magnitudes, different on every rank.
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let u = ((i * 7919 + rank * 104_729) % 1_000_003) as f32 / 1_000_003.0 - 0.5;
                u * 10f32.powi((i % 7) as i32 - 5)
            })
            .collect();
        let reps = (200_000_000 / (n * 4)).clamp(3, 200);
        let time = |f: &dyn Fn(&mut [f32])| -> (f64, Vec<f32>) {
            let mut y = x.clone();
            f(&mut y);
            let start = Instant::now();
            for _ in 0..reps {
                y.copy_from_slice(&x);
                f(&mut y);
            }
            (start.elapsed().as_secs_f64() / reps as f64, y)
        };
        let (ours, a) = time(&|y| world.sum_f32(y));
        let (library, b) = time(&|y| world.library_sum_f32(y));
        let differ = a
            .iter()
            .zip(&b)
            .filter(|(p, q)| p.to_bits() != q.to_bits())
            .count();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(p, q)| ((p - q).abs() / p.abs().max(q.abs()).max(1e-30)) as f64)
            .fold(0.0, f64::max);
        if rank == 0 {
            println!(
                "{size} ranks, lstm 2x{hidden} ({n} floats, {:.2} MB): fixed order {:.3} ms, MPI_Allreduce {:.3} ms; {differ} of {n} sums differ in their bits, worst by {worst:.1e} relative",
                n as f64 * 4e-6,
                ours * 1e3,
                library * 1e3
            );
        }
    }
}
