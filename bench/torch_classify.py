#!/usr/bin/env python3
"""PyTorch reference for `charrnn train --task classify`: the same model, data handling and
split rule written the way a PyTorch user would, for the anchor table in the README
("Classifying lines") and bench/results.

Model: one-hot characters (a frozen identity nn.Embedding(V, V), so that the input product
is the same one-hot @ W_ih as charrnn's gather) -> torch.nn.{RNN,LSTM,GRU}(V, H, L,
bidirectional=..., batch_first=True) over pack_padded_sequence (padding never reaches a valid
position) -> pooling (final: the last layer's h_n of both directions; mean / max over the
valid positions) -> nn.Linear(D, C) -> cross_entropy. Adam, at a constant rate or (--lr-tail
F > 0) on charrnn's classifier schedule: a 2% linear warm-up from a tenth of the rate, the
rate held, then a half cosine to 5% of it over the last F of the run (of --time-limit or
--max-steps, whichever is further along, as charrnn measures it); gradient norm clipped, dropout (as charrnn's: between layers and on the pooled vector), batches of lines
of about one length (as charrnn: an epoch's lines shuffled, cut into
buckets of 64 batches, each sorted by length and cut into batches, the batches shuffled).

Data: fastText-format lines (`__label__x text`); the labels sorted; the vocabulary is the
training file's characters; a stratified split holds out --val-fraction of each label
(seeded) for validation; characters beyond --max-len are cut, unknown ones left out.

Runs until --time-limit seconds of wall clock (validation included, as charrnn's) or
--max-steps; validates every --eval-every steps and keeps the parameters with the highest
validation accuracy (as charrnn keeps a classifier's best state; --keep loss: the lowest
validation loss); at the end scores --test with them. Prints one JSON object: training
characters per second (training steps only), steps, epochs, the best validation loss and
accuracy, and test accuracy and macro-F1.

Usage: python3 bench/torch_classify.py --train data/words/train.txt --test data/words/test.txt \
           --bidirectional --time-limit 120 --threads 2
"""
import argparse
import copy
import json
import math
import random
import time

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def read(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            label, _, text = line.partition(" ")
            rows.append((label[len("__label__"):], text.strip()))
    return rows


def encode(rows, stoi, labels, max_len):
    out = []
    for label, text in rows:
        ids = [stoi[c] for c in text[:max_len] if c in stoi]
        if ids:
            out.append((ids, labels.index(label)))
    return out


def epoch_batches(lens, batch, rng):
    order = list(range(len(lens)))
    rng.shuffle(order)
    batches = []
    for i in range(0, len(order), 64 * batch):
        bucket = sorted(order[i:i + 64 * batch], key=lambda j: lens[j])
        batches += [bucket[k:k + batch] for k in range(0, len(bucket) - batch + 1, batch)]
    rng.shuffle(batches)
    return batches


class Classifier(nn.Module):
    def __init__(self, cell, vocab, hidden, layers, bidirectional, pool, labels, dropout):
        super().__init__()
        self.embed = nn.Embedding(vocab, vocab)
        self.embed.weight.data.copy_(torch.eye(vocab))
        self.embed.weight.requires_grad = False
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = cls(vocab, hidden, layers, bidirectional=bidirectional, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.pool, self.bi = pool, bidirectional
        self.head = nn.Linear((2 if bidirectional else 1) * hidden, labels)

    def forward(self, x, lens):
        packed = pack_padded_sequence(self.embed(x), lens, batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)
        if isinstance(h_n, tuple):
            h_n = h_n[0]
        if self.pool == "final":
            p = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bi else h_n[-1]
        else:
            out, _ = pad_packed_sequence(out, batch_first=True)
            mask = (torch.arange(out.shape[1])[None, :] < lens[:, None])[:, :, None]
            if self.pool == "mean":
                p = (out * mask).sum(dim=1) / lens[:, None].to(out.dtype)
            else:
                p = out.masked_fill(~mask, float("-inf")).max(dim=1).values
        return self.head(self.drop(p))


def tensors(examples, idx):
    seqs = [examples[i][0] for i in idx]
    lens = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(len(seqs), int(lens.max()), dtype=torch.long)
    for b, s in enumerate(seqs):
        x[b, :len(s)] = torch.tensor(s)
    y = torch.tensor([examples[i][1] for i in idx])
    return x, lens, y


def evaluate(model, examples, n_labels, batch=256):
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    loss, conf = 0.0, [[0] * n_labels for _ in range(n_labels)]
    with torch.no_grad():
        for i in range(0, len(order), batch):
            x, lens, y = tensors(examples, order[i:i + batch])
            z = model(x, lens)
            loss += float(nn.functional.cross_entropy(z, y, reduction="sum"))
            for t, p in zip(y.tolist(), z.argmax(dim=1).tolist()):
                conf[t][p] += 1
    model.train()
    n = len(examples)
    acc = sum(conf[c][c] for c in range(n_labels)) / n
    f1s = []
    for c in range(n_labels):
        tp = conf[c][c]
        pred = sum(conf[t][c] for t in range(n_labels))
        true = sum(conf[c])
        if pred + true == 0:
            continue
        p, r = tp / max(pred, 1), tp / max(true, 1)
        f1s.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return loss / n, acc, sum(f1s) / len(f1s)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--train", required=True)
    a.add_argument("--test", required=True)
    a.add_argument("--cell", default="lstm")
    a.add_argument("--layers", type=int, default=2)
    a.add_argument("--hidden", type=int, default=128)
    a.add_argument("--bidirectional", action="store_true")
    a.add_argument("--pool", default="max", choices=["final", "mean", "max"])
    a.add_argument("--dropout", type=float, default=0.0)
    a.add_argument("--batch", type=int, default=32)
    a.add_argument("--lr", type=float, default=4e-3)
    a.add_argument("--lr-tail", type=float, default=0.0,
                   help="0: constant rate; F in (0, 1]: charrnn's schedule, falling over the last F")
    a.add_argument("--clip", type=float, default=5.0)
    a.add_argument("--max-len", type=int, default=256)
    a.add_argument("--val-fraction", type=float, default=0.1)
    a.add_argument("--seed", type=int, default=1234)
    a.add_argument("--time-limit", type=float, default=None)
    a.add_argument("--max-steps", type=int, default=None)
    a.add_argument("--eval-every", type=int, default=None)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--keep", default="accuracy", choices=["accuracy", "loss"])
    args = a.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    rows = read(args.train)
    labels = sorted({l for l, _ in rows})
    chars = sorted({c for _, t in rows for c in t})
    stoi = {c: i + 2 for i, c in enumerate(chars)}  # ids 0, 1 unused, as charrnn's <start>, <end>
    V = len(chars) + 2
    by_label = {}
    for i, (l, _) in enumerate(rows):
        by_label.setdefault(l, []).append(i)
    held = set()
    for l in labels:
        ids = by_label[l][:]
        rng.shuffle(ids)
        held.update(ids[:round(args.val_fraction * len(ids))])
    train = encode([r for i, r in enumerate(rows) if i not in held], stoi, labels, args.max_len)
    val = encode([r for i, r in enumerate(rows) if i in held], stoi, labels, args.max_len)
    test = encode(read(args.test), stoi, labels, args.max_len)
    lens = [len(s) for s, _ in train]

    model = Classifier(args.cell, V, args.hidden, args.layers, args.bidirectional, args.pool,
                       len(labels), args.dropout)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    per_epoch = len(train) // args.batch
    eval_every = args.eval_every or min(max(per_epoch // 2, 10), 1000)
    start = time.perf_counter()
    train_secs, chars_seen, step, epoch = 0.0, 0, 0, 0
    best = (math.inf, None, None)

    def rate():
        if args.lr_tail <= 0:
            return args.lr
        p = 0.0
        if args.max_steps:
            p = step / args.max_steps
        if args.time_limit:
            p = max(p, (time.perf_counter() - start) / args.time_limit)
        p, warm = min(p, 1.0), 0.02
        if p < warm:
            return args.lr * (0.1 + 0.9 * p / warm)
        fall = max(warm, 1.0 - min(args.lr_tail, 1.0))
        if p < fall:
            return args.lr
        t = min((p - fall) / max(1.0 - fall, 1e-12), 1.0)
        floor = 0.05 * args.lr
        return floor + (args.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    def better(vl, va):
        if best[2] is None:
            return True
        return va > best[1] if args.keep == "accuracy" else vl < best[0]

    while True:
        for idx in epoch_batches(lens, args.batch, rng):
            if args.max_steps is not None and step >= args.max_steps:
                break
            if args.time_limit is not None and time.perf_counter() - start >= args.time_limit:
                break
            for g in opt.param_groups:
                g["lr"] = rate()
            t0 = time.perf_counter()
            x, l, y = tensors(train, idx)
            loss = nn.functional.cross_entropy(model(x, l), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            train_secs += time.perf_counter() - t0
            chars_seen += int(l.sum())
            step += 1
            if step % eval_every == 0:
                vl, va, _ = evaluate(model, val, len(labels))
                if better(vl, va):
                    best = (vl, va, copy.deepcopy(model.state_dict()))
        else:
            epoch += 1
            continue
        break
    vl, va, _ = evaluate(model, val, len(labels))
    if better(vl, va):
        best = (vl, va, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    _, test_acc, test_f1 = evaluate(model, test, len(labels))
    print(json.dumps({
        "program": "pytorch", "torch": torch.__version__, "threads": args.threads,
        "cell": args.cell, "layers": args.layers, "hidden": args.hidden,
        "bidirectional": args.bidirectional, "pool": args.pool, "dropout": args.dropout,
        "batch": args.batch, "lr": args.lr, "lr_tail": args.lr_tail,
        "last_lr": opt.param_groups[0]["lr"],
        "steps": step, "epochs": step / max(per_epoch, 1),
        "wall_seconds": time.perf_counter() - start, "train_seconds": train_secs,
        "train_chars_per_s": chars_seen / max(train_secs, 1e-9),
        "kept": args.keep, "best_val_loss": best[0], "best_val_accuracy": best[1],
        "test_accuracy": test_acc, "test_macro_f1": test_f1, "test_lines": len(test),
    }))


if __name__ == "__main__":
    main()
