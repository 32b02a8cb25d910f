"""Memory while encoding: peak RSS for N real sentences, and RSS over repeated `encode` calls.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/memory.py [--n 100000] [--calls 50] [--backends torch,onnx-int8]

Each backend runs in its own child process (so one backend's memory doesn't hide another's):
load the default encoder, encode N sentences (real sentences from /work/shared/data, repeated to reach N)
in one call, record peak RSS (VmHWM of the child's own address space: ru_maxrss would carry the
parent's high-water mark across fork+exec); then call `encode` on ``--call-size`` sentences ``--calls``
times and record RSS after every call. Growth = RSS after the last call minus RSS after the first. Writes
bench/results/memory.json. Targets (issue 7): peak < 1.5 GB for 100,000 sentences; no growth over 50 calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from polyhead.runtime import configure_cpu_runtime  # noqa: E402

configure_cpu_runtime()  # as `polyhead` commands do: oneDNN's kernel caches capped (BENCHMARKS.md, Serving)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mib() -> float:
    """High-water RSS of this process's address space (reset by exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(backend: str, model_dir: str, n: int, calls: int, call_size: int) -> dict[str, Any]:
    """Runs in the child process: returns the measurements for one backend."""
    from encode_speed import real_sentences

    base = real_sentences(20000)
    texts = [base[i % len(base)] for i in range(n)]
    start_rss = rss_mib()
    if backend == "torch":
        from polyhead.modeling.encoder import SentenceEncoder

        model: Any = SentenceEncoder.from_pretrained("default")
    else:
        from polyhead.onnx_backend import OnnxModel

        model = OnnxModel(model_dir, "int8" if backend == "onnx-int8" else "fp32")
    loaded_rss = rss_mib()
    start = time.perf_counter()
    out = model.encode(texts, batch_size=32)
    seconds = time.perf_counter() - start
    shape = list(out.shape)
    del out
    peak = peak_rss_mib()
    after: list[float] = []
    for i in range(calls):
        model.encode(texts[i * call_size % len(texts):][:call_size], batch_size=32)
        after.append(rss_mib())
    return {"backend": backend, "sentences": n, "output_shape": shape, "encode_s": seconds,
            "rss_start_mib": start_rss, "rss_loaded_mib": loaded_rss, "peak_rss_mib": peak,
            "repeated_calls": calls, "call_size": call_size, "rss_after_calls_mib": after,
            "growth_mib": (after[-1] - after[0]) if after else 0.0,
            "torch_imported": "torch" in sys.modules}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--call-size", type=int, default=1000, help="sentences per repeated call")
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.n, args.calls, args.call_size)))
        return
    results: dict[str, Any] = {"command": "python bench/memory.py " + " ".join(sys.argv[1:]), "runs": []}
    with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
        model_dir = Path(tmp) / "model"
        if any(b.startswith("onnx") for b in args.backends.split(",")):
            from polyhead.export.onnx import export_onnx
            from polyhead.modeling.encoder import SentenceEncoder
            from polyhead.modeling.multitask import MultiTaskModel

            MultiTaskModel(SentenceEncoder.from_pretrained("default"), {}).save_pretrained(model_dir)
            export_onnx(model_dir, quantize="int8")
        for backend in args.backends.split(","):
            proc = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--calls", str(args.calls),
                                   "--call-size", str(args.call_size), "--child", backend, str(model_dir)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{backend} child failed:\n{proc.stderr[-2000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{backend}: peak {run['peak_rss_mib']:.0f} MiB for {args.n} sentences in {run['encode_s']:.0f} s, "
                  f"growth over {args.calls} calls {run['growth_mib']:+.1f} MiB", file=sys.stderr)
            results["runs"].append(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
