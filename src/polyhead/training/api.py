"""Library entry points behind `polyhead train` / `polyhead evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyhead.config import Config
from polyhead.errors import ConfigError, PolyheadError


def train(config: Config, output_dir: str | Path, resume: bool = False, show_progress: bool = False) -> dict[str, Any]:
    """Train from a validated config; returns results (also in <output_dir>/results.json)."""
    from polyhead.training.trainer import Trainer

    return Trainer(config, output_dir, resume=resume, show_progress=show_progress).run()


def evaluate_model(
    model_dir: str | Path, config: Config, split: str = "test", device: str | None = None, reports: bool = False
) -> dict[str, dict[str, Any]]:
    """Metrics per task of a saved model on a split of the config's data (tasks matched by name), on ``device``
    (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``). With ``reports``, each task with classes also gets
    ``report``: per-class precision / recall / F1 / support, the confusion matrix and the worst-confused pairs
    (``TaskType.report``)."""
    from polyhead.evaluation.evaluator import predict_task, task_metrics
    from polyhead.predict import load
    from polyhead.training.setup import load_task_data

    model = load(model_dir, device=device)
    shared = [t for t in config.tasks if t in model.tasks]
    if not shared:
        raise PolyheadError(
            f"the model's tasks ({', '.join(model.tasks)}) and the config's ({', '.join(config.tasks)}) "
            "have none in common"
        )
    for name in shared:  # the data is read as the config's type says: it must be the head's
        if config.tasks[name].type != model.tasks[name].type:
            raise ConfigError(f"tasks.{name}.type: {config.tasks[name].type} in the config, "
                              f"{model.tasks[name].type} in the model {model_dir}; they must match")
    results: dict[str, dict[str, Any]] = {}
    for name in shared:
        examples = getattr(load_task_data(name, config.tasks[name], config.training.seed), split)
        if not examples:
            continue
        gold, pred = predict_task(model, name, examples, config.training.eval_batch_size)
        results[name] = task_metrics(model, name, gold, pred)
        spec = model.tasks[name]
        report = spec.task.report(gold, pred, spec.labels) if reports else None
        if report is not None:
            results[name]["report"] = report
    if not results:
        raise PolyheadError(f"no task in the config has a {split} split")
    return results


def write_confusion_plots(results: dict[str, dict[str, Any]], directory: Path, split: str) -> list[Path]:
    """``<directory>/<task>_confusion.png`` for each report with a confusion matrix (``polyhead evaluate
    --plot-dir``); returns the files written (none without matplotlib)."""
    from polyhead.evaluation.plots import confusion_png

    written = []
    for name, values in results.items():
        confusion = values.get("report", {}).get("confusion")
        if confusion is not None:
            title = f"{name} on {split}" + (f" ({confusion['unit']})" if "unit" in confusion else "")
            out = confusion_png(confusion["labels"], confusion["matrix"], title, directory / f"{name}_confusion.png")
            written += [out] if out is not None else []
    return written
