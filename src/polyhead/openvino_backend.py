"""Inference on OpenVINO without torch or transformers: ``load(dir, "openvino")`` / ``"openvino-int8"`` after
``polyhead export DIR --format openvino [--quantize int8]``. Tokenisation uses the ``tokenizers`` package on the
directory's tokenizer.json (polyhead.numpy_backend), like the onnx backend.

    model = load("runs/demo/model", backend="openvino")
    model.encode(["..."], precision="bf16")    # OpenVINO's bf16 inference-precision hint (AVX512-BF16 / AMX CPUs)
    model.predict(["..."])

The IR (``openvino_model.xml`` + ``openvino_model.weights``) is the whole graph, encoder and heads, like the ONNX
export. A ``precision`` of ``fp32`` compiles it with ``INFERENCE_PRECISION_HINT=f32`` (float32 arithmetic
throughout; OpenVINO would otherwise pick bf16 by itself on CPUs that have it), ``bf16`` with the bf16 hint; each
compiled once, on first use.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeldir.format import OPENVINO_META, OPENVINO_WEIGHTS_SUFFIX
from polyhead.modeldir.format import OPENVINO_VARIANTS as VARIANTS
from polyhead.numpy_backend import TokenizersBackend, physical_cores, source_hashes

logger = logging.getLogger(__name__)

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
# Compiled kernels OpenVINO keeps per input shape (its default is 5,000). Every token-sorted batch is a new
# (batch x length) shape; oneDNN's caches with their default of 1,024 grew a server by gigabytes
# (polyhead.runtime), so this one is kept small too. A per-model compile setting, not a process-wide one.
RUNTIME_CACHE_CAPACITY = 256


def bin_file(xml: Path) -> Path:
    """The IR's weights: raw tensor data, named ``.weights`` rather than OpenVINO's usual ``.bin`` because a model
    directory refuses ``.bin`` files (``pytorch_model.bin`` is a pickle; polyhead.modeldir.check_safe_directory)."""
    return xml.with_suffix(OPENVINO_WEIGHTS_SUFFIX)


@cache
def core() -> Any:
    import openvino as ov

    return ov.Core()


def cpu_has_bf16() -> bool:
    """True when OpenVINO's CPU plugin reports native bf16 (AVX512-BF16 or AMX)."""
    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def check_precision(precision: str) -> str:
    if precision not in PRECISION_HINTS:
        raise PolyheadError(
            f"precision {precision!r}: the openvino backends take {' or '.join(PRECISION_HINTS)} (CPU)"
        )
    if precision == "bf16" and not cpu_has_bf16():
        raise PolyheadError(
            "precision 'bf16' needs a CPU with AVX512-BF16 or AMX (OpenVINO reports none here); use 'fp32'"
        )
    return precision


def export_hint(path: Path, variant: str) -> str:
    return f"run `polyhead export {path} --format openvino{' --quantize int8' if variant == 'int8' else ''}`"


class OpenVinoModel(TokenizersBackend):
    """Same encode / similarity / predict API and outputs as MultiTaskModel, on OpenVINO's CPU plugin (the
    pipeline in polyhead.predict; this class tokenises with ``tokenizers`` and runs a batch)."""

    def __init__(self, path: str | Path, variant: str = "fp32", threads: int | None = None) -> None:
        path = Path(path)
        from polyhead.extras import require

        require("openvino", "the openvino backend", ["openvino"])  # the install hint before anything is read
        if variant not in VARIANTS:
            raise PolyheadError(f"unknown OpenVINO variant {variant!r}; valid: {', '.join(VARIANTS)}")
        self.read_directory(path, "openvino")
        meta_file, xml = path / OPENVINO_META, path / VARIANTS[variant]
        if not meta_file.is_file() or not xml.is_file() or not bin_file(xml).is_file():
            raise ModelDirError(f"{path} has no {xml.name}: {export_hint(path, variant)}")
        meta = json.loads(meta_file.read_text())
        if variant not in meta.get("files", {}):
            raise ModelDirError(f"{meta_file} lists no {variant} export: {export_hint(path, variant)}")
        if meta.get("source_sha256") != source_hashes(path):
            raise ModelDirError(
                f"{xml} was exported from other weights than the directory holds now (stale export): "
                f"{export_hint(path, variant)} again"
            )
        self.variant = variant
        self.pad_id = int(meta.get("pad_token_id", 0))
        self.threads = threads or physical_cores()
        self.model = core().read_model(str(xml), str(bin_file(xml)))
        self.inputs = [i.get_any_name() for i in self.model.inputs]
        self.outputs = [o.get_any_name() for o in self.model.outputs]
        self.compiled: dict[str, Any] = {}
        self.requests: dict[str, Any] = {}
        self.lock = threading.Lock()  # one infer request per precision: one batch at a time (as a server runs)
        self.request("fp32")  # compile now: a broken file fails at load, not at the first request

    @property
    def dim(self) -> int:
        shape = self.model.output("pooled_embedding").get_partial_shape()[-1]
        return int(shape.get_length()) if shape.is_static else super().dim

    def request(self, precision: str) -> Any:
        """The infer request of the model compiled for ``precision`` (compiled on first use)."""
        if precision not in self.requests:
            check_precision(precision)
            config = {
                "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": self.threads,
                "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_CAPACITY,
            }
            self.compiled[precision] = core().compile_model(self.model, "CPU", config)
            self.requests[precision] = self.compiled[precision].create_infer_request()
        return self.requests[precision]

    # ----------------------------------------------------------------- polyhead.predict's Backend
    def run_batch(
        self, encodings: Sequence[dict[str, Any]], outputs: Sequence[str], precision: str
    ) -> dict[str, np.ndarray]:
        """Pad one batch and run it; ``precision`` (fp32, bf16) is OpenVINO's inference-precision hint (an int8
        export's quantised layers run in int8 either way)."""
        padded = self.pad(encodings, self.pad_id)
        feeds = {name: padded[name] for name in self.inputs}
        with self.lock:
            request = self.request(precision)
            request.infer(feeds)
            return {name: np.array(request.get_tensor(name).data, dtype=np.float32) for name in outputs}
