#!/bin/bash
# Anchors of `charrnn train --task classify` on data/words (README "Classifying lines"):
# charrnn, the PyTorch reference (bench/torch_classify.py) and fastText
# (bench/fasttext_classify.py) with the same time budget, each scored on data/words/test.txt,
# then training speed of a 2-layer bidirectional LSTM of width 256 in both programs.
#
# Usage: bench/classify_anchors.sh OUT_DIR [SECONDS]   (from the repository root; each run
# goes through /work/bin/cpu when it exists, so that nothing else runs beside it)
# Needs target/release/charrnn and a Python with torch and fasttext ($PYTHON, default
# /work/venv-torch/bin/python). Writes OUT_DIR/*.json and prints a summary.
set -euo pipefail
OUT=$1
SECS=${2:-120}
PY=${PYTHON:-/work/venv-torch/bin/python}
BIN=target/release/charrnn
TRAIN=data/words/train.txt
TEST=data/words/test.txt
LOCK=""
[ -x /work/bin/cpu ] && LOCK=/work/bin/cpu
mkdir -p "$OUT"
lscpu | grep -E "Model name|CPU family|Model:|^CPU\(s\)" > "$OUT/cpu.txt"

# Accuracy after equal time: the defaults, bidirectional.
$LOCK $BIN train $TRAIN --task classify --bidirectional --time-limit "$SECS" --dir "$OUT/charrnn" --force 2> "$OUT/charrnn.log"
$BIN eval $TEST --dir "$OUT/charrnn" --json > "$OUT/charrnn-test.json"
$LOCK $PY bench/torch_classify.py --train $TRAIN --test $TEST --bidirectional --dropout "${DROPOUT:-0.3}" \
    --time-limit "$SECS" --threads 2 > "$OUT/torch.json"
$LOCK $PY bench/fasttext_classify.py --train $TRAIN --test $TEST --autotune-seconds "$SECS" \
    --threads 2 > "$OUT/fasttext.json"

# Speed: 2-layer bidirectional LSTM, width 256, training characters per second.
for b in 32 128; do
  $LOCK $BIN train $TRAIN --task classify --bidirectional --hidden 256 --batch-size $b \
      --max-steps $((24000 / b)) --eval-every 1000000 --dir "$OUT/speed-charrnn-$b" --force \
      2> "$OUT/speed-charrnn-$b.log"
  $LOCK $PY bench/torch_classify.py --train $TRAIN --test $TEST --bidirectional --hidden 256 \
      --batch $b --max-steps $((24000 / b)) --eval-every 1000000 --threads 2 > "$OUT/speed-torch-$b.json"
done
cat "$OUT/cpu.txt"
grep -h "stopped" "$OUT"/charrnn.log "$OUT"/speed-charrnn-*.log
cat "$OUT/charrnn-test.json" "$OUT/torch.json" "$OUT/fasttext.json" "$OUT"/speed-torch-*.json
