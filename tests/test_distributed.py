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
