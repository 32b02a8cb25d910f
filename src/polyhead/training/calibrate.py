"""After training, per head: temperature scaling and decision thresholds fitted on dev (the config's
``calibrate`` / ``tune_thresholds``), written into the task specs the model directory saves, so every backend
decodes with them; the expected calibration error before and after on dev and test, and the reliability
curves, for results.json and ``reliability.png``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.config import Config
from polyhead.data.readers import Example
from polyhead.evaluation.calibration import MAX_T, MIN_T, expected_calibration_error, reliability
from polyhead.modeldir import TaskSpec
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.setup import TaskData

logger = logging.getLogger(__name__)


def known(spec: TaskSpec, examples: list[Example]) -> list[Example]:
    """The examples whose labels the head has (labels only dev or test hold can't be scored)."""
    return [ex for ex in examples if all(x in spec.labels for x in (ex.label if isinstance(ex.label, list) else
                                                                     [ex.label]))]


def calibrate_heads(
    config: Config, model: MultiTaskModel, data: dict[str, TaskData], batch_size: int, precision: str
) -> dict[str, Any]:
    """Fit each asking head's temperature, then its thresholds (on the calibrated probabilities), on dev; sets
    them on ``model.tasks``. Returns task -> {temperature, ECE before/after per split, reliability, thresholds}."""
    report: dict[str, Any] = {}
    for name, task in config.tasks.items():
        if not (task.calibrate or task.tune_thresholds):
            continue
        spec = model.tasks[name]
        # test only for the ECE of calibration; thresholds fit on dev alone
        splits = {s: known(spec, getattr(data[name], s)) for s in (("dev", "test") if task.calibrate else ("dev",))}
        spec.thresholds = {}  # fitted on the head's own decisions
        fitted = {s: spec.task.dev_outputs(model, name, ex, batch_size, precision) for s, ex in splits.items() if ex}
        if "dev" not in fitted:
            logger.warning("task %s: no dev examples with known labels: not calibrated", name)
            continue
        entry: dict[str, Any] = {}
        if task.calibrate:
            spec.temperature = 1.0
            before = {s: spec.task.calibration(spec, *v) for s, v in fitted.items()}
            spec.temperature = spec.task.fit_temperature(spec, *fitted["dev"])
            problem = unfit_temperature(spec.temperature, before["dev"][1])
            if problem:
                logger.warning("task %s: %s (%d dev examples): too few to fit a temperature on; kept 1.0",
                               name, problem, len(splits["dev"]))
                spec.temperature = 1.0
            after = {s: spec.task.calibration(spec, *v) for s, v in fitted.items()}
            entry["temperature"] = spec.temperature
            for s in fitted:
                entry[f"{s}_ece_before"] = expected_calibration_error(*before[s])
                entry[f"{s}_ece_after"] = expected_calibration_error(*after[s])
            shown = "test" if "test" in fitted else "dev"
            entry["reliability"] = {"split": shown, "before": reliability(*before[shown]),
                                    "after": reliability(*after[shown])}
        if task.tune_thresholds:
            spec.thresholds = spec.task.tune_thresholds(spec, *fitted["dev"])
            entry["thresholds"] = dict(spec.thresholds)
        report[name] = entry
    return report


def unfit_temperature(temperature: float, right: np.ndarray) -> str | None:
    """Why a temperature fitted on dev says nothing, or None: every dev decision right (or every one wrong)
    lets the dev NLL fall without end as T goes to 0 (to infinity), typical of a tiny or one-class dev split;
    a fit that stopped at its bounds is the same."""
    if right.all() or not right.any():
        return f"the head decides {'every' if right.all() else 'no'} dev example right"
    if not MIN_T * 1.01 < temperature < MAX_T / 1.01:
        return f"the fitted temperature reached its limit ({temperature:.3g})"
    return None


def calibration_lines(report: dict[str, Any]) -> list[str]:
    """One line per calibrated head for the training report."""
    lines = []
    for name, entry in report.items():
        parts = [f"temperature {entry['temperature']:.3f}"] if "temperature" in entry else []
        for s in ("dev", "test"):
            if f"{s}_ece_before" in entry:
                parts.append(f"{s} ECE {entry[f'{s}_ece_before']:.4f} -> {entry[f'{s}_ece_after']:.4f}")
        found = entry.get("thresholds")
        if found is not None:
            parts.append(threshold_text(found))
        lines.append(f"calibration {name}: " + "; ".join(parts))
    return lines


def threshold_text(thresholds: dict[str, float]) -> str:
    values = set(thresholds.values())
    if not thresholds:
        return "thresholds: none (every decision as the head makes it was best on dev)"
    if len(values) == 1 and len(thresholds) > 1:  # a token head's one minimum entity score
        return f"threshold {values.pop():.3f} for all of {', '.join(thresholds)}"
    return "thresholds " + ", ".join(f"{k} {v:.3f}" for k, v in thresholds.items())


def write_reliability(out: Path, report: dict[str, Any]) -> Path | None:
    """reliability.png in the run directory: each calibrated head's reliability curve before and after."""
    from polyhead.evaluation.plots import reliability_png

    curves = {name: entry["reliability"] for name, entry in report.items() if "reliability" in entry}
    return reliability_png(curves, out / "reliability.png") if curves else None
