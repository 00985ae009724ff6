#!/bin/bash
# Anchors of `charrnn train --task classify` (README "Classifying lines"): charrnn, the
# PyTorch reference (bench/torch_classify.py) and fastText (bench/fasttext_classify.py) with
# the same time budget on DATA_DIR/train.txt, each scored on DATA_DIR/test.txt; then training
# speed of a 2-layer bidirectional LSTM of width 256 in both programs, one epoch of
# data/words (always that data set: the speed table's).
#
# Usage: bench/classify_anchors.sh OUT_DIR [SECONDS] [DATA_DIR]   (from the repository root;
# DATA_DIR defaults to data/words; a larger split: data/make_words.py --train 20000 --out
# /tmp/words20k). SPEED=0 leaves out the speed runs; FASTTEXT=0 the fastText runs. Each run
# goes through /work/bin/cpu when it exists, so that nothing else runs beside it.
# Needs target/release/charrnn and a Python with torch and fasttext ($PYTHON, default
# /work/venv-torch/bin/python). PyTorch trains on charrnn's classifier schedule (LR_TAIL=0: a
# constant rate). Writes OUT_DIR/*.json and prints a summary.
set -euo pipefail
OUT=$1
SECS=${2:-120}
DATA=${3:-data/words}
PY=${PYTHON:-/work/venv-torch/bin/python}
BIN=target/release/charrnn
TRAIN=$DATA/train.txt
TEST=$DATA/test.txt
LOCK=""
[ -x /work/bin/cpu ] && LOCK=/work/bin/cpu
mkdir -p "$OUT"
lscpu | grep -E "Model name|CPU family|Model:|^CPU\(s\)" > "$OUT/cpu.txt"

# Accuracy after equal time: the defaults, bidirectional.
$LOCK $BIN train $TRAIN --task classify --bidirectional --time-limit "$SECS" --dir "$OUT/charrnn" --force 2> "$OUT/charrnn.log"
$BIN eval $TEST --dir "$OUT/charrnn" --json > "$OUT/charrnn-test.json"
$LOCK $PY bench/torch_classify.py --train $TRAIN --test $TEST --bidirectional --dropout "${DROPOUT:-0.3}" \
    --lr-tail "${LR_TAIL:-0.4}" --time-limit "$SECS" --threads 2 > "$OUT/torch.json"
if [ "${FASTTEXT:-1}" != 0 ]; then
  $LOCK $PY bench/fasttext_classify.py --train $TRAIN --test $TEST --autotune-seconds "$SECS" \
      --threads 2 > "$OUT/fasttext.json"
fi

# Speed: 2-layer bidirectional LSTM, width 256, training characters per second, one epoch of
# data/words (24,000 lines).
TRAIN=data/words/train.txt
TEST=data/words/test.txt
for b in 32 128; do
  [ "${SPEED:-1}" != 0 ] || break
  $LOCK $BIN train $TRAIN --task classify --bidirectional --hidden 256 --batch-size $b \
      --max-steps $((24000 / b)) --eval-every 1000000 --dir "$OUT/speed-charrnn-$b" --force \
      2> "$OUT/speed-charrnn-$b.log"
  $LOCK $PY bench/torch_classify.py --train $TRAIN --test $TEST --bidirectional --hidden 256 \
      --batch $b --max-steps $((24000 / b)) --eval-every 1000000 --threads 2 > "$OUT/speed-torch-$b.json"
done
cat "$OUT/cpu.txt"
grep -h "stopped" "$OUT"/charrnn.log "$OUT"/speed-charrnn-*.log 2>/dev/null || true
cat "$OUT/charrnn-test.json" "$OUT/torch.json"
cat "$OUT/fasttext.json" "$OUT"/speed-torch-*.json 2>/dev/null || true
