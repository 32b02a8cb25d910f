"""The training recipe: setup -> stages -> epochs -> steps, with evaluation, early stopping, checkpoints.

``Trainer(config, output_dir).run()`` trains every task of the config (or each stage's tasks in turn),
writes metrics.jsonl, TensorBoard events, training_curves.png, results.json, checkpoints, and the final
model directory ``<output>/model``. ``resume=True`` continues exactly from the latest checkpoint.
Under ``accelerate launch`` (or ``polyhead train --num-processes N``) each process trains on its shard
of every global batch and evaluates its shard of dev/test; see :mod:`polyhead.training.distributed`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError
from safetensors.torch import load_file
from torch import nn

from polyhead.config import (
    Config,
    FreezeConfig,
    GradualUnfreezingConfig,
    OptimizerConfig,
    StageConfig,
)
from polyhead.data.collate import EncodedGroup, collate, encode_group, epoch_batches
from polyhead.errors import PolyheadError
from polyhead.evaluation.evaluator import predict_task, read_sts_pairs, sts_spearman, task_metrics
from polyhead.evaluation.metrics import LOWER_IS_BETTER
from polyhead.modeldir import check_new_directory, library_versions
from polyhead.modeling.encoder import DEFAULT_MODEL, autocast, encoder_settings, resolve_model_path
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.runtime import check_precision
from polyhead.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_tensors_atomic,
    write_text_atomic,
)
from polyhead.training.distributed import DistContext, create_accelerator
from polyhead.training.freezing import (
    GradualUnfreezer,
    apply_freezing,
    check_trainable,
    frozen_parameter_names,
)
from polyhead.training.losses import build_weighting
from polyhead.training.metrics_log import MetricsLog, plot_curves
from polyhead.training.param_groups import build_param_groups, describe_groups, format_group_table
from polyhead.training.sampling import TaskSampler
from polyhead.training.setup import TaskData, build_model, build_specs, load_all_data, task_groups

logger = logging.getLogger(__name__)


# What a run writes before its first checkpoint (safe to remove when restarting an unfinished run).
RUN_ARTIFACTS = {
    "config.yaml",
    "metrics.jsonl",
    "tensorboard",
    "checkpoints",
    "best_model.safetensors",
    ".write-test",  # written by earlier versions (now .write-test.<rank>)
}


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C: a checkpoint was saved; the message says how to resume (``summary``: where it
    stopped, without the how-to, for the CLI, which prints the whole command instead)."""

    def __init__(self, summary: str) -> None:
        super().__init__(f"{summary}; resume with the same config and overrides (resume=True)")
        self.summary = summary


@dataclass
class Stage:
    name: str
    tasks: list[str]
    epochs: int
    freeze: FreezeConfig
    gradual: GradualUnfreezingConfig | None
    optimizer: OptimizerConfig


def resolve_stages(config: Config) -> list[Stage]:
    t = config.training
    if not t.stages:
        return [Stage("train", list(config.tasks), t.epochs, t.freeze, t.gradual_unfreezing, t.optimizer)]
    stages = []
    for i, s in enumerate(t.stages):
        stages.append(stage_from_config(i, s, config))
    return stages


def stage_from_config(i: int, s: StageConfig, config: Config) -> Stage:
    return Stage(
        s.name or f"stage{i + 1}",
        list(s.tasks or config.tasks),
        s.epochs,
        s.freeze,
        s.gradual_unfreezing,
        s.optimizer or config.training.optimizer,
    )


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return fn


class Trainer:
    """Owns setup, the loop, evaluation and checkpoints; nothing in it is specific to one model."""

    def __init__(
        self,
        config: Config,
        output_dir: str | Path,
        resume: bool = False,
        show_progress: bool = False,
        report: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.out = Path(output_dir)
        self.resume = resume
        self.show_progress = show_progress
        self.report = report or log_renderable
        self.interrupted = False  # Ctrl-C seen by this process
        self.stopping = False  # Ctrl-C seen by any process, agreed at the end of a step
        self.dist = DistContext()
        self.accelerator: Any = None  # created by run(); setup() alone (benchmarks, tests) runs on the CPU
        self.global_step = 0
        self.seen_count = 0  # training examples this process trained on (since this run started or resumed)
        # several processes only: (group, data epoch) -> times each example was seen here, to check the shards
        self.seen: dict[tuple[str, int], torch.Tensor] = {}
        self.eval_counts: dict[str, dict[str, list[int]]] = {}  # task -> split -> examples per process
        check_precision(config.training.precision)

    # ------------------------------------------------------------------ setup
    def prepare_output(self) -> None:
        """Refuse to clobber a previous run; check the directory is writable with room to spare.

        Every process checks before any writes (so all of them fail alike); the main process removes
        what an unfinished run left and creates the directory.
        """
        if self.resume and latest_checkpoint(self.out) is not None:
            return
        leftovers = self.unfinished_run() if self.resume else set()
        if not self.resume:
            refuse_non_empty(self.out)
        self.dist.wait()
        if self.dist.is_main:
            for name in leftovers:
                path = self.out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.resume = False
        probe = self.out / f".write-test.{self.dist.rank}"
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise PolyheadError(f"output directory {self.out} is not writable: {exc.strerror}") from exc
        free = shutil.disk_usage(self.out).free
        if free < 500 * 2**20:
            raise PolyheadError(f"only {free // 2**20} MiB free under {self.out}; training needs at least 500 MiB")
        self.dist.wait()

    def unfinished_run(self) -> set[str]:
        """--resume before the first checkpoint: a run killed that early restarts from the beginning,
        provided its directory holds nothing but what a run writes. Returns what to remove."""
        found = {p.name for p in self.out.iterdir()} if self.out.is_dir() else set()
        found = {name for name in found if not name.startswith(".write-test.")}
        if not found or found - RUN_ARTIFACTS:
            raise PolyheadError(f"--resume: no checkpoint in {self.out}/checkpoints to resume from")
        logger.warning("no checkpoint yet in %s: restarting the run from the beginning", self.out)
        return found

    def setup(self) -> None:
        cfg = self.config
        if cfg.training.num_threads:
            torch.set_num_threads(cfg.training.num_threads)
        self.data: dict[str, TaskData] = load_all_data(cfg)
        specs = build_specs(cfg, self.data)
        self.model: MultiTaskModel = build_model(cfg, specs)
        self.device = self.accelerator.device if self.accelerator is not None else torch.device("cpu")
        self.model.to(self.device)
        self.dist.broadcast_parameters(self.model)  # every process starts from the main process's weights
        if self.dist.rank:
            torch.manual_seed(cfg.training.seed + self.dist.rank)  # own dropout masks per process
        self.specs = specs
        self.stages = resolve_stages(cfg)
        for stage in self.stages:  # every stage must have something to train, before anything runs
            frozen = self.frozen_names(stage)
            trainable = [n for n, _ in self.trainable_in(stage, frozen)]
            if not trainable and stage.gradual is None:
                raise_nothing_to_train(stage)
        self.weighting = build_weighting(cfg.training.loss_weighting, {t: c.loss_weight for t, c in cfg.tasks.items()})
        self.score_scale = {t: s.task.loss_scale([ex.label for ex in self.data[t].train]) for t, s in specs.items()}
        self.groups: dict[str, EncodedGroup] = {}
        for gname, members in task_groups(cfg, list(cfg.tasks)).items():
            self.groups[gname] = encode_group(
                gname, self.model.encoder, specs, {t: self.data[t].train for t in members}
            )
        self.sts_pairs = read_sts(cfg)

    def frozen_names(self, stage: Stage) -> set[str]:
        f = stage.freeze
        return frozen_parameter_names(self.model, f.mode, f.layers_below, list(f.heads))

    def trainable_in(self, stage: Stage, frozen: set[str]) -> list[tuple[str, nn.Parameter]]:
        """Parameters the stage's optimizer holds: not frozen, and no heads of tasks outside the stage."""
        inactive = [f"heads.{t}." for t in self.model.tasks if t not in stage.tasks]
        return [
            (n, p)
            for n, p in self.model.named_parameters()
            if n not in frozen and not any(n.startswith(prefix) for prefix in inactive)
        ]

    # ------------------------------------------------------------------ main
    def run(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train every stage; returns the results (also written to results.json by the main process)."""
        log_with = self.config.training.log_with
        self.accelerator = create_accelerator(log_with, self.out)
        self.dist = DistContext(self.accelerator)
        if not self.dist.is_main:
            self.report = lambda item: None  # one report, from the main process
            self.show_progress = False
        self.prepare_output()
        checkpoint = latest_checkpoint(self.out) if self.resume else None
        if checkpoint is not None:
            check_same_config(self.config.model_dump(mode="json"), self.out)
        started = time.time()
        self.setup()
        if self.dist.is_main and checkpoint is None:  # a resumed run keeps the file it was checked against
            dump = yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
            write_text_atomic(self.out / "config.yaml", dump)
        state: dict[str, Any] = {"stage": 0, "global_step": 0, "elapsed": 0.0}
        if checkpoint is not None:
            state = json.loads((checkpoint / "state.json").read_text())
            self.report(f"resuming from {checkpoint} (stage {state['stage'] + 1}, step {state['global_step']})")
        if self.dist.distributed:
            self.report(f"{self.dist.world} processes: each trains on 1/{self.dist.world} of every batch")
        self.global_step = int(state["global_step"])
        self.log = MetricsLog(
            self.out,
            self.accelerator,
            log_with,
            resume_lines=state.get("metrics_lines"),
            enabled=self.dist.is_main,
            run_config=self.config.model_dump(mode="json"),
        )
        self.stop_after = stop_after_steps
        previous_handler = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self.on_sigint)
        try:
            for index in range(state["stage"], len(self.stages)):
                self.run_stage(index, checkpoint if index == state["stage"] else None)
                checkpoint = None
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            self.log.close()
        return self.finish(time.time() - started + float(state.get("elapsed", 0.0)))

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.interrupted = True
        logger.warning("interrupt received: saving a checkpoint after this step (Ctrl-C again to abort)")

    def run_stage(self, index: int, checkpoint: Path | None) -> None:
        stage, cfg = self.stages[index], self.config.training
        frozen = self.frozen_names(stage)
        apply_freezing(self.model, frozen)
        unfreezer = GradualUnfreezer(self.model, stage.gradual.every, always_frozen=frozen) if stage.gradual else None
        include = {n for n, _ in self.trainable_in(stage, frozen)}
        if unfreezer is None:
            check_trainable(self.model, f"stage {stage.name!r}")
        extra = (
            {"loss_weights": list(self.weighting.parameters())}
            if any(True for _ in self.weighting.parameters())
            else None
        )
        opt = stage.optimizer
        groups = build_param_groups(
            self.model,
            lr=opt.lr,
            head_lr=opt.head_lr,
            projection_lr=opt.projection_lr,
            layer_decay=opt.layer_decay,
            weight_decay=opt.weight_decay,
            include=include,
            extra=extra,
        )
        self.report(format_group_table(describe_groups(self.model, groups)))
        optimizer = torch.optim.AdamW(groups)
        encoder_frozen = unfreezer is None and all(
            not p.requires_grad for n, p in self.model.named_parameters() if n.startswith("encoder.")
        )
        stage_groups = {g: grp for g, grp in self.groups.items() if any(t in stage.tasks for t in grp.tasks)}
        cache = self.build_cache(stage_groups) if encoder_frozen and cfg.cache_embeddings else None
        sampler = TaskSampler(
            {g: len(grp) for g, grp in stage_groups.items()},
            cfg.sampling.strategy,
            cfg.sampling.temperature,
            seed=cfg.seed + index,
        )
        steps_per_epoch = cfg.steps_per_epoch or self.epoch_steps(stage_groups, sampler)
        total = steps_per_epoch * stage.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(cfg.scheduler.type, int(cfg.scheduler.warmup_ratio * total), total)
        )
        st: dict[str, Any] = {
            "stage": index,
            "epoch": 0,
            "step_in_epoch": 0,
            "stage_step": 0,
            "global_step": self.global_step,
            "positions": {g: [0, 0] for g in stage_groups},
            "best": None,
            "best_epoch": None,
            "bad_epochs": 0,
            "elapsed": 0.0,
        }
        modules = {"weighting": self.weighting}
        if checkpoint is not None:
            st = load_checkpoint(checkpoint, self.model, optimizer, modules)
            sampler.load_state_dict(st["sampler"])
            if unfreezer is not None:
                unfreezer.load_state_dict(st["unfreezer"])
            scheduler.last_epoch = st["stage_step"]
            if self.dist.rank:  # the checkpoint holds the main process's RNG state
                torch.manual_seed(self.config.training.seed + self.dist.rank + st["global_step"])
        elif unfreezer is not None:
            unfreezer.step(0)
        self.report(
            f"stage {stage.name}: tasks {', '.join(stage.tasks)}; {stage.epochs} epoch(s) x {steps_per_epoch} steps"
            f" (batch {cfg.batch_size} x accumulation {cfg.gradient_accumulation})"
            + ("; encoder frozen: training heads on cached embeddings" if cache is not None else "")
        )
        stage_started = time.time() - float(st.get("elapsed", 0.0))
        ctx = StepContext(stage, stage_groups, cache, optimizer, scheduler, sampler, unfreezer, encoder_frozen)
        while st["epoch"] < stage.epochs:
            self.train_epoch(ctx, st, steps_per_epoch)
            if self.stopping or self.stop_after_reached(st):
                st["elapsed"] = time.time() - stage_started
                self.checkpoint(ctx, st)
                raise TrainingInterrupted(f"stopped at step {st['global_step']}; checkpoint saved in {self.out}")
            st["epoch"] += 1
            st["step_in_epoch"] = 0
            if unfreezer is not None and stage.gradual and stage.gradual.unit == "epochs":
                self.announce(unfreezer.step(st["epoch"]))
            stop = self.end_of_epoch(stage, st)
            st["elapsed"] = time.time() - stage_started
            self.checkpoint(ctx, st)
            if stop:
                self.report(f"early stopping: no improvement for {st['bad_epochs']} epoch(s)")
                break
        self.global_step = st["global_step"]
        self.dist.wait()
        best = self.out / "best_model.safetensors"
        if st["best"] is not None and best.is_file():
            self.model.load_state_dict(load_file(str(best)), strict=True)
            self.report(f"stage {stage.name}: kept the best epoch ({st['best_epoch']}, {st['best']:.4f})")
            self.dist.wait()  # every process has read it
            if self.dist.is_main:
                best.unlink()

    def stop_after_reached(self, st: dict[str, Any]) -> bool:
        return self.stop_after is not None and st["global_step"] >= self.stop_after

    def announce(self, names: list[str]) -> None:
        if names:
            self.report(f"gradual unfreezing: now training {', '.join(names)}")

    def epoch_steps(self, groups: dict[str, EncodedGroup], sampler: TaskSampler) -> int:
        """One pass over the largest group: its batches divided by the chance of picking it."""
        bs = self.config.training.batch_size * self.config.training.gradient_accumulation
        largest = max(groups, key=lambda g: len(groups[g]))
        return max(1, math.ceil(math.ceil(len(groups[largest]) / bs) / sampler.probabilities[largest]))

    # ------------------------------------------------------------------ steps
    def next_batch(self, ctx: StepContext, st: dict[str, Any], gname: str) -> list[int]:
        cfg, group = self.config.training, ctx.groups[gname]
        epoch, pos = st["positions"][gname]
        batches = epoch_batches(group.lengths, cfg.batch_size, cfg.seed, epoch, gname, cfg.bucket_by_length)
        if pos >= len(batches):
            epoch, pos = epoch + 1, 0
            batches = epoch_batches(group.lengths, cfg.batch_size, cfg.seed, epoch, gname, cfg.bucket_by_length)
        st["positions"][gname] = [epoch, pos + 1]
        return batches[pos]

    def forward_batch(self, ctx: StepContext, gname: str, local: list[int]) -> dict[str, torch.Tensor]:
        """Each task's loss on ``local``, this process's shard of the global batch (all of it in one process).

        With several processes each loss is multiplied by ``world x`` the shard's share of the batch (its
        examples, or labelled tokens for token tasks), so that averaging gradients over processes gives
        the gradient of the global batch's mean loss (the cosine loss of similarity tasks is a mean over
        pairs too). CoSENT ranks the pairs within a shard (as DDP does): its losses are averaged over the
        processes whose shard holds pairs.
        """
        group = ctx.groups[gname]
        tasks = [t for t in group.tasks if t in ctx.stage.tasks]
        losses = {t: torch.zeros((), device=self.device) for t in tasks}
        counts = torch.zeros(len(tasks))
        if local:
            features, targets = collate(group, local, self.specs, self.model.encoder.pad_token_id)
            features = {k: v.to(self.device) for k, v in features.items()}
            with autocast(self.config.training.precision, self.device):
                if ctx.cache is not None:
                    feats = ctx.cache.features(gname, local, features["attention_mask"])
                else:
                    feats = self.model.encoder(features)
                outputs = self.model.run_heads(feats, tasks)
                for i, t in enumerate(tasks):
                    target = targets[t].to(self.device)
                    spec = self.specs[t]
                    counts[i] = spec.task.loss_count(target)
                    if counts[i] > 0:
                        losses[t] = spec.task.loss(spec, outputs[t], target, self.score_scale[t])
        if not self.dist.distributed:
            return losses
        totals = self.dist.all_sum(torch.cat([counts, (counts > 0).float()]))
        n, holding = totals[: len(tasks)], totals[len(tasks) :]
        by_share = torch.where(n > 0, self.dist.world * counts / n.clamp(min=1), 0.0)
        by_shard = torch.where(counts > 0, self.dist.world / holding.clamp(min=1), 0.0)
        in_batch = [self.specs[t].task.loss_ranks_batch(self.specs[t]) for t in tasks]
        return {t: losses[t] * float(by_shard[i] if in_batch[i] else by_share[i]) for i, t in enumerate(tasks)}

    def record_seen(self, gname: str, data_epoch: int, size: int, local: list[int]) -> None:
        """Count the training examples this process saw; with several processes also which ones, per group
        and pass over the group's data (one process sees every drawn example: nothing to check)."""
        self.seen_count += len(local)
        if not self.dist.distributed:
            return
        key = (gname, data_epoch)
        if key not in self.seen:
            self.seen[key] = torch.zeros(size, dtype=torch.int32)
        self.seen[key][local] += 1

    def train_epoch(self, ctx: StepContext, st: dict[str, Any], steps: int) -> None:
        cfg = self.config.training
        self.model.train()
        if ctx.encoder_frozen:
            self.model.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout
        bar = progress_bar(steps, st["step_in_epoch"], f"{ctx.stage.name} epoch {st['epoch'] + 1}", self.show_progress)
        running: dict[str, list[float]] = {}
        while st["step_in_epoch"] < steps:
            for _ in range(cfg.gradient_accumulation):
                gname = ctx.sampler.sample()
                local = self.dist.shard(self.next_batch(ctx, st, gname))
                self.record_seen(gname, st["positions"][gname][0], len(ctx.groups[gname]), local)
                losses = self.forward_batch(ctx, gname, local)
                total = self.weighting(losses) / cfg.gradient_accumulation
                if total.requires_grad:  # False for an empty shard: no gradient, which counts as zero
                    total.backward()
                for t, loss in losses.items():
                    running.setdefault(t, []).append(float(loss.detach()))
            params = [p for g in ctx.optimizer.param_groups for p in g["params"] if p.requires_grad]
            self.dist.average_gradients(params, 1.0 / self.dist.world)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            ctx.optimizer.step()
            ctx.scheduler.step()
            ctx.optimizer.zero_grad(set_to_none=True)
            st["step_in_epoch"] += 1
            st["stage_step"] += 1
            st["global_step"] += 1
            if ctx.unfreezer is not None and ctx.stage.gradual and ctx.stage.gradual.unit == "steps":
                self.announce(ctx.unfreezer.step(st["stage_step"]))
            if bar is not None:
                bar.update(1)
                bar.set_postfix({t: f"{v[-1]:.3f}" for t, v in running.items()})
            if st["global_step"] % 10 == 0 or st["step_in_epoch"] == steps:
                self.log_losses(st, running, ctx)
                running = {}
            if cfg.checkpoint_steps and st["global_step"] % cfg.checkpoint_steps == 0:
                self.checkpoint(ctx, st)
            self.stopping = self.dist.any(self.interrupted)  # agreed: every process stops at the same step
            if self.stopping or self.stop_after_reached(st):
                break
        if bar is not None:
            bar.close()

    def log_losses(self, st: dict[str, Any], running: dict[str, list[float]], ctx: StepContext) -> None:
        """Mean training loss per task since the last log (over all processes: their scaled shard losses
        average to the global batch's loss), learning rate and loss weights."""
        names = [t for t, v in running.items() if v]
        means = self.dist.all_sum(torch.tensor([sum(running[t]) / len(running[t]) for t in names])) / self.dist.world
        values = {f"train/loss/{t}": float(m) for t, m in zip(names, means, strict=True)}
        values["train/lr"] = float(ctx.scheduler.get_last_lr()[-1])
        values.update(
            {f"train/loss_weight/{t}": w for t, w in self.weighting.weights().items() if t in ctx.stage.tasks}
        )
        self.log.write(st["global_step"], values, stage=ctx.stage.name, epoch=st["epoch"])

    def checkpoint(self, ctx: StepContext, st: dict[str, Any]) -> None:
        """Full state, written by the main process (all processes hold the same), so it resumes with any
        number of processes."""
        if not self.dist.is_main:
            self.dist.wait()
            return
        st["sampler"] = ctx.sampler.state_dict()
        if ctx.unfreezer is not None:
            st["unfreezer"] = ctx.unfreezer.state_dict()
        st["metrics_lines"] = self.log.lines
        self.log.flush()
        save_checkpoint(
            self.out,
            st["global_step"],
            self.model,
            ctx.optimizer,
            {"weighting": self.weighting},
            st,
            keep=self.config.training.keep_checkpoints,
        )
        self.dist.wait()

    # ------------------------------------------------------------------ evaluation
    def end_of_epoch(self, stage: Stage, st: dict[str, Any]) -> bool:
        """Dev metrics per task; keeps the best model; returns True when early stopping triggers."""
        metrics = self.evaluate_split("dev", stage.tasks)
        values = {f"dev/{t}/{k}": v for t, m in metrics.items() for k, v in m.items()}
        sts = self.config.training.sts_eval
        if self.sts_pairs and sts is not None and sts.each_epoch and self.dist.is_main:
            values["dev/sts/spearman"] = sts_spearman(self.model, self.sts_pairs, self.config.training.eval_batch_size)
        self.log.write(st["global_step"], values, stage=stage.name, epoch=st["epoch"])
        if metrics:
            self.report(metrics_summary(f"{stage.name} epoch {st['epoch']} dev", metrics))
        score = self.selection_score(metrics)
        if score is None:
            return False
        if st["best"] is None or score > st["best"]:
            st["best"], st["best_epoch"], st["bad_epochs"] = score, st["epoch"], 0
            if self.dist.is_main:
                save_tensors_atomic(dict(self.model.state_dict()), self.out / "best_model.safetensors")
            return False
        st["bad_epochs"] += 1
        patience = self.config.training.early_stopping.patience
        return patience is not None and st["bad_epochs"] >= patience

    def selection_score(self, metrics: dict[str, dict[str, float]]) -> float | None:
        name = self.config.training.early_stopping.metric
        if not metrics:
            return None
        if name == "mean":
            scores = [m[self.specs[t].task.primary_metric] for t, m in metrics.items()]
            return sum(scores) / len(scores)
        task, _, metric = name.partition("/")
        if task not in metrics or metric not in metrics[task]:
            raise PolyheadError(
                f"training.early_stopping.metric {name!r}: no such dev metric; have: "
                + ", ".join(f"{t}/{k}" for t, m in metrics.items() for k in m)
            )
        value = metrics[task][metric]
        return -value if metric in LOWER_IS_BETTER else value

    def evaluate_split(self, split: str, tasks: list[str]) -> dict[str, dict[str, float]]:
        """Per-task metrics on a split; each process predicts its shard and the pairs are gathered, so
        every example counts once and every process gets the same numbers."""
        bs, prec = self.config.training.eval_batch_size, self.config.training.precision
        metrics = {}
        for t in tasks:
            examples = getattr(self.data[t], split)
            if not examples:
                continue
            gold, pred = predict_task(self.model, t, self.dist.shard(examples), bs, prec)
            pairs = self.dist.gather_objects(list(zip(gold, pred, strict=True)))
            self.eval_counts.setdefault(t, {})[split] = self.dist.gather_objects([len(gold)])
            metrics[t] = task_metrics(self.model, t, [g for g, _ in pairs], [p for _, p in pairs])
        return metrics

    def build_cache(self, groups: dict[str, EncodedGroup]) -> EmbeddingCache:
        return EmbeddingCache.build(
            self.model, groups, self.config.training.eval_batch_size, self.config.training.precision
        )

    # ------------------------------------------------------------------ end
    def finish(self, wall_time: float) -> dict[str, Any]:
        model_dir = self.out / "model"
        if self.dist.is_main:
            self.model.save_pretrained(model_dir, overwrite=True)
        tasks = list(self.model.tasks)
        results: dict[str, Any] = {
            "name": self.config.name,
            "seed": self.config.training.seed,
            "wall_time_s": round(wall_time, 1),
            "trainable_params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "total_params": sum(p.numel() for p in self.model.parameters()),
            "dev": self.evaluate_split("dev", tasks),
            "test": self.evaluate_split("test", tasks),
            "loss_weights": self.weighting.weights(),
            "model_dir": str(model_dir),
            "processes": self.shard_summary(),
        }
        if not self.dist.is_main:
            self.dist.wait()
            return results
        if self.sts_pairs:
            results["sts_spearman"] = sts_spearman(self.model, self.sts_pairs)
        results["library_versions"] = library_versions()
        (self.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        plot_curves(self.out / "metrics.jsonl", self.out / "training_curves.png")
        for split in ("dev", "test"):
            if results[split]:
                self.report(metrics_summary(f"final {split}", results[split]))
        self.dist.wait()
        return results

    def shard_summary(self) -> dict[str, Any]:
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


@dataclass
class StepContext:
    stage: Stage
    groups: dict[str, EncodedGroup]
    cache: EmbeddingCache | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: TaskSampler
    unfreezer: GradualUnfreezer | None
    encoder_frozen: bool


class EmbeddingCache:
    """Encoder outputs computed once per example, for stages whose encoder is frozen.

    Holds ``pooled_embedding`` and ``sentence_embedding`` (n, dim) per group and, for groups with a token
    task, each example's
    token vectors (len_i, hidden), padded per batch to the same width the uncached collator pads to.
    """

    def __init__(self) -> None:
        self.sentence: dict[str, torch.Tensor] = {}
        self.pooled: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, list[torch.Tensor]] = {}

    @classmethod
    def build(
        cls, model: MultiTaskModel, groups: dict[str, EncodedGroup], batch_size: int, precision: str
    ) -> EmbeddingCache:
        cache = cls()
        for gname, group in groups.items():
            encs = [it["enc"] for it in group.items] + [it["pair"] for it in group.items if "pair" in it]
            want_tokens = any(model.tasks[t].level == "token" for t in group.tasks)
            sentence = torch.zeros((len(encs), model.encoder.dim))
            pooled = torch.zeros((len(encs), model.encoder.dim))
            tokens: list[torch.Tensor] = [torch.empty(0)] * len(encs)
            for batch, features in model.encoder.iter_batches(encs, batch_size, None, False, precision):
                out = model.encoder(features)
                sentence[batch] = out["sentence_embedding"].float()
                pooled[batch] = out["pooled_embedding"].float()
                if want_tokens:
                    for row, i in enumerate(batch):
                        tokens[i] = out["token_embeddings"][row, : len(encs[i]["input_ids"])].float().clone()
            cache.sentence[gname] = sentence
            cache.pooled[gname] = pooled
            if want_tokens:
                cache.tokens[gname] = tokens
        return cache

    def features(self, gname: str, indices: list[int], attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        n = len(self.sentence[gname]) // (2 if len(attention_mask) == 2 * len(indices) else 1)
        rows = indices + [n + i for i in indices] if len(attention_mask) == 2 * len(indices) else indices
        feats = {
            "sentence_embedding": self.sentence[gname][rows],
            "pooled_embedding": self.pooled[gname][rows],
            "attention_mask": attention_mask,
        }
        if gname in self.tokens:
            width = attention_mask.shape[1]
            vectors = [self.tokens[gname][i] for i in rows]
            padded = torch.zeros((len(rows), width, vectors[0].shape[-1]))
            for row, v in enumerate(vectors):
                padded[row, : len(v)] = v
            feats["token_embeddings"] = padded
        return {k: v.to(attention_mask.device) for k, v in feats.items()}


def check_same_config(config: dict[str, Any], out: Path) -> None:
    """--resume continues a run only under the config it started with (overrides included): the data,
    schedule and sampler it would rebuild otherwise are another run's."""
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        return
    try:
        saved = yaml.safe_load(saved_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolyheadError(
            f"--resume: {saved_file} is not readable YAML ({type(exc).__name__}); it records the config the run "
            "started with: restore it, or delete it to resume without this check"
        ) from exc
    if not isinstance(saved, dict):
        raise PolyheadError(
            f"--resume: {saved_file} holds no config; restore it, or delete it to resume without this check"
        )
    # through the model, so keys a newer polyhead added compare as their defaults (if it no longer
    # validates, it is compared as written: the differences say what changed)
    with contextlib.suppress(ValidationError):
        saved = Config.model_validate(saved).model_dump(mode="json")
    saved, config = (effective_encoder(c) for c in (saved, config))
    changed = [
        f"{key}: {old!r} -> {new!r}"
        for key, old, new in config_differences(saved, config)
        if key not in RESUME_IRRELEVANT
    ]
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise PolyheadError(
            f"--resume: the config differs from the one this run started with ({shown}); resume with the same "
            f"config and --set overrides (the run's config is {saved_file})"
        )


# Keys that don't change what a resumed run computes (threads, logging, evaluation batch size, checkpoint
# keeping): they may differ between the start and the resume.
RESUME_IRRELEVANT = {
    "training.num_threads",
    "training.log_with",
    "training.eval_batch_size",
    "training.keep_checkpoints",
    "training.checkpoint_steps",
}


def effective_encoder(config: dict[str, Any]) -> dict[str, Any]:
    """The config with an unset ``encoder.pooling`` / ``encoder.normalize`` replaced by what the model gives
    (its sentence-transformers files, else mean / normalised): a run saved as ``mean`` before these became
    optional is the same run."""
    encoder = dict(config.get("encoder") or {})
    with contextlib.suppress(PolyheadError):  # a model that is gone: compared as written
        path = resolve_model_path(encoder.get("model", DEFAULT_MODEL))
        settings, _ = encoder_settings(path, pooling=encoder.get("pooling"), normalize=encoder.get("normalize"))
        encoder.update(pooling=settings["pooling"], normalize=settings["normalize"])
    return {**config, "encoder": encoder}


def config_differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs between two config dumps."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in {**old, **new} for d in config_differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def refuse_non_empty(out: Path) -> None:
    """A new run never writes into a directory that holds something (or over a file)."""
    check_new_directory(out, "output directory", "pass --resume to continue it or choose another --output")


def raise_nothing_to_train(stage: Stage) -> None:
    raise PolyheadError(
        f"stage {stage.name!r}: freezing (mode={stage.freeze.mode!r}, layers_below={stage.freeze.layers_below}, "
        f"heads={stage.freeze.heads}) leaves nothing to train for tasks {stage.tasks}; "
        "unfreeze something (training.freeze) or use `polyhead evaluate` to only evaluate"
    )


def read_sts(config: Config) -> list[tuple[str, str, float]]:
    sts = config.training.sts_eval
    if sts is None:
        return []
    return read_sts_pairs(
        sts.file, sts.sentence1_column, sts.sentence2_column, sts.score_column, where="training.sts_eval.file"
    )


def log_renderable(item: Any) -> None:
    """Default report: rich tables rendered to plain text, into the log."""
    if isinstance(item, str):
        logger.info("%s", item)
        return
    from rich.console import Console

    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(item)
    logger.info("\n%s", console.export_text())


def metrics_summary(title: str, metrics: dict[str, dict[str, float]]) -> str:
    parts = [f"{t}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) for t, m in metrics.items()]
    return f"{title} | " + " | ".join(parts)


def progress_bar(total: int, start: int, desc: str, show: bool) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="step", leave=False, dynamic_ncols=True)
