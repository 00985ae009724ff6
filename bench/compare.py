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
PyTorch with each of three seeds, then measures how many seconds of training charrnn (same
seeds, which are different initial weights there) needs to reach the median of their
validation losses (about 12 minutes; --only-time-to-loss skips the speed table).

Only the standard library is used here; PyTorch is needed only by the reference script.
"""
import argparse
import json
import math
import os
import statistics
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


def time_to_loss(py, seeds, budget=120.0):
    """Wall time to reach PyTorch's validation loss after `budget` training seconds (lstm
    2x128 B32 T64; PyTorch's script trains with Adam at a constant 2e-3, charrnn with its
    own defaults for that model size: the learning rate, dropout and schedule its recipe
    picks for a 2x128 LSTM and a budget of 0.75 x `budget`).
    One seed is one draw of the initial weights; the seed numbers of the two programs have
    nothing in common, and at 120 s seeds alone move PyTorch's validation loss by ~0.03. So
    each program runs with every seed in `seeds`: the target is the median of PyTorch's
    losses, and charrnn's figure is the median of its times to reach it. Both count training
    time only, validation excluded; charrnn validates every 100 steps, which bounds the
    resolution. (PyTorch's script scores the held-out text as 32 cold streams, charrnn's
    validation warms each stream up first; on tinyshakespeare the two differ by about
    0.002 nats, 0.1%.) charrnn runs stop at 0.75 x budget: a ratio above that is a miss
    either way."""
    torch_runs = []
    for seed in seeds:
        t = run_torch(py, "lstm", 2, 128, 32, 64, budget,
                      ["--eval-at", str(budget), "--no-final-eval", "--seed", str(seed)])
        val = [e for e in t["_all"] if e["event"] == "val"][-1]
        torch_runs.append({"seed": seed, "val_loss": val["val_loss"], "iters": val["iter"], "cmd": t["_cmd"]})
        print(json.dumps(torch_runs[-1]), file=sys.stderr, flush=True)
    target = statistics.median(r["val_loss"] for r in torch_runs)
    results = {"torch_runs": torch_runs, "torch_val_loss": target, "torch_seconds": budget, "charrnn": []}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as out:
            cmd = [CHARRNN, "train", CORPUS, "--cell", "lstm", "--layers", "2", "--hidden", "128",
                   "--batch-size", "32", "--seq-len", "64", "--eval-every", "100", "--val-chars", "0",
                   "--seed", str(seed), "--time-limit", str(0.75 * budget), "--sample-len", "0", "--dir", out]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            ck = json.load(open(os.path.join(out, "latest.json")))
        hist = ck["progress"]["history"]
        reached = next((h for h in hist if h["val_loss"] is not None and h["val_loss"] <= target), None)
        results["charrnn"].append({
            "seed": seed,
            "cmd": " ".join(cmd[:-2]) + " --dir <dir>",
            "recipe": next((l for l in res.stderr.splitlines() if "on this machine" in l), ""),
            "lr": ck["training"]["lr"],
            "dropout": ck["model"]["dropout"],
            "seconds_to_target": reached["seconds"] if reached else None,
            "steps_to_target": reached["step"] if reached else None,
            "val_loss_at_end": hist[-1]["val_loss"],
        })
        print(json.dumps(results["charrnn"][-1]), file=sys.stderr, flush=True)
    times = [c["seconds_to_target"] for c in results["charrnn"]]
    # A run that never reached the target counts as slower than any that did.
    med = statistics.median(s if s is not None else math.inf for s in times)
    results["median_seconds"] = med if math.isfinite(med) else None
    results["ratio"] = med / budget if math.isfinite(med) else None
    return results


def quality(py, seconds, isa):
    """Validation loss after `seconds` of training with no other flags in charrnn, against
    PyTorch's best configuration for the machine's class (2x512 with dropout 0.2 on AVX-512
    machines, 2x256 on AVX2-only ones; its defaults otherwise: B32 T64, Adam 2e-3, clip 5),
    both on tinyshakespeare, one after the other, with the curve of validation loss against
    training time. charrnn's best checkpoint is also scored as PyTorch's script scores
    (32 cold streams, windows of 64)."""
    hidden, dropout = ("512", "0.2") if isa == "avx512" else ("256", "0.0")
    marks = ",".join(str(round(seconds * k / 10)) for k in range(1, 11))
    t = run_torch(py, "lstm", 2, int(hidden), 32, 64, seconds,
                  ["--dropout", dropout, "--eval-at", marks, "--no-final-eval"])
    torch_curve = [(e["train_seconds"], e["val_loss"]) for e in t["_all"] if e["event"] == "val"]
    with tempfile.TemporaryDirectory() as out:
        cmd = [CHARRNN, "train", CORPUS, "--time-limit", str(seconds), "--dir", out]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        ck = json.load(open(os.path.join(out, "best.json")))
        cold = subprocess.run([CHARRNN, "eval", "--dir", out, "--json", "--warmup", "0", "--streams", "32",
                               "--window", "64"], capture_output=True, text=True, check=True)
    curve = [(h["seconds"], h["val_loss"]) for h in ck["progress"]["history"] if h["val_loss"] is not None]
    return {
        "torch_cmd": t["_cmd"], "torch_curve": torch_curve,
        "torch_best": min(v for _, v in torch_curve),
        "charrnn_cmd": " ".join(cmd[:-2]), "charrnn_recipe": res.stderr.splitlines()[0],
        "charrnn_curve": curve, "charrnn_best": ck["progress"]["best_val_loss"],
        "charrnn_best_pytorch_protocol": json.loads(cold.stdout)["loss_nats_per_char"],
    }


def cpu():
    """The CPU's model name and the widest vector extension charrnn uses on it."""
    name, flags, ids = "unknown", set(), {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and name == "unknown":
                name = value
            elif key in ("cpu family", "model") and key not in ids:
                ids[key] = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    # Virtual machines often report only "AMD EPYC": the family and model tell the generations apart.
    if ids:
        name += " (family %s, model %s)" % (ids.get("cpu family", "?"), ids.get("model", "?"))
    isa = "avx512" if {"avx512f", "avx512vl"} <= flags else "avx2" if {"avx2", "fma"} <= flags else "portable"
    return {"model": name, "isa": isa, "cores": os.cpu_count()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--torch-python", required=True, help="a Python with torch installed")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--time-to-loss", action="store_true")
    p.add_argument("--only-time-to-loss", action="store_true", help="skip the speed table")
    p.add_argument("--seeds", default="1234,1,2", help="seeds of the time-to-loss runs, comma-separated")
    p.add_argument("--quality", type=float, metavar="SECONDS",
                   help="also train both programs for this long and compare validation losses (1200 for the README's target)")
    p.add_argument("--out", help="also write the raw results as JSON here")
    args = p.parse_args()

    machine = cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores, charrnn's kernels: {machine['isa']}")
    rows = [] if args.only_time_to_loss else speed_table(args.torch_python, args.seconds)
    print("| config | PyTorch train chars/s | charrnn train chars/s | ratio | charrnn GFLOP/s | peak RSS PyTorch / charrnn (MB) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['torch_train']:,.0f} | {r['charrnn_train']:,.0f} | "
              f"{r['charrnn_train'] / r['torch_train']:.2f}x | {r['charrnn_gflops']:.0f} | "
              f"{r['torch_rss_mb']:,.0f} / {r['charrnn_rss_mb']:,.0f} | {r['charrnn_rss_mb'] / r['torch_rss_mb']:.2f}x |")
    for r in rows:
        if r["torch_eval"]:
            print(f"\nevaluation (forward only), {r['config']}: PyTorch {r['torch_eval']:,.0f} chars/s, "
                  f"charrnn {r['charrnn_eval']:,.0f} chars/s: {r['charrnn_eval'] / r['torch_eval']:.2f}x")
    for r in rows:
        if r["torch_sample"]:
            print(f"\nbatch-1 sampling, {r['config']}: PyTorch {r['torch_sample']:,.0f} chars/s, "
                  f"charrnn {r['charrnn_sample']:,.0f} chars/s: {r['charrnn_sample'] / r['torch_sample']:.1f}x")
    seeds = [int(x) for x in args.seeds.split(",")]
    ttl = time_to_loss(args.torch_python, seeds) if args.time_to_loss or args.only_time_to_loss else None
    if ttl:
        print("\n| lstm 2x128 B32 T64 | " + " | ".join(f"seed {r['seed']}" for r in ttl["torch_runs"]) + " | median |")
        print("|---|" + "---|" * (len(ttl["torch_runs"]) + 1))
        print("| PyTorch val loss after 120 s (steps) | " + " | ".join(
            f"{r['val_loss']:.4f} ({r['iters']})" for r in ttl["torch_runs"]) + f" | {ttl['torch_val_loss']:.4f} |")
        fmt = lambda c: f"{c['seconds_to_target']:.1f} s ({c['steps_to_target']})" if c["seconds_to_target"] else "not reached"
        med = f"{ttl['median_seconds']:.1f} s = {ttl['ratio']:.2f}x" if ttl["ratio"] else "not reached"
        print("| charrnn time to that loss, its defaults (steps) | " + " | ".join(fmt(c) for c in ttl["charrnn"]) + f" | {med} |")
        print(f"\ncharrnn's defaults for this model: lr {ttl['charrnn'][0]['lr']}, dropout {ttl['charrnn'][0]['dropout']}")
    q = quality(args.torch_python, args.quality, machine["isa"]) if args.quality else None
    if q:
        print(f"\nvalidation loss after {args.quality:.0f} s: PyTorch {q['torch_best']:.4f} ({q['torch_cmd']}); "
              f"charrnn {q['charrnn_best']:.4f}, {q['charrnn_best_pytorch_protocol']:.4f} scored as PyTorch scores "
              f"({q['charrnn_cmd']}; {q['charrnn_recipe']})")
    if args.out:
        json.dump({"cpu": machine, "speed": rows, "time_to_loss": ttl, "quality": q}, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
