"""DistContext collectives, and real multi-process training runs through `accelerate launch` (gloo on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_model_dir
from helpers import interruptible, tiny_config, write_config
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.distributed import DistContext


def test_single_process_context_is_noop() -> None:
    ctx = DistContext()
    assert ctx.is_main and not ctx.distributed
    assert ctx.shard([1, 2, 3]) == [1, 2, 3]
    assert ctx.gather_objects([("a", "b")]) == [("a", "b")]
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    ctx.average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    ctx.wait()


def test_shards_partition_the_batch() -> None:
    class S:
        num_processes = 2

        def __init__(self, r: int) -> None:
            self.process_index = r

    batch = list(range(7))
    a, b = DistContext(S(0)).shard(batch), DistContext(S(1)).shard(batch)
    assert sorted(a + b) == batch and not set(a) & set(b)
    assert DistContext(S(0)).is_main and not DistContext(S(1)).is_main


def _worker(rank: int, port: int, out: str) -> None:
    import json
    import os

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    os.environ["ACCELERATE_USE_CPU"] = "true"
    ctx = DistContext.create(cpu=True)
    shard = ctx.shard(list(range(6)))
    p = torch.nn.Parameter(torch.zeros(2, 2))
    p.grad = torch.full((2, 2), float(rank + 1))
    ctx.average_gradients([p], local_weight=0.5)
    got = ctx.gather_objects([(rank, i) for i in shard])
    ctx.wait()
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"world": ctx.world, "grad": p.grad.tolist(), "gathered": got}, f)
    # gloo's threads left to the interpreter's exit aborted a worker once ("terminate called without an
    # active exception", SIGABRT): the group is shut down before the process ends
    torch.distributed.destroy_process_group()


def test_two_gloo_processes(tmp_path) -> None:
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "r")
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    for rank in (0, 1):
        with open(f"{out}.{rank}") as f:
            r = json.load(f)
        assert r["world"] == 2
        assert r["grad"] == [[1.5, 1.5], [1.5, 1.5]]  # (1 + 2) / 2 on both processes
        pairs = sorted(tuple(x) for x in r["gathered"])
        assert sorted(i for _, i in pairs) == list(range(6))  # every example exactly once


# ---------------------------------------------------------------- real 2-process training runs
# Each run starts `accelerate launch` with two CPU (gloo) processes of `polyhead train`. The encoder and
# heads have no dropout, so one process on the global batch and two processes on half batches each
# must give the same weights up to float summation order: tolerance 1e-4 on every weight.


@pytest.fixture(scope="module")
def no_dropout_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    model_dir = make_tiny_model_dir(root / "encoder", dropout=0.0)
    config = tiny_config(root, model_dir, epochs=2, steps_per_epoch=4, checkpoint_steps=2, keep_checkpoints=10)
    for task in config["tasks"].values():
        task["head"] = {"dropout": 0.0}
    for task in ("topic", "sentiment"):  # 8 sentences in batches of 7: the 1-example batch leaves rank 1 empty
        config["tasks"][task]["data"]["limit"] = 8
    config["training"]["log_with"] = ["tensorboard"]  # a tracker must not end the process group before the end
    config["training"]["max_grad_norm"] = 1.0
    config["training"]["batch_size"] = 7  # odd: shards of 4 and 3, so a plain mean of shard losses would be wrong
    return write_config(root, config)


def train(config: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "polyhead", "train", str(config), "--output", str(out), "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def weights(run: Path) -> dict[str, torch.Tensor]:
    model = MultiTaskModel.from_pretrained(run / "model")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def one_process_run(no_dropout_config: Path) -> Path:
    out = no_dropout_config.parent / "one"
    proc = train(no_dropout_config, out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_two_processes_split_the_work_and_match_one_process(no_dropout_config: Path, one_process_run: Path) -> None:
    out = no_dropout_config.parent / "two"
    proc = train(no_dropout_config, out, "--num-processes", "2")
    assert proc.returncode == 0, proc.stderr
    two = json.loads((out / "results.json").read_text())
    one = json.loads((one_process_run / "results.json").read_text())
    shares = two["processes"]
    assert shares["count"] == 2 and one["processes"]["count"] == 1
    # each process trained on its own half of every batch: disjoint shards covering what one process saw
    assert all(n > 0 for n in shares["train_examples_seen"])
    assert shares["train_examples_seen_by_several"] == 0
    assert sum(shares["train_examples_seen"]) == one["processes"]["train_examples_seen"][0]
    # evaluation: both processes predicted, every dev/test example counted exactly once
    for task, splits in shares["eval_examples"].items():
        for split, counts in splits.items():
            assert len(counts) == 2 and min(counts) > 0, (task, split, counts)
            assert [sum(counts)] == one["processes"]["eval_examples"][task][split]
    assert max_weight_difference(out, one_process_run) < 1e-4
    for task, metrics in one["dev"].items():
        for name, value in metrics.items():
            assert two["dev"][task][name] == pytest.approx(value, abs=1e-6), (task, name)
    # only the main process wrote: one metrics line per log call, as in one process
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len(
        (one_process_run / "metrics.jsonl").read_text().splitlines()
    )
    assert not list(out.glob(".write-test*"))


def test_two_process_checkpoint_resumes_in_one_process(no_dropout_config: Path, one_process_run: Path) -> None:
    out = no_dropout_config.parent / "two-then-one"
    # the main process dies while writing step 6's checkpoint; the launcher stops the other one
    crashed = train(no_dropout_config, out, "--num-processes", "2", env={"POLYHEAD_FAULT": "checkpoint-write:6"})
    assert crashed.returncode != 0
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 4
    resumed = train(no_dropout_config, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "results.json").read_text())["processes"]["count"] == 1
    assert max_weight_difference(out, one_process_run) < 1e-4


def test_one_process_checkpoint_resumes_in_two_processes(no_dropout_config: Path, one_process_run: Path) -> None:
    out = no_dropout_config.parent / "one-then-two"
    crashed = train(no_dropout_config, out, env={"POLYHEAD_FAULT": "checkpoint-write:6"})
    assert crashed.returncode != 0
    resumed = train(no_dropout_config, out, "--resume", "--num-processes", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "results.json").read_text())["processes"]["count"] == 2
    assert max_weight_difference(out, one_process_run) < 1e-4


def test_num_processes_checks_input_before_launching(no_dropout_config: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    proc = train(no_dropout_config, tmp_path / "taken", "--num-processes", "2")
    assert proc.returncode == 2
    assert "is not empty" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_tracker_without_its_package_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from polyhead.errors import PolyheadError
    from polyhead.training.distributed import create_accelerator

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(PolyheadError, match=r"training.log_with: 'wandb' needs the wandb package"):
        create_accelerator(["tensorboard", "wandb"])


def test_ctrl_c_stops_every_process_at_one_step_with_a_checkpoint(no_dropout_config: Path, tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "polyhead", "train", str(no_dropout_config), "--output", str(out), "--quiet"]
    cmd += ["--num-processes", "2", "--set", "training.epochs=500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=interruptible)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "latest.json").is_file() and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert stderr.count("Resume with: polyhead train") == 1  # the main process says it, once
    assert f"--set training.epochs=500 --output {out} --resume --num-processes 2" in stderr
    other = subprocess.run([*cmd[:-1], "training.epochs=400", "--resume"], capture_output=True, text=True, timeout=300)
    lines = [line for line in other.stderr.splitlines() if line.strip()]  # refused once, before any process starts
    assert other.returncode == 2 and len(lines) == 1, other.stderr
    assert lines[0].startswith("error: --resume: the config differs") and "training.epochs: 500 -> 400" in lines[0]
    step = json.loads((out / "checkpoints" / "latest.json").read_text())["step"]
    assert step < 500 * 4
