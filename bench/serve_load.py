"""Load test of `polyhead serve` on loopback: N concurrent clients sending single-sentence /predict requests.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/serve_load.py [--model DIR] [--clients 16]
        [--requests 2000] [--rounds 3]

Starts the server twice (micro-batching on, then --no-batching) on a free 127.0.0.1 port; against each it
runs ``--rounds`` rounds of a bounded number of requests from a thread pool of ``--clients`` clients, and
records per round throughput, p50/p99 latency and errors, the medians over rounds, and the server's RSS
after warm-up and after every round (it must level off, not keep growing). Without --model it builds a
model directory on the default MiniLM encoder with untrained heads (classification, regression, token
classification): speed doesn't depend on training.
Writes bench/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
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


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0]}


def build_model(out: Path) -> Path:
    import torch

    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
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


def run_round(client: httpx.Client, url: str, clients: int, requests: int, texts: list[str]) -> dict:
    def one(i: int) -> tuple[float, int]:
        start = time.perf_counter()
        try:
            status = client.post(url + "/predict", json={"texts": [texts[i % len(texts)]]}).status_code
        except httpx.HTTPError:
            status = -1
        return time.perf_counter() - start, status

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - start
    latencies = sorted(r[0] for r in results)
    return {
        "seconds": round(elapsed, 3),
        "throughput_rps": round(requests / elapsed, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "errors": sum(1 for r in results if r[1] != 200),
    }


def run_server(
    model: Path, batching: bool, clients: int, requests: int, rounds: int, texts: list[str]
) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "polyhead", "serve", str(model), "--port", str(port)]
    cmd += [] if batching else ["--no-batching"]
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
        stats_before = client.get(url + "/stats").json()
        runs, rss = [], []
        for _ in range(rounds):
            runs.append(run_round(client, url, clients, requests, texts))
            rss.append(round(rss_mib(proc.pid), 1))
        stats = client.get(url + "/stats").json()
        return {
            "batching": batching,
            "requests_per_round": requests,
            "clients": clients,
            "rounds": runs,
            **{f"median_{k}": statistics.median(r[k] for r in runs)
               for k in ("throughput_rps", "p50_ms", "p99_ms")},
            "errors": sum(r["errors"] for r in runs),
            "server_rss_mib_before": round(rss_before, 1),
            "server_rss_mib_after_each_round": rss,
            "server_requests": stats["requests"] - stats_before["requests"],
            "server_batches": stats["batches"] - stats_before["batches"],
            "largest_batch": stats["largest_batch"],
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_load.json")
    args = parser.parse_args()
    lines = (DATA / "sst2" / "test.tsv").read_text().splitlines()[1:]
    texts = [line.split("\t", 1)[1] for line in lines]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp) / "model")
        runs = [run_server(model, batching, args.clients, args.requests, args.rounds, texts)
                for batching in (True, False)]
    result = {
        "command": "flock /tmp/polyhead-cpu.lock .venv/bin/python bench/serve_load.py "
        + " ".join(sys.argv[1:]),
        "machine": machine(),
        "model": str(args.model) if args.model else "all-MiniLM-L6-v2 + untrained heads (3 types)",
        "runs": runs,
        "batching_speedup": round(runs[0]["median_throughput_rps"] / runs[1]["median_throughput_rps"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
