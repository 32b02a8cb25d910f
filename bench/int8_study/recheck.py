"""Would re-running near-tie decisions in fp32 rescue the fast `dynamic` int8 graph on the `sst` heads?

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/int8_study/recheck.py --model-dir /tmp/encode-speed-model

A cascade: predict with `dynamic` int8, and re-run in fp32 every sentence where some decision's margin (top-2
logit gap; for multi-label, the distance of a logit from the 0.5 threshold) is below s x that head's mean
|int8 - fp32| logit error, measured on 500 calibration sentences (4,000-4,500, never the held-out ones).
For each s: the share of held-out sentences (2,000-4,000) re-run, the label agreement with fp32 (which
equals PyTorch's), and the throughput it implies from the two graphs' measured speeds. MODEL_DIR is the
three-head model `encode_speed.py --keep-model` writes; a `dynamic` int8 graph is made in a copy.
Writes bench/results/int8_recheck.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from encode_speed import ROOT, real_sentences  # noqa: E402


def main() -> None:
    import onnx

    from polyhead.export.onnx import quantize_with, split_matmuls
    from polyhead.onnx_backend import OnnxModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_recheck.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recheck-") as tmp:
        model_dir = Path(tmp) / "model"
        shutil.copytree(args.model_dir, model_dir)
        graph = onnx.load(str(model_dir / "model.onnx"))
        del graph.graph.value_info[:]
        encoder_mm, heads = split_matmuls(graph.graph)
        onnx.save(graph, str(model_dir / "plain.onnx"))
        quantize_with("dynamic", model_dir / "plain.onnx", model_dir / "model.int8.onnx", encoder_mm, heads)
        meta = json.loads((model_dir / "onnx.json").read_text())
        meta["files"]["int8"] = "model.int8.onnx"
        (model_dir / "onnx.json").write_text(json.dumps(meta))
        fp32, int8 = OnnxModel(model_dir, "fp32"), OnnxModel(model_dir, "int8")
        texts = real_sentences(4500)
        held_out, calibration = texts[2000:4000], texts[4000:4500]
        types = {f"task.{n}": t.type for n, t in fp32.tasks.items()}
        cal = {m: logits(m, calibration, list(types)) for m in (fp32, int8)}
        ref, fast = logits(fp32, held_out, list(types)), logits(int8, held_out, list(types))
        error = {n: float(np.abs(cal[int8][n] - cal[fp32][n]).mean()) for n in types}
        seconds = {m.variant: [] for m in (fp32, int8)}
        for _ in range(3):
            for m in (fp32, int8):
                start = time.perf_counter()
                m.predict(held_out)
                seconds[m.variant].append(time.perf_counter() - start)
    t32, t8 = (statistics.median(seconds[v]) for v in ("fp32", "int8"))
    rows = []
    for s in (0.5, 1.0, 1.25, 1.5, 2.0, 3.0):
        rerun = np.zeros(len(held_out), dtype=bool)
        for n, kind in types.items():
            rerun |= margin(kind, fast[n]) < s * error[n]
        same = [decide(k, np.where(rerun[:, None], ref[n], fast[n])) == decide(k, ref[n]) for n, k in types.items()]
        agreement = float(np.mean(np.concatenate(same)))
        rows.append({"s": s, "rerun_share": float(rerun.mean()), "label_agreement": agreement,
                     "sent_per_s": len(held_out) / (t8 + rerun.mean() * t32)})
        print(rows[-1], file=sys.stderr)
    result = {"command": "python bench/int8_study/recheck.py " + " ".join(sys.argv[1:]),
              "predict_sent_per_s": {"fp32": len(held_out) / t32, "dynamic": len(held_out) / t8},
              "mean_abs_logit_error": error, "cascade": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def logits(model, texts: list[str], names: list[str]) -> dict[str, np.ndarray]:
    """Raw head outputs (sentences, labels) per ``task.<name>``, in input order."""
    out = {n: np.zeros((len(texts), len(model.tasks[n[5:]].labels)), dtype=np.float32) for n in names}
    for batch, result in model.run(model.tokenizer.encode_batch(texts), 32, names):
        for n in names:
            out[n][batch] = result[n]
    return out


def margin(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "multilabel":  # threshold 0.5 = logit 0
        return np.abs(x).min(1)
    top = np.sort(x, 1)
    return top[:, -1] - top[:, -2]


def decide(kind: str, x: np.ndarray) -> np.ndarray:
    """One comparable decision per sentence: the class, or the whole multi-label set."""
    return (x > 0).dot(1 << np.arange(x.shape[1])) if kind == "multilabel" else x.argmax(1)


if __name__ == "__main__":
    main()
