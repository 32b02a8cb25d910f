"""README.md, the model card: Hub front matter and a body saying what the model does, rendered from the
directory alone (polyhead.json, the training record results.json, onnx.json, openvino.json), so every writer (
``save_pretrained``, the trainer's final save, ``polyhead export``) re-renders the same card with what
it now knows. Importable without torch.

A card polyhead wrote carries :data:`MARKER`; a README.md without it is the user's own and is never
written over (kept, with a warning), so a card edited by hand survives (delete the marker line to keep
your edits; delete the file to have polyhead write a fresh one).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from polyhead.fileio import write_json_atomic, write_text_atomic
from polyhead.modeldir.format import EXPORTS, read_config

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
RECORD_NAME = "results.json"  # the run's results.json plus its config, written into the model directory
MARKER = "<!-- polyhead:model-card (written by polyhead; delete this line to keep your own edits) -->"
DEFAULT_BASE = "sentence-transformers/all-MiniLM-L6-v2"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SPLIT_STEMS = {"train", "dev", "valid", "validation", "test", "all", "data"}
MAX_LABELS = 30
GATE_COLUMNS = ("cosine_mean", "cosine_min", "label_agreement", "decisions", "texts", "sts_spearman_torch",
                "sts_spearman_onnx")


def number(value: Any) -> str:
    """A metric for a markdown table: floats to 4 decimals, anything else as it is ('' when absent)."""
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def is_polyhead_card(path: Path) -> bool:
    """True when ``path`` is a card polyhead wrote (it carries the marker), False for the user's own."""
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def write_card(model_dir: Path, previous: Path | None = None, repo_id: str | None = None) -> bool:
    """Render and write ``model_dir/README.md``; returns False when a card of the user's own is kept.

    ``previous``: the directory this one replaces (``save_pretrained`` writes into a temporary sibling):
    a card of the user's own found there is carried over instead of rendering one. ``repo_id``: the Hub
    repository the directory is pushed to (the card's examples load it by that name).
    """
    target = model_dir / CARD_NAME
    old = previous / CARD_NAME if previous is not None else target
    if old.is_file() and not is_polyhead_card(old):
        logger.warning(
            "%s is your own model card (no polyhead marker): kept as it is; delete it to have polyhead write one",
            previous / CARD_NAME if previous is not None else target,
        )
        if old != target:
            shutil.copy2(old, target)
        return False
    write_text_atomic(target, render_card(model_dir, repo_id))
    return True


def save_training_card(model_dir: Path, config: dict[str, Any], results: dict[str, Any]) -> None:
    """The trainer's final save: record the run (``results`` and the training ``config``, as JSON-able
    dicts) in the model directory and re-render the card with them."""
    record = {**results, "config": config, "datasets": task_datasets(config)}
    write_json_atomic(model_dir / RECORD_NAME, record)
    write_card(model_dir)


# ---------------------------------------------------------------------- what the card is made of
def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def base_model(name: str) -> str | None:
    """The Hub id the encoder came from: 'default' is all-MiniLM-L6-v2; a local path is not a Hub id."""
    if name == "default":
        return DEFAULT_BASE
    if HUB_ID.match(name) and not Path(name).exists():
        return name
    return None


def dataset_of(path: str | None) -> dict[str, str] | None:
    """A data path -> {"name": ..., "id": Hub id or absent}. A datasets directory's dataset_info.json
    names the dataset it was loaded as; otherwise the file's folder (sst2/train.tsv -> sst2) or stem."""
    if not path:
        return None
    p = Path(path)
    infos = [p / "dataset_info.json"] + sorted(p.glob("*/dataset_info.json")) if p.is_dir() else []
    for info in infos:
        hub = read_json(info).get("dataset_name")
        if isinstance(hub, str) and hub:
            return {"name": hub, "id": hub}
    stem = p.name if p.is_dir() else p.stem
    name = p.parent.name if stem.lower() in SPLIT_STEMS and p.parent.name not in ("", ".") else stem
    return {"name": name}


def task_datasets(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    found = {}
    for name, task in (config.get("tasks") or {}).items():
        dataset = dataset_of((task.get("data") or {}).get("train"))
        if dataset:
            found[name] = dataset
    return found


def front_matter(model_dir: Path, encoder: dict[str, Any], tasks: dict[str, Any], record: dict[str, Any]) -> dict:
    hub_tasks = [spec.task.hub_task for spec in tasks.values()]
    datasets = record.get("datasets") or {}
    front: dict[str, Any] = {"library_name": "polyhead"}
    base = base_model(str(encoder.get("name", "")))
    if base:
        front["base_model"] = base
    front["tags"] = ["polyhead", "sentence-transformers", *dict.fromkeys(spec.type for spec in tasks.values())]
    # one Hub task when every head does the same; otherwise what the directory does in sentence-transformers
    front["pipeline_tag"] = hub_tasks[0] if hub_tasks and len(set(hub_tasks)) == 1 else "sentence-similarity"
    hub_ids = sorted({d["id"] for d in datasets.values() if d.get("id")})
    if hub_ids:
        front["datasets"] = hub_ids
    results = model_index_results(tasks, record)
    if results:
        front["model-index"] = [{"name": record.get("name") or model_dir.name, "results": results}]
    return front


def model_index_results(tasks: dict[str, Any], record: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per task with test metrics (and one for the STS-B score), values as in results.json."""
    entries = []
    datasets = record.get("datasets") or {}
    for name, metrics in (record.get("test") or {}).items():
        if name not in tasks:
            continue
        dataset = datasets.get(name) or {"name": name}
        entries.append(
            {
                "task": {"type": tasks[name].task.hub_task, "name": f"{name} ({tasks[name].type})"},
                "dataset": {"name": dataset["name"], "type": dataset.get("id", dataset["name"]), "split": "test"},
                "metrics": [{"type": k, "value": v, "name": f"test {k}"} for k, v in metrics.items()],
            }
        )
    if "sts_spearman" in record:
        sts = ((record.get("config") or {}).get("training") or {}).get("sts_eval") or {}
        dataset = dataset_of(sts.get("file")) or {"name": "sts"}
        entries.append(
            {
                "task": {"type": "sentence-similarity", "name": "STS (cosine of the shared embedding)"},
                "dataset": {"name": dataset["name"], "type": dataset.get("id", dataset["name"])},
                "metrics": [{"type": "spearman", "value": record["sts_spearman"], "name": "STS Spearman"}],
            }
        )
    return entries


# ---------------------------------------------------------------------- the card
def render_card(model_dir: Path, repo_id: str | None = None) -> str:
    """The card for the model in ``model_dir``: front matter, then the body (markdown); the examples load it by
    ``repo_id`` when it is pushed to the Hub, else by a placeholder path."""
    config = read_config(model_dir)
    encoder, tasks = config.encoder, config.tasks
    record = read_json(model_dir / RECORD_NAME)
    front = yaml.safe_dump(front_matter(model_dir, encoder, tasks, record), sort_keys=False, allow_unicode=True)
    title = record.get("name") or model_dir.name
    base = base_model(str(encoder.get("name", ""))) or str(encoder.get("name", "a local encoder"))
    parts = [
        f"---\n{front}---\n{MARKER}\n",
        f"# {title}\n",
        f"A polyhead multi-task model: one shared `{base}` encoder "
        f"({encoder.get('pooling')} pooling, {encoder.get('projection_dim') or encoder.get('hidden_size')}-d "
        f"sentence embeddings{', L2-normalised' if encoder.get('normalize') else ''}, up to "
        f"{encoder.get('max_length')} tokens) and {len(tasks)} task head{'s' if len(tasks) != 1 else ''}; one "
        "encoder pass gives every head's predictions. The directory is also a sentence-transformers model "
        "(the shared embedding).\n",
        tasks_section(tasks, record),
        results_section(record),
        training_section(record),
        usage_section(tasks, repo_id),
        export_section(model_dir),
    ]
    return "\n".join(p for p in parts if p)


def tasks_section(tasks: dict[str, Any], record: dict[str, Any]) -> str:
    if not tasks:
        return "## Tasks\n\nNone: an encoder alone (sentence embeddings).\n"
    datasets = record.get("datasets") or {}
    rows = ["## Tasks\n", "| task | type | trained on | labels |", "| --- | --- | --- | --- |"]
    for name, spec in tasks.items():
        labels = ", ".join(f"`{label}`" for label in spec.labels[:MAX_LABELS])
        if len(spec.labels) > MAX_LABELS:
            labels += f", ... ({len(spec.labels)} in all)"
        dataset = (datasets.get(name) or {}).get("name", "")
        rows.append(f"| {name} | {spec.type} | {dataset} | {labels or '(a score)'} |")
    return "\n".join(rows) + "\n"


def results_section(record: dict[str, Any]) -> str:
    rows = []
    for split in ("dev", "test"):
        for task, metrics in (record.get(split) or {}).items():
            rows += [f"| {task} | {split} | {k} | {number(v)} |" for k, v in metrics.items()]
    if "sts_spearman" in record:
        rows.append(f"| shared embedding | STS | Spearman | {number(record['sts_spearman'])} |")
    if not rows:
        return ""
    head = ["## Results\n", "After training (from the run's `results.json`):\n", "| task | split | metric | value |"]
    return "\n".join([*head, "| --- | --- | --- | --- |", *rows]) + "\n"


def training_section(record: dict[str, Any]) -> str:
    config = record.get("config")
    if not config:
        return ""
    facts = [f"seed {record.get('seed')}", f"{record.get('wall_time_s')} s"]
    if isinstance(record.get("trainable_params"), int) and isinstance(record.get("total_params"), int):
        facts.append(f"{record['trainable_params']:,} of {record['total_params']:,} parameters trained")
    summary = f"Trained with `polyhead train` ({', '.join(facts)}). The config (keys left at their defaults omitted):\n"
    return f"## Training\n\n{summary}\n```yaml\n{yaml.safe_dump(config, sort_keys=False)}```\n"


def usage_section(tasks: dict[str, Any], repo_id: str | None = None) -> str:
    predict = 'model.predict(["The fish was superb."])   # every head: labels, scores, spans' if tasks else ""
    name, cli = repo_id or "path/to/this/directory", repo_id or "DIR"
    return f"""## Use it

```python
from polyhead import MultiTaskModel
model = MultiTaskModel.from_pretrained("{name}")
{predict}
model.encode(["The fish was superb."])                 # the shared sentence embedding

from sentence_transformers import SentenceTransformer   # the embedding alone, no heads
SentenceTransformer("{name}").encode(["The fish was superb."])
```

```
polyhead predict {cli} "The fish was superb."
polyhead export DIR --format onnx --quantize int8 --check    # ONNX files, then --backend onnx / onnx-int8
polyhead serve {cli} --port 8000                              # HTTP API and a page
polyhead push DIR USER/REPO     # this card becomes the Hub page (or: huggingface-cli upload USER/REPO DIR)
```
"""


def export_section(model_dir: Path) -> str:
    """The ONNX section (saying how to export when nothing is), and an OpenVINO one when it was exported."""
    sections = [format_section(model_dir, "onnx", "ONNX"), format_section(model_dir, "openvino", "OpenVINO")]
    if not sections[0]:
        sections[0] = "## ONNX\n\nNot exported yet (`polyhead export DIR --format onnx`).\n"
    return "\n".join(s for s in sections if s)


def format_section(model_dir: Path, kind: str, title: str) -> str:
    """The files of export ``kind`` (onnx, openvino) that are there, its int8 recipe and its parity gate; ''
    when it was not exported."""
    meta = read_json(model_dir / EXPORTS[kind][0])
    files = {k: v for k, v in (meta.get("files") or {}).items() if (model_dir / str(v)).is_file()}
    if not files:
        return ""
    lines = [f"## {title}\n", "| variant | file |", "| --- | --- |"]
    lines += [f"| {k} | `{v}` |" for k, v in files.items()]
    if meta.get("int8_recipe"):
        lines.append(f"\nint8 recipe: `{meta['int8_recipe']}`.")
    gate = meta.get("gate") or {}
    if gate:
        lines += [f"\nParity gate against PyTorch (`polyhead export --format {kind} --check`, docs/export.md):\n"]
        lines += ["| variant | " + " | ".join(GATE_COLUMNS) + " |", "| --- |" + " --- |" * len(GATE_COLUMNS)]
        for variant, numbers in gate.items():
            cells = [number(numbers.get(c)) if isinstance(numbers, dict) else "" for c in GATE_COLUMNS]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    else:
        lines.append(f"\nNo parity gate run yet (`polyhead export DIR --format {kind} --check`).")
    lines.append(
        f"\nRun it: `polyhead predict DIR --backend {kind}` (or {kind}-int8), `polyhead serve DIR --backend {kind}`"
    )
    return "\n".join(lines) + "\n"
