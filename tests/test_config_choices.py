"""Every value list the code checks at run time is the config's Literal (one source: typing.get_args)."""

from __future__ import annotations

import subprocess
import sys
from typing import Literal, get_args, get_origin

import pytest

from polyhead import config
from polyhead.data.readers import FORMATS
from polyhead.modeldir.layout import ST_POOLING
from polyhead.modeling.heads import ACTIVATIONS
from polyhead.modeling.pooling import POOLING_MODES
from polyhead.runtime import PRECISIONS
from polyhead.training.distributed import TRACKER_PACKAGES
from polyhead.training.fewshot import PAIR_SAMPLERS
from polyhead.training.freezing import FREEZE_MODES
from polyhead.training.plan import WARMUP_STEPS
from polyhead.training.sampling import SAMPLING_STRATEGIES

RUNTIME_VALUES = {
    "Precision": PRECISIONS,
    "PoolingMode": POOLING_MODES,
    "DataFormat": FORMATS,
    "FreezeMode": FREEZE_MODES,
    "SamplingStrategy": SAMPLING_STRATEGIES,
    "Activation": tuple(ACTIVATIONS),
    "Tracker": tuple(TRACKER_PACKAGES),
    "PairSampling": tuple(PAIR_SAMPLERS),
    "WarmupRule": tuple(WARMUP_STEPS),
}


@pytest.mark.parametrize("alias", sorted(RUNTIME_VALUES))
def test_runtime_values_equal_the_config_literal(alias: str) -> None:
    assert RUNTIME_VALUES[alias] == get_args(getattr(config, alias))


def test_sentence_transformers_pooling_maps_onto_every_mode() -> None:
    assert sorted(ST_POOLING.values()) == sorted(get_args(config.PoolingMode))


def test_config_fields_use_the_aliases() -> None:
    """No field spells out a Literal of its own (TaskType aside), so a new value is added in one place."""
    aliases = {getattr(config, name) for name in dir(config) if get_origin(getattr(config, name)) is Literal}
    fields = [
        (model.__name__, name, field.annotation)
        for model in vars(config).values()
        if isinstance(model, type) and issubclass(model, config.BaseModel) and model is not config.BaseModel
        for name, field in model.model_fields.items()
    ]
    for model, name, annotation in fields:
        literals = [a for a in (annotation, *get_args(annotation), *get_args_deep(annotation))
                    if get_origin(a) is Literal]
        for literal in literals:
            assert literal in aliases, f"{model}.{name}: {literal} is not one of config.py's aliases"


def get_args_deep(annotation: object) -> list[object]:
    out: list[object] = []
    for arg in get_args(annotation):
        out += [arg, *get_args_deep(arg)]
    return out


def test_similarity_task_checks_the_config_losses() -> None:
    from polyhead.errors import PolyheadError
    from polyhead.modeldir import TaskSpec
    from polyhead.tasks.similarity import LOSSES

    assert get_args(config.SimilarityLoss) == LOSSES
    for loss in LOSSES:
        TaskSpec("similarity", loss=loss).task.check_spec(TaskSpec("similarity", loss=loss))
    with pytest.raises(PolyheadError, match="valid: cosine, cosent"):
        TaskSpec("similarity", loss="mse").task.check_spec(TaskSpec("similarity", loss="mse"))


def test_config_imports_without_torch() -> None:
    code = "import sys, polyhead.config; assert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
