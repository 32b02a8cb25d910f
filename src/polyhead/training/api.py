"""Library entry points behind `polyhead train` / `polyhead evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyhead.config import Config
from polyhead.errors import PolyheadError


def train(config: Config, output_dir: str | Path, resume: bool = False, show_progress: bool = False) -> dict[str, Any]:
    """Train from a validated config; returns results (also in <output_dir>/results.json)."""
    from polyhead.training.trainer import Trainer

    return Trainer(config, output_dir, resume=resume, show_progress=show_progress).run()


def evaluate_model(
    model_dir: str | Path, config: Config, split: str = "test", device: str | None = None
) -> dict[str, dict[str, float]]:
    """Metrics per task of a saved model on a split of the config's data (tasks matched by name), on ``device``
    (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    from polyhead.evaluation.evaluator import evaluate_task
    from polyhead.predict import load
    from polyhead.training.setup import load_task_data

    model = load(model_dir, device=device)
    shared = [t for t in config.tasks if t in model.tasks]
    if not shared:
        raise PolyheadError(
            f"the model's tasks ({', '.join(model.tasks)}) and the config's ({', '.join(config.tasks)}) "
            "have none in common"
        )
    results = {}
    for name in shared:
        examples = getattr(load_task_data(name, config.tasks[name], config.training.seed), split)
        if examples:
            results[name] = evaluate_task(model, name, examples, config.training.eval_batch_size)
    if not results:
        raise PolyheadError(f"no task in the config has a {split} split")
    return results
