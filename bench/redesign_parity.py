"""Same seed, same weights: a fixed-seed training run of every task type, to compare code before and after a
refactor (issue #17 asked that the redesign leave training bit-for-bit, or within float noise, unchanged).

    python bench/redesign_parity.py save /tmp/before.safetensors      # on the old code
    python bench/redesign_parity.py compare /tmp/before.safetensors   # on the new code: max |difference|

The run: a random tiny BERT (hidden 32, 2 layers, the MiniLM tokenizer), five tasks (classification and
multilabel and regression on one shared TSV, BIO entities from CoNLL, a similarity task on pairs), two
stages (the second with a frozen encoder, so the cached-embedding path runs too), uncertainty weighting,
dropout on. Weights are the final model's (encoder + heads + loss weights), compared tensor by tensor.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def write_data(root: Path) -> dict[str, str]:
    rng = random.Random(7)
    topics = {"sport": ["match", "goal", "team"], "tech": ["chip", "app", "phone"]}
    moods = {"pos": ["great", "love"], "neg": ["awful", "hate"]}
    rows = ["topic\ttags\tscore\ttext"]
    for _ in range(40):
        topic, mood = rng.choice(list(topics)), rng.choice(list(moods))
        words = [rng.choice(topics[topic]), "is", rng.choice(moods[mood]), "today"]
        rows.append(f"{topic}\t{topic},{mood}\t{len(words[0]) / 5:.2f}\t{' '.join(words)}")
    (root / "sent.tsv").write_text("\n".join(rows) + "\n")
    names = ["alice", "bob", "carol"]
    sentences = []
    for _ in range(24):
        name = rng.choice(names)
        sentences.append("\n".join(f"{w}\t{t}" for w, t in [("i", "O"), ("met", "O"), (name, "B-PER"), ("in", "O"),
                                                              ("paris", "B-LOC"), ("city", "I-LOC")]))
    (root / "ner.conll").write_text("\n\n".join(sentences) + "\n")
    pairs = ["sentence1\tsentence2\tscore"]
    for _ in range(32):
        a, b = rng.choice(list(topics["sport"] + topics["tech"])), rng.choice(list(topics["sport"] + topics["tech"]))
        pairs.append(f"the {a} here\tthe {b} there\t{5.0 if a == b else rng.uniform(0, 3):.2f}")
    (root / "pairs.tsv").write_text("\n".join(pairs) + "\n")
    return {"sent": str(root / "sent.tsv"), "ner": str(root / "ner.conll"), "pairs": str(root / "pairs.tsv")}


def config(model_dir: Path, files: dict[str, str]) -> dict[str, Any]:
    sent = {"train": files["sent"], "dev": files["sent"]}
    return {
        "name": "parity",
        "encoder": {"model": str(model_dir), "max_length": 32},
        "tasks": {
            "topic": {"type": "classification", "data": {**sent, "label_column": "topic"}, "head": {"hidden": [16]}},
            "tags": {"type": "multilabel", "data": {**sent, "label_column": "tags", "label_separator": ","}},
            "score": {"type": "regression", "data": {**sent, "label_column": "score"}},
            "entities": {"type": "token_classification", "data": {"train": files["ner"], "dev": files["ner"]}},
            "sts": {
                "type": "similarity",
                "data": {"train": files["pairs"], "dev": files["pairs"], "text_column": "sentence1",
                         "pair_column": "sentence2", "label_column": "score"},
            },
        },
        "training": {
            "seed": 5,
            "batch_size": 8,
            "eval_batch_size": 16,
            "loss_weighting": "uncertainty",
            "optimizer": {"lr": 1e-3, "head_lr": 1e-2},
            "log_with": [],
            "stages": [
                {"name": "all", "epochs": 2},
                {"name": "heads", "epochs": 1, "freeze": {"mode": "encoder"}},
            ],
            "steps_per_epoch": 5,
        },
    }


def train_weights() -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_tiny_model_dir
    from polyhead.config import Config
    from polyhead.training.trainer import Trainer

    torch.set_num_threads(1)  # one thread: the same reductions in the same order on every run
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = make_tiny_model_dir(root / "tiny", seed=0)
        cfg = Config.model_validate(config(model_dir, write_data(root)))
        trainer = Trainer(cfg, root / "run")
        trainer.run()
        state = {f"model.{k}": v.detach().clone() for k, v in trainer.model.state_dict().items()}
        state.update({f"weighting.{k}": v.detach().clone() for k, v in trainer.weighting.state_dict().items()})
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["save", "compare"])
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    weights = train_weights()
    if args.mode == "save":
        save_file({k: v.contiguous() for k, v in weights.items()}, str(args.file))
        print(f"saved {len(weights)} tensors to {args.file}")
        return
    reference = load_file(str(args.file))
    if set(reference) != set(weights):
        print(f"different tensors: missing {sorted(set(reference) - set(weights))[:5]}, "
              f"new {sorted(set(weights) - set(reference))[:5]}")
        raise SystemExit(1)
    worst = max(((float((reference[k] - weights[k]).abs().max()), k) for k in reference), default=(0.0, ""))
    print(f"{len(weights)} tensors; max |difference| {worst[0]:.3g} ({worst[1]})")
    raise SystemExit(0 if worst[0] <= 1e-5 else 1)


if __name__ == "__main__":
    main()
