"""Encoding speed on this CPU: polyhead vs sentence-transformers, same model, same sentences, same process.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/encode_speed.py [--n 5000] [--runs 3]

Variants, each run alternately (run 1 of every variant, then run 2, ...), medians reported:
  st_torch        sentence-transformers `encode` (batch 32, fp32): the reference
  polyhead_fp32   SentenceEncoder.encode (token-sorted batches, token budget, eager attention, oneDNN linears)
  polyhead_fp32_mkl  the same with torch's own nn.Linear (MKL GEMMs): what the oneDNN linears gain
  polyhead_bf16   the same with precision="bf16" (only on CPUs with AVX512-BF16/AMX)
Also: cosine of every polyhead vector to sentence-transformers' (mean and min), sentences/s at batch 1 on
a smaller sample, and peak RSS. Writes bench/results/encode_speed.json.

ONNX variants (added when onnxruntime is installed): the default encoder plus three sentence heads is saved
to a temporary model directory and exported with `export_onnx(quantize="int8")`; then
  polyhead_onnx_fp32 / polyhead_onnx_int8   OnnxModel.encode (onnxruntime, no torch in the hot path)
  polyhead_onnx_int8_encoder   the encoder alone (no heads, like sentence-transformers' export), saved and
                   exported by `export_encoder("default", ..., quantize="int8", check=True)`: the CLI's
                   `polyhead export default --output DIR --quantize int8 --check --sts stsb/test.tsv`
  st_onnx          sentence-transformers `backend="onnx"` (needs optimum; recorded as unavailable if not)
The parity gate's numbers are computed on the same 5,000 sentences (cosine to polyhead torch, label
agreement of the three heads) and on the STS-B test set (Spearman). Multi-head cost: `predict` with the
three heads vs `encode` alone, torch fp32 and ONNX int8. `--quick` is a smoke run (300 sentences, 1 run).

OpenVINO variants (added when openvino is installed; issue #21): the default encoder exported by
`export_encoder("default", ..., format="openvino", quantize="int8", check=True)` (int8 calibrated on 300 SST-2
training sentences, none of them timed), then
  openvino_fp32 / openvino_bf16        OpenVinoModel.encode, precision fp32 / bf16 (the bf16 hint)
  openvino_int8 / openvino_int8_bf16   the NNCF int8 IR, the other layers fp32 / bf16
  polyhead_auto    `load(dir, "auto")`: the backend polyhead's probe chose on this machine (polyhead.cpupath)
  openvino_raw_fp32 / openvino_raw_bf16   the anchor, without polyhead: the HF transformer + mean pooling +
                   normalisation converted by `openvino.convert_model` (TorchScript tracing, its default), the HF
                   tokenizer, token-sorted batches of 32, `compiled_model(inputs)` (what issue #21 measured)
`--issue-set` times the sentences of issue #21 (2,000 SST-2 test+dev and 2,000 STS-B test sentences);
`--no-onnx` leaves the ONNX variants out. The machine's GEMM figures (GFLOP/s of torch's MKL path and oneDNN's
on MiniLM's shapes, the probe polyhead.cpupath times) are recorded under "machine".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from polyhead.runtime import configure_cpu_runtime  # noqa: E402

configure_cpu_runtime()  # as `polyhead` commands do: oneDNN's kernel caches capped (BENCHMARKS.md, Serving)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def real_sentences(n: int) -> list[str]:
    """Texts from several shared datasets (SST-5, TREC, Banking77, STS-B), in a fixed order."""
    texts: list[str] = []
    for file, column in (
        ("sst5/train.tsv", "text"),
        ("trec/train.tsv", "text"),
        ("banking77/train.tsv", "text"),
        ("stsb/train.tsv", "sentence1"),
    ):
        lines = (DATA / file).read_text(encoding="utf-8").splitlines()
        idx = lines[0].split("\t").index(column)
        texts += [line.split("\t")[idx] for line in lines[1:]]
    return texts[:n]


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from polyhead.modeling.encoder import SentenceEncoder, resolve_model_path
    from polyhead.modeling.onednn import use_plain_linears
    from polyhead.runtime import cpu_supports_bf16

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch1-n", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "encode_speed.json")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 sentences, 1 run, 50 at batch 1")
    parser.add_argument("--keep-model", type=Path,
                        help="copy the exported model directory here, the encoder-only one to <this>-encoder "
                             "(for st_onnx_speed.py)")
    parser.add_argument("--profile", type=Path, help="only profile polyhead fp32 on 1,000 sentences; JSON here")
    parser.add_argument("--issue-set", action="store_true", help="2,000 SST-2 + 2,000 STS-B sentences (issue #21)")
    parser.add_argument("--no-onnx", action="store_true", help="leave the ONNX variants out")
    args = parser.parse_args()
    if args.profile:
        profile(real_sentences(1000), args.profile)
        return
    if args.quick:
        args.n, args.runs, args.batch1_n = 300, 1, 50
    # a fresh cache: this run measures polyhead's CPU-path probes itself (polyhead.cpupath) and records them
    os.environ["POLYHEAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="encode_speed-cpupaths-")
    texts = issue_sentences() if args.issue_set else real_sentences(args.n)
    if args.quick:
        texts = texts[:300]
    path = str(resolve_model_path("default"))
    st = SentenceTransformer(path, device="cpu")
    ours = SentenceEncoder.from_pretrained("default")
    mkl = use_plain_linears(copy.deepcopy(ours))
    variants: dict[str, Callable[[list[str], int], np.ndarray]] = {
        "st_torch": lambda t, b: st.encode(t, batch_size=b, normalize_embeddings=True),
        "polyhead_fp32": lambda t, b: np.asarray(ours.encode(t, batch_size=b)),
        "polyhead_fp32_mkl": lambda t, b: np.asarray(mkl.encode(t, batch_size=b)),
    }
    if cpu_supports_bf16():
        variants["polyhead_bf16"] = lambda t, b: np.asarray(ours.encode(t, batch_size=b, precision="bf16"))
    tmp = tempfile.TemporaryDirectory(prefix="encode_speed-")
    onnx_info: dict[str, Any] = {}
    ov_info = add_openvino_variants(variants, Path(tmp.name))
    try:
        if args.no_onnx:
            raise ImportError("--no-onnx")
        onnx_info = add_onnx_variants(variants, Path(tmp.name), texts)
        if args.keep_model:  # the three-head model there, the encoder-only export next to it
            shutil.copytree(Path(tmp.name) / "model", args.keep_model, dirs_exist_ok=True)
            shutil.copytree(Path(tmp.name) / "encoder", f"{args.keep_model}-encoder", dirs_exist_ok=True)
    except ImportError as exc:
        onnx_info = {"error": f"ONNX variants skipped: {exc}"}
    try:
        st_onnx = SentenceTransformer(path, device="cpu", backend="onnx")
        variants["st_onnx"] = lambda t, b: st_onnx.encode(t, batch_size=b, normalize_embeddings=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        onnx_info["st_onnx"] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    rss_after: dict[str, float] = {}
    for fn in variants.values():  # warm-up
        fn(texts[:64], 32)
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, np.ndarray] = {}
    for r in range(args.runs):
        for name, fn in variants.items():
            seconds, outputs[name] = timed(lambda fn=fn: fn(texts, 32))
            times[name].append(seconds)
            rss_after[name] = rss_mib()
            print(f"run {r} {name}: {len(texts) / seconds:.1f} sent/s", file=sys.stderr)
    batch1: dict[str, float] = {}
    for name, fn in variants.items():
        sample = texts[: args.batch1_n]
        seconds, _ = timed(lambda fn=fn, sample=sample: np.stack([fn([t], 1)[0] for t in sample]))
        batch1[name] = len(sample) / seconds
    ref = outputs["st_torch"]
    result = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "bf16": cpu_supports_bf16(),
            "gemm_gflops": gemm_figures(),
            "linears_chosen": ours.linears,
        },
        "command": "python bench/encode_speed.py " + " ".join(sys.argv[1:]),
        "sentences": len(texts),
        "mean_tokens": float(np.mean([len(ours.tokenizer(t)["input_ids"]) for t in texts[:2000]])),
        "batch32_sent_per_s": {k: len(texts) / statistics.median(v) for k, v in times.items()},
        "batch32_runs_s": times,
        "batch1_sent_per_s": batch1,
        "cosine_to_st": {
            k: {"mean": float((v * ref).sum(1).mean()), "min": float((v * ref).sum(1).min())}
            for k, v in outputs.items()
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_variant_mib": rss_after,
        "cosine_to_polyhead_fp32": {
            k: {"mean": float((v * outputs["polyhead_fp32"]).sum(1).mean()),
                "min": float((v * outputs["polyhead_fp32"]).sum(1).min())}
            for k, v in outputs.items()
        },
        "onnx": onnx_info,
        "openvino": ov_info,
        "cpu_path_probes": json.loads((Path(os.environ["POLYHEAD_CACHE_DIR"]) / "cpu_paths.json").read_text()),
    }
    if "model" in onnx_info:
        held_out = slice(2000, 4000) if len(texts) >= 4000 else slice(len(texts) // 2, len(texts))
        result["gate"] = gate_numbers(onnx_info, {k: v[held_out] for k, v in outputs.items()}, texts[held_out])
        result["multi_head"] = multi_head_cost(onnx_info, texts[:1000], args.runs)
    onnx_info.pop("model", None)
    onnx_info.pop("onnx", None)
    base = result["batch32_sent_per_s"]["st_torch"]
    result["ratio_vs_st_torch"] = {k: v / base for k, v in result["batch32_sent_per_s"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def issue_sentences() -> list[str]:
    """Issue #21's benchmark sentences: 2,000 SST-2 (test, then dev) and 2,000 STS-B test sentences (first
    sentences, then second ones: the test set has 1,379 pairs)."""
    def column(file: str, name: str) -> list[str]:
        lines = (DATA / file).read_text(encoding="utf-8").splitlines()
        idx = lines[0].split("\t").index(name)
        return [line.split("\t")[idx] for line in lines[1:]]

    sst2 = (column("sst2/test.tsv", "text") + column("sst2/dev.tsv", "text"))[:2000]
    return sst2 + (column("stsb/test.tsv", "sentence1") + column("stsb/test.tsv", "sentence2"))[:2000]


def gemm_figures() -> dict[str, float]:
    """GFLOP/s of each fp32 linear path on MiniLM's shapes (polyhead.modeling.onednn.linear_probes, the probe
    polyhead.cpupath caches), median of five."""
    from polyhead.modeling.onednn import PROBE_REPEATS, PROBE_ROWS, linear_probes, onednn_available

    shapes = [(384, 384), (384, 1536), (1536, 384)]
    flops = sum(2 * PROBE_ROWS * k * n for k, n in shapes) * PROBE_REPEATS
    probes = linear_probes(shapes)
    if not onednn_available():
        probes.pop("onednn")
    return {name: flops / statistics.median(probe() for _ in range(5)) / 1e9 for name, probe in probes.items()}


def add_openvino_variants(variants: dict[str, Callable[[list[str], int], np.ndarray]], tmp: Path) -> dict[str, Any]:
    """The default encoder exported to OpenVINO (fp32 IR + NNCF int8), its variants, and load(dir, "auto")."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return {"error": f"OpenVINO variants skipped: {exc}"}
    from polyhead.export.onnx import export_encoder
    from polyhead.openvino_backend import OpenVinoModel, cpu_has_bf16
    from polyhead.predict import load_named

    lines = (DATA / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:301]
    calibration = [line.split("\t")[1] for line in lines]
    start = time.perf_counter()
    report = export_encoder("default", tmp / "ov", quantize="int8", check=True, texts=calibration,
                            format="openvino")
    export_s = time.perf_counter() - start
    fp32, int8 = OpenVinoModel(tmp / "ov", "fp32"), OpenVinoModel(tmp / "ov", "int8")
    variants["openvino_fp32"] = lambda t, b: fp32.encode(t, batch_size=b)
    variants["openvino_int8"] = lambda t, b: int8.encode(t, batch_size=b)
    if cpu_has_bf16():
        variants["openvino_bf16"] = lambda t, b: fp32.encode(t, batch_size=b, precision="bf16")
        variants["openvino_int8_bf16"] = lambda t, b: int8.encode(t, batch_size=b, precision="bf16")
    add_raw_openvino(variants, cpu_has_bf16())
    start = time.perf_counter()
    chosen, auto = load_named(tmp / "ov", "auto")
    variants["polyhead_auto"] = lambda t, b: np.asarray(auto.encode(t, batch_size=b))
    return {"export_s": export_s, "int8_recipe": report["int8_recipe"], "gate": report["gate"],
            "auto_choice": chosen, "auto_load_and_probe_s": time.perf_counter() - start,
            "threads": fp32.threads,
            "file_mib": {p.name: p.stat().st_size / 2**20 for p in (tmp / "ov").glob("openvino_model*.weights")}}


def add_raw_openvino(variants: dict[str, Callable[[list[str], int], np.ndarray]], bf16: bool) -> None:
    """OpenVINO without polyhead (the issue's anchor): see the module docstring."""
    import openvino as ov
    import torch
    from transformers import AutoModel, AutoTokenizer

    from polyhead.modeling.encoder import resolve_model_path

    path = str(resolve_model_path("default"))
    tokenizer, transformer = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    example = dict(tokenizer(["an example sentence", "another one"], padding=True, return_tensors="pt"))
    example.pop("token_type_ids", None)
    with torch.no_grad():
        model = ov.convert_model(Pooled().eval(), example_input=example)
    core = ov.Core()

    def runner(hint: str) -> Callable[[list[str], int], np.ndarray]:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})

        def run(texts: list[str], batch: int) -> np.ndarray:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            out = np.zeros((len(texts), 384), dtype=np.float32)
            for start in range(0, len(order), batch):
                idx = order[start: start + batch]
                enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=256,
                                return_tensors="np")
                out[idx] = compiled({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})[0]
            return out

        return run

    variants["openvino_raw_fp32"] = runner("f32")
    if bf16:
        variants["openvino_raw_bf16"] = runner("bf16")


def profile(texts: list[str], out: Path) -> None:
    """Where polyhead's fp32 encode spends its time: torch profiler, top operators by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from polyhead.modeling.encoder import SentenceEncoder

    enc = SentenceEncoder.from_pretrained("default")
    enc.encode(texts[:64])
    start = time.perf_counter()
    enc.encode(texts)
    plain_s = time.perf_counter() - start
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        enc.encode(texts)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    top = [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:12]]
    result = {"sentences": len(texts), "sent_per_s_unprofiled": len(texts) / plain_s,
              "threads": torch.get_num_threads(),
              "top_ops": top}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def add_onnx_variants(variants: dict[str, Callable[[list[str], int], np.ndarray]], tmp: Path,
                      texts: list[str]) -> dict[str, Any]:
    """Save the default encoder with three sentence heads, export fp32 + int8, add both as variants."""
    import onnxruntime  # noqa: F401 - ImportError here means "skip the ONNX variants"

    from polyhead.export.onnx import export_encoder, export_onnx
    from polyhead.onnx_backend import OnnxModel

    model = sst5_model(texts[: min(2000, len(texts) // 2)])
    directory = model.save_pretrained(tmp / "model")
    start = time.perf_counter()
    export_onnx(directory, quantize="int8")
    export_s = time.perf_counter() - start
    encoder_report = export_encoder("default", tmp / "encoder", quantize="int8", check=True,
                                    sts_file=DATA / "stsb" / "test.tsv")
    onnx = {v: OnnxModel(directory, v) for v in ("fp32", "int8")}
    onnx["int8_encoder"] = OnnxModel(tmp / "encoder", "int8")
    for variant, onnx_model in onnx.items():
        variants[f"polyhead_onnx_{variant}"] = lambda t, b, m=onnx_model: m.encode(t, batch_size=b)
    sizes = {f"{d.name}/{p.name}": p.stat().st_size / 2**20
             for d in (directory, tmp / "encoder") for p in d.glob("*.onnx")}
    return {"model": model, "onnx": onnx, "export_s": export_s, "file_mib": sizes,
            "recipes": {"model": json.loads((directory / "onnx.json").read_text())["int8_recipe"],
                        "encoder": encoder_report["int8_recipe"]},
            "encoder_export_gate": encoder_report["gate"],
            "threads": onnx["fp32"].session.get_session_options().intra_op_num_threads}


SST5 = ("very_negative", "negative", "neutral", "positive", "very_positive")


def sst5_model(train_texts: list[str]) -> Any:
    """The default encoder with three sentence heads (SST-5 classes, polarity, multi-label flags) fitted on
    ``train_texts`` over the frozen encoder: the hard case for the int8 gate."""
    import torch

    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    model = MultiTaskModel(SentenceEncoder.from_pretrained("default"), {
        "sentiment": TaskSpec("classification", list(SST5)),
        "polarity": TaskSpec("classification", ["negative", "neutral", "positive"]),
        "flags": TaskSpec("multilabel", ["negative", "positive", "strong"]),
    }).eval()
    fit_heads(model, train_texts)
    return model


def fit_heads(model: Any, texts: list[str]) -> None:
    """Train the three heads (frozen encoder) on SST-5 labels of ``texts`` (the first rows of sst5/train.tsv),
    so the gate's label agreement is measured on real decision boundaries, not random near-ties."""
    import torch

    lines = (DATA / "sst5" / "train.tsv").read_text(encoding="utf-8").splitlines()[1: len(texts) + 1]
    gold = [SST5.index(line.split("\t")[0]) for line in lines]
    assert [line.split("\t")[1] for line in lines] == texts, "fit_heads expects the first SST-5 training texts"
    pooled = torch.as_tensor(np.asarray(model.encoder.encode(texts, normalize=False)))
    y = torch.tensor(gold)
    targets = {"sentiment": y, "polarity": torch.tensor([0, 0, 1, 2, 2])[y],
               "flags": torch.stack([(y <= 1), (y >= 3), (y == 0) | (y == 4)], 1).float()}
    features = {"pooled_embedding": pooled, "sentence_embedding": pooled}
    params = [p for name in targets for p in model.heads[name].parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(300):
        out = model.run_heads(features, list(targets))
        loss = (torch.nn.functional.cross_entropy(out["sentiment"], targets["sentiment"])
                + torch.nn.functional.cross_entropy(out["polarity"], targets["polarity"])
                + torch.nn.functional.binary_cross_entropy_with_logits(out["flags"], targets["flags"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def gate_numbers(info: dict[str, Any], outputs: dict[str, np.ndarray], texts: list[str]) -> dict[str, Any]:
    """The parity gate's measures on the benchmark sentences and STS-B test, per ONNX variant."""
    from polyhead.export.onnx import agreement, gate_failure, labels_of, sts_points

    model, ref = info["model"], outputs["polyhead_fp32"]
    ref_labels = labels_of(model.predict(texts), model.tasks)
    sts = DATA / "stsb" / "test.tsv"
    # variant -> (embeddings, what predicts and encodes it, name of its verdict)
    candidates: dict[str, tuple[np.ndarray, Any, str]] = {
        variant: (outputs[f"polyhead_onnx_{variant}"], onnx_model, "gate_failure")
        for variant, onnx_model in info["onnx"].items()
    }
    if "polyhead_bf16" in outputs:  # torch bf16, measured against the int8 bounds (the looser ones)
        candidates["torch_bf16"] = (outputs["polyhead_bf16"], Bf16View(model), "gate_failure_int8_bounds")
    out: dict[str, Any] = {}
    for variant, (emb, other, verdict) in candidates.items():
        cos = (emb * ref).sum(1)
        res: dict[str, Any] = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
        labels = labels_of(other.predict(texts), other.tasks)  # none for the encoder alone: embeddings and STS only
        res.update(agreement(labels, ref_labels if labels else []))
        if sts.is_file():
            res["sts_spearman_torch"], res["sts_spearman_onnx"] = sts_points(model, other, sts)
        res[verdict] = gate_failure(variant if variant in info["onnx"] else "int8", res)
        out[variant] = res
    return out


class Bf16View:
    """A torch model's ``encode`` and ``predict`` in bf16 (for the gate's measures)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, precision="bf16"))

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.model.predict(texts, precision="bf16")  # type: ignore[no-any-return]


def multi_head_cost(info: dict[str, Any], texts: list[str], runs: int) -> dict[str, Any]:
    """Seconds for predict() with the three heads vs encode() alone (alternating, medians)."""
    backends = {"torch_fp32": info["model"], "onnx_int8": info["onnx"]["int8"]}
    times: dict[str, list[float]] = {}
    for _ in range(max(runs, 3)):
        for name, m in backends.items():
            for op in ("encode", "predict"):
                seconds, _ = timed(lambda m=m, op=op: getattr(m, op)(texts))
                times.setdefault(f"{name}.{op}", []).append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"sentences": len(texts), "median_s": med,
            "predict_over_encode": {n: med[f"{n}.predict"] / med[f"{n}.encode"] for n in backends}}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
