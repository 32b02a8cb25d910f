"""What a run reports: metrics on a split, how the work was split over processes, and the final
results.json with the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.evaluation.evaluator import predict_task, read_sts_pairs, sts_spearman, task_metrics
from polyhead.fileio import write_json_atomic
from polyhead.modeldir import library_versions
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.distributed import DistContext
from polyhead.training.metrics_log import plot_curves
from polyhead.training.setup import TaskData
from polyhead.training.step import Batch


class ShardAudit:
    """Which examples each process trained on and evaluated, to check that the shards are disjoint.

    Attributes:
        seen_count: Training examples this process trained on (since this run started or resumed).
        seen: Several processes only: (group, data epoch) -> times each example was seen here.
        eval_counts: Task -> split -> examples each process predicted.
    """

    def __init__(self, dist: DistContext) -> None:
        self.dist = dist
        self.seen_count = 0
        self.seen: dict[tuple[str, int], torch.Tensor] = {}
        self.eval_counts: dict[str, dict[str, list[int]]] = {}

    def record_seen(self, batch: Batch, size: int) -> None:
        """Count the training examples this process saw; with several processes also which ones, per group
        and pass over the group's data (one process sees every drawn example: nothing to check)."""
        self.seen_count += len(batch.indices)
        if not self.dist.distributed:
            return
        key = (batch.group, batch.data_epoch)
        if key not in self.seen:
            self.seen[key] = torch.zeros(size, dtype=torch.int32)
        self.seen[key][batch.indices] += 1

    def summary(self) -> dict[str, Any]:
        """How the work was split: processes, training examples each saw (since this run started or
        resumed) and how many were seen by more than one process in the same pass over the data (0 when
        the shards are disjoint), and evaluation examples each process predicted per task and split."""
        per_process = self.dist.gather_objects([self.seen_count])
        in_several = 0
        for key in sorted(self.seen):
            in_several += int((self.dist.all_sum(self.seen[key].clone()) > 1).sum())
        return {
            "count": self.dist.world,
            "train_examples_seen": per_process,
            "train_examples_seen_by_several": in_several,
            "eval_examples": self.eval_counts,
        }


class SplitEvaluator:
    """Per-task metrics of the model on a split of the run's data, computed over all processes."""

    def __init__(
        self,
        model: MultiTaskModel,
        data: dict[str, TaskData],
        dist: DistContext,
        audit: ShardAudit,
        batch_size: int,
        precision: str,
    ) -> None:
        self.model, self.data, self.dist, self.audit = model, data, dist, audit
        self.batch_size, self.precision = batch_size, precision

    def __call__(self, split: str, tasks: list[str]) -> dict[str, dict[str, float]]:
        """Per-task metrics on a split; each process predicts its shard and the pairs are gathered, so
        every example counts once and every process gets the same numbers."""
        bs, prec = self.batch_size, self.precision
        metrics = {}
        for t in tasks:
            examples = getattr(self.data[t], split)
            if not examples:
                continue
            gold, pred = predict_task(self.model, t, self.dist.shard(examples), bs, prec)
            pairs = self.dist.gather_objects(list(zip(gold, pred, strict=True)))
            self.audit.eval_counts.setdefault(t, {})[split] = self.dist.gather_objects([len(gold)])
            metrics[t] = task_metrics(self.model, t, [g for g, _ in pairs], [p for _, p in pairs])
        return metrics


def run_results(
    config: Config,
    model: MultiTaskModel,
    evaluate: SplitEvaluator,
    loss_weights: dict[str, float],
    audit: ShardAudit,
    wall_time: float,
    model_dir: Path,
) -> dict[str, Any]:
    """The results of a finished run, on every process (dev and test metrics of every task)."""
    tasks = list(model.tasks)
    return {
        "name": config.name,
        "seed": config.training.seed,
        "wall_time_s": round(wall_time, 1),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "dev": evaluate("dev", tasks),
        "test": evaluate("test", tasks),
        "loss_weights": loss_weights,
        "model_dir": str(model_dir),
        "processes": audit.summary(),
    }


def write_results(
    out: Path, results: dict[str, Any], model: MultiTaskModel, sts_pairs: list[tuple[str, str, float]]
) -> None:
    """Main process: adds the STS score and library versions to ``results``, writes results.json and
    training_curves.png."""
    if sts_pairs:
        results["sts_spearman"] = sts_spearman(model, sts_pairs)
    results["library_versions"] = library_versions()
    write_json_atomic(out / "results.json", results)
    plot_curves(out / "metrics.jsonl", out / "training_curves.png")


def metrics_summary(title: str, metrics: dict[str, dict[str, float]]) -> str:
    parts = [f"{t}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) for t, m in metrics.items()]
    return f"{title} | " + " | ".join(parts)


def read_sts(config: Config) -> list[tuple[str, str, float]]:
    sts = config.training.sts_eval
    if sts is None:
        return []
    return read_sts_pairs(
        sts.file, sts.sentence1_column, sts.sentence2_column, sts.score_column, where="training.sts_eval.file"
    )


def check_finite(model: MultiTaskModel) -> None:
    """Raise when training diverged: a weight holds NaN or infinity."""
    non_finite = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if non_finite:
        raise PolyheadError(
            f"training diverged: {len(non_finite)} weight tensors hold NaN or infinite values (first: "
            f"{non_finite[0]}); the final model was not saved. Lower the learning rate or check the labels"
        )
