"""OpenVINO export: the graph captured with eager attention (plain MatMuls) against SDPA capture (a fused
ScaledDotProductAttention op per layer), batch 32 (issue #21).

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/ov_attention.py [--rounds 3]

The default encoder is exported twice to OpenVINO fp32 (`export_encoder("default", format="openvino")`, once with
polyhead.export.openvino.sdpa_attention disabled), then `OpenVinoModel.encode` (batch 32) runs on issue #21's
2,000 SST-2 + 2,000 STS-B sentences, the two alternating each round. Prints sentences/s per round and the cosine
of the two IRs' vectors; writes bench/results/ov_attention.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from encode_speed import issue_sentences
    from roofline import torch_rates

    import polyhead.export.openvino as ov_export
    from polyhead.export.onnx import export_encoder
    from polyhead.openvino_backend import OpenVinoModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ov_attention.json")
    args = parser.parse_args()
    texts = issue_sentences()
    tmp = Path(tempfile.mkdtemp())
    export_encoder("default", tmp / "sdpa", format="openvino")
    real = ov_export.sdpa_attention
    ov_export.sdpa_attention = lambda model: contextlib.nullcontext()  # type: ignore[assignment]
    export_encoder("default", tmp / "eager", format="openvino")
    ov_export.sdpa_attention = real
    models = {name: OpenVinoModel(tmp / name, "fp32") for name in ("eager", "sdpa")}
    for m in models.values():
        m.encode(texts[:64], batch_size=32)
    rates: dict[str, list[float]] = {name: [] for name in models}
    vectors = {}
    for _ in range(args.rounds):
        for name, model in models.items():
            started = time.perf_counter()
            vectors[name] = np.asarray(model.encode(texts, batch_size=32))
            rates[name].append(round(len(texts) / (time.perf_counter() - started), 1))
            print(name, rates[name][-1], "sent/s", flush=True)
    cos = (vectors["eager"] * vectors["sdpa"]).sum(1) / (
        np.linalg.norm(vectors["eager"], axis=1) * np.linalg.norm(vectors["sdpa"], axis=1)
    )
    result = {
        "command": "python bench/ov_attention.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "gemm_gflops": torch_rates()},
        "sentences": len(texts),
        "batch_size": 32,
        "sent_per_s_per_round": rates,
        "ratio_sdpa_over_eager_per_round": [
            round(s / e, 3) for e, s in zip(rates["eager"], rates["sdpa"], strict=True)
        ],
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
