"""MultiTaskModel: one shared SentenceEncoder and a ModuleDict of task heads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyhead import predict as pipeline
from polyhead.errors import PolyheadError
from polyhead.modeldir import HEADS_NAME, TaskSpec, read_config, write_card, write_config, write_directory_atomic
from polyhead.modeldir.hub import resolve_model_dir
from polyhead.modeling.device import resolve_device
from polyhead.modeling.encoder import ATTENTION, SentenceEncoder, load_encoder, run_padded
from polyhead.modeling.weights import load_strict, load_weights, save_module

logger = logging.getLogger(__name__)


class MultiTaskModel(pipeline.PipelineMethods, nn.Module):
    """Encoder + heads keyed by task name.

    ``forward(features, tasks)`` runs the encoder once and then only the requested heads. ``predict`` /
    ``predict_pairs`` (from :class:`polyhead.predict.PipelineMethods`), encoding and similarity go through
    :mod:`polyhead.predict`: this class is its torch backend.
    """

    def __init__(self, encoder: SentenceEncoder, tasks: dict[str, TaskSpec]) -> None:
        super().__init__()
        self.encoder = encoder
        self.tasks = dict(tasks)
        self.heads = nn.ModuleDict(
            {name: spec.task.build_head(spec, encoder.dim, encoder.hidden_size) for name, spec in self.tasks.items()}
        )

    # ----------------------------------------------------------------- saving and loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        backend: str = "torch",
        variant: str = "fp32",
        device: Any = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load a model directory written by :meth:`save_pretrained` (see docs/model-directory.md), or one pushed
        to the Hugging Face Hub by its name ``org/name`` (at ``revision``: a branch, tag or commit), resolved
        through ``huggingface_hub`` like every Hugging Face library: the cache first, a download when online.

        ``backend="onnx"`` returns a :class:`polyhead.onnx_backend.OnnxModel` with the same
        encode/similarity/predict API on onnxruntime (``variant``: ``fp32`` or ``int8``), after
        ``polyhead export``. (:func:`polyhead.predict.load` is the same, typed as a Predictor.)
        ``device``: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default ``auto``.
        """
        if backend == "onnx":
            from polyhead.onnx_backend import OnnxModel

            pipeline.check_onnx_device(device)
            return OnnxModel(resolve_model_dir(path, revision, "onnx" if variant == "fp32" else "onnx-int8"), variant)
        if backend != "torch":
            raise PolyheadError(f"unknown backend {backend!r}; valid: torch, onnx")
        target = resolve_device(device or "auto")
        return load_pretrained(resolve_model_dir(path, revision), **kwargs).to(target)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        token: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Save the model into a temporary directory and upload it to the Hugging Face Hub repository ``repo_id``
        (created if missing), as sentence-transformers' and SetFit's ``push_to_hub`` do; see
        :func:`polyhead.modeldir.push.push_to_hub` for the arguments. To upload a trained model with its training
        results in the card, push its directory instead (``polyhead push runs/x/model org/name``).
        Returns the URL of the commit."""
        import tempfile

        from polyhead.modeldir.push import push_to_hub

        with tempfile.TemporaryDirectory(prefix="polyhead-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            return push_to_hub(folder, repo_id, private=private, revision=revision, commit_message=commit_message,
                               token=token, create_pr=create_pr)  # fmt: skip

    def save_pretrained(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model directory atomically (a temporary sibling renamed into place); an existing directory
        is replaced only with ``overwrite=True`` and only if it is a polyhead model directory. A model card
        (README.md) is rendered into it, unless the directory replaced held a card of the user's own (kept)."""
        path = Path(path)

        def write(out: Path) -> None:
            self.write_directory(out)
            write_card(out, previous=path)

        return write_directory_atomic(path, write, overwrite)

    def write_directory(self, out: Path) -> None:
        self.encoder.save(out)
        if self.tasks:
            save_module(self.heads, out / HEADS_NAME)
        write_config(out, self.encoder.settings(), self.tasks)

    # ----------------------------------------------------------------- forward
    def check_tasks(self, tasks: Sequence[str] | None) -> list[str]:
        """The requested task names (all when None); unknown names are an error listing the valid ones."""
        return pipeline.check_tasks(self.tasks, tasks)

    def run_heads(
        self, features: dict[str, torch.Tensor], tasks: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Apply heads to encoder features (also to cached ``sentence_embedding`` tensors)."""
        return {name: self.heads[name](features) for name in self.check_tasks(tasks)}

    def forward(self, features: dict[str, torch.Tensor], tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """features: ``input_ids``/``attention_mask`` (batch, seq_len) -> {task: output}.

        Outputs: classification/multilabel (batch, labels); regression (batch,); token_classification
        (batch, seq_len, tags); similarity (batch, dim), the sentence embedding.
        """
        return self.run_heads(self.encoder(features), tasks)

    # ----------------------------------------------------------------- polyhead.predict's Backend
    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def normalize(self) -> bool:
        return self.encoder.normalize

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def tokenize_texts(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return self.encoder.tokenize_lists(texts)

    def tokenize_words(self, words: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
        return self.encoder.tokenize_words(words)

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        return self.encoder.tokenize_pairs(pairs)

    def run_batch(
        self, encodings: Sequence[dict[str, Any]], outputs: Sequence[str], precision: str
    ) -> dict[str, np.ndarray]:
        """Pad and run one batch with every head in eval mode: ``pooled_embedding`` and ``task.<name>`` outputs."""
        names = [o.removeprefix("task.") for o in outputs if o.startswith("task.")]

        def run(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            feats = self.encoder(features)
            return {**feats, **{f"task.{n}": out for n, out in self.run_heads(feats, names).items()}}

        result = run_padded(self, encodings, self.encoder.pad_token_id, precision, run)
        return {name: result[name].float().cpu().numpy() for name in outputs}

    # ----------------------------------------------------------------- inference
    def encode(self, texts: str | Sequence[str], **kwargs: Any) -> np.ndarray | torch.Tensor:
        """The shared sentence embeddings, exactly as ``SentenceEncoder.encode`` gives them."""
        return self.encoder.encode(texts, **kwargs)

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any) -> np.ndarray:
        return self.encoder.similarity(a, b, **kwargs)


def load_pretrained(path: Path, attn_implementation: str | None = ATTENTION) -> MultiTaskModel:
    """A MultiTaskModel from its directory; every weight and every label list is checked. ``attn_implementation``:
    see :meth:`SentenceEncoder.from_pretrained`."""
    config = read_config(path)
    encoder = load_encoder(path, attn_implementation)
    model = MultiTaskModel(encoder, config.tasks)
    if config.tasks:
        load_strict(model.heads, load_weights(path / HEADS_NAME), path / HEADS_NAME)
    model.eval()
    return model
