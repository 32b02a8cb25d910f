"""The sentence-transformers side of a model directory, both directions, without torch.

Reading: the pooling / normalisation / max length an HF or sentence-transformers directory declares.
Writing: ``modules.json``, ``1_Pooling/``, ``2_Dense/`` (config only; weights are the caller's),
``N_Normalize/`` and ``sentence_bert_config.json``, so ``SentenceTransformer(dir)`` embeds like polyhead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyhead.errors import ModelDirError
from polyhead.fileio import write_json_atomic

DEFAULT_SETTINGS: dict[str, Any] = {"pooling": "mean", "normalize": True, "max_length": 256}
# sentence-transformers pooling modes -> polyhead's; its older files have one boolean key per mode
ST_POOLING = {"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len"}
ST_LEGACY_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
DENSE_DIR = "2_Dense"


def sentence_transformers_settings(path: Path) -> tuple[dict[str, Any], list[str]]:
    """(pooling / normalize / max_length found in a sentence-transformers layout, modules not read).

    Reads ``modules.json``, the Pooling module's ``config.json`` and the max length from
    ``sentence_bert_config.json`` or ``tokenizer_config.json``; a directory without ``modules.json`` gives
    ({}, []). Modules other than Transformer, Pooling and
    Normalize (Dense, ...) are listed as not read; a pooling polyhead lacks (weighted mean, last token,
    several modes at once) is an error naming the file.
    """
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return {}, []
    found: dict[str, Any] = {"normalize": False}
    ignored: list[str] = []
    try:
        modules = json.loads(modules_file.read_text())
        for module in modules:
            kind = str(module["type"]).rsplit(".", 1)[-1]
            if kind == "Pooling":
                config_file = path / module["path"] / "config.json"
                config = json.loads(config_file.read_text())
                modes = config.get("pooling_mode") or [m for k, m in ST_LEGACY_POOLING.items() if config.get(k)]
                modes = [modes] if isinstance(modes, str) else list(modes or ["mean"])
                if len(modes) != 1 or modes[0] not in ST_POOLING:
                    raise ModelDirError(
                        f"{config_file}: pooling {' + '.join(map(str, modes))} is not supported; "
                        f"valid: one of {', '.join(ST_POOLING)}"
                    )
                found["pooling"] = ST_POOLING[modes[0]]
            elif kind == "Normalize":
                found["normalize"] = True
            elif kind != "Transformer":
                ignored.append(f"{kind} ({module['path']})")
        # max_seq_length: sentence_bert_config.json (sentence-transformers < 6), else the tokenizer's
        # model_max_length, where sentence-transformers 6 keeps it
        places = (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length"))
        for name, key in places:
            file = path / name
            value = json.loads(file.read_text()).get(key) if file.is_file() else None
            if isinstance(value, int) and 0 < value < 1_000_000:  # HF writes 1e30 for "no limit"
                found["max_length"] = value
                break
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{path}: unreadable sentence-transformers files ({type(exc).__name__}: {exc})") from exc
    return found, ignored


def encoder_settings(path: Path, **asked: Any) -> tuple[dict[str, Any], list[str]]:
    """(pooling / normalize / max_length for the HF directory ``path``: the ``asked`` values that are not
    None, else its sentence-transformers files', else DEFAULT_SETTINGS; the modules not read)."""
    found, ignored = sentence_transformers_settings(path)
    return {**DEFAULT_SETTINGS, **found, **{k: v for k, v in asked.items() if v is not None}}, ignored


def write_sentence_transformers_files(
    out: Path, pooling: str, hidden_size: int, dense: tuple[int, int] | None, normalize: bool, max_length: int
) -> None:
    """Lay an encoder out as a sentence-transformers model (modules.json and module folders).

    ``dense``: (in_features, out_features) of the projection, whose weights the caller writes to
    ``2_Dense/model.safetensors``.
    """
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    ]
    config = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": pooling == "mean_sqrt_len",
    }
    write_json_atomic(out / "1_Pooling" / "config.json", config)
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if dense is not None:
        dense_config = {
            "in_features": dense[0],
            "out_features": dense[1],
            "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity",
        }
        write_json_atomic(out / DENSE_DIR / "config.json", dense_config)
        modules.append({"idx": 2, "name": "2", "path": DENSE_DIR, "type": "sentence_transformers.models.Dense"})
    if normalize:
        idx = len(modules)
        (out / f"{idx}_Normalize").mkdir(parents=True, exist_ok=True)
        modules.append(
            {"idx": idx, "name": str(idx), "path": f"{idx}_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
    write_json_atomic(out / "modules.json", modules)
    write_json_atomic(out / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
