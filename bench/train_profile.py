"""Where a training step's time goes: torch.profiler over steps 21-50 of one ``train_speed.py`` mode, and the
minor page faults per step (issue 24, BENCHMARKS.md "bf16 full fine-tuning: memory kept warm").

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/train_profile.py polyhead_bf16 [steps]

Any mode of ``train_speed.MODES`` that trains the encoder (``polyhead``, ``polyhead_bf16``, ``hf_grouped``,
``hf_grouped_bf16``); prints the steps/s of the profiled steps (slowed by the profiler), the page faults and the
operators by self CPU time.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.profiler import ProfilerActivity, profile, schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_speed  # noqa: E402


def main() -> None:
    mode = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 52
    prof = profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=19, warmup=2, active=30, repeat=1))
    stamps: list[float] = []
    faults: list[int] = []

    def after_step(optimizer: Any, args: Any, kwargs: Any) -> None:  # every optimizer step, either trainer
        stamps.append(time.perf_counter())
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        prof.step()

    register_optimizer_step_post_hook(after_step)
    torch.manual_seed(0)
    prof.start()
    if mode.startswith("hf_"):
        texts, labels = train_speed.load_sentences(10**9)
        train_speed.hf_steps("group_by_length", steps, texts, labels, bf16=mode.endswith("_bf16"))
    else:
        train_speed.polyhead_steps(mode, steps)
    prof.stop()
    print(f"mode {mode}: steps 21-50 at {30 / (stamps[51] - stamps[21]):.2f} steps/s (profiled), "
          f"{(faults[51] - faults[21]) / 30:.0f} minor page faults per step")  # fmt: skip
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=45, max_name_column_width=50))


if __name__ == "__main__":
    main()
