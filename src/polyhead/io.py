"""The model directory: save_pretrained / load_pretrained.

Layout (see docs/model-directory.md)::

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
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from polyhead.errors import ModelDirError, PolyheadError
from polyhead.fileio import write_json_atomic
from polyhead.modeling.encoder import SentenceEncoder, check_safe_directory
from polyhead.modeling.heads import TaskSpec
from polyhead.modeling.multitask import MultiTaskModel

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "polyhead.json"
HEADS_NAME = "heads.safetensors"


def library_versions() -> dict[str, str]:
    import transformers

    import polyhead

    return {
        "polyhead": polyhead.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


# --------------------------------------------------------------------------------------------- saving
def check_new_directory(path: Path, what: str, hint: str = "choose a new or empty directory") -> None:
    """Refuse a path that is a file or a non-empty directory: nothing the user has is written over."""
    if path.exists() and not path.is_dir():
        raise PolyheadError(f"{what} {path} is a file, not a directory; {hint}")
    if path.exists() and any(path.iterdir()):
        raise PolyheadError(f"{what} {path} already exists and is not empty; {hint}")


def save_pretrained(model: MultiTaskModel | SentenceEncoder, path: Path, overwrite: bool = False) -> Path:
    """Write the model directory atomically: into a temporary sibling, then renamed into place.

    An existing directory is replaced only with ``overwrite=True`` and only if it is empty or a
    polyhead model directory, so nothing else the user had is lost.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PolyheadError(f"{path} is a file; save_pretrained needs a directory path")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise PolyheadError(
                f"{path} already exists and is not empty; choose another directory or pass overwrite"
            )
        if not (path / CONFIG_NAME).is_file():
            raise PolyheadError(f"{path} is not a polyhead model directory; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_directory(model, tmp)
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


def write_directory(model: MultiTaskModel | SentenceEncoder, out: Path) -> None:
    encoder = model.encoder if isinstance(model, MultiTaskModel) else model
    tasks = model.tasks if isinstance(model, MultiTaskModel) else {}
    encoder.transformer.save_pretrained(str(out), safe_serialization=True)
    encoder.tokenizer.save_pretrained(str(out))
    write_sentence_transformers_files(encoder, out)
    if isinstance(model, MultiTaskModel):
        state = {k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()}
        save_file(state, str(out / HEADS_NAME), metadata={"format": "pt"})
    config = {
        "format_version": FORMAT_VERSION,
        "library_versions": library_versions(),
        "encoder": encoder.settings(),
        "tasks": {name: spec.to_dict() for name, spec in tasks.items()},
    }
    write_json_atomic(out / CONFIG_NAME, config)


def write_sentence_transformers_files(encoder: SentenceEncoder, out: Path) -> None:
    """Lay the shared encoder out as a sentence-transformers model (modules.json and module folders)."""
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    ]
    mode = encoder.pooling.mode
    pooling = {
        "word_embedding_dimension": encoder.hidden_size,
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": mode == "max",
        "pooling_mode_mean_sqrt_len_tokens": mode == "mean_sqrt_len",
    }
    write_json(out / "1_Pooling" / "config.json", pooling)
    modules.append(
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    )
    if encoder.dense is not None:
        linear = encoder.dense.linear
        dense = {
            "in_features": linear.in_features,
            "out_features": linear.out_features,
            "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity",
        }
        write_json(out / "2_Dense" / "config.json", dense)
        state = {k: v.detach().contiguous().cpu() for k, v in encoder.dense.state_dict().items()}
        save_file(state, str(out / "2_Dense" / "model.safetensors"), metadata={"format": "pt"})
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
        )
    if encoder.normalize:
        idx = len(modules)
        (out / f"{idx}_Normalize").mkdir()
        modules.append(
            {
                "idx": idx,
                "name": str(idx),
                "path": f"{idx}_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    write_json(out / "modules.json", modules)
    write_json(
        out / "sentence_bert_config.json", {"max_seq_length": encoder.max_length, "do_lower_case": False}
    )


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)


# --------------------------------------------------------------------------------------------- loading
def read_config(path: Path) -> dict[str, Any]:
    """Read and check polyhead.json (present, valid JSON, a format version this library reads)."""
    file = path / CONFIG_NAME
    if not file.is_file():
        raise ModelDirError(f"{path} is not a polyhead model directory: {CONFIG_NAME} is missing")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{file} is not valid JSON: {exc}") from exc
    version = config.get("format_version") if isinstance(config, dict) else None
    if not isinstance(version, int):
        raise ModelDirError(f"{file}: 'format_version' is missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelDirError(
            f"{file} has format version {version}, newer than this polyhead reads ({FORMAT_VERSION}); "
            "upgrade polyhead"
        )
    for key in ("encoder", "tasks"):
        if not isinstance(config.get(key), dict):
            raise ModelDirError(f"{file}: '{key}' is missing or not an object")
    return config


def load_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ModelDirError(f"weights file {file} is missing")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelDirError(
            f"{file} is not a readable safetensors file (truncated or corrupt?): {exc}"
        ) from exc


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """load_state_dict that turns missing, unexpected and mis-shaped weights into one clear error."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelDirError(
            f"{file} doesn't match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelDirError(
                f"{file}: '{key}' has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
                " (does the label list in polyhead.json match the weights?)"
            )
    module.load_state_dict(state, strict=True)


def load_encoder(path: Path, attn_implementation: str = "eager") -> SentenceEncoder:
    """The shared encoder of a polyhead model directory, every weight checked."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = read_config(path)
    check_safe_directory(path)
    settings = config["encoder"]
    try:
        hf_config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelDirError(f"can't read the transformer config or tokenizer in {path}: {exc}") from exc
    transformer = AutoModel.from_config(hf_config, attn_implementation=attn_implementation)
    if getattr(transformer, "pooler", None) is not None:
        transformer.pooler = None
    load_strict(transformer, load_weights(path / "model.safetensors"), path / "model.safetensors")
    try:
        encoder = SentenceEncoder(
            transformer,
            tokenizer,
            pooling=settings["pooling"],
            projection_dim=settings.get("projection_dim"),
            normalize=bool(settings.get("normalize", True)),
            max_length=int(settings.get("max_length", 256)),
            name=str(settings.get("name", path)),
        )
    except KeyError as exc:
        raise ModelDirError(f"{path / CONFIG_NAME}: encoder setting {exc} is missing") from exc
    if encoder.dense is not None:
        dense_file = path / "2_Dense" / "model.safetensors"
        load_strict(encoder.dense, load_weights(dense_file), dense_file)
    encoder.eval()
    return encoder


def load_pretrained(path: Path, attn_implementation: str = "eager") -> MultiTaskModel:
    """A MultiTaskModel from its directory; every weight and every label list is checked."""
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise ModelDirError(f"model directory {path} {what}")
    config = read_config(path)
    encoder = load_encoder(path, attn_implementation)
    try:
        tasks = {name: TaskSpec.from_dict(spec) for name, spec in config["tasks"].items()}
    except TypeError as exc:
        raise ModelDirError(f"{path / CONFIG_NAME}: invalid task spec: {exc}") from exc
    model = MultiTaskModel(encoder, tasks)
    if tasks:
        load_strict(model.heads, load_weights(path / HEADS_NAME), path / HEADS_NAME)
    model.eval()
    return model
