"""The shared sentence encoder: HF transformer -> pooling -> (projection) -> (L2 normalisation)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from polyhead import predict as pipeline
from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeldir import TaskSpec, check_safe_directory, read_config
from polyhead.modeldir.bounds import check_encoder_config
from polyhead.modeldir.hub import DEFAULT_MODEL, is_hub_snapshot, resolve_model_dir, resolve_model_path
from polyhead.modeldir.layout import DENSE_DIR, encoder_settings, write_sentence_transformers_files
from polyhead.modeldir.tokenizer import check_tokenizer_files, check_vocab_size
from polyhead.modeling.batching import length_sorted_batches, pad_batch
from polyhead.modeling.device import resolve_device
from polyhead.modeling.onednn import choose_linears
from polyhead.modeling.pooling import Dense, Pooling
from polyhead.modeling.pooling import normalize as l2_normalize
from polyhead.modeling.weights import load_strict, load_weights, save_module
from polyhead.runtime import check_precision
from polyhead.tokens import clip_texts, clip_words, tokenize_words

logger = logging.getLogger(__name__)

__all__ = ["ATTENTION", "DEFAULT_MODEL", "SentenceEncoder", "load_encoder", "load_transformer", "resolve_model_path"]

# The attention kernel the loaders ask for. Eager, not transformers' default SDPA: on this CPU SDPA measured no
# faster, in training (fp32 0.93-1.08x eager, bf16 0.87-0.98x, six rounds; with dropout on, CPU SDPA runs torch's
# math kernel, eager's own operations and masks) or in encoding (fp32 0.95-1.15x, median 1.02x; bf16 0.85-1.05x,
# median 0.94x; nine runs). BENCHMARKS.md, issue 24. Eager also keeps a trained model and its reload identical.
ATTENTION: str | None = "eager"


def load_transformer(path: Path, attn_implementation: str | None = ATTENTION) -> tuple[nn.Module, Any]:
    """Load an HF encoder and its tokenizer from a local directory (a Hub name is resolved to one first, by
    :func:`resolve_model_path`), safetensors only, never remote code. ``attn_implementation``: see
    :meth:`SentenceEncoder.from_pretrained`."""
    from transformers import AutoModel, AutoTokenizer

    if is_hub_snapshot(path):
        # A snapshot in the HF cache may also hold pytorch_model.bin etc. when the user downloaded the whole
        # repository; only the safetensors weights are read (use_safetensors=True), nothing else is loaded.
        if not any(path.glob("*.safetensors")):
            raise ModelDirError(f"{path} has no safetensors weights; polyhead only loads safetensors")
    else:
        check_safe_directory(path)
    check_encoder_config(path)  # sizes bounded before transformers allocates them
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


def load_encoder(path: Path, attn_implementation: str | None = ATTENTION) -> SentenceEncoder:
    """The shared encoder of a polyhead model directory, every weight checked."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    model_config = read_config(path)
    settings = model_config.encoder
    if is_hub_snapshot(path):  # a full `hf download` may hold other libraries' files: only safetensors are read
        if not (path / "model.safetensors").is_file():
            raise ModelDirError(f"{path} has no model.safetensors; polyhead only loads safetensors weights")
    else:
        check_safe_directory(path)
    check_tokenizer_files(path, model_config.raw)
    check_encoder_config(path)  # sizes bounded before transformers allocates them
    try:
        hf_config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelDirError(f"can't read the transformer config or tokenizer in {path}: {exc}") from exc
    check_vocab_size(path, len(tokenizer))
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
        raise ModelDirError(f"{path / 'polyhead.json'}: encoder setting {exc} is missing") from exc
    if encoder.dense is not None:
        dense_file = path / DENSE_DIR / "model.safetensors"
        load_strict(encoder.dense, load_weights(dense_file), dense_file)
    encoder.eval()
    return encoder


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
        # CPU GEMMs on oneDNN or MKL, whichever a probe measured faster on this CPU (oneDNN 1.4-2.3x MKL on
        # AMD EPYC): changes this model's linears, not the process (polyhead.cpupath, modeling/onednn.py)
        self.linears = choose_linears(self)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        pooling: str | None = None,
        projection_dim: int | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        attn_implementation: str | None = ATTENTION,
        backend: str = "torch",
        variant: str = "fp32",
        revision: str | None = None,
        device: str | torch.device | None = None,
    ) -> Any:
        """Load from ``"default"``, a local HF encoder directory, a polyhead model directory, or a Hugging Face
        Hub name (``"BAAI/bge-small-en-v1.5"``, at ``revision``; the local cache first, see
        :func:`polyhead.modeldir.hub.resolve_model_path`).

        A polyhead model directory brings its own pooling/projection/normalisation settings. For an HF
        directory, settings not given here come from its sentence-transformers files when it has them
        (:func:`sentence_transformers_settings`), else mean pooling, L2 normalisation, 256 tokens. With
        ``backend="onnx"`` it runs on onnxruntime (after ``polyhead export``), without torch. ``device``: ``auto``
        (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; default ``auto``.

        ``attn_implementation``: ``"eager"`` (the default, ``ATTENTION``), ``"sdpa"`` (torch's
        ``scaled_dot_product_attention``), or ``None`` for transformers' own choice (SDPA where the architecture has
        it). On the CPU the two give the same numbers to float rounding, in training with dropout too
        (tests/test_attention.py).
        """
        if backend == "onnx":
            from polyhead.onnx_backend import OnnxModel

            pipeline.check_onnx_device(device)
            backend_name = "onnx" if variant == "fp32" else "onnx-int8"
            return OnnxModel(resolve_model_dir(str(name_or_path), revision, backend_name), variant)
        if backend != "torch":
            raise PolyheadError(f"unknown backend {backend!r}; valid: torch, onnx")
        target = resolve_device(device or "auto")
        path = resolve_model_path(name_or_path, revision)
        if (path / "polyhead.json").is_file():
            if (pooling, projection_dim, normalize, max_length) != (None, None, None, None):
                logger.warning("%s is a polyhead model directory: its saved encoder settings are used", path)
            return load_encoder(path, attn_implementation=attn_implementation).to(target)
        settings, ignored = encoder_settings(path, pooling=pooling, normalize=normalize, max_length=max_length)
        if ignored:
            logger.warning("%s: sentence-transformers module(s) %s not loaded (polyhead reads the transformer, "
                           "Pooling and Normalize)", path, ", ".join(ignored))
        Pooling(settings["pooling"])  # validate before the (slower) model load
        transformer, tokenizer = load_transformer(path, attn_implementation)
        encoder = cls(transformer, tokenizer, projection_dim=projection_dim, name=str(name_or_path), **settings)
        return encoder.to(target)

    def save(self, out: Path) -> None:
        """Write the transformer, tokenizer and sentence-transformers layout (with the projection) into ``out``."""
        self.transformer.save_pretrained(str(out), safe_serialization=True)
        self.tokenizer.save_pretrained(str(out))
        dense = (self.dense.linear.in_features, self.dense.linear.out_features) if self.dense is not None else None
        write_sentence_transformers_files(
            out, self.pooling.mode, self.hidden_size, dense, self.normalize, self.max_length
        )
        if self.dense is not None:
            save_module(self.dense, out / DENSE_DIR / "model.safetensors")

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
        pipeline.check_texts(texts)
        texts = clip_texts(texts, self.max_length)  # characters bounded before the tokenizer sees them
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(texts))]

    tokenize_texts = tokenize_lists  # the pipeline's Backend name

    def tokenize_words(self, words: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
        """Tokenise word lists; each result also has ``word_ids`` (word index per sub-token)."""
        return tokenize_words(self.tokenizer, clip_words(words, self.max_length), self.max_length)

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
        """Each pair as one sequence ``[CLS] a [SEP] b [SEP]`` with ``token_type_ids`` (the longer text is cut
        first when the pair is over ``max_length``)."""
        if not pairs:
            return []
        enc = self.tokenizer(
            clip_texts([a for a, _ in pairs], self.max_length),
            clip_texts([b for _, b in pairs], self.max_length),
            truncation="longest_first",
            max_length=self.max_length,
        )
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(pairs))]

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

    # ----------------------------------------------------------------- inference (polyhead.predict's Backend)
    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return {}

    def run_batch(
        self, encodings: Sequence[dict[str, Any]], outputs: Sequence[str], precision: str
    ) -> dict[str, np.ndarray]:
        """Pad and run one batch (see polyhead.predict.Backend): ``pooled_embedding`` (batch, dim)."""
        features = run_padded(self, encodings, self.pad_token_id, precision, self)
        return {name: features[name].float().cpu().numpy() for name in outputs}

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress: bool = False,
        convert_to: Literal["numpy", "torch"] = "numpy",
        precision: str = "fp32",
        max_tokens: int | None = pipeline.MAX_TOKENS,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts; returns (n, dim) (or (dim,) for a single string) in the input order.

        Texts are sorted by token count and batched by count and by a padded-token budget, so each
        batch pads only to its own longest text; the order is restored at the end.
        """
        if convert_to not in ("numpy", "torch"):
            raise PolyheadError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        vectors = pipeline.encode(self, texts, batch_size, normalize, precision, show_progress, max_tokens)
        if isinstance(texts, str) or len(vectors):
            return torch.from_numpy(vectors) if convert_to == "torch" else vectors
        empty = np.zeros((0, self.dim), dtype=np.float32)
        return torch.from_numpy(empty) if convert_to == "torch" else empty

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any) -> np.ndarray:
        """Cosine similarities: (len(a), len(b)), or (len(a), len(a)) when ``b`` is None."""
        return pipeline.similarity(self, a, b, **kwargs)

    def iter_batches(
        self,
        encodings: Sequence[dict[str, list[int]]],
        batch_size: int,
        max_tokens: int | None,
        show_progress: bool,
        precision: str,
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Yield (indices, padded features on the model's device) under inference mode and autocast, for
        training-time passes over tokenised data (prediction goes through polyhead.predict)."""
        device = self.device
        check_precision(precision, device.type)
        batches = length_sorted_batches([len(e["input_ids"]) for e in encodings], batch_size, max_tokens)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(), autocast(precision, device):
                for batch in batches:
                    features = pad_batch([encodings[i] for i in batch], self.pad_token_id)
                    yield batch, {k: v.to(device) for k, v in features.items()}
        finally:
            self.train(was_training)


def run_padded(
    module: nn.Module,
    encodings: Sequence[dict[str, Any]],
    pad_token_id: int,
    precision: str,
    run: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Pad one batch and ``run`` it with ``module`` in eval mode (no dropout), under inference mode and autocast;
    the module's training mode is restored afterwards."""
    device = next(module.parameters()).device
    check_precision(precision, device.type)
    features = pad_batch(encodings, pad_token_id)
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), autocast(precision, device):
            return run({k: v.to(device) for k, v in features.items()})
    finally:
        module.train(was_training)


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """bf16 or fp16 autocast on ``device`` when asked for (torch's own), a no-op for fp32."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
            yield
    else:
        yield
