"""polyhead: multi-task sentence transformers, one shared encoder with many task heads.

``SentenceEncoder``, ``MultiTaskModel`` and ``load`` (:func:`polyhead.predict.load`: a model directory or its
Hub name on any backend) are imported on first use, so the ONNX backend
(``polyhead.onnx_backend``) runs without importing torch or transformers at all. Importing polyhead sets
no environment variable and changes no global state: Hub access follows Hugging Face's own settings
(``HF_HUB_OFFLINE``), and the process-wide CPU settings are :func:`polyhead.runtime.configure_cpu_runtime`,
called by the CLI, never implicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["MultiTaskModel", "SentenceEncoder", "__version__", "load"]

if TYPE_CHECKING:
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.predict import load


def __getattr__(name: str) -> Any:
    if name == "SentenceEncoder":
        from polyhead.modeling.encoder import SentenceEncoder

        return SentenceEncoder
    if name == "MultiTaskModel":
        from polyhead.modeling.multitask import MultiTaskModel

        return MultiTaskModel
    if name == "load":
        from polyhead.predict import load

        return load
    raise AttributeError(f"module 'polyhead' has no attribute {name!r}")
