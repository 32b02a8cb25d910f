"""Optional parts of polyhead and the pip extras that install them (``pip install 'polyhead[serve]'``).

The core install trains, evaluates, predicts and encodes; serving, ONNX / OpenVINO export and their backends,
plots, and Ray Data (``--ray``, polyhead.integrations.ray) need their extra. A command that needs a missing one
fails with one line naming the extra to install.
``make setup`` installs everything (``.[all]``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from polyhead.errors import PolyheadError

EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "httpx", "swagger_ui_bundle"),
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "openvino": ("openvino", "nncf"),
    "plots": ("matplotlib", "tensorboard"),
    "ray": ("ray",),
}


def installed(module: str) -> bool:
    """True when ``module`` can be imported (a module set to None in ``sys.modules`` counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str, what: str, modules: Sequence[str] | None = None) -> None:
    """Raise one line when ``what`` (a command or option) can't run because part of ``extra`` is missing.

    ``modules``: the packages ``what`` imports (default: the whole extra).
    """
    missing = [m for m in (modules or EXTRAS[extra]) if not installed(m)]
    if missing:
        raise PolyheadError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'polyhead[{extra}]'"
        )
