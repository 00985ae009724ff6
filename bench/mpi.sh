#!/usr/bin/env bash
# One sitting of the distributed-training measurements (bench/results/*-mpi.md): the same
# global batch trained by one process of 2 threads and by 2 ranks of 1 thread (mpirun on
# this machine), alternated 3 times; then the gradient sum against MPI_Allreduce.
# Run under the CPU lock: /work/bin/cpu bench/mpi.sh [corpus] [hidden] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-../shared/data/tinyshakespeare.txt}
hidden=${2:-256}
steps=${3:-100}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cargo build --release --features mpi --example allreduce -q
bin=target/release/charrnn
out=$(mktemp -d)
flags=(--hidden "$hidden" --batch-size 64 --max-steps "$steps" --eval-every 100000 --sample-len 0 --force)
lscpu | grep -E "Model name|CPU family|^Model:"
mpirun --version | head -1
for round in 1 2 3; do
  echo "round $round"
  "$bin" train "$corpus" "${flags[@]}" --threads 2 --dir "$out/local" 2>&1 | grep -o "stopped at step.*chars/s" | sed 's/^/  1 rank x 2 threads: /'
  mpirun --oversubscribe -np 2 "$bin" train "$corpus" "${flags[@]}" --threads 1 --dir "$out/ranks" 2>&1 \
    | grep -E -o "stopped at step.*chars/s|sent.*" | sed 's/^/  2 ranks x 1 thread: /'
  cmp <(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps([d['tensors'],d['optimizer'],d['hidden']]))" "$out/local/latest.json") \
      <(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps([d['tensors'],d['optimizer'],d['hidden']]))" "$out/ranks/latest.json") \
    && echo "  checkpoints: identical"
done
mpirun --oversubscribe -np 2 target/release/examples/allreduce
rm -rf "$out"
