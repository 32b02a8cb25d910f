"""polyhead: multi-task sentence transformers, one shared encoder with many task heads."""

from __future__ import annotations

from polyhead.runtime import force_offline

force_offline()

__version__ = "0.1.0"

from polyhead.modeling.encoder import SentenceEncoder  # noqa: E402
from polyhead.modeling.multitask import MultiTaskModel  # noqa: E402

__all__ = ["MultiTaskModel", "SentenceEncoder", "__version__"]
