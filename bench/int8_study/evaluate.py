"""Quality and speed of int8 candidates, in one process (speeds: median of 3 alternating runs).

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/int8_study/evaluate.py fp32,dyn,bw,bwh

Each name is a graph $INT8_STUDY_DIR/NAME.onnx ("fp32" is the exported model.onnx). Writes
$INT8_STUDY_DIR/results_NAMES.json. Make candidates with quantize.py and fuse.py.
"""

from __future__ import annotations

import json
import sys

import common


def main() -> None:
    names = sys.argv[1].split(",")
    paths = {n: common.MODEL / "model.onnx" if n == "fp32" else common.EXP / f"{n}.onnx" for n in names}
    torch_model = common.load_torch()
    res: dict[str, dict[str, float]] = {}
    for name, path in paths.items():
        res[name] = common.quality(path, torch_model)
        print(name, res[name], flush=True)
    for name, numbers in common.speed(paths).items():
        res[name].update(numbers)
        print(name, res[name], flush=True)
    (common.EXP / f"results_{'_'.join(names)}.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
