#!/usr/bin/env python3
"""Build data/words/: words of twelve languages, one labelled line each, for
`charrnn train --task classify` (and fastText, which reads the same format).

The words come from Debian's word lists (install them with
    apt-get install wamerican wngerman wfrench witalian wspanish wportuguese \
        wdutch wswedish wpolish wnorwegian wdanish wcatalan
), read from /usr/share/dict. Each list is cleaned the same way:
  - lower-cased (Unicode), surrounding whitespace removed;
  - kept only if every character is a letter (str.isalpha) and it has 2 to 30
    characters: no digits, apostrophes ("dog's"), hyphens or abbreviations;
  - a word found in more than one language's cleaned list is dropped from all
    of them (its label would be a coin toss: "taxi", "radio", "auto").
Then, with a fixed seed, TRAIN + TEST words are drawn per language without
replacement, and written as `__label__<code> <word>` lines, shuffled:
  OUT/train.txt  TRAIN words per language
  OUT/test.txt   TEST words per language (never in train.txt)
The output depends only on the word lists' contents, the two sizes and the
seed; the word list versions used are printed and recorded in OUT/SOURCES.txt.

Usage: python3 data/make_words.py [--train N] [--test N] [--out DIR]
  (standard library only). Without options it writes data/words/ as committed
  (2,000 and 500 words per language). A larger split for benchmarks, outside
  the repository:  python3 data/make_words.py --train 20000 --out /tmp/words20k
  Other sizes draw other words: the test words of a larger split are not
  data/words/test.txt's.
"""
import argparse
import os
import random
import subprocess

SEED = 18
TRAIN, TEST = 2000, 500
DICT = "/usr/share/dict"
# code: (file in /usr/share/dict, its encoding, Debian package)
LISTS = {
    "ca": ("catalan", "utf-8", "wcatalan"),
    "da": ("danish", "utf-8", "wdanish"),
    "de": ("ngerman", "utf-8", "wngerman"),
    "en": ("american-english", "utf-8", "wamerican"),
    "es": ("spanish", "utf-8", "wspanish"),
    "fr": ("french", "utf-8", "wfrench"),
    "it": ("italian", "utf-8", "witalian"),
    "nb": ("bokmaal", "latin-1", "wnorwegian"),
    "nl": ("dutch", "utf-8", "wdutch"),
    "pl": ("polish", "utf-8", "wpolish"),
    "pt": ("portuguese", "utf-8", "wportuguese"),
    "sv": ("swedish", "latin-1", "wswedish"),
}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "words")


def clean(path, encoding):
    words = set()
    with open(path, encoding=encoding) as f:
        for line in f:
            w = line.strip().lower()
            if 2 <= len(w) <= 30 and w.isalpha():
                words.add(w)
    return words


def version(package):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, check=True)
        return out.stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    a = argparse.ArgumentParser(description="Words of twelve languages, labelled, from "
                                "Debian's word lists.")
    a.add_argument("--train", type=int, default=TRAIN, help="training words per language")
    a.add_argument("--test", type=int, default=TEST, help="test words per language")
    a.add_argument("--out", default=OUT, help="output directory (default: data/words)")
    args = a.parse_args()
    if args.train < 1 or args.test < 1:
        a.error("--train and --test must be at least 1")
    lists = {code: clean(os.path.join(DICT, f), enc) for code, (f, enc, _) in LISTS.items()}
    seen = {}
    for words in lists.values():
        for w in words:
            seen[w] = seen.get(w, 0) + 1
    rng = random.Random(SEED)
    train, test = [], []
    sources = []
    for code in sorted(lists):
        unique = sorted(w for w in lists[code] if seen[w] == 1)
        if args.train + args.test > len(unique):
            a.error(f"{code}: {args.train} + {args.test} words asked, {len(unique)} there")
        picked = rng.sample(unique, args.train + args.test)
        train += [(code, w) for w in picked[:args.train]]
        test += [(code, w) for w in picked[args.train:]]
        f, _, pkg = LISTS[code]
        sources.append(f"{code}\t{pkg} {version(pkg)}\t{DICT}/{f}\t{len(lists[code])} words, "
                       f"{len(unique)} in no other list")
    rng.shuffle(train)
    rng.shuffle(test)
    os.makedirs(args.out, exist_ok=True)
    for name, rows in [("train.txt", train), ("test.txt", test)]:
        with open(os.path.join(args.out, name), "w", encoding="utf-8", newline="\n") as f:
            for code, w in rows:
                f.write(f"__label__{code} {w}\n")
    with open(os.path.join(args.out, "SOURCES.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("code\tDebian package and version\tfile\tcleaned words\n")
        f.write("\n".join(sources) + "\n")
    print("\n".join(sources))


if __name__ == "__main__":
    main()
