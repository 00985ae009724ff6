#!/usr/bin/env python3
"""Runs charrnn training configurations one after the other and reports, for each, the best
validation loss under charrnn's evaluation (each stream warmed up on the text before it) and
under PyTorch's reference script's (32 cold streams, windows of 64), with the curve of
validation loss against training time. This is how the defaults table in the README was
measured.

Usage (from the repository root, release build):
    python3 bench/recipe.py --corpus ../shared/data/tinyshakespeare.txt --out results.json \\
        --run "name=default" --run "name=h512 --hidden 512 --dropout 0.3" ...

Each --run is `name=<label>` followed by charrnn train flags; --time-limit is added from
--seconds unless the run gives its own.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARRNN = os.path.join(ROOT, "target", "release", "charrnn")


def evaluate(ckdir, extra):
    out = subprocess.run([CHARRNN, "eval", "--dir", ckdir, "--json", *extra],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["loss_nats_per_char"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", required=True)
    p.add_argument("--seconds", type=float, default=1200)
    p.add_argument("--run", action="append", required=True)
    p.add_argument("--keep", help="keep the run directories under this directory")
    p.add_argument("--out")
    args = p.parse_args()
    results = []
    base = args.keep or tempfile.mkdtemp()
    for spec in args.run:
        words = shlex.split(spec)
        name = words[0].split("=", 1)[1]
        flags = words[1:]
        if "--time-limit" not in flags and "--max-steps" not in flags:
            flags += ["--time-limit", str(args.seconds)]
        d = os.path.join(base, name)
        cmd = [CHARRNN, "train", args.corpus, "--dir", d, "--force", "--sample-len", "0", *flags]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            continue
        ck = json.load(open(os.path.join(d, "best.json")))
        hist = [(h["seconds"], h["val_loss"]) for h in ck["progress"]["history"]]
        r = {
            "name": name,
            "cmd": " ".join(cmd),
            "model": ck["model"],
            "lr": ck["training"]["lr"],
            "best_step": ck["progress"]["step"],
            "val_loss_warm": evaluate(d, []),
            "val_loss_pytorch_protocol": evaluate(d, ["--warmup", "0", "--streams", "32", "--window", "64"]),
            "curve": hist,
            "stderr_head": res.stderr.splitlines()[:3],
        }
        results.append(r)
        print(json.dumps({k: r[k] for k in ["name", "model", "lr", "best_step", "val_loss_warm",
                                             "val_loss_pytorch_protocol"]}), flush=True)
    if args.out:
        json.dump(results, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
