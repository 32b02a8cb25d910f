"""The task-type contract: everything that differs between classification, NER, similarity, ... in one object.

A task type owns its label vocabulary, label parsing, the head it builds, target collation, its loss,
numpy decoding of head outputs (shared by the torch and the ONNX backend), its metrics and primary metric,
and how a prediction reads in one line. The rest of polyhead asks the task object and never compares type
names. A new type is one module: subclass :class:`TaskType`, decorate with :func:`polyhead.tasks.register`.

This module imports neither torch nor numpy-heavy libraries at import time: the ONNX backend decodes through
it without torch. Methods that need torch import it when called.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from polyhead.errors import ConfigError, DataError, PolyheadError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from polyhead.modeldir.spec import TaskSpec
    from polyhead.tokens import Word


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass
class DecodeInput:
    """What decoding one row may need beyond the head's output: the sub-token -> word map, the words with
    their character offsets, the text offsets point into, and the encoder's max length (to tell truncation)."""

    word_ids: Sequence[int | None] | None = None
    words: list[Word] | None = None
    text: str | None = None
    max_length: int = 0


SKEW_OPTIONS = ("class_weights", "pos_weight", "label_smoothing", "tune_thresholds", "calibrate")


def resolve_weights(setting: Any, labels: list[str], counts: Counter[str], where: str) -> dict[str, float]:
    """``balanced`` (n / (classes x count), scikit-learn's ``compute_class_weight``, over the labels present in
    train; absent ones weigh 1) or a {label: weight} mapping (labels left out weigh 1) -> {label: weight}."""
    if setting is None:
        return {}
    if setting == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        present = [label for label in labels if counts.get(label, 0) > 0]
        y = np.repeat(np.array(present, dtype=object), [counts[label] for label in present])
        weights = compute_class_weight("balanced", classes=np.array(present, dtype=object), y=y)
        found = dict(zip(present, (float(w) for w in weights), strict=True))
        return {label: found.get(label, 1.0) for label in labels}
    unknown = [label for label in setting if label not in labels]
    if unknown:
        raise ConfigError(f"{where} names unknown label {unknown[0]!r}; labels: {', '.join(labels[:20])}")
    return {label: float(setting.get(label, 1.0)) for label in labels}


class TaskType:
    """Base class of task types. Class attributes describe the type; methods are its behaviour."""

    name: ClassVar[str]
    #: what the head reads: the sentence embedding, or the token vectors (word-aligned labels)
    level: ClassVar[Literal["sentence", "token"]] = "sentence"
    #: metric names :meth:`metrics` returns, and the one used for model selection
    metric_names: ClassVar[tuple[str, ...]] = ()
    primary_metric: ClassVar[str] = ""
    #: False for types with no per-text output (a similarity task trains the embedding itself)
    predicts: ClassVar[bool] = True
    #: what one input is: a text (or its words, for token-level types) or a pair of texts encoded together
    #: (``[CLS] a [SEP] b``, a cross-encoder); pair tasks predict through ``predict_pairs``
    input: ClassVar[Literal["text", "pair"]] = "text"
    #: trains on (text, pair) embedded one by one (a bi-encoder): a batch holds the texts, then their pairs
    embeds_pairs: ClassVar[bool] = False
    #: the data config must name a second text column
    needs_pair_column: ClassVar[bool] = False
    #: a label list shorter than this is an error (a classifier needs two classes)
    min_labels: ClassVar[int] = 0
    #: the Hugging Face Hub task this type does (a model card's ``pipeline_tag`` and ``model-index`` task)
    hub_task: ClassVar[str] = "text-classification"
    #: the config's skewed-data and calibration keys this type takes (a subset of SKEW_OPTIONS)
    options: ClassVar[frozenset[str]] = frozenset()
    #: ``few_shot: true`` is allowed: contrastive pairs are drawn from the label sets ``label_counts`` gives
    #: each example (training/fewshot.py); sentence-level types with a label vocabulary only
    few_shot: ClassVar[bool] = False

    # ------------------------------------------------------------------ labels
    def parse_label(self, raw: Any, source: str, column: str, separator: str | None) -> Any:
        """A raw label from a data file (``source`` is file:line, ``column`` its column) -> the label value."""
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)  # a pandas integer column with a gap is float64: its 1.0 is the class "1" of the others
        not_finite = isinstance(raw, float) and not math.isfinite(raw)  # NaN: a missing label
        if isinstance(raw, list | dict) or raw is None or not_finite or str(raw).strip() == "":
            raise DataError(f"{source}: label {raw!r} in {column!r} is not a class name")
        return str(raw).strip()

    def label_counts(self, labels: Sequence[Any]) -> Counter[str]:
        """How often each vocabulary entry occurs in these label values (empty for types without labels)."""
        return Counter()

    def review_labels(self, labels: Sequence[tuple[str, Any]], where: str) -> None:
        """Log a warning about label values this type accepts but reads in a way a user may not mean;
        ``labels`` are (file:line, parsed label) of one file, ``where`` the file. Default: nothing to say."""

    def build_labels(self, labels: Sequence[Any], source: str) -> list[str]:
        """The label vocabulary from the training split's label values (sorted; types without labels: [])."""
        return []

    def check_spec(self, spec: TaskSpec) -> None:
        """Refuse a spec this type can't build a head from (too few labels, malformed tags, ...)."""
        if len(spec.labels) < self.min_labels:
            raise PolyheadError(
                f"a {spec.type} head needs at least {self.min_labels} labels, got {len(spec.labels)}: {spec.labels}"
            )

    # ------------------------------------------------------------------ model
    def num_outputs(self, spec: TaskSpec) -> int:
        return len(spec.labels)

    def build_head(self, spec: TaskSpec, sentence_dim: int, token_dim: int) -> nn.Module:
        """The head: an MLP on the (pre-normalisation) sentence vector or on the token vectors."""
        from polyhead.modeling.heads import MLPHead

        self.check_spec(spec)
        in_features = token_dim if self.level == "token" else sentence_dim
        return MLPHead(self.level, in_features, self.num_outputs(spec), spec.hidden, spec.activation, spec.dropout)

    # ------------------------------------------------------------------ training
    def encode_target(self, spec: TaskSpec, label: Any, word_ids: Sequence[int | None] | None, source: str) -> Any:
        """A label value -> what :meth:`collate_targets` stacks (class id, ids, float, aligned tag ids)."""
        raise NotImplementedError

    def collate_targets(self, spec: TaskSpec, values: list[Any], width: int) -> torch.Tensor:
        """Stack one batch's encoded targets; ``width`` is the padded sequence length."""
        raise NotImplementedError

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The mean loss of the head's output on one batch; ``scale`` from :meth:`loss_scale`."""
        raise NotImplementedError

    def loss_count(self, target: torch.Tensor) -> int:
        """How many terms the mean loss averages (examples; labelled tokens for token types)."""
        return int(target.shape[0])

    def loss_ranks_batch(self, spec: TaskSpec) -> bool:
        """True when the loss compares examples within a batch (CoSENT): with several processes it is
        averaged over shards instead of weighted by each shard's share."""
        return False

    def loss_scale(self, labels: Sequence[Any]) -> float:
        """A constant the loss needs from the training labels (e.g. the score range); 1.0 by default."""
        return 1.0

    def class_weight_values(
        self, setting: Any, labels: list[str], train: Sequence[Any], where: str
    ) -> dict[str, float]:
        """``class_weights`` / ``pos_weight`` of the config (``balanced`` or {label: weight}) -> a weight per
        label; ``train`` holds the training split's label values, ``where`` the config key for errors."""
        return resolve_weights(setting, labels, self.label_counts(train), where)

    def threshold_problem(self, spec: TaskSpec) -> str | None:
        """Why decision thresholds can't be tuned for this head, or None."""
        return None

    def threshold_keys(self, spec: TaskSpec) -> list[str]:
        """What ``spec.thresholds`` may name: the head's labels (token types: entity types)."""
        return list(spec.labels)

    def dev_outputs(
        self, backend: Any, name: str, examples: Sequence[Any], batch_size: int, precision: str
    ) -> tuple[Any, Any]:
        """(outputs, targets) of head ``name`` of ``backend`` on ``examples``: what :meth:`fit_temperature`,
        :meth:`calibration` and :meth:`tune_thresholds` take. Here the raw logits (n, outputs) and
        :meth:`target_array` of the labels."""
        from polyhead.predict import head_outputs

        spec = backend.tasks[name]
        inputs = [(ex.text, ex.text_pair or "") if self.input == "pair" else ex.text for ex in examples]
        logits = head_outputs(backend, inputs, name, batch_size, precision)
        return logits, self.target_array(spec, [ex.label for ex in examples])

    # ------------------------------------------------------------------ calibration (types in ``options``)
    def target_array(self, spec: TaskSpec, labels: Sequence[Any]) -> np.ndarray:
        """Label values -> what :mod:`polyhead.evaluation.calibration` compares logits with."""
        raise NotImplementedError

    def fit_temperature(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> float:
        """The temperature that minimises the dev NLL of this head's logits (n, outputs)."""
        raise NotImplementedError

    def calibration(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, correct) of each decision, with the spec's temperature (for the ECE)."""
        raise NotImplementedError

    def tune_thresholds(self, spec: TaskSpec, logits: Any, targets: Any) -> dict[str, float]:
        """Decision thresholds chosen on dev (with the spec's temperature) from :meth:`dev_outputs`: label ->
        threshold."""
        raise NotImplementedError

    # ------------------------------------------------------------------ prediction
    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        """One row of the head's raw output (numpy) -> the user-facing prediction dict."""
        raise NotImplementedError

    def summary(self, decoded: dict[str, Any]) -> str:
        """A prediction in one short line (CLI tables, the demo)."""
        raise NotImplementedError

    def prediction_value(self, decoded: dict[str, Any]) -> Any:
        """What :meth:`metrics` compares, from a decoded prediction."""
        raise NotImplementedError

    def decisions(self, decoded: dict[str, Any]) -> list[Any]:
        """The discrete decisions in a prediction, for agreement checks between backends (the int8 gate);
        none by default (scores are compared by their own bounds)."""
        return []

    def gold_value(self, label: Any) -> Any:
        """What :meth:`metrics` compares, from an example's label."""
        return label

    def predict_examples(
        self, model: Any, name: str, examples: Sequence[Any], batch_size: int, precision: str
    ) -> tuple[list[Any], list[Any]]:
        """(gold, predicted) values of the task ``name`` of ``model`` (any predictor) on reader examples."""
        if self.input == "pair":
            pairs = [(ex.text, ex.text_pair) for ex in examples]
            results = model.predict_pairs(pairs, tasks=[name], batch_size=batch_size, precision=precision)
        else:
            inputs = [ex.words if self.level == "token" else ex.text for ex in examples]
            results = model.predict(inputs, tasks=[name], batch_size=batch_size, precision=precision)
        return [self.gold_value(ex.label) for ex in examples], [self.prediction_value(r[name]) for r in results]

    def metrics(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, float]:
        """Metric name -> value (see :attr:`metric_names`)."""
        raise NotImplementedError

    def report(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, Any] | None:
        """Per-class precision / recall / F1 / support, confusion counts, worst-confused pairs
        (:mod:`polyhead.evaluation.report`); None for types without classes."""
        return None
