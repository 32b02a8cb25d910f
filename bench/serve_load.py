"""Load test of `polyhead serve` on loopback: N concurrent clients sending single-sentence /predict requests.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/serve_load.py [--model DIR] [--clients 16] [--requests 800]

Starts the server twice (micro-batching on, then --no-batching) on a free 127.0.0.1 port, sends a
bounded number of requests from a thread pool, and records throughput, p50/p99 latency, errors and the
server's RSS before and after. Without --model it builds a model directory on the default MiniLM encoder
with untrained heads (classification, regression, token classification): speed doesn't depend on training.
Writes bench/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build_model(out: Path) -> Path:
    import torch

    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.heads import TaskSpec
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    model = MultiTaskModel(SentenceEncoder.from_pretrained("default"), {
        "topic": TaskSpec("classification", ["a", "b", "c", "d"]),
        "score": TaskSpec("regression"),
        "entities": TaskSpec("token_classification", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    })
    return model.save_pretrained(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_server(model: Path, batching: bool, clients: int, requests: int, texts: list[str]) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "polyhead", "serve", str(model), "--port", str(port)] + ([] if batching else ["--no-batching"])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=clients))
        for text in texts[:8]:  # warm-up
            client.post(url + "/predict", json={"texts": [text]})
        rss_before = rss_mib(proc.pid)

        def one(i: int) -> tuple[float, int]:
            start = time.perf_counter()
            status = client.post(url + "/predict", json={"texts": [texts[i % len(texts)]]}).status_code
            return time.perf_counter() - start, status

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - start
        stats = client.get(url + "/stats").json()
        latencies = sorted(r[0] for r in results)
        return {
            "batching": batching,
            "requests": requests,
            "clients": clients,
            "throughput_rps": requests / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "errors": sum(1 for r in results if r[1] != 200),
            "server_rss_mib_before": rss_before,
            "server_rss_mib_after": rss_mib(proc.pid),
            "server_batches": stats["batches"],
            "largest_batch": stats["largest_batch"],
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_load.json")
    args = parser.parse_args()
    lines = (DATA / "sst2" / "test.tsv").read_text().splitlines()[1:]
    texts = [line.split("\t", 1)[1] for line in lines]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp) / "model")
        runs = [run_server(model, True, args.clients, args.requests, texts),
                run_server(model, False, args.clients, args.requests, texts)]
    result = {"command": "python bench/serve_load.py " + " ".join(sys.argv[1:]), "runs": runs,
              "batching_speedup": runs[0]["throughput_rps"] / runs[1]["throughput_rps"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
