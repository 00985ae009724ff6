#!/usr/bin/env python3
"""Side-by-side speed of charrnn and the PyTorch reference trainer, in one sitting.

Usage (from the repository root; PyTorch installed in some Python, e.g. a venv):

    cargo build --release
    python3 bench/compare.py --torch-python /path/to/venv/bin/python [--seconds 20] [--out results.json]

For each configuration it runs ../shared/bench/torch_charlm.py (2 threads, Adam, clip 5,
one-hot input, state carried) and `charrnn bench` with the same model, batch and window on
../shared/data/tinyshakespeare.txt, one after the other, and prints a Markdown table of
training, evaluation and batch-1 sampling characters per second, peak resident memory, and
the ratios charrnn / PyTorch. With --time-to-loss it also trains the 2x128 LSTM for 120 s in
PyTorch, then measures how many seconds of training charrnn needs to reach the same
validation loss.

Only the standard library is used here; PyTorch is needed only by the reference script.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
CORPUS = os.path.join(SHARED, "data", "tinyshakespeare.txt")
TORCH_SCRIPT = os.path.join(SHARED, "bench", "torch_charlm.py")
CHARRNN = os.path.join(ROOT, "target", "release", "charrnn")

CONFIGS = [
    # (cell, layers, hidden, batch, window)
    ("lstm", 2, 128, 32, 64),
    ("lstm", 2, 256, 64, 100),
    ("lstm", 2, 512, 64, 100),
    ("gru", 2, 256, 64, 100),
    ("rnn", 2, 256, 64, 100),
]


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def run_torch(py, cell, layers, hidden, batch, seq, seconds, extra=()):
    cmd = [py, TORCH_SCRIPT, "--data", CORPUS, "--cell", cell, "--layers", str(layers),
           "--hidden", str(hidden), "--batch", str(batch), "--seq", str(seq),
           "--seconds", str(seconds), "--threads", "2", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    events = {e["event"]: e for e in json_lines(res.stdout)}
    events["_cmd"] = " ".join(cmd)
    events["_all"] = json_lines(res.stdout)
    return events


def run_charrnn_bench(cell, layers, hidden, batch, seq, seconds):
    cmd = [CHARRNN, "bench", CORPUS, "--cell", cell, "--layers", str(layers), "--hidden", str(hidden),
           "--batch-size", str(batch), "--seq-len", str(seq), "--seconds", str(seconds), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    out["_cmd"] = " ".join(cmd)
    return out


def speed_table(py, seconds):
    rows = []
    for cell, layers, hidden, batch, seq in CONFIGS:
        sample = cell == "lstm" and hidden == 256
        t = run_torch(py, cell, layers, hidden, batch, seq, seconds,
                      ["--sample-bench"] if sample else ["--no-final-eval"])
        c = run_charrnn_bench(cell, layers, hidden, batch, seq, seconds)
        row = {
            "config": f"{cell} {layers}x{hidden} B{batch} T{seq}",
            "torch_train": t["train_done"]["chars_per_s"],
            "charrnn_train": c["train_chars_per_s"],
            "charrnn_gflops": c["train_gflops"],
            "torch_rss_mb": t["done"]["max_rss_mb"],
            "charrnn_rss_mb": c["peak_rss_mb"],
            "charrnn_eval": c["eval_chars_per_s"],
            "torch_eval": t.get("val_final", {}).get("eval_chars_per_s"),
            "charrnn_sample": c["sample_chars_per_s"],
            "torch_sample": t.get("sample_bench", {}).get("chars_per_s_median"),
            "torch_cmd": t["_cmd"],
            "charrnn_cmd": c["_cmd"],
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def time_to_loss(py, budget=120.0):
    """PyTorch's validation loss after `budget` training seconds (lstm 2x128 B32 T64), and
    the training seconds charrnn needs to reach it (same model, batch, window, optimizer,
    constant learning rate as PyTorch's script has, at the rate given). Both count training time only, validation excluded; charrnn
    validates every 100 steps (about a second), which bounds the resolution."""
    t = run_torch(py, "lstm", 2, 128, 32, 64, budget, ["--eval-at", str(budget), "--no-final-eval"])
    target = [e for e in t["_all"] if e["event"] == "val"][-1]["val_loss"]
    results = {"torch_val_loss": target, "torch_seconds": budget, "torch_cmd": t["_cmd"], "charrnn": []}
    for lr in ["0.002", "0.004"]:
        with tempfile.TemporaryDirectory() as out:
            cmd = [CHARRNN, "train", CORPUS, "--cell", "lstm", "--layers", "2", "--hidden", "128",
                   "--batch-size", "32", "--seq-len", "64", "--lr", lr, "--lr-decay", "1", "--eval-every", "100",
                   "--time-limit", str(1.5 * budget), "--sample-len", "0", "--out", out]
            subprocess.run(cmd, capture_output=True, text=True, check=True)
            ck = json.load(open(os.path.join(out, "latest.json")))
        hist = ck["progress"]["history"]
        reached = next((h for h in hist if h["val_loss"] is not None and h["val_loss"] <= target), None)
        results["charrnn"].append({
            "lr": float(lr),
            "cmd": " ".join(cmd[:-2]) + " --out <dir>",
            "seconds_to_target": reached["seconds"] if reached else None,
            "ratio": reached["seconds"] / budget if reached else None,
            "val_loss_at_end": hist[-1]["val_loss"],
        })
        print(json.dumps(results["charrnn"][-1]), file=sys.stderr, flush=True)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--torch-python", required=True, help="a Python with torch installed")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--time-to-loss", action="store_true")
    p.add_argument("--only-time-to-loss", action="store_true", help="skip the speed table")
    p.add_argument("--out", help="also write the raw results as JSON here")
    args = p.parse_args()

    rows = [] if args.only_time_to_loss else speed_table(args.torch_python, args.seconds)
    print("| config | PyTorch train chars/s | charrnn train chars/s | ratio | charrnn GFLOP/s | peak RSS PyTorch / charrnn (MB) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['torch_train']:,.0f} | {r['charrnn_train']:,.0f} | "
              f"{r['charrnn_train'] / r['torch_train']:.2f}x | {r['charrnn_gflops']:.0f} | "
              f"{r['torch_rss_mb']:,.0f} / {r['charrnn_rss_mb']:,.0f} | {r['charrnn_rss_mb'] / r['torch_rss_mb']:.2f}x |")
    for r in rows:
        if r["torch_sample"]:
            print(f"\nbatch-1 sampling, {r['config']}: PyTorch {r['torch_sample']:,.0f} chars/s, "
                  f"charrnn {r['charrnn_sample']:,.0f} chars/s: {r['charrnn_sample'] / r['torch_sample']:.1f}x")
    ttl = time_to_loss(args.torch_python) if args.time_to_loss or args.only_time_to_loss else None
    if ttl:
        print(f"\nPyTorch lstm 2x128 B32 T64 validation loss after 120 s: {ttl['torch_val_loss']:.4f}")
        for c in ttl["charrnn"]:
            s = c["seconds_to_target"]
            print(f"charrnn --lr {c['lr']}: " + (f"{s:.1f} s ({c['ratio']:.2f}x)" if s else "not reached in 120 s")
                  + f", final validation loss {c['val_loss_at_end']:.4f} (run stops at 20 epochs or {1.5 * 120:.0f} s)")
    if args.out:
        json.dump({"speed": rows, "time_to_loss": ttl}, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
