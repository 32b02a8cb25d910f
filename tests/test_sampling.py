"""TaskSampler: target frequencies, exact round-robin cycle, resume via state_dict, seeds, errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from polyhead.errors import ConfigError
from polyhead.training.sampling import SAMPLING_STRATEGIES, TaskSampler

SIZES = {"a": 100, "b": 400, "c": 1600}


@pytest.mark.parametrize("strategy", SAMPLING_STRATEGIES)
def test_frequencies_match_probabilities(strategy: str) -> None:
    sampler = TaskSampler(SIZES, strategy=strategy, temperature=2.0, seed=1)
    counts = Counter(sampler.sample() for _ in range(20_000))
    for name, p in sampler.probabilities.items():
        assert abs(counts[name] / 20_000 - p) < 0.01


def test_target_probabilities() -> None:
    assert TaskSampler(SIZES, "proportional").probabilities["c"] == pytest.approx(1600 / 2100)
    # temperature 2: sqrt sizes 10, 20, 40
    assert TaskSampler(SIZES, "temperature", 2.0).probabilities["a"] == pytest.approx(10 / 70)
    assert TaskSampler(SIZES, "round_robin").probabilities["b"] == pytest.approx(1 / 3)


def test_auxiliary_group_is_drawn_as_often_as_the_average_task() -> None:
    """The preservation sentences: their share does not grow with their number (a big file would starve tasks)."""
    sizes = {**SIZES, "extra": 50_000}
    proportional = TaskSampler(sizes, "proportional", auxiliary="extra").probabilities
    assert proportional["extra"] == pytest.approx(700 / 2800)  # mean task size 700, of 2100 + 700
    assert proportional["c"] / proportional["a"] == pytest.approx(16)  # the tasks keep their ratios
    assert TaskSampler(sizes, "temperature", 2.0, auxiliary="extra").probabilities["extra"] == pytest.approx(
        (70 / 3) / (70 + 70 / 3)
    )
    assert TaskSampler(sizes, "round_robin", auxiliary="extra").probabilities["extra"] == pytest.approx(1 / 4)
    assert TaskSampler({"extra": 5}, auxiliary="extra").probabilities == {"extra": 1.0}
    assert TaskSampler(sizes, "proportional").probabilities["extra"] > 0.9  # without: by size


def test_round_robin_exact_cycle() -> None:
    sampler = TaskSampler(SIZES, "round_robin")
    assert [sampler.sample() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


@pytest.mark.parametrize("strategy", SAMPLING_STRATEGIES)
def test_state_dict_resumes_identically(strategy: str) -> None:
    full = TaskSampler(SIZES, strategy, seed=3)
    expected = [full.sample() for _ in range(200)]
    first = TaskSampler(SIZES, strategy, seed=3)
    head = [first.sample() for _ in range(77)]
    state = json.loads(json.dumps(first.state_dict()))
    resumed = TaskSampler(SIZES, strategy, seed=999)
    resumed.load_state_dict(state)
    assert head + [resumed.sample() for _ in range(123)] == expected


def test_seeds_reproduce_and_differ() -> None:
    def draws(seed: int) -> list[str]:
        s = TaskSampler(SIZES, "temperature", seed=seed)
        return [s.sample() for _ in range(100)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"strategy": "random"}, "round_robin"), ({"temperature": 0.0}, "> 0"), ({"sizes": {}}, "at least one")],
)
def test_errors(kwargs: dict, needle: str) -> None:
    args = {"sizes": SIZES, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        TaskSampler(**args)
