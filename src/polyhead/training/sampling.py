"""Which task (group) each training step draws from: round robin, proportional or temperature sampling."""

from __future__ import annotations

import random
from typing import Any, get_args

from polyhead.config import SamplingStrategy
from polyhead.errors import ConfigError

SAMPLING_STRATEGIES: tuple[str, ...] = get_args(SamplingStrategy)


class TaskSampler:
    """Deterministic under a seed; ``state_dict`` makes a resumed run draw the same sequence.

    Probabilities: round_robin uniform (and cycling in order); proportional size / total; temperature
    size^(1/T), normalised (T=1 is proportional, large T tends to uniform). An ``auxiliary`` group (the
    embedding preservation's sentences) is drawn as often as the average task group, whatever its size.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        strategy: str = "proportional",
        temperature: float = 2.0,
        seed: int = 0,
        auxiliary: str | None = None,
    ) -> None:
        if strategy not in SAMPLING_STRATEGIES:
            raise ConfigError(f"training.sampling.strategy {strategy!r}; valid: {', '.join(SAMPLING_STRATEGIES)}")
        if temperature <= 0:
            raise ConfigError(f"training.sampling.temperature must be > 0, got {temperature}")
        if not sizes or any(n <= 0 for n in sizes.values()):
            raise ConfigError(f"task sampling needs at least one task with examples, got sizes {sizes}")
        self.names = list(sizes)
        self.strategy = strategy
        if strategy == "round_robin":
            weights = [1.0] * len(sizes)
        elif strategy == "proportional":
            weights = [float(n) for n in sizes.values()]
        else:
            weights = [float(n) ** (1.0 / temperature) for n in sizes.values()]
        if auxiliary in sizes and len(sizes) > 1:
            others = [w for name, w in zip(self.names, weights, strict=True) if name != auxiliary]
            weights[self.names.index(auxiliary)] = sum(others) / len(others)
        total = sum(weights)
        self.probabilities = {name: w / total for name, w in zip(self.names, weights, strict=True)}
        self.rng = random.Random(seed)
        self.draws = 0

    def sample(self) -> str:
        if self.strategy == "round_robin":
            name = self.names[self.draws % len(self.names)]
        else:
            name = self.rng.choices(self.names, weights=[self.probabilities[n] for n in self.names])[0]
        self.draws += 1
        return name

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"draws": self.draws, "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws = int(state["draws"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
