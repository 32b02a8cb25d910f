"""Token classification (NER, slots): a BIO tag per word, predicted on each word's first sub-token."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from polyhead.errors import DataError, PolyheadError
from polyhead.tasks import register
from polyhead.tasks.base import DecodeInput, TaskType
from polyhead.tasks.classification import weighted_cross_entropy
from polyhead.tokens import IGNORE_INDEX, Word, align_labels, bio_viterbi, decode_bio, first_subtoken_positions

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

    from polyhead.modeldir.spec import TaskSpec


def bio_problem(tags: Sequence[str], vocabulary: bool = False) -> str | None:
    """Why ``tags`` are not BIO tags ('O', 'B-TYPE', 'I-TYPE'), or None. With ``vocabulary`` (a label list),
    every I-X also needs its B-X."""
    bad = [t for t in tags if t != "O" and not (t[:2] in ("B-", "I-") and len(t) > 2)]
    if bad:
        return f"tag {bad[0]!r} is not a BIO tag ('O', 'B-TYPE', 'I-TYPE')"
    if vocabulary:
        orphans = [t for t in tags if t.startswith("I-") and "B-" + t[2:] not in tags]
        if orphans:
            return f"BIO tags {orphans[:5]} have no matching B- tag in the label list"
    return None


def type_switch(tags: Sequence[str]) -> tuple[str, str] | None:
    """The first (B-Y or I-Y, I-X) neighbours with X != Y in ``tags``, or None."""
    for before, after in zip(tags, tags[1:], strict=False):
        if after.startswith("I-") and before[:2] in ("B-", "I-") and before[2:] != after[2:]:
            return before, after
    return None


@register
class TokenClassification(TaskType):
    """Token vectors (batch, seq_len, hidden) -> logits (batch, seq_len, tags); predictions are entity spans."""

    name = "token_classification"
    hub_task = "token-classification"
    level = "token"
    metric_names: ClassVar[tuple[str, ...]] = ("f1", "precision", "recall", "accuracy")
    primary_metric = "f1"
    min_labels = 2
    # class_weights: per tag (B-X and I-X each); tune_thresholds: a minimum entity score, chosen on dev
    options = frozenset({"class_weights", "label_smoothing", "tune_thresholds"})

    def parse_label(self, raw: Any, source: str, column: str, separator: str | None) -> Any:
        tags = [str(t) for t in raw]
        problem = bio_problem(tags)
        if problem:
            raise DataError(f"{source}: {problem}")
        return tags

    def review_labels(self, labels: Sequence[tuple[str, Any]], where: str) -> None:
        """Warn once per file about an I-X right after a B-Y or I-Y of another type (B-PER I-LOC): it is read
        as the start of a new X entity, as seqeval's default mode and decode_bio read it. (I-X after O is
        IOB1's normal entity start, so it is not warned about.)"""
        found = [(source, pair) for source, tags in labels if (pair := type_switch(tags)) is not None]
        if found:
            source, (before, after) = found[0]
            logger.warning(
                "%s: %d sentence(s) have an I- tag continuing an entity of another type (first at %s: %s then %s); "
                "each such I-%s is read as the start of a new %s entity (as B-%s)",
                where, len(found), source, before, after, after[2:], after[2:], after[2:],
            )

    def label_counts(self, labels: Sequence[Any]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for tags in labels:
            counts.update(tags)
        return counts

    def build_labels(self, labels: Sequence[Any], source: str) -> list[str]:
        """ "O" first, then B-X and I-X for every type X seen."""
        types = sorted({tag[2:] for tag in self.label_counts(labels) if tag != "O"})
        if not types:
            raise DataError(f"{source}: no entity tags in the training data (every tag is 'O')")
        return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]

    def check_spec(self, spec: TaskSpec) -> None:
        problem = bio_problem(spec.labels, vocabulary=True)
        if problem:
            raise PolyheadError(f"token labels must be BIO tags: {problem}")
        super().check_spec(spec)

    def encode_target(self, spec: TaskSpec, label: Any, word_ids: Sequence[int | None] | None, source: str) -> Any:
        assert word_ids is not None, "token tasks are tokenised from words"
        index = {tag: i for i, tag in enumerate(spec.labels)}
        missing = next((t for t in label if t not in index), None)
        if missing is not None:
            raise DataError(f"{source}: label {missing!r} is not in the label list {spec.labels[:10]}")
        return align_labels(word_ids, [index[t] for t in label])

    def collate_targets(self, spec: TaskSpec, values: list[Any], width: int) -> torch.Tensor:
        import torch

        # (batch, seq_len) aligned tag ids, padded with IGNORE_INDEX
        return torch.tensor([v + [IGNORE_INDEX] * (width - len(v)) for v in values], dtype=torch.long)

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        import torch.nn.functional as F

        output = output.float()  # (batch, seq_len, tags)
        # (batch x seq_len, tags) and (batch x seq_len,)
        logits, tags = output.reshape(-1, output.shape[-1]), target.reshape(-1)
        if spec.class_weights:
            return weighted_cross_entropy(spec, logits, tags, IGNORE_INDEX)
        return F.cross_entropy(logits, tags, ignore_index=IGNORE_INDEX, label_smoothing=spec.label_smoothing)

    def loss_count(self, target: torch.Tensor) -> int:
        return int((target != IGNORE_INDEX).sum())

    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        assert item.word_ids is not None and item.words is not None
        return decode_tokens(spec.labels, output, item.word_ids, item.words, item.max_length, item.text,
                             spec.thresholds)

    def summary(self, decoded: dict[str, Any]) -> str:
        return "; ".join(f"{e['text']} [{e['type']}] {e['score']:.2f}" for e in decoded["entities"]) or "(no entities)"

    def decisions(self, decoded: dict[str, Any]) -> list[Any]:
        return list(decoded["tags"])

    def prediction_value(self, decoded: dict[str, Any]) -> Any:
        return decoded["tags"]

    # ------------------------------------------------------------------ thresholds
    def threshold_keys(self, spec: TaskSpec) -> list[str]:
        return entity_types(spec.labels)

    def dev_outputs(
        self, backend: Any, name: str, examples: Sequence[Any], batch_size: int, precision: str
    ) -> tuple[list[list[dict[str, Any]]], list[list[str]]]:
        """(the entities the head predicts in each example, each example's gold tags)."""
        from polyhead.predict import predict

        decoded = predict(backend, [ex.words for ex in examples], [name], batch_size, precision)
        return [d[name]["entities"] for d in decoded], [list(ex.label) for ex in examples]

    def tune_thresholds(
        self, spec: TaskSpec, entities: list[list[dict[str, Any]]], gold: list[list[str]]
    ) -> dict[str, float]:
        """One minimum entity score (the mean of its words' tag probabilities) for every type: the one with the
        best dev entity F1 (exact spans, micro-averaged, as seqeval counts them); {} when keeping every entity
        is best. One value, not one per type: rare types have too few dev entities to choose their own."""
        from polyhead.evaluation.calibration import entity_threshold

        scores, correct, total = [], [], 0
        for found, tags in zip(entities, gold, strict=True):
            spans = {(kind, first, last + 1) for kind, first, last, _ in decode_bio(tags, [0.0] * len(tags))}
            total += len(spans)
            scores += [e["score"] for e in found]
            correct += [(e["type"], e["word_start"], e["word_end"]) in spans for e in found]
        threshold = entity_threshold(np.asarray(scores), np.asarray(correct, dtype=bool), total)
        return {} if threshold is None else dict.fromkeys(entity_types(spec.labels), threshold)

    def metrics(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, float]:
        from polyhead.evaluation.metrics import entity_metrics

        return entity_metrics(gold, pred)

    def report(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, Any] | None:
        from polyhead.evaluation.report import entity_report

        return entity_report(gold, pred)


def entity_types(labels: Sequence[str]) -> list[str]:
    """The entity types of a BIO label list, in label order."""
    return list(dict.fromkeys(tag[2:] for tag in labels if tag != "O"))


def decode_tokens(
    labels: Sequence[str],
    logits: np.ndarray,
    word_ids: Sequence[int | None],
    words: list[Word],
    max_length: int,
    text: str | None = None,
    min_scores: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """logits: (seq_len, tags) -> word tags from first sub-tokens -> entity spans with offsets.

    Word tags are the most probable BIO-valid sequence (:func:`polyhead.tokens.bio_viterbi`: no entity starts
    with ``I-``); a word's score is its tag's probability, an entity's the mean of its words'. An entity scoring
    below ``min_scores[type]`` (dev-tuned thresholds) is dropped and its words tagged ``O``. ``text`` is the raw
    input (or the words joined by single spaces); an entity's ``text`` is ``text[start:end]``, so spacing inside
    an entity is kept as the user wrote it.
    """
    positions = first_subtoken_positions(word_ids)
    logits = np.asarray(logits, dtype=np.float64)[: len(word_ids)]
    log_probs = logits - logits.max(axis=-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=-1, keepdims=True))  # (seq_len, tags) log-softmax
    # (words, tags); a word without a sub-token (cut by max_length, or mapped to nothing) is "O"
    outside = np.zeros(len(labels)) if "O" not in labels else np.where(np.asarray(labels) == "O", 0.0, -np.inf)
    rows = [log_probs[positions[w]] if w in positions else outside for w in range(len(words))]
    words_lp = np.array(rows, dtype=np.float64).reshape(len(words), len(labels))
    best = bio_viterbi(labels, words_lp)
    tags = [labels[b] for b in best]
    scores = [float(np.exp(words_lp[w, b])) if w in positions else 0.0 for w, b in enumerate(best)]
    spans = []
    for kind, first, last, score in decode_bio(tags, scores):
        if min_scores and score < min_scores.get(kind, 0.0):
            tags[first : last + 1] = ["O"] * (last + 1 - first)
        else:
            spans.append((kind, first, last, score))
    entities = [
        {
            "type": kind,
            "text": text[words[first].start : words[last].end]
            if text is not None
            else " ".join(w.text for w in words[first : last + 1]),
            "start": words[first].start,
            "end": words[last].end,
            "word_start": first,
            "word_end": last + 1,
            "score": score,
        }
        for kind, first, last, score in spans
    ]
    # Words after the last one with a sub-token were cut only if the sequence hit max_length; otherwise
    # they are words the tokenizer maps to nothing (e.g. a zero-width space), not truncation.
    hit_limit = len(word_ids) >= max_length
    kept = max(positions) + 1 if positions else 0
    return {"entities": entities, "tags": tags, "truncated_words": len(words) - kept if hit_limit else 0}
