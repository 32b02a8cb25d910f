"""Freezing policies, resolved over named_parameters() of a MultiTaskModel.

Names: ``encoder.transformer.*`` (the HF model; ``embeddings`` and numbered layers), ``encoder.dense.*``
(the projection) and ``heads.<task>.*``.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from torch import nn

from polyhead.config import FreezeMode
from polyhead.errors import ConfigError

FREEZE_MODES: tuple[str, ...] = get_args(FreezeMode)
TRANSFORMER = "encoder.transformer."
LAYER_RE = re.compile(r"\.(?:layer|layers|block|blocks)\.(\d+)\.")


def layer_index(name: str, num_layers: int) -> int | None:
    """Embeddings -> 0, transformer layer i (0-based) -> i + 1, other transformer parameters -> num_layers,
    parameters outside the transformer (projection, heads) -> None."""
    if not name.startswith(TRANSFORMER):
        return None
    if ".embeddings." in f".{name[len(TRANSFORMER) :]}":
        return 0
    match = LAYER_RE.search(name)
    return int(match.group(1)) + 1 if match else num_layers


def num_encoder_layers(model: Any) -> int:
    config = model.encoder.transformer.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", 0)
    return int(layers or 0)


def frozen_parameter_names(
    model: Any, mode: str = "none", layers_below: int = 0, heads: list[str] | tuple = ()
) -> set[str]:
    """The parameter names a freezing policy freezes (see docs/config.md, training.freeze)."""
    if mode not in FREEZE_MODES:
        raise ConfigError(f"training.freeze.mode {mode!r}; valid: {', '.join(FREEZE_MODES)}")
    total = num_encoder_layers(model)
    if not 0 <= layers_below <= total:
        raise ConfigError(
            f"training.freeze.layers_below is {layers_below}; the encoder has {total} layers (valid: 0..{total})"
        )
    unknown = [h for h in heads if h not in model.heads]
    if unknown:
        raise ConfigError(f"training.freeze.heads: unknown task(s) {unknown}; tasks: {', '.join(model.heads)}")
    frozen = set()
    for name, _ in model.named_parameters():
        layer = layer_index(name, total)
        if (
            mode == "all"
            or (mode == "encoder" and name.startswith("encoder."))
            or (mode == "embeddings" and layer == 0)
            or (
                layers_below
                and layer is not None
                and layer <= layers_below
                and name.startswith(TRANSFORMER)
                and (layer < total or LAYER_RE.search(name) is not None)
            )
            or any(name.startswith(f"heads.{h}.") for h in heads)
        ):
            frozen.add(name)
    return frozen


def apply_freezing(model: nn.Module, frozen: set[str]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = name not in frozen


def check_trainable(model: nn.Module, where: str) -> None:
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"{where}: freezing leaves nothing to train; unfreeze something or use `polyhead evaluate`")


class GradualUnfreezer:
    """Start with the transformer frozen; unfreeze the top layer first, one more every ``every`` units.

    Layers are unfrozen top-down (layer L, L-1, ..., 1) and the embeddings last; parameters in
    ``always_frozen`` stay frozen. ``step(count)`` takes the completed steps (or epochs).
    """

    def __init__(self, model: Any, every: int, always_frozen: set[str] | frozenset = frozenset()) -> None:
        if every < 1:
            raise ConfigError(f"training.gradual_unfreezing.every must be >= 1, got {every}")
        self.model, self.every, self.always_frozen = model, every, set(always_frozen)
        self.total = num_encoder_layers(model)
        self.unfrozen = 0  # how many of the (top-down) layer groups train
        self.apply()

    def group_name(self, k: int) -> str:
        layer = self.total - k  # k = 0 is the top layer
        return "embeddings" if layer == 0 else f"layer {layer}"

    def apply(self) -> None:
        trainable_layers = {self.total - k for k in range(self.unfrozen)}
        for name, param in self.model.named_parameters():
            layer = layer_index(name, self.total)
            frozen = name in self.always_frozen or (layer is not None and layer not in trainable_layers)
            param.requires_grad = not frozen

    def step(self, count: int) -> list[str]:
        target = min(self.total + 1, 1 + count // self.every)
        newly = [self.group_name(k) for k in range(self.unfrozen, target)]
        if target != self.unfrozen:
            self.unfrozen = target
            self.apply()
        return newly

    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": self.unfrozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.unfrozen = int(state["unfrozen"])
        self.apply()
