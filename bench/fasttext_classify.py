#!/usr/bin/env python3
"""fastText anchors for `charrnn train --task classify` (README "Classifying lines").

Trains fastText's supervised classifier (PyPI `fasttext`) on the same fastText-format file,
with character n-grams, in three settings, and scores each on the test file:
  defaults    fastText's supervised defaults (dim 100, lr 0.1, 5 epochs) plus character
              n-grams of 2 to 5 (-minn 2 -maxn 5; its defaults have none);
  tutorial    the settings fastText's text-classification tutorial reaches for (25 epochs,
              lr 1.0), with the same n-grams;
  autotune    fastText's own hyper-parameter search (-autotune-validation) on a stratified
              validation split of the training file (the same rule as charrnn's and
              bench/torch_classify.py's: --val-fraction of each label, seeded), for
              --autotune-seconds, then trained on the rest.
The first two train on the whole training file (fastText has no use for a validation
split). Prints one JSON object per setting: seconds of training (autotune: the search), test
accuracy and macro-F1.

Usage: python3 bench/fasttext_classify.py --train data/words/train.txt --test data/words/test.txt \
           --autotune-seconds 120 --threads 2
"""
import argparse
import json
import os
import random
import tempfile
import time

import fasttext


def read(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                label, _, text = line.partition(" ")
                rows.append((label, text.strip()))
    return rows


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for label, text in rows:
            f.write(f"{label} {text}\n")


def score(model, test):
    labels = sorted({l for l, _ in test})
    conf = {t: {p: 0 for p in labels} for t in labels}
    for label, text in test:
        # The binding's own predict() fails under NumPy 2 (np.array(copy=False)); its C++
        # core gives (probability, label) pairs.
        pred = model.f.predict(text, 1, 0.0, "strict")[0][1]
        conf[label][pred if pred in conf else labels[0]] += 1
    acc = sum(conf[c][c] for c in labels) / len(test)
    f1s = []
    for c in labels:
        pred = sum(conf[t][c] for t in labels)
        true = sum(conf[c].values())
        p, r = conf[c][c] / max(pred, 1), conf[c][c] / max(true, 1)
        f1s.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return acc, sum(f1s) / len(f1s)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--train", required=True)
    a.add_argument("--test", required=True)
    a.add_argument("--val-fraction", type=float, default=0.1)
    a.add_argument("--seed", type=int, default=1234)
    a.add_argument("--autotune-seconds", type=int, default=120)
    a.add_argument("--threads", type=int, default=2)
    args = a.parse_args()
    rows, test = read(args.train), read(args.test)
    rng = random.Random(args.seed)
    by_label = {}
    for i, (l, _) in enumerate(rows):
        by_label.setdefault(l, []).append(i)
    held = set()
    for l in sorted(by_label):
        ids = by_label[l][:]
        rng.shuffle(ids)
        held.update(ids[:round(args.val_fraction * len(ids))])
    with tempfile.TemporaryDirectory() as d:
        fit, val = os.path.join(d, "fit.txt"), os.path.join(d, "val.txt")
        write(fit, [r for i, r in enumerate(rows) if i not in held])
        write(val, [r for i, r in enumerate(rows) if i in held])
        settings = [
            ("defaults", args.train, dict(minn=2, maxn=5)),
            ("tutorial", args.train, dict(minn=2, maxn=5, epoch=25, lr=1.0)),
            ("autotune", fit, dict(autotuneValidationFile=val,
                                   autotuneDuration=args.autotune_seconds)),
        ]
        for name, data, kw in settings:
            t0 = time.perf_counter()
            model = fasttext.train_supervised(input=data, thread=args.threads, verbose=0, **kw)
            secs = time.perf_counter() - t0
            acc, f1 = score(model, test)
            a_ = model.f.getArgs()
            print(json.dumps({
                "program": "fasttext", "setting": name, "seconds": secs,
                "dim": a_.dim, "epoch": a_.epoch, "lr": a_.lr, "minn": a_.minn, "maxn": a_.maxn,
                "wordNgrams": a_.wordNgrams, "bucket": a_.bucket,
                "test_accuracy": acc, "test_macro_f1": f1, "test_lines": len(test),
            }))


if __name__ == "__main__":
    main()
