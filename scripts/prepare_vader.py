#!/usr/bin/env python3
"""Prepare the VADER ground-truth sentiment data for examples/sentiment.yaml.

The sentences are never committed: this script fetches the source distribution of ``vadersentiment==3.3.2``
from PyPI (the data is only in the sdist), reads the human-rated tweets and movie-review snippets and writes
binary sentiment splits as JSON lines:

    data/vader/train.jsonl       tweets + movie snippets (rating > 0 -> positive, < 0 -> negative)
    data/vader/validation.jsonl  same mix, for model selection
    data/vader/test.jsonl        held-out movie snippets only (never seen in training or selection)
    data/vader/general.jsonl     New York Times editorial snippets: news, outside the training domain (tweets and
                                 movie snippets), for the forgetting check (`data.general` in examples/causal_lm.yaml)

Sentences rated exactly 0 are dropped. Citation: Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious
Rule-based Model for Sentiment Analysis of Social Media Text. ICWSM-14; movie snippets from Pang & Lee (2005).
The data is MIT-licensed with the vaderSentiment package.

Usage: python scripts/prepare_vader.py [--out data/vader] [--train 6000] [--validation 600] [--test 2000]
       [--general 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "vadersentiment==3.3.2"
SOURCES = {"tweets": "tweets_GroundTruth.txt", "movies": "movieReviewSnippets_GroundTruth.txt",
           "news": "nytEditorialSnippets_GroundTruth.txt"}
SPLITS = ("train", "validation", "test")


def fetch_sdist(cache: Path) -> Path:
    """Download the sdist once into ``cache``."""
    existing = sorted(cache.glob("vaderSentiment-3.3.2.tar.gz"))
    if existing:
        return existing[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", SDIST,
           "-d", str(cache)]
    subprocess.run(cmd, check=True)
    found = sorted(cache.glob("vaderSentiment-*.tar.gz"))
    if not found:
        sys.exit(f"pip download did not produce the {SDIST} source distribution in {cache}")
    return found[0]


def read_ground_truth(sdist: Path) -> dict[str, list[tuple[float, str]]]:
    """(score, text) pairs per source, read from the nested tarball inside the sdist."""
    out: dict[str, list[tuple[float, str]]] = {}
    with tarfile.open(sdist) as outer:
        member = next(m for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for key, name in SOURCES.items():
            member = next(m for m in inner.getmembers() if m.name.endswith(name))
            raw = inner.extractfile(member).read().decode("utf-8", errors="replace")  # type: ignore[union-attr]
            rows = []
            for line in raw.replace("\r\n", "\n").split("\n"):
                parts = line.split("\t")  # quotes are literal text: no csv quoting
                if len(parts) < 3:
                    continue
                rows.append((float(parts[1]), "\t".join(parts[2:]).strip()))
            out[key] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/vader"))
    parser.add_argument("--cache", type=Path, default=Path("data/cache"))
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--validation", type=int, default=600)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--general", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    have_splits = all((args.out / f"{s}.jsonl").exists() for s in SPLITS)
    if have_splits and (args.out / "general.jsonl").exists():
        print(f"VADER splits already in {args.out}")
        return
    data = read_ground_truth(fetch_sdist(args.cache))
    if not have_splits:
        write_splits(data, args)
    write_general(data, args)


def write_rows(out: Path, name: str, rows: list[dict[str, object]]) -> None:
    """``out/name.jsonl``, written atomically, and a line saying what it holds."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", delete=False, dir=out, suffix=".tmp", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    Path(fh.name).replace(out / f"{name}.jsonl")
    pos = sum(r["label"] == "positive" for r in rows)
    digest = hashlib.sha256((out / f"{name}.jsonl").read_bytes()).hexdigest()[:12]
    print(f"{name:>10}: {len(rows):5d} sentences, {pos / len(rows):.1%} positive, sha256 {digest}")


def write_general(data: dict[str, list[tuple[float, str]]], args: argparse.Namespace) -> None:
    """News snippets (rated like the rest), a seeded sample: text from outside the training domain."""
    rows = [{"text": text, "label": "positive" if score > 0 else "negative", "score": score, "source": "news"}
            for score, text in data["news"] if score != 0 and text]
    random.Random(args.seed + 1).shuffle(rows)
    write_rows(args.out, "general", rows[: args.general])


def write_splits(data: dict[str, list[tuple[float, str]]], args: argparse.Namespace) -> None:
    """Train and validation (tweets + movie snippets) and the held-out movie-snippet test split."""
    rng = random.Random(args.seed)

    def examples(source: str) -> list[dict[str, object]]:
        rows = [
            {"text": text, "label": "positive" if score > 0 else "negative", "score": score, "source": source}
            for score, text in data[source]
            if score != 0 and text
        ]
        rng.shuffle(rows)
        return rows

    def key(row: dict[str, object]) -> str:  # the same normalisation cardgen's leakage check uses
        return " ".join(str(row["text"]).casefold().split())

    movies, tweets = examples("movies"), examples("tweets")
    test, seen = [], set()
    for row in movies:  # held-out movie snippets, each sentence once
        if len(test) < args.test and key(row) not in seen:
            seen.add(key(row))
            test.append(row)
    pool = [r for r in movies if r not in test] + tweets
    rng.shuffle(pool)
    # No sentence may appear twice, inside a split or across splits (the source files hold duplicates).
    unique = []
    for row in pool:
        if key(row) not in seen:
            seen.add(key(row))
            unique.append(row)
    validation, train = unique[: args.validation], unique[args.validation : args.validation + args.train]

    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        write_rows(args.out, name, rows)


if __name__ == "__main__":
    main()
