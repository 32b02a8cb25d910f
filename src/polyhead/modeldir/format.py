"""polyhead.json: the format version, library versions, encoder settings and task specs, read and written
without torch (the ONNX backend and the server read a model directory through here too).

Layout (docs/model-directory.md)::

    polyhead.json            format version, library versions, encoder settings, tasks (type, head, labels)
    config.json              HF config of the transformer      \\
    model.safetensors        transformer weights (HF layout)    } also a sentence-transformers model:
    tokenizer files                                              } modules.json, 1_Pooling/, 2_Dense/,
    modules.json, sentence_bert_config.json, 1_Pooling/ ...     /  N_Normalize/
    heads.safetensors        every head's weights, keys "<task>.<param>"

Only JSON and safetensors are read; nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from polyhead.errors import ModelDirError, PolyheadError
from polyhead.fileio import write_json_atomic
from polyhead.modeldir.spec import TaskSpec
from polyhead.modeldir.tokenizer import tokenizer_record

FORMAT_VERSION = 1
CONFIG_NAME = "polyhead.json"
HEADS_NAME = "heads.safetensors"
WEIGHTS_NAME = "model.safetensors"
# Files whose presence means a directory ships code or pickled state; never loaded.
UNSAFE_SUFFIXES = (".py", ".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
# Exported graphs beside the weights: each format's record (files, recipe, gate) and its variants' files. The
# backends, the exports, the model card and the Hub allow-list all take the names from here.
ONNX_META = "onnx.json"
ONNX_VARIANTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
OPENVINO_META = "openvino.json"
OPENVINO_VARIANTS = {"fp32": "openvino_model.xml", "int8": "openvino_model.int8.xml"}
# OpenVINO's weights file: ``.weights`` rather than its usual ``.bin``, a suffix a model directory refuses
OPENVINO_WEIGHTS_SUFFIX = ".weights"
EXPORTS = {"onnx": (ONNX_META, ONNX_VARIANTS), "openvino": (OPENVINO_META, OPENVINO_VARIANTS)}


def export_files(backend: str) -> list[str]:
    """The files backend ``onnx``, ``onnx-int8``, ``openvino`` or ``openvino-int8`` reads beside the model
    directory's own ([] for torch or a name that is no export backend)."""
    kind, _, variant = backend.partition("-")
    if kind not in EXPORTS or variant not in ("", "int8"):
        return []
    meta, variants = EXPORTS[kind]
    graph = variants[variant or "fp32"]
    weights = [str(Path(graph).with_suffix(OPENVINO_WEIGHTS_SUFFIX))] if kind == "openvino" else []
    return [meta, graph, *weights]


@dataclass
class ModelConfig:
    """polyhead.json, read and checked: ``encoder`` settings and ``tasks`` by name."""

    path: Path
    encoder: dict[str, Any]
    tasks: dict[str, TaskSpec]
    raw: dict[str, Any]


def library_versions() -> dict[str, str]:
    """Versions recorded in polyhead.json (read from the installed distributions: no torch import)."""
    versions = {}
    for name in ("polyhead", "torch", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_config(path: Path) -> ModelConfig:
    """Read and check polyhead.json (present, valid JSON, a format version this library reads, task specs)."""
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise ModelDirError(f"model directory {path} {what}")
    file = path / CONFIG_NAME
    if not file.is_file():
        raise ModelDirError(f"{path} is not a polyhead model directory: {CONFIG_NAME} is missing")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{file} is not valid JSON: {exc}") from exc
    version = config.get("format_version") if isinstance(config, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelDirError(f"{file}: 'format_version' is missing or not an integer")
    if version < 1:
        raise ModelDirError(f"{file}: format version {version} is not one polyhead wrote (valid: 1..{FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise ModelDirError(
            f"{file} has format version {version}, newer than this polyhead reads ({FORMAT_VERSION}); upgrade polyhead"
        )
    for key in ("encoder", "tasks"):
        if not isinstance(config.get(key), dict):
            raise ModelDirError(f"{file}: '{key}' is missing or not an object")
    check_encoder_settings(file, config["encoder"])
    return ModelConfig(path, config["encoder"], read_task_specs(file, config["tasks"]), config)


# encoder settings: key -> (is the value valid, what is valid)
ENCODER_SETTINGS = {
    "max_length": (lambda v: is_int(v) and 0 < v <= 1_000_000, "a positive integer"),
    "projection_dim": (lambda v: v is None or (is_int(v) and 0 < v <= 65536), "null or an integer 1..65536"),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "pooling": (lambda v: isinstance(v, str), "a pooling mode name"),
}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_encoder_settings(file: Path, encoder: dict[str, Any]) -> None:
    for key, (valid, what) in ENCODER_SETTINGS.items():
        if key in encoder and not valid(encoder[key]):
            raise ModelDirError(f"{file}: encoder.{key} is {encoder[key]!r}; valid: {what}")


def check_spec_fields(file: Path, name: str, data: Any) -> None:
    """The JSON types of a task spec's fields (a hand-edited polyhead.json must not reach the head builder)."""
    if not isinstance(data, dict):
        raise ModelDirError(f"{file}: task {name!r} must be an object")
    checks = {
        "type": (lambda v: isinstance(v, str), "a task type name"),
        "labels": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
        "hidden": (lambda v: isinstance(v, list) and all(is_int(x) and 0 < x <= 65536 for x in v),
                   "a list of positive integers"),
        "activation": (lambda v: isinstance(v, str), "an activation name"),
        "dropout": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "threshold": (is_number, "a number"),
        "loss": (lambda v: isinstance(v, str), "a loss name"),
        "class_weights": (lambda v: label_map(v, lambda x: 0 < x < math.inf), "an object {label: positive number}"),
        "pos_weight": (lambda v: label_map(v, lambda x: 0 < x < math.inf), "an object {label: positive number}"),
        "label_smoothing": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "thresholds": (lambda v: label_map(v, lambda x: 0 < x < 1), "an object {label: number in (0, 1)}"),
        "temperature": (lambda v: is_number(v) and 0 < v < math.inf, "a positive number"),
    }
    for key, (valid, what) in checks.items():
        if key in data and not valid(data[key]):
            raise ModelDirError(f"{file}: tasks.{name}.{key} is {data[key]!r:.200}; valid: {what}")


def label_map(value: Any, valid: Callable[[float], bool]) -> bool:
    """An object of label -> number, every number valid."""
    return isinstance(value, dict) and all(isinstance(v, int | float) and not isinstance(v, bool) and valid(v)
                                           for v in value.values())


def check_spec_labels(file: Path, name: str, spec: TaskSpec) -> None:
    """Per-label fields name labels of the task (a threshold for a label the head doesn't have is a typo)."""
    for key in ("class_weights", "pos_weight", "thresholds"):
        valid = spec.task.threshold_keys(spec) if key == "thresholds" else spec.labels
        unknown = [label for label in getattr(spec, key) if label not in valid]
        if unknown:
            raise ModelDirError(
                f"{file}: tasks.{name}.{key} names unknown label {unknown[0]!r}; "
                f"{'labels' if valid == spec.labels else 'valid'}: {', '.join(valid[:20])}"
            )


def read_task_specs(file: Path, tasks: dict[str, Any]) -> dict[str, TaskSpec]:
    from polyhead.tasks import task_type_names

    specs = {}
    for name, data in tasks.items():
        check_spec_fields(file, name, data)
        try:
            spec = TaskSpec.from_dict(data)
        except TypeError as exc:
            raise ModelDirError(f"{file}: invalid task spec: {exc}") from exc
        if spec.type not in task_type_names():
            raise ModelDirError(
                f"{file}: task {name!r} has unknown type {spec.type!r}; valid: {', '.join(task_type_names())}"
            )
        check_spec_labels(file, name, spec)
        try:  # the type's own checks (label counts, BIO tags, one threshold for two classes), for every backend
            spec.task.check_spec(spec)
        except PolyheadError as exc:
            raise ModelDirError(f"{file}: task {name!r}: {exc}") from None
        specs[name] = spec
    return specs


def write_config(out: Path, encoder: dict[str, Any], tasks: dict[str, TaskSpec]) -> None:
    """polyhead.json for the directory ``out`` (written last: the tokenizer files are already there)."""
    config = {
        "format_version": FORMAT_VERSION,
        "library_versions": library_versions(),
        "encoder": encoder,
        "tasks": {name: spec.to_dict() for name, spec in tasks.items()},
        "tokenizer": tokenizer_record(out),  # checked at load: the files the model was saved with
    }
    write_json_atomic(out / CONFIG_NAME, config)


def check_safe_directory(path: Path) -> None:
    """Refuse directories that ship Python code or pickled weights (only safetensors + JSON are read)."""
    unsafe = sorted(p.name for p in path.rglob("*") if p.suffix.lower() in UNSAFE_SUFFIXES and p.is_file())
    if unsafe:
        raise ModelDirError(
            f"{path} holds files that could run code when loaded ({', '.join(unsafe[:5])}); polyhead only "
            "loads safetensors + JSON: remove them, or convert the weights to model.safetensors"
        )
    if not (path / WEIGHTS_NAME).is_file():
        raise ModelDirError(f"{path} has no {WEIGHTS_NAME}; polyhead only loads safetensors weights")


def check_new_directory(path: Path, what: str, hint: str = "choose a new or empty directory") -> None:
    """Refuse a path that is a file or a non-empty directory: nothing the user has is written over."""
    if path.exists() and not path.is_dir():
        raise PolyheadError(f"{what} {path} is a file, not a directory; {hint}")
    if path.exists() and any(path.iterdir()):
        raise PolyheadError(f"{what} {path} already exists and is not empty; {hint}")


def write_directory_atomic(path: Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Run ``write(tmp)`` into a temporary sibling, then rename it into place.

    An existing directory is replaced only with ``overwrite=True`` and only if it is empty or a
    polyhead model directory, so nothing else the user had is lost.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PolyheadError(f"{path} is a file; save_pretrained needs a directory path")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise PolyheadError(f"{path} already exists and is not empty; choose another directory or pass overwrite")
        if not (path / CONFIG_NAME).is_file():
            raise PolyheadError(f"{path} is not a polyhead model directory; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
