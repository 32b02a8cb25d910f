"""The training recipe: setup -> stages -> epochs -> steps, with evaluation, early stopping, checkpoints.

``Trainer(config, output_dir).run()`` trains every task of the config (or each stage's tasks in turn),
writes metrics.jsonl, TensorBoard events, training_curves.png, results.json, checkpoints, and the final
model directory ``<output>/model``. ``resume=True`` continues exactly from the latest checkpoint.
Under ``accelerate launch`` (or ``polyhead train --num-processes N``) each process trains on its shard
of every global batch and evaluates its shard of dev/test; see :mod:`polyhead.training.distributed`.

The trainer wires the parts together: the run directory (:mod:`.rundir`), the stage plan (:mod:`.plan`),
the training state (:mod:`.state`), one optimizer step (:mod:`.step`), the loop of a stage as a generator
of events (:mod:`.loop`), and the side effects it reacts to those events with (:mod:`.callbacks`,
:mod:`.results`). ``callbacks=[...]`` adds hooks of your own (:class:`TrainerCallback`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from polyhead.config import Config
from polyhead.data.collate import EncodedGroup, encode_group
from polyhead.errors import PolyheadError
from polyhead.fileio import write_text_atomic
from polyhead.interrupt import sigint_handler
from polyhead.modeldir import save_training_card
from polyhead.modeling.device import resolve_device
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.runtime import check_precision
from polyhead.training import calibrate, fewshot, plan, preserve
from polyhead.training.cache import EmbeddingCache
from polyhead.training.callbacks import (
    DevEvaluation,
    LossLog,
    ProgressBar,
    TrainerCallback,
    log_renderable,
    restore_training_checkpoint,
    save_training_checkpoint,
)
from polyhead.training.checkpoint import RECOVER, WRITE_ERRORS, latest_checkpoint, write_failed
from polyhead.training.distributed import DistContext, create_accelerator
from polyhead.training.loop import EpochStart, StageRun, StepEnd, train_stage
from polyhead.training.losses import build_weighting
from polyhead.training.metrics_log import MetricsLog
from polyhead.training.results import (
    ShardAudit,
    SplitEvaluator,
    check_finite,
    metrics_summary,
    read_sts,
    run_results,
    write_results,
)
from polyhead.training.rundir import RUN_MARKER, check_same_config, prepare_output, refuse_non_empty
from polyhead.training.sampling import TaskSampler
from polyhead.training.setup import TaskData, build_model, build_specs, load_all_data, task_groups
from polyhead.training.state import TrainState
from polyhead.training.step import TrainStep

__all__ = ["Trainer", "TrainerCallback", "TrainingInterrupted", "check_same_config", "refuse_non_empty"]

logger = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C: a checkpoint was saved; the message says how to resume (``summary``: where it
    stopped, without the how-to, for the CLI, which prints the whole command instead)."""

    def __init__(self, summary: str) -> None:
        super().__init__(f"{summary}; resume with the same config and overrides (resume=True)")
        self.summary = summary


class Trainer:
    """Owns setup, the loop, evaluation and checkpoints; nothing in it is specific to one model.

    Ways to drive it: ``run()`` (``stop_after_steps`` stops as Ctrl-C does); ``callbacks=[...]`` to watch
    or time stages, epochs and steps of a run; or, without a run directory, ``setup()``, then
    ``run, state = start_stage(0)`` and iterate :func:`polyhead.training.loop.train_stage` yourself.

    Args:
        config: The validated config.
        output_dir: The run directory.
        resume: Continue from the run directory's latest checkpoint.
        show_progress: Show a progress bar per epoch.
        report: Where progress messages and tables go (default: the log).
        callbacks: Hooks called at each stage, epoch and step (see :class:`TrainerCallback`).
    """

    def __init__(
        self,
        config: Config,
        output_dir: str | Path,
        resume: bool = False,
        show_progress: bool = False,
        report: Callable[[Any], None] | None = None,
        callbacks: Sequence[TrainerCallback] = (),
    ) -> None:
        self.config = config
        self.out = Path(output_dir)
        self.resume = resume
        self.show_progress = show_progress
        self.report = report or log_renderable
        self.callbacks = list(callbacks)
        self.interrupted = False  # Ctrl-C seen by this process
        self.stopping = False  # Ctrl-C seen by any process, agreed at the end of a step
        self.stop_after: int | None = None
        self.dist = DistContext()
        self.accelerator: Any = None  # created by run(); setup() alone runs on the CPU
        self.global_step = 0
        # training.device checked now (one line if it isn't here), used by setup(); Accelerate's under a launcher
        self.target = resolve_device(config.training.device, "training.device")
        check_precision(config.training.precision, self.target.type)

    def setup(self) -> None:
        """Data, label lists, model, stage plan (checked), loss weighting and tokenised training groups."""
        cfg = self.config
        if cfg.training.num_threads:
            torch.set_num_threads(cfg.training.num_threads)
        self.data: dict[str, TaskData] = load_all_data(cfg)
        specs = build_specs(cfg, self.data)
        self.model: MultiTaskModel = build_model(cfg, specs)
        self.device = self.accelerator.device if self.dist.distributed else self.target
        self.model.to(self.device)
        self.dist.broadcast_parameters(self.model)  # every process starts from the main process's weights
        if self.dist.rank:
            torch.manual_seed(cfg.training.seed + self.dist.rank)  # own dropout masks per process
        self.specs = specs
        self.stages = fewshot.add_stages(cfg, plan.resolve_stages(cfg))  # few-shot tasks add their stages
        plan.check_stages(self.model, self.stages)  # every stage has something to train, before anything runs
        self.weighting = build_weighting(cfg.training.loss_weighting, {t: c.loss_weight for t, c in cfg.tasks.items()})
        self.score_scale = {t: s.task.loss_scale([ex.label for ex in self.data[t].train]) for t, s in specs.items()}
        self.groups: dict[str, EncodedGroup] = {
            g: encode_group(g, self.model.encoder, specs, {t: self.data[t].train for t in members})
            for g, members in task_groups(cfg, list(cfg.tasks)).items()
        }
        self.preserve = None
        if cfg.training.preserve_embedding is not None:  # reference vectors of the starting encoder, once
            self.preserve = preserve.prepare(
                cfg.training.preserve_embedding, self.model, self.groups, cfg.training.eval_batch_size,
                cfg.training.precision, self.out if self.accelerator is not None else None,  # setup() alone: no files
                self.resume, save=self.dist.is_main,
                pair_examples=[self.data[t].train for t, spec in specs.items() if spec.task.input == "pair"],
            )  # fmt: skip
        self.sts_pairs = read_sts(cfg)
        self.audit, t = ShardAudit(self.dist), cfg.training
        self.evaluate = SplitEvaluator(self.model, self.data, self.dist, self.audit, t.eval_batch_size, t.precision)

    # ------------------------------------------------------------------ main
    def run(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train every stage; returns the results (also written to results.json by the main process).

        Args:
            stop_after_steps: Stop as after Ctrl-C once this many optimizer steps are done: a checkpoint
                is saved and :class:`TrainingInterrupted` raised.
        """
        log_with = self.config.training.log_with
        self.accelerator = create_accelerator(log_with, self.out, cpu=self.target.type == "cpu")
        self.dist = DistContext(self.accelerator)
        if not self.dist.is_main:
            self.report = lambda item: None  # one report, from the main process
            self.show_progress = False
        fresh = not self.resume  # a new run: prepare_output found the directory empty or absent
        self.resume = prepare_output(self.out, self.resume, self.dist)
        checkpoint = latest_checkpoint(self.out) if self.resume else None
        if checkpoint is not None:
            check_same_config(self.config.model_dump(mode="json"), self.out)
        started = time.time()
        try:
            self.setup()
        except PolyheadError:  # bad data or labels: a new run that never started leaves an empty directory
            if fresh and self.dist.is_main and {p.name for p in self.out.iterdir()} <= {RUN_MARKER}:
                (self.out / RUN_MARKER).unlink(missing_ok=True)
            raise
        if self.dist.is_main and checkpoint is None:  # a resumed run keeps the file it was checked against
            dump = yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
            write_text_atomic(self.out / "config.yaml", dump)
        state = TrainState()
        if checkpoint is not None:
            state = TrainState.from_state_dict(json.loads((checkpoint / "state.json").read_text()))
            self.report(f"resuming from {checkpoint} (stage {state.stage + 1}, step {state.global_step})")
        if self.dist.distributed:
            self.report(f"{self.dist.world} processes: each trains on 1/{self.dist.world} of every batch")
        self.global_step = state.global_step
        cfg = self.config
        self.log = MetricsLog(
            self.out,
            self.accelerator,
            log_with,
            resume_lines=state.metrics_lines,
            enabled=self.dist.is_main,
            run_config=cfg.model_dump(mode="json"),
        )
        best_path = self.out / "best_model.safetensors"
        self.dev = DevEvaluation(
            self.model, self.specs, self.evaluate, cfg.training, self.sts_pairs, self.log, self.report, best_path,
            self.dist,
        )  # fmt: skip
        self.stop_after = stop_after_steps
        try:
            with sigint_handler(self.on_sigint):
                for index in range(state.stage, len(self.stages)):
                    self.run_stage(index, checkpoint if index == state.stage else None)
                    checkpoint = None
        finally:
            self.log.close()
        return self.finish(time.time() - started + state.elapsed)

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.interrupted = True
        logger.warning("interrupt received: saving a checkpoint after this step (Ctrl-C again to abort)")

    def run_stage(self, index: int, checkpoint: Path | None) -> None:
        """Set up stage ``index`` (restored from ``checkpoint`` when given), run it, keep its best epoch."""
        self.notify("on_stage_start", index)
        run, state = self.start_stage(index, checkpoint)
        self.drive(run, state)
        self.global_step = state.global_step
        self.dev.keep_best(run.stage, state)
        self.notify("on_stage_end", run, state)

    def drive(self, run: StageRun, state: TrainState) -> None:
        """React to the events of the stage's loop, in this order: report, log, checkpoint, evaluate,
        then the callbacks; stop on Ctrl-C (agreed by every process), ``stop_after_steps`` or early stopping."""
        cfg = self.config.training
        bar, losses = ProgressBar(self.show_progress), LossLog(self.log, self.dist, self.weighting)
        stage_started = time.time() - state.elapsed
        try:
            for event in train_stage(run, state):
                if isinstance(event, EpochStart):
                    if state.step_in_epoch >= run.steps_per_epoch and self.should_stop(state):
                        self.stop(run, state, stage_started)  # resumed after an epoch's last step: no step to run
                    losses.reset()
                    bar.open(run.steps_per_epoch, state.step_in_epoch, f"{run.stage.name} epoch {state.epoch + 1}")
                    self.notify("on_epoch_start", run, state)
                elif isinstance(event, StepEnd):
                    self.announce(event.unfrozen)
                    for batch in event.batches:
                        self.audit.record_seen(batch, len(run.step.groups[batch.group]))
                    losses.add(event.losses)
                    bar.update(losses.running)
                    losses.write_if_due(run, state)
                    if cfg.checkpoint_steps and state.global_step % cfg.checkpoint_steps == 0:
                        self.checkpoint(run, state)
                    self.stopping = self.dist.any(self.interrupted)  # agreed: every process stops at the same step
                    self.notify("on_step_end", run, event)
                    if self.should_stop(state):
                        bar.close()
                        self.stop(run, state, stage_started)
                else:
                    bar.close()
                    self.announce(event.unfrozen)
                    early_stop = self.dev.end_of_epoch(run.stage, state)
                    state.elapsed = time.time() - stage_started
                    self.checkpoint(run, state)
                    self.notify("on_epoch_end", run, event)
                    if early_stop:
                        self.report(f"early stopping: no improvement for {state.bad_epochs} epoch(s)")
                        break
        finally:
            bar.close()

    def should_stop(self, state: TrainState) -> bool:
        return self.stopping or (self.stop_after is not None and state.global_step >= self.stop_after)

    def stop(self, run: StageRun, state: TrainState, stage_started: float) -> None:
        state.elapsed = time.time() - stage_started
        self.checkpoint(run, state)
        raise TrainingInterrupted(f"stopped at step {state.global_step}; checkpoint saved in {self.out}")

    def notify(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def announce(self, names: list[str]) -> None:
        if names:
            self.report(f"gradual unfreezing: now training {', '.join(names)}")

    # ------------------------------------------------------------------ stages
    def start_stage(self, index: int, checkpoint: Path | None = None) -> tuple[StageRun, TrainState]:
        """Optimizer, cache, sampler and schedule of stage ``index``; its state, fresh or restored."""
        stage, cfg = self.stages[index], self.config.training
        optimizer, unfreezer, encoder_frozen = plan.stage_optimizer(self.model, stage, self.weighting, self.report)
        groups = {g: grp for g, grp in self.groups.items() if any(t in stage.tasks for t in grp.tasks)}
        if stage.pair_tasks:  # a contrastive stage: pairs drawn from the tasks' labels
            groups.update(fewshot.pair_groups(self.config, stage.pair_tasks, self.data, self.groups))
        if self.preserve is not None and self.preserve.extra is not None and not encoder_frozen:
            groups[preserve.PRESERVE] = self.preserve.extra  # general sentences: drawn like a task's data
        cache = None
        if encoder_frozen and cfg.cache_embeddings:
            cache = EmbeddingCache.build(self.model, groups, cfg.eval_batch_size, cfg.precision)
        sizes = {g: len(grp) for g, grp in groups.items()}
        sampler = TaskSampler(
            sizes, cfg.sampling.strategy, cfg.sampling.temperature, seed=cfg.seed + index, auxiliary=preserve.PRESERVE
        )
        batch_size = stage.batch_size or cfg.batch_size
        task_sizes = {g: n for g, n in sizes.items() if g != preserve.PRESERVE}  # an epoch: a pass over tasks' data
        one_pass = plan.epoch_steps(task_sizes, sampler.probabilities, batch_size, cfg.gradient_accumulation)
        steps_per_epoch = stage.steps or cfg.steps_per_epoch or one_pass
        if stage.pair_tasks and not stage.steps and steps_per_epoch < one_pass:
            logger.warning("training.steps_per_epoch=%d sets the %s stage's epochs too: %d of the %d steps its pairs "
                           "take", steps_per_epoch, stage.name, steps_per_epoch, one_pass)
        total = steps_per_epoch * stage.epochs
        sched = cfg.scheduler
        warmup = plan.warmup_steps(sched.warmup_ratio, total, sched.warmup_rule)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, plan.lr_lambda(sched.type, warmup, total, sched.warmup_rule)
        )
        step = (fewshot.ContrastiveStep if stage.pair_tasks else TrainStep)(
            model=self.model,
            specs=self.specs,
            weighting=self.weighting,
            optimizer=optimizer,
            scheduler=scheduler,
            tasks=stage.tasks,
            groups=groups,
            cache=cache,
            score_scale=self.score_scale,
            dist=self.dist,
            device=self.device,
            precision=cfg.precision,
            max_grad_norm=cfg.max_grad_norm,
            preserve=None if encoder_frozen else self.preserve,
            scaler=torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None,
        )
        run = StageRun(
            stage=stage,
            step=step,
            sampler=sampler,
            steps_per_epoch=steps_per_epoch,
            unfreezer=unfreezer,
            encoder_frozen=encoder_frozen,
            batch_size=batch_size,
            accumulation=cfg.gradient_accumulation,
            seed=cfg.seed,
            bucket_by_length=cfg.bucket_by_length if stage.bucket_by_length is None else stage.bucket_by_length,
        )
        if checkpoint is not None:
            state = restore_training_checkpoint(checkpoint, run, self.weighting, self.dist, self.config.training.seed)
        else:
            state = TrainState.start(index, self.global_step, list(groups))
            if unfreezer is not None:
                unfreezer.step(0)
        self.report(
            f"stage {stage.name}: tasks {', '.join(stage.tasks or stage.pair_tasks)}; {stage.epochs} epoch(s) x "
            f"{steps_per_epoch} steps (batch {batch_size} x accumulation {cfg.gradient_accumulation})"
            + ("; contrastive pairs from the labels" if stage.pair_tasks else "")
            + ("; encoder frozen: training heads on cached embeddings" if cache is not None else "")
        )
        return run, state

    def checkpoint(self, run: StageRun, state: TrainState) -> None:
        keep = self.config.training.keep_checkpoints
        save_training_checkpoint(self.out, run, state, self.weighting, self.log, keep, self.dist)

    # ------------------------------------------------------------------ end
    def finish(self, wall_time: float) -> dict[str, Any]:
        """Save the final model, evaluate every task on dev and test, write results.json and the curves."""
        model_dir = self.out / "model"
        check_finite(self.model)  # a diverged model is never saved as the final model
        t = self.config.training  # temperatures and thresholds fitted on dev before the save (every process)
        calibration = calibrate.calibrate_heads(self.config, self.model, self.data, t.eval_batch_size, t.precision)
        if self.dist.is_main:
            try:
                self.model.save_pretrained(model_dir, overwrite=True)
            except WRITE_ERRORS as exc:  # a full disk: the old model directory (if any) and the checkpoints stay
                raise write_failed(
                    exc, f"the final model to {model_dir}", f"the checkpoints are intact; {RECOVER}"
                ) from exc
        weights = self.weighting.weights()
        results = run_results(self.config, self.model, self.evaluate, weights, self.audit, wall_time, model_dir)
        if not self.dist.is_main:
            self.dist.wait()
            return results
        if calibration:
            results["calibration"] = calibration
            calibrate.write_reliability(self.out, calibration)
            for line in calibrate.calibration_lines(calibration):
                self.report(line)
        write_results(self.out, results, self.model, self.sts_pairs)
        # README.md with the results; the config as the user wrote it (keys left at their defaults omitted)
        save_training_card(model_dir, self.config.model_dump(mode="json", exclude_unset=True), results)
        for split in ("dev", "test"):
            if results[split]:
                self.report(metrics_summary(f"final {split}", results[split]))
        self.dist.wait()
        return results
