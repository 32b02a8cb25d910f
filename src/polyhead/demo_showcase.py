"""What `polyhead demo` shows after training, each number measured in the run: entity scores per type,
predictions that read well (entities with their types), and what one multi-task model gives you: one encoder
pass for every head vs a single-task model per head, the shared embedding's STS-B before and after training,
and the int8 ONNX export's speed and agreement with torch on the test sentences.

Functions return plain dicts (tests check them); ``*_lines`` / ``*_table`` render them for the console.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

logger = logging.getLogger(__name__)

# Where the project's checkouts find public datasets (STS-B is in no pip package the demo can install):
# the demo uses the first that exists, or `polyhead demo --sts FILE`.
STS_CANDIDATES = (Path("../shared/data/stsb/test.tsv"),)


def entity_types_table(per_type: dict[str, dict[str, float]]) -> Table:
    """Per entity type test precision / recall / F1 and how many gold entities of the type the test split has."""
    table = Table(title="Entities by type (test split; seqeval, exact spans)")
    for col in ("type", "gold entities", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for kind, m in per_type.items():
        table.add_row(kind, str(m["support"]), f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}")
    return table


def entity_label(entity: dict[str, Any]) -> str:
    """``Apple (company)``."""
    return f"{entity['text']} ({entity['type']})"


def prediction_lines(texts: Sequence[str], predictions: Sequence[dict[str, Any]], tasks: dict[str, Any]) -> Group:
    """A block per text: the sentence on its own line (wrapped as a paragraph, never squeezed into a table
    cell), then one indented line per head, wrapped under its own column; a token head lists its entities
    with their types."""
    blocks: list[Any] = []
    for text, pred in zip(texts, predictions, strict=True):
        blocks.append(Text(text, style="bold"))
        heads = Table.grid(padding=(0, 2))
        heads.add_column(no_wrap=True)
        heads.add_column()
        for task, out in pred.items():
            spec = tasks[task]
            if spec.task.level == "token":
                value = ", ".join(entity_label(e) for e in out["entities"]) or "(no entities)"
            else:
                value = spec.task.summary(out)
            heads.add_row(Text(task), Text(value))
        blocks += [Padding(heads, (0, 0, 1, 2))]
    return Group(*blocks)


def alternate(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each callable, run in turn ``repeats`` times (alternating, so load on a shared CPU hits all)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return times


def shared_pass_timing(model: Any, texts: list[str], repeats: int = 3) -> dict[str, Any]:
    """One encoder pass for every head vs one pass per head, as a single-task model per head would run it
    (same encoder, same batches: the heads cost next to nothing, the encoder passes are what multiply)."""
    heads = [name for name, spec in model.tasks.items() if spec.task.predicts]
    model.predict(texts[:8])  # warm-up: first-call allocations and kernel choice
    times = alternate(
        {
            "one_pass": lambda: model.predict(texts, tasks=heads),
            "per_head": lambda: [model.predict(texts, tasks=[h]) for h in heads],
        },
        repeats,
    )
    return {"texts": len(texts), "heads": heads, **times}


def sts_spearman_points(model: Any, pairs: list[tuple[str, str, float]]) -> float:
    """STS Spearman x100 of ``model``'s sentence embedding (anything with ``encode``)."""
    from polyhead.evaluation.evaluator import sts_spearman

    return 100 * sts_spearman(model, pairs)


def find_sts(sts_file: Path | None) -> Path | None:
    """``sts_file`` if given (it must exist), else the first of STS_CANDIDATES that exists, else None."""
    if sts_file is not None:
        return sts_file
    return next((p for p in STS_CANDIDATES if p.is_file()), None)


def int8_check(
    model_dir: Path, model: Any, texts: list[str], check_texts: list[str], repeats: int = 3
) -> dict[str, Any]:
    """Export ``model_dir`` to ONNX with int8 (the recipe chosen on ``check_texts``, never the test
    sentences), then time torch vs int8 ONNX on ``texts`` and count identical decisions per head."""
    from polyhead.export.onnx import export_onnx
    from polyhead.modeldir.format import WEIGHTS_NAME
    from polyhead.onnx_backend import VARIANTS
    from polyhead.predict import load

    started = time.perf_counter()
    report = export_onnx(model_dir, quantize="int8", texts=check_texts)
    export_s = time.perf_counter() - started
    int8 = load(model_dir, "onnx-int8")
    int8.predict(texts[:8])  # warm-up: session start
    out: dict[str, Any] = {}
    times = alternate({"torch": lambda: out.update(torch=model.predict(texts)),
                       "int8": lambda: out.update(int8=int8.predict(texts))}, repeats)  # fmt: skip
    agreement = {}
    for name, spec in model.tasks.items():
        if not spec.task.predicts:
            continue
        pairs = [
            (a, b)
            for t, i in zip(out["torch"], out["int8"], strict=True)
            for a, b in zip(spec.task.decisions(t[name]), spec.task.decisions(i[name]), strict=True)
        ]
        if pairs:
            unit = "word tags" if spec.task.level == "token" else "labels"
            agreement[name] = {"same": sum(a == b for a, b in pairs), "decisions": len(pairs), "unit": unit}
    size = {"int8": (model_dir / VARIANTS["int8"]).stat().st_size, "torch": (model_dir / WEIGHTS_NAME).stat().st_size}
    return {
        "recipe": report.get("int8_recipe"),
        "export_s": export_s,
        "texts": len(texts),
        "agreement": agreement,
        "bytes": size,
        **times,
    }


def seconds_range(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f} s" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f} s"


def ratio_range(slow: Sequence[float], fast: Sequence[float]) -> str:
    """Per-repeat speed-up (runs alternate, so repeat i of each ran under the same load), as a range."""
    ratios = [s / f for s, f in zip(slow, fast, strict=True) if f > 0]
    low, high = min(ratios), max(ratios)
    return f"{low:.1f}x" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}x"


def showcase_lines(shared: dict[str, Any], sts: dict[str, Any], onnx: dict[str, Any]) -> list[str]:
    """The measured differentiators, a short paragraph each."""
    lines = [
        f"[bold]One encoder pass for {len(shared['heads'])} heads[/]: {shared['texts']} test tweets in "
        f"{seconds_range(shared['one_pass'])}; as {len(shared['heads'])} single-task models (an encoder pass "
        f"per head) {seconds_range(shared['per_head'])}: {ratio_range(shared['per_head'], shared['one_pass'])} "
        f"the time ({len(shared['one_pass'])} alternating runs, min-max).",
    ]
    if "after" in sts:
        kept = f" with training.preserve_embedding (weight {sts['weight']})" if sts.get("weight") else ""
        lines.append(
            f"[bold]The shared embedding[/]: STS-B test Spearman {sts['before']:.1f} "
            f"before training, {sts['after']:.1f} after{kept} ({sts['pairs']} pairs, {sts['file']})."
        )
    else:
        lines.append(f"[bold]Shared embedding on STS-B[/]: skipped ({sts['skipped']}).")
    if "skipped" in onnx:
        lines.append(f"[bold]int8 ONNX[/]: skipped ({onnx['skipped']}).")
    else:
        agree = ", ".join(
            f"{name} {a['same'] / a['decisions']:.1%} of {a['decisions']} {a['unit']}"
            for name, a in onnx["agreement"].items()
        )
        mb = {k: v / 1e6 for k, v in onnx["bytes"].items()}
        lines.append(
            f"[bold]int8 ONNX export[/] (recipe {onnx['recipe']}, {onnx['export_s']:.0f} s, {mb['int8']:.0f} MB vs "
            f"{mb['torch']:.0f} MB of weights): {onnx['texts']} test tweets in {seconds_range(onnx['int8'])} vs "
            f"torch {seconds_range(onnx['torch'])} ({ratio_range(onnx['torch'], onnx['int8'])} faster); same "
            f"decisions as torch: {agree}."
        )
    return lines
