"""Typed training config: pydantic models (extra="forbid"), YAML loading with line numbers, dotted overrides.

A config has three sections: ``encoder``, ``tasks`` (name -> type, data, head, loss weight) and
``training``. Every key is documented in docs/config.md. Errors name the file, line, key path and the
valid choices; nothing here reaches into modules (builders turn it into constructor arguments).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polyhead.errors import ConfigError
from polyhead.extras import installed
from polyhead.yamlcheck import apply_override, check_yaml, key_lines, number_or_text, parse_override

TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_WIDTH = 65536  # largest head layer / projection: bounds what a typo can make polyhead allocate

# Allowed values, each listed once: the fields below use these aliases, and the code that checks a value at
# run time takes its tuple from them with typing.get_args (runtime.PRECISIONS, pooling.POOLING_MODES, ...),
# so the config and the code can't disagree (tests/test_config_choices.py).
PoolingMode = Literal["mean", "cls", "max", "mean_sqrt_len"]
DataFormat = Literal["tsv", "csv", "jsonl", "conll", "parquet", "hf"]
Activation = Literal["gelu", "relu", "tanh"]
SimilarityLoss = Literal["cosine", "cosent"]
FreezeMode = Literal["none", "all", "encoder", "embeddings"]
UnfreezeUnit = Literal["steps", "epochs"]
SchedulerType = Literal["linear", "cosine", "constant"]
WarmupRule = Literal["polyhead", "transformers"]  # training.scheduler.warmup_rule (training/plan.py)
SamplingStrategy = Literal["round_robin", "proportional", "temperature"]
Precision = Literal["fp32", "bf16", "fp16"]
LossWeighting = Literal["static", "uncertainty"]
Tracker = Literal["tensorboard", "wandb", "mlflow"]
PreserveLoss = Literal["cosine", "mse"]
SplitRole = Literal["train", "dev", "test"]
WeightMode = Literal["balanced"]  # class_weights / pos_weight computed from the training split
PairSampling = Literal["per_example", "all_pairs"]  # training.few_shot.pair_sampling (training/fewshot.py)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class EncoderConfig(Strict):
    model: str = "default"
    # a branch, tag or commit of a Hub model (encoder.model: org/name); None: the repository's default branch
    revision: str | None = None
    # None: the model's own sentence-transformers Pooling / Normalize modules, else mean and normalised
    pooling: PoolingMode | None = None
    projection_dim: int | None = Field(None, gt=0)
    normalize: bool | None = None
    max_length: int = Field(128, ge=8, le=8192)


class DataConfig(Strict):
    train: str
    dev: str | None = None
    test: str | None = None
    format: DataFormat | None = None
    split: str | dict[SplitRole, str] | None = Field(
        None, description="the split a datasets DatasetDict directory is read from: one name, or one per role"
    )
    text_column: str = "text"
    label_column: str = "label"
    pair_column: str | None = None
    tokens_column: str = "tokens"
    label_separator: str | None = None
    conll_token_column: int = 0
    conll_tag_column: int = -1
    limit: int | None = Field(None, gt=0, description="read at most this many examples per split")
    dev_fraction: float | None = Field(None, gt=0, lt=1, description="carve a seeded dev split from train")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="carve a seeded test split from train")

    @field_validator("split", mode="before")
    @classmethod
    def split_names(cls, value: Any) -> Any:
        # one clear message instead of pydantic's per-member union errors
        roles = get_args(SplitRole)
        if value is None or (isinstance(value, str) and value):
            return value
        if isinstance(value, dict) and all(k in roles and isinstance(v, str) and v for k, v in value.items()):
            return value
        raise ValueError(
            f"{value!r} is not a split name or a mapping {{train|dev|test: split name}} (keys: {', '.join(roles)})"
        )


class HeadConfig(Strict):
    hidden: list[Annotated[int, Field(gt=0, le=MAX_WIDTH)]] = Field(default_factory=list)
    activation: Activation = "gelu"
    dropout: float = Field(0.1, ge=0, lt=1)
    threshold: float = Field(0.5, gt=0, lt=1)
    loss: SimilarityLoss = "cosent"


class TaskConfig(Strict):
    type: str = Field(..., description="a registered task type (polyhead.tasks)")
    data: DataConfig
    head: HeadConfig = Field(default_factory=HeadConfig)
    loss_weight: float = Field(1.0, ge=0)
    labels: list[str] | None = None
    # skewed classes and calibration (docs/training-guide.md); which types take which: TaskType.options
    class_weights: WeightMode | dict[str, float] | None = None
    pos_weight: WeightMode | dict[str, float] | None = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    tune_thresholds: bool = False
    calibrate: bool = False
    few_shot: bool = Field(False, description="contrastive few-shot training (training.few_shot), then the head")

    @field_validator("type")
    @classmethod
    def registered_type(cls, value: str) -> str:
        from polyhead.tasks import task_type_names

        if value not in task_type_names():
            raise ValueError(f"unknown task type {value!r}; valid: {', '.join(task_type_names())}")
        return value

    @field_validator("class_weights", "pos_weight", mode="before")
    @classmethod
    def label_weights(cls, value: Any) -> Any:
        # one clear message instead of pydantic's per-member union errors
        ok = value is None or value == "balanced"
        if isinstance(value, dict):  # YAML reads 1e3 (no dot) as a string, as pydantic's float fields accept it
            value = {k: number_or_text(w) for k, w in value.items()}
            ok = all(isinstance(w, int | float) and not isinstance(w, bool) and 0 < w < float("inf")
                     for w in value.values())
        if not ok:
            raise ValueError(f"{value!r:.100} is not 'balanced' or a mapping {{label: positive number}}")
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def options_of_type(self) -> TaskConfig:
        from polyhead.tasks import get_task_type, task_type_names
        from polyhead.tasks.base import SKEW_OPTIONS

        for key in SKEW_OPTIONS:
            if key in self.model_fields_set and getattr(self, key) and key not in get_task_type(self.type).options:
                takers = [t for t in task_type_names() if key in get_task_type(t).options]
                raise ValueError(f"{key} is not an option of a {self.type} task; valid for: {', '.join(takers)}")
        return self

    @field_validator("labels")
    @classmethod
    def distinct_printable_labels(cls, value: list[str] | None) -> list[str] | None:
        # A duplicate would give two outputs one name (one's probability lost in every {label: score});
        # a NUL or other control character is invisible in every table, file and HTTP answer.
        for i, label in enumerate(value or []):
            if not label.strip():
                raise ValueError(f"label {i} is empty; give each label a name")
            bad = next((c for c in label if unicodedata.category(c) == "Cc"), None)
            if bad is not None:
                raise ValueError(
                    f"label {i} ({label!r}) holds the control character U+{ord(bad):04X}; labels are printable text"
                )
        dupes = sorted({x for x in value or [] if (value or []).count(x) > 1})
        if dupes:
            raise ValueError(f"duplicate label(s) {', '.join(map(repr, dupes))}; each label must appear once")
        return value


class FreezeConfig(Strict):
    mode: FreezeMode = "none"
    layers_below: int = Field(0, ge=0)
    heads: list[str] = Field(default_factory=list)


class GradualUnfreezingConfig(Strict):
    every: int = Field(..., gt=0)
    unit: UnfreezeUnit = "epochs"


class OptimizerConfig(Strict):
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0)
    projection_lr: float | None = Field(None, gt=0)
    layer_decay: float = Field(1.0, gt=0, le=1)
    weight_decay: float = Field(0.01, ge=0)


class SchedulerConfig(Strict):
    type: SchedulerType = "linear"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    warmup_rule: WarmupRule = Field(
        "polyhead", description="polyhead: int(ratio x steps) warmup steps, factor (s+1)/(warmup+1); transformers: "
        "ceil(ratio x steps), factor s/warmup, the first step at lr 0 (HF Trainer, SetFit): docs/config.md",
    )


class SamplingConfig(Strict):
    strategy: SamplingStrategy = "proportional"
    temperature: float = Field(2.0, gt=0)


class EarlyStoppingConfig(Strict):
    metric: str = Field(
        "mean", description="'mean' (mean of each task's primary dev metric) or 'task/metric'"
    )
    patience: int | None = Field(None, gt=0)


class StageConfig(Strict):
    name: str | None = None
    tasks: list[str] | None = None
    epochs: int = Field(1, gt=0)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    gradual_unfreezing: GradualUnfreezingConfig | None = None
    optimizer: OptimizerConfig | None = None


class StsEvalConfig(Strict):
    file: str
    sentence1_column: str = "sentence1"
    sentence2_column: str = "sentence2"
    score_column: str = "score"
    each_epoch: bool = True


class PreserveEmbeddingConfig(Strict):
    """Keep the shared sentence embedding close to the starting encoder's while the heads train."""

    weight: float = Field(1.0, gt=0, description="multiplies the preservation loss, added to the task losses")
    data: str = Field(
        "train",
        description="'train' (the training sentences: no extra encoder pass; with only cross-encoded pair tasks, "
        "the pairs' texts each alone) or a file, a sentence a line",
    )
    loss: PreserveLoss = "cosine"
    limit: int | None = Field(None, gt=0, description="use at most this many sentences of the file or the pairs")


class FewShotConfig(Strict):
    """Contrastive few-shot training (tasks with ``few_shot: true``): docs/training-guide.md#few-shot."""

    pairs_per_example: int = Field(20, gt=0, description="positive pairs drawn per training example (as many negative)")
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(16, gt=0, description="pairs per optimizer step of the contrastive stage")
    lr: float = Field(2e-5, gt=0, description="the encoder's learning rate in the contrastive stage")
    head_lr: float = Field(1e-2, gt=0, description="the heads' learning rate on the frozen, fine-tuned encoder")
    head_steps: int = Field(200, gt=0, description="optimizer steps of the heads stage (cached embeddings)")
    pair_sampling: PairSampling = Field(
        "all_pairs",
        description="all_pairs: SetFit's, every pair of examples in a seeded order, cycled; per_example: "
        "partners drawn for each example (docs/training-guide.md#few-shot)",
    )
    self_pairs: bool = Field(True, description="an example paired with itself counts as a positive pair (SetFit)")
    bucket_by_length: bool = Field(
        False, description="false: pairs batched at random, as SetFit does; true: pairs of similar length together"
    )
    encode_once: bool = Field(
        True, description="encode each distinct sentence of a pair batch once (fewer rows when examples are few)"
    )


def default_trackers() -> list[Tracker]:
    return ["tensorboard"] if installed("tensorboard") else []


class TrainingConfig(Strict):
    seed: int = 42
    epochs: int = Field(3, gt=0)
    steps_per_epoch: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    gradient_accumulation: int = Field(1, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Precision = "fp32"
    # one process: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps; under accelerate launch, Accelerate's
    device: str = "auto"
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    loss_weighting: LossWeighting = "static"
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    gradual_unfreezing: GradualUnfreezingConfig | None = None
    stages: list[StageConfig] | None = None
    cache_embeddings: bool = True
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    sts_eval: StsEvalConfig | None = None
    checkpoint_steps: int | None = Field(None, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    # tensorboard when it is installed (the `plots` extra), else none: a core install trains with the default
    log_with: list[Tracker] = Field(default_factory=lambda: default_trackers())
    bucket_by_length: bool = True
    num_threads: int | None = Field(None, gt=0)
    preserve_embedding: PreserveEmbeddingConfig | None = None
    few_shot: FewShotConfig = Field(default_factory=FewShotConfig)


class Config(Strict):
    name: str = "polyhead"
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    tasks: dict[str, TaskConfig]
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def check_references(self) -> Config:
        if not self.tasks:
            raise ValueError("at least one task is needed under 'tasks'")
        for name in self.tasks:  # a task name becomes metric keys and weight prefixes: no dots, no paths
            if not TASK_NAME.fullmatch(name):
                raise ValueError(f"tasks: task name {name!r} is not valid; use letters, digits, '_' or '-'")
        known = list(self.tasks)
        if self.training.preserve_embedding is not None and "preserve_embedding" in self.tasks:
            raise ValueError("a task may not be called 'preserve_embedding' (the embedding preservation loss is)")
        for i, stage in enumerate(self.training.stages or []):
            for name in (stage.tasks or []) + stage.freeze.heads:
                if name not in known:
                    raise ValueError(
                        f"training.stages[{i}] names unknown task {name!r}; tasks: {', '.join(known)}"
                    )
        for name in self.training.freeze.heads:
            if name not in known:
                raise ValueError(
                    f"training.freeze.heads names unknown task {name!r}; tasks: {', '.join(known)}"
                )
        from polyhead.tasks import get_task_type, task_type_names

        metric = self.training.early_stopping.metric
        if metric != "mean":
            task_name, _, metric_name = metric.partition("/")
            if task_name not in self.tasks:
                raise ValueError(
                    f"training.early_stopping.metric {metric!r}: unknown task; use 'mean' or 'task/metric' "
                    f"with a task among {', '.join(known)}"
                )
            valid = get_task_type(self.tasks[task_name].type).metric_names
            if metric_name not in valid:
                raise ValueError(
                    f"training.early_stopping.metric {metric!r}: valid metrics for {task_name}: "
                    + ", ".join(f"{task_name}/{m}" for m in valid)
                )
        few_shot_types = [n for n in task_type_names() if get_task_type(n).few_shot]
        for name, task in self.tasks.items():
            if task.few_shot and not get_task_type(task.type).few_shot:
                raise ValueError(
                    f"tasks.{name}.few_shot: a {task.type} task can't train few-shot; "
                    f"task types that can: {', '.join(few_shot_types)}"
                )
            if get_task_type(task.type).needs_pair_column and not task.data.pair_column:
                raise ValueError(f"tasks.{name}.data.pair_column is required for a {task.type} task")
        return self


# ------------------------------------------------------------------------------------------ loading
def format_validation_error(
    exc: ValidationError,
    source: str,
    lines: dict[tuple[str, ...], int],
    overrides: dict[tuple[str, ...], str] | None = None,
) -> str:
    """One line: where (``file:line``, or the ``--set`` that put the value there), key path, message."""
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "(top level)"
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    where = f"{source}:{line}" if line else source
    by_set = [item for path, item in (overrides or {}).items() if set_caused(path, loc, lines)]
    if by_set:
        where = f"--set {by_set[-1]}"
    elif overrides and not loc:  # a check across the whole config: any override may be involved
        where = f"{source} (with --set {', '.join(overrides.values())})"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        valid = valid_keys(loc[:-1])
        message = f"unknown key {loc[-1]!r}" + (f"; valid keys: {', '.join(valid)}" if valid else "")
    elif err["type"] == "missing":
        message = "required key is missing"
    elif err["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{where}: {message}{more}" if not loc else f"{where}: {key}: {message}{more}"


def set_caused(path: tuple[str, ...], loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> bool:
    """Is the error at ``loc`` about what ``--set path=...`` wrote? Yes when one path contains the other
    (the value set, or a section the override turned into something else), or when they meet in a section
    the file doesn't have (the override created it)."""
    common = next((n for n in range(min(len(path), len(loc)), 0, -1) if path[:n] == loc[:n]), 0)
    return common > 0 and (common in (len(path), len(loc)) or path[:common] not in lines)


def valid_keys(parent: tuple[str, ...]) -> list[str]:
    """The field names allowed at a config path (following the models through dicts and lists)."""
    model: Any = Config
    skip_next = False  # after `tasks` (a dict) or `stages` (a list) comes a task name or an index
    for part in parent:
        if skip_next:
            skip_next = False
            continue
        field = model.model_fields.get(part)
        model = sub_model(field.annotation) if field is not None else None
        if model is None:
            return []
        skip_next = "dict[" in str(field.annotation) or "list[" in str(field.annotation)
    return list(model.model_fields)


def sub_model(annotation: Any) -> Any:
    """The pydantic model inside an annotation like ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = sub_model(arg)
        if found is not None:
            return found
    return None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``--set`` overrides and validate; errors carry file:line and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    check_yaml(text, str(path))  # duplicate keys, alias bombs
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping with 'encoder', 'tasks', 'training'")
    overridden: dict[tuple[str, ...], str] = {}
    for item in overrides or []:
        keys, value = parse_override(item)
        apply_override(data, keys, value)
        overridden[tuple(keys)] = item
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path), key_lines(text), overridden)) from exc


def resolve_path(value: str) -> Path:
    """Data paths: ``~`` and ``$VARS`` expanded; relative paths are relative to the current directory."""
    return Path(os.path.expandvars(os.path.expanduser(value)))
