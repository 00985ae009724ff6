#!/usr/bin/env python3
"""Turns the JSON lines printed by ../shared/bench/torch_charlm.py into a run directory with
charrnn's metrics.jsonl, so that `charrnn plot` can draw PyTorch's curve beside charrnn's:

    python3 torch_charlm.py ... > torch.jsonl
    python3 bench/torch_metrics.py torch.jsonl runs/pytorch
    charrnn plot runs/pytorch runs/charrnn --x time --output both.svg

Steps are PyTorch's iterations and seconds its training seconds (evaluation excluded, as in
charrnn's log). Only the standard library is used.
"""
import json
import os
import sys


def convert(lines):
    config, records, last_train = {}, [], float("nan")
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        e = json.loads(line)
        kind = e.get("event")
        if kind == "config":
            config = e
        elif kind == "progress":
            last_train = e["train_loss"]
            windows = config.get("windows_per_epoch") or 1
            records.append({
                "kind": "train", "step": e["iter"], "epoch": e["iter"] / windows,
                "seconds": e["train_seconds"], "train_loss": e["train_loss"],
                "lr": config.get("lr", 0.0), "chars_per_s": e.get("chars_per_s", 0.0),
            })
        elif kind == "val":
            windows = config.get("windows_per_epoch") or 1
            records.append({
                "kind": "val", "step": e["iter"], "epoch": e["iter"] / windows,
                "seconds": e["train_seconds"], "train_loss": last_train,
                "val_loss": e["val_loss"], "lr": config.get("lr", 0.0), "chars_per_s": 0.0,
            })
    return records


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: torch_metrics.py TORCH_OUTPUT.jsonl OUT_DIR")
    with open(sys.argv[1]) as f:
        records = convert(f)
    if not any(r["kind"] == "val" for r in records):
        sys.exit(f"{sys.argv[1]}: no validation events (run torch_charlm.py with --eval-at)")
    os.makedirs(sys.argv[2], exist_ok=True)
    with open(os.path.join(sys.argv[2], "metrics.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    print(f"{sys.argv[2]}/metrics.jsonl: {len(records)} records", file=sys.stderr)


if __name__ == "__main__":
    main()
