"""Old vs new code, same machine, alternating processes: encode / 3-head predict throughput, and the wall time of
N training steps. Run it with each source tree on PYTHONPATH in turn (e.g. a worktree of the old commit):

    git worktree add --detach /tmp/old 8ec4846
    for i in 1 2 3; do for src in /tmp/old/src src; do
        PYTHONPATH=$src .venv/bin/python bench/redesign_speed.py encode
        PYTHONPATH=$src .venv/bin/python bench/redesign_speed.py train
    done; done

Prints one JSON line per run (the polyhead it imported, seconds). Used for issue #17's "speed unchanged" check.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def encode() -> dict[str, float]:
    import torch

    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    try:
        from polyhead.modeldir import TaskSpec
    except ImportError:  # the code before the redesign
        from polyhead.modeling.heads import TaskSpec  # type: ignore[attr-defined,no-redef]

    torch.manual_seed(0)
    texts = [line.split("\t", 1)[1] for line in (DATA / "test.tsv").read_text().splitlines()[1:]][:1500]
    enc = SentenceEncoder.from_pretrained("default")
    heads = {"a": TaskSpec("classification", ["x", "y", "z"]), "b": TaskSpec("multilabel", ["p", "q"]),
             "c": TaskSpec("regression")}
    model = MultiTaskModel(enc, heads)
    enc.encode(texts[:64])
    model.predict(texts[:64])
    started = time.perf_counter()
    enc.encode(texts, batch_size=32)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    model.predict(texts, batch_size=32)
    return {"encode_s": round(encode_s, 3), "predict_s": round(time.perf_counter() - started, 3)}


def train(steps: int = 40) -> dict[str, float]:
    from polyhead.config import load_config
    from polyhead.training.trainer import Trainer, TrainingInterrupted

    root = Path(__file__).resolve().parents[1]
    splits = [f"tasks.sentiment.data.{s}={DATA / (s + '.tsv')}" for s in ("train", "dev", "test")]
    cfg = load_config(root / "configs" / "single" / "sst2.yaml", [*splits, "training.log_with=[]"])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with contextlib.suppress(TrainingInterrupted):  # stop_after_steps stops as Ctrl-C does
            Trainer(cfg, Path(tmp) / "run").run(stop_after_steps=steps)
        return {f"train_{steps}_steps_s": round(time.perf_counter() - started, 2)}


if __name__ == "__main__":
    import polyhead

    result = encode() if sys.argv[1:2] == ["encode"] else train()
    print(json.dumps({"polyhead": polyhead.__file__, **result}))
