"""Is load(dir, "auto") slower than load(dir, "openvino") on the same IR? The two alternate (ABBA, then BAAB) over
issue #21's 4,000 sentences, batch 32, in one process.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/auto_vs_explicit.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import issue_sentences  # noqa: E402

from polyhead.export.onnx import export_encoder  # noqa: E402
from polyhead.predict import load, load_named  # noqa: E402
from polyhead.runtime import configure_cpu_runtime  # noqa: E402


def main() -> None:
    configure_cpu_runtime()
    texts = issue_sentences()
    tmp = Path(tempfile.mkdtemp())
    export_encoder("default", tmp / "ov", format="openvino")
    models = {"explicit": load(tmp / "ov", "openvino")}
    chosen, models["auto"] = load_named(tmp / "ov", "auto")
    print("auto chose", chosen, flush=True)
    rates: dict[str, list[float]] = {"explicit": [], "auto": []}
    for model in models.values():
        model.encode(texts[:200])
    for r in range(3):
        order = ["explicit", "auto", "auto", "explicit"] if r % 2 == 0 else ["auto", "explicit", "explicit", "auto"]
        for name in order:
            start = time.perf_counter()
            models[name].encode(texts, batch_size=32)
            rates[name].append(len(texts) / (time.perf_counter() - start))
    print(json.dumps({k: [round(x) for x in v] for k, v in rates.items()}))
    print("median explicit", np.median(rates["explicit"]), "auto", np.median(rates["auto"]))


if __name__ == "__main__":
    main()
