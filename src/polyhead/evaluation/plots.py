"""PNG pictures of evaluation results: reliability diagrams and confusion matrices (matplotlib, the ``plots``
extra; without it nothing is drawn and a warning says what to install). Written atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from polyhead.fileio import replacing

logger = logging.getLogger(__name__)


def pyplot(what: str) -> Any:
    """matplotlib.pyplot on the Agg backend, or None (with a warning) when matplotlib is not installed."""
    from polyhead.extras import installed

    if not installed("matplotlib"):
        logger.warning("%s not drawn: matplotlib is not installed (pip install 'polyhead[plots]')", what)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    """The figure as a PNG, whole or not at all (polyhead.fileio.replacing)."""
    with replacing(path) as tmp, open(tmp, "xb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    return path


def reliability_png(curves: dict[str, dict[str, Any]], out: Path) -> Path | None:
    """One panel per head: accuracy against confidence per bin, before and after temperature scaling, and
    the diagonal of perfect calibration. ``curves``: task -> {split, before, after} (calibration.reliability)."""
    plt = pyplot("the reliability diagram")
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 4.2), squeeze=False)
    for axis, (name, curve) in zip(axes[0], curves.items(), strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
        for key, style in (("before", "o--"), ("after", "s-")):
            axis.plot(curve[key]["confidence"], curve[key]["accuracy"], style, label=f"{key} scaling")
        axis.set(title=f"{name} ({curve['split']})", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        axis.legend(loc="upper left")
    fig.tight_layout()
    try:
        return save(fig, out)
    finally:
        plt.close(fig)


def confusion_png(labels: list[str], matrix: list[list[int]], title: str, out: Path) -> Path | None:
    """A confusion matrix (rows gold, columns predicted) as a heat map with counts (at most 40 classes shown
    with their names; more are drawn without tick labels)."""
    plt = pyplot("the confusion matrix")
    if plt is None:
        return None
    size = min(4 + 0.35 * len(labels), 24)
    fig, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=axis, fraction=0.046)
    if len(labels) <= 40:
        axis.set_xticks(range(len(labels)), labels, rotation=90)
        axis.set_yticks(range(len(labels)), labels)
    if len(labels) <= 20:
        top = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                axis.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    axis.set(title=title, xlabel="predicted", ylabel="gold")
    fig.tight_layout()
    try:
        return save(fig, out)
    finally:
        plt.close(fig)
