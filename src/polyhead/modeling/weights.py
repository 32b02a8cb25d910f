"""Reading safetensors weights into modules, with every mismatch a one-line error (nothing is unpickled)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from polyhead.errors import ModelDirError


def load_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ModelDirError(f"weights file {file} is missing")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelDirError(f"{file} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """load_state_dict that turns missing, unexpected and mis-shaped weights into one clear error."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelDirError(f"{file} doesn't match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelDirError(
                f"{file}: '{key}' has shape {tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}"
                " (does the label list in polyhead.json match the weights?)"
            )
    module.load_state_dict(state, strict=True)


def save_module(module: nn.Module, file: Path) -> None:
    """A module's weights as safetensors (contiguous CPU copies)."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(file), metadata={"format": "pt"})
