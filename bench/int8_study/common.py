"""Shared pieces of the int8 study (issue #7): the `sst` model, its reference outputs, quality and speed.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/int8_study/common.py      # build (once)

Builds the model of bench/encode_speed.py (default MiniLM + three SST-5 heads trained on a frozen encoder,
`fit_heads` on the first 2,000 sentences) in $INT8_STUDY_DIR (default /tmp/int8_study), exports model.onnx
and stores PyTorch's embeddings and labels on the 2,000 held-out sentences (`real_sentences(5000)[2000:4000]`).
Calibration data, where a script needs it, comes from sentences 4,000-4,500 (never the held-out ones).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))
import encode_speed as es  # noqa: E402

EXP = Path(os.environ.get("INT8_STUDY_DIR", "/tmp/int8_study"))
MODEL = EXP / "sst" / "model"
HELD_OUT = slice(2000, 4000)
CALIBRATION = slice(4000, 4500)


def texts_all() -> list[str]:
    return es.real_sentences(5000)


def build() -> None:
    from polyhead.export.onnx import export_onnx, labels_of

    texts = texts_all()
    model = es.sst5_model(texts[:2000])
    if MODEL.exists():
        shutil.rmtree(MODEL)
    directory = model.save_pretrained(MODEL)
    export_onnx(directory)
    held = texts[HELD_OUT]
    np.save(EXP / "ref_emb.npy", np.asarray(model.encode(held)))
    (EXP / "ref_labels.json").write_text(json.dumps(labels_of(model.predict(held), model.tasks)))


def ref_labels() -> list[Any]:
    return [tuple(x) if isinstance(x, list) else x for x in json.loads((EXP / "ref_labels.json").read_text())]


def load_torch() -> Any:
    from polyhead.modeling.multitask import MultiTaskModel

    return MultiTaskModel.from_pretrained(MODEL).eval()


def session_for(path: str | Path) -> Any:
    """An OnnxModel of the study's model directory whose session runs the graph at ``path``."""
    from polyhead.onnx_backend import OnnxModel, create_session

    m = OnnxModel(MODEL, "fp32")
    m.session = create_session(Path(path), 2)
    m.outputs = [o.name for o in m.session.get_outputs()]
    m.inputs = [i.name for i in m.session.get_inputs()]
    return m


def quality(path: str | Path, torch_model: Any = None) -> dict[str, float]:
    """Cosine to PyTorch (mean, min) and label agreement on the held-out sentences; STS-B test Spearman."""
    from polyhead.export.onnx import labels_of, sts_points

    held = texts_all()[HELD_OUT]
    ref = np.load(EXP / "ref_emb.npy")
    m = session_for(path)
    emb = m.encode(held)
    cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    agree = float(np.mean([a == b for a, b in zip(labels_of(m.predict(held), m.tasks), ref_labels(), strict=True)]))
    out = {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "agree": agree}
    out["sts_torch"], out["sts_onnx"] = sts_points(torch_model or load_torch(), m, es.DATA / "stsb" / "test.tsv")
    return out


def speed(paths: dict[str, str | Path], runs: int = 3, n: int = 5000) -> dict[str, dict[str, float]]:
    """sent/s at batch 32 on the first ``n`` benchmark sentences, median of ``runs`` alternating runs;
    ratio to the variant named "fp32" when there is one."""
    texts = texts_all()[:n]
    models = {k: session_for(p) for k, p in paths.items()}
    for m in models.values():
        m.encode(texts[:64])
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(runs):
        for k, m in models.items():
            start = time.perf_counter()
            m.encode(texts, batch_size=32)
            times[k].append(time.perf_counter() - start)
    sps = {k: n / statistics.median(v) for k, v in times.items()}
    base = sps.get("fp32")
    return {k: {"sent_s": round(v, 1), "vs_fp32": round(v / base, 3) if base else float("nan")} for k, v in sps.items()}


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH.parent / "src"))
    build()
