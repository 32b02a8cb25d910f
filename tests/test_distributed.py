from __future__ import annotations

import torch

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
