"""Numbers out of training: metrics.jsonl (one JSON object per log call), TensorBoard, a PNG of curves."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polyhead.fileio import write_text_atomic

logger = logging.getLogger(__name__)


class MetricsLog:
    """Append-only metrics.jsonl, plus the experiment trackers Accelerate runs (TensorBoard, W&B, MLflow).

    On resume the file is cut back to the lines the checkpoint had seen, so no step is logged twice (and
    TensorBoard purges the events after that step). Only the main process writes: on the others
    (``enabled=False``) every call is a no-op.
    """

    def __init__(
        self,
        out: Path,
        accelerator: Any = None,
        log_with: Sequence[str] = (),
        resume_lines: int | None = None,
        enabled: bool = True,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.accelerator = accelerator if log_with else None
        self.lines = 0
        self.file: Any = None
        if not enabled:
            return
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        lines = lines[:resume_lines] if resume_lines is not None else []  # a fresh run starts a new file
        write_text_atomic(self.path, "".join(line + "\n" for line in lines))  # a crash here keeps the old lines
        self.lines = len(lines)
        last_step = max((json.loads(line).get("step", 0) for line in lines), default=0)
        self.file = open(self.path, "a")  # noqa: SIM115 - kept open for the run
        if self.accelerator is not None:
            self.accelerator.init_trackers(
                "tensorboard",  # the run's sub-directory for trackers that write files
                config=flat_config(run_config or {}),
                init_kwargs={"tensorboard": {"purge_step": last_step + 1 if last_step else None}},
            )

    def write(self, step: int, values: dict[str, float], **extra: Any) -> None:
        if not self.enabled:
            return
        record = {"step": step, **extra, **{k: float(v) for k, v in values.items()}}
        self.file.write(json.dumps(record) + "\n")
        self.lines += 1
        if self.accelerator is not None:
            self.accelerator.log({k: float(v) for k, v in values.items()}, step=step)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.accelerator is not None:  # not end_training(): that also ends the process group
            for tracker in self.accelerator.trackers:
                tracker.finish()


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"training.optimizer.lr": 1e-4, ...} with scalar values, as trackers want them."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        elif value is not None:
            out[name] = json.dumps(value)
    return out


def plot_curves(metrics_file: Path, out_png: Path) -> Path | None:
    """Training loss per task (by step) and dev metrics per task (by step), one PNG with two panels."""
    if not metrics_file.is_file():
        return None
    from polyhead.extras import installed

    if not installed("matplotlib"):  # the run is kept; only its picture needs the extra
        logger.warning("training curves not drawn: matplotlib is not installed (pip install 'polyhead[plots]')")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    series: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        for key, value in rec.items():
            if key.startswith(("train/loss/", "dev/")) and isinstance(value, float | int):
                series.setdefault(key, []).append((rec["step"], value))
    if not series:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, points in series.items():
        axis = left if key.startswith("train/") else right
        if axis is right and not key.endswith(("/accuracy", "/f1", "/spearman", "/micro_f1", "/macro_f1")):
            continue
        xs, ys = zip(*points, strict=True)
        axis.plot(xs, ys, label=key.split("/", 1)[1], marker="o" if axis is right else None)
    left.set_title("training loss per task")
    right.set_title("dev metrics per task")
    for axis in (left, right):
        axis.set_xlabel("step")
        if axis.lines:
            axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
