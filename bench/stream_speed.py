"""Streaming file-to-file inference vs the in-memory path, and Ray Data 1 vs 2 actors vs one process.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/stream_speed.py memory --rows 1000000 --batch-size 1024
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/stream_speed.py speed --rows 4000 --repeats 3
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/stream_speed.py ray --rows 2000
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/stream_speed.py resume --rows 4000 --repeats 3

memory: a random tiny BERT (hidden 32, 2 layers, MiniLM's tokenizer) with three heads (classification,
  regression, multilabel); `polyhead predict --input F.jsonl --output O.jsonl` on a generated file, its RSS
  sampled every 50 ms against its progress file (max RSS per tenth of the file, peak, rows/s); then the
  in-memory path (`polyhead predict --file F.txt --json > O`) on --in-memory-rows of the same texts.
speed: the real all-MiniLM-L6-v2 with three random heads (classification, regression, multilabel) on real
  sentences (bench/encode_speed.py's), streaming (--chunk-size 1000 and the default 10000) and in-memory
  alternating, --repeats each; wall time of the whole command (model load included for both).
ray: the same model on a Parquet file: one process (torch 1 and 2 threads, model loaded, batches of 250) against
  `map_batches` with 1 and 2 actors (one CPU, so one torch thread, each): the whole run's wall time, the wall
  time of the same pipeline on a one-row file (actor start and model load), and rows / (whole - start-up).
resume: the same model and sentences, streaming in chunks of 500: an uninterrupted run against a run killed
  (SIGKILL) at a random moment after half the rows were recorded plus `--resume` to the end, alternating; the
  wall times, the rows recorded at the kill, the outputs compared byte for byte, and the overhead
  (killed + resumed) / uninterrupted - 1 (a second model load plus the unrecorded part of the killed chunk).
Writes bench/results/stream_<part>.json (or --out) with the machine's figures (CPU model, GEMM GFLOP/s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import ROOT, cpu_model, real_sentences  # noqa: E402

WORK = Path(os.environ.get("STREAM_BENCH_DIR", "/tmp/polyhead-stream-bench"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
WORDS = ["the", "food", "was", "great", "but", "service", "slow", "and", "prices", "high", "at", "this", "place",
         "in", "town", "we", "loved", "it"]  # fmt: skip


def machine() -> dict[str, Any]:
    from roofline import torch_rates

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gemm_gflops": {k: round(v, 1) for k, v in
                                                                         torch_rates().items()}}  # fmt: skip


def heads() -> dict[str, Any]:
    from polyhead.modeldir import TaskSpec

    return {"topic": TaskSpec("classification", ["a", "b", "c"]), "rating": TaskSpec("regression"),
            "aspects": TaskSpec("multilabel", ["food", "service", "price"])}  # fmt: skip


def tiny_model(path: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from polyhead.modeling.encoder import SentenceEncoder, resolve_model_path
    from polyhead.modeling.multitask import MultiTaskModel

    if (path / "model" / "polyhead.json").is_file():
        return path / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("default")))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(path / "bert"))
    tokenizer.save_pretrained(str(path / "bert"))
    encoder = SentenceEncoder.from_pretrained(path / "bert", max_length=64)
    return MultiTaskModel(encoder, heads()).save_pretrained(path / "model")


def minilm_model(path: Path) -> Path:
    import torch

    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    if not (path / "polyhead.json").is_file():
        torch.manual_seed(0)
        MultiTaskModel(SentenceEncoder.from_pretrained("default"), heads()).save_pretrained(path)
    return path


def run_sampled(args: list[str], progress: Path | None, stdout: Any = subprocess.DEVNULL) -> dict[str, Any]:
    """Run polyhead; sample RSS (and rows done, from the progress file) every 50 ms."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "polyhead", *args], env=ENV, stdout=stdout,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    samples: list[tuple[int, int]] = []
    done = 0
    while proc.poll() is None:
        try:
            if progress is not None and progress.is_file():
                done = json.loads(progress.read_text())["rows_done"]
            samples.append((done, psutil.Process(proc.pid).memory_info().rss))
        except (OSError, ValueError, KeyError, psutil.NoSuchProcess):
            pass
        time.sleep(0.05)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return {"seconds": time.perf_counter() - start, "samples": samples}


def memory(rows: int, in_memory_rows: int, batch_size: int) -> dict[str, Any]:
    model = tiny_model(WORK / "tiny")
    source, text = WORK / f"mem-{rows}.jsonl", WORK / f"mem-{in_memory_rows}.txt"
    rng = random.Random(0)
    with open(source, "w") as f, open(text, "w") as t:
        for i in range(rows):
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25)))
            f.write(json.dumps({"text": line}) + "\n")
            if i < in_memory_rows:
                t.write(line + "\n")
    out = WORK / "mem-out.jsonl"
    out.unlink(missing_ok=True)
    mib = 2**20
    batch = ["--batch-size", str(batch_size)]
    run = run_sampled(["predict", str(model), "--input", str(source), "--output", str(out), *batch],
                      WORK / "mem-out.jsonl.polyhead-partial" / "progress.json")  # fmt: skip
    deciles = {}
    for d in range(1, 11):
        in_decile = [rss for done, rss in run["samples"] if (d - 1) * rows / 10 < done <= d * rows / 10]
        deciles[f"{d * 10}%"] = round(max(in_decile) / mib) if in_decile else None
    streaming = {"rows": rows, "seconds": round(run["seconds"], 1), "rows_per_s": round(rows / run["seconds"]),
                 "peak_rss_mib": round(max(r for _, r in run["samples"]) / mib), "rss_mib_by_tenth": deciles}
    with open(WORK / "mem-out-memory.jsonl", "w") as sink:
        mem = run_sampled(["predict", str(model), "--file", str(text), "--json", *batch], None, stdout=sink)
    in_memory = {"rows": in_memory_rows, "seconds": round(mem["seconds"], 1),
                 "rows_per_s": round(in_memory_rows / mem["seconds"]),
                 "peak_rss_mib": round(max(r for _, r in mem["samples"]) / mib)}  # fmt: skip
    return {"model": "random tiny BERT (hidden 32, 2 layers), 3 heads", "batch_size": batch_size,
            "streaming": streaming, "in_memory": in_memory}  # fmt: skip


def speed(rows: int, repeats: int) -> dict[str, Any]:
    model = minilm_model(WORK / "minilm3")
    texts = real_sentences(rows)
    (WORK / "speed.txt").write_text("".join(t.replace("\n", " ").strip() + "\n" for t in texts))
    (WORK / "speed.jsonl").write_text("".join(json.dumps({"text": t.replace("\n", " ").strip()}) + "\n" for t in texts))
    variants = {
        "in_memory": lambda: ["predict", str(model), "--file", str(WORK / "speed.txt"), "--json"],
        "streaming_chunk_1000": lambda: ["predict", str(model), "--input", str(WORK / "speed.jsonl"), "--output",
                                         str(WORK / "speed-out.jsonl"), "--chunk-size", "1000", "--overwrite"],
        "streaming_chunk_10000": lambda: ["predict", str(model), "--input", str(WORK / "speed.jsonl"), "--output",
                                          str(WORK / "speed-out.jsonl"), "--overwrite"],
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):  # alternating, so load on the machine hits every variant alike
        for name, args in variants.items():
            with open(WORK / "speed-memory.jsonl", "w") as sink:
                times[name].append(run_sampled(args(), None, stdout=sink)["seconds"])
    return {"model": "all-MiniLM-L6-v2 + 3 random heads", "rows": rows, "seconds": times,
            "rows_per_s_range": {n: [round(rows / max(t)), round(rows / min(t))] for n, t in times.items()},
            "rows_per_s_median": {n: round(rows / statistics.median(t)) for n, t in times.items()}}  # fmt: skip


def run_killed(args: list[str], progress: Path, at_rows: int, delay: float) -> dict[str, Any]:
    """Run polyhead and SIGKILL it ``delay`` seconds after its progress file records ``at_rows`` rows."""
    import signal

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "polyhead", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    kill_at = None
    while proc.poll() is None:
        now = time.perf_counter()
        if kill_at is None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(progress.read_text())["rows_done"] >= at_rows:
                    kill_at = now + delay
        elif now >= kill_at:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.01)
    assert proc.returncode == -9, f"the run ended by itself (status {proc.returncode}) before it was killed"
    return {"seconds": time.perf_counter() - start, "rows_recorded": json.loads(progress.read_text())["rows_done"]}


def resume(rows: int, repeats: int) -> dict[str, Any]:
    model = minilm_model(WORK / "minilm3")
    source = WORK / "resume.jsonl"
    source.write_text("".join(json.dumps({"text": t.replace("\n", " ").strip()}) + "\n" for t in real_sentences(rows)))
    full, cut = WORK / "resume-full.jsonl", WORK / "resume-cut.jsonl"
    partial = cut.with_name(cut.name + ".polyhead-partial")
    base = ["predict", str(model), "--input", str(source), "--chunk-size", "500", "--backend", "torch"]
    rng = random.Random(0)
    runs: list[dict[str, Any]] = []
    for _ in range(repeats):  # alternating
        full.unlink(missing_ok=True)
        uninterrupted = run_sampled([*base, "--output", str(full)], None)["seconds"]
        cut.unlink(missing_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        killed = run_killed([*base, "--output", str(cut)], partial / "progress.json", rows // 2, rng.uniform(0, 1))
        resumed = run_sampled([*base, "--output", str(cut), "--resume"], None)["seconds"]
        runs.append({"uninterrupted_s": round(uninterrupted, 2), "killed_s": round(killed["seconds"], 2),
                     "rows_recorded_at_kill": killed["rows_recorded"], "resumed_s": round(resumed, 2),
                     "identical_output": full.read_bytes() == cut.read_bytes(),
                     "overhead": round((killed["seconds"] + resumed) / uninterrupted - 1, 3)})  # fmt: skip
        print(runs[-1], file=sys.stderr)
    return {"model": "all-MiniLM-L6-v2 + 3 random heads", "rows": rows, "chunk_size": 500, "runs": runs,
            "overhead_median": statistics.median(r["overhead"] for r in runs),
            "all_identical": all(r["identical_output"] for r in runs)}  # fmt: skip


def ray_part(rows: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import torch

    from polyhead.integrations.ray import PolyheadPredictor
    from polyhead.predict import load

    model_dir = minilm_model(WORK / "minilm3")
    texts = [t.replace("\n", " ").strip() for t in real_sentences(rows)]
    source, batch = WORK / "ray.parquet", 250
    pq.write_table(pa.table({"text": texts}), source, row_group_size=batch)  # one block per batch, for every actor
    single: dict[str, Any] = {}
    model = load(model_dir)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model.predict(texts[:batch])  # warm
        times = []
        for start in range(0, rows, batch):
            t0 = time.perf_counter()
            model.predict(texts[start : start + batch])
            times.append(time.perf_counter() - t0)
        single[f"threads_{threads}"] = {"rows_per_s": round(rows / sum(times), 1)}
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    result: dict[str, Any] = {"model": "all-MiniLM-L6-v2 + 3 random heads", "rows": rows, "batch": batch,
                              "single_process": single}  # fmt: skip
    one_row = WORK / "ray-1.parquet"
    pq.write_table(pa.table({"text": texts[:1]}), one_row)

    def wall(path: Path, actors: int) -> float:
        start = time.perf_counter()
        ds = ray.data.read_parquet(str(path)).repartition(target_num_rows_per_block=batch).map_batches(
            PolyheadPredictor, fn_constructor_kwargs={"model_dir": str(model_dir)}, batch_format="pyarrow",
            batch_size=batch, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)  # fmt: skip
        assert sum(out.num_rows for out in ds.iter_batches(batch_format="pyarrow", batch_size=None)) >= 1
        return time.perf_counter() - start

    for actors in (1, 2, 1, 2):  # twice each, alternating
        startup, whole = wall(one_row, actors), wall(source, actors)  # actor start + model load, then everything
        entry = result.setdefault(f"actors_{actors}", {"wall_s": [], "startup_s": [], "rows_per_s_after_startup": []})
        entry["wall_s"].append(round(whole, 1))
        entry["startup_s"].append(round(startup, 1))
        entry["rows_per_s_after_startup"].append(round(rows / (whole - startup), 1))
    ray.shutdown()
    one = statistics.median(result["actors_1"]["rows_per_s_after_startup"])
    result["ray_1_actor_vs_1_thread_time_per_row"] = round(single["threads_1"]["rows_per_s"] / one - 1, 3)
    result["callable_overhead_per_row"] = callable_overhead(model_dir, texts, batch)
    return result


def callable_overhead(model_dir: Path, texts: list[str], batch: int) -> dict[str, Any]:
    """The integration's own cost without Ray's scheduling: PolyheadPredictor on Arrow batches (columns in,
    struct columns out) against Predictor.predict on the same lists, in this process, alternating, 3 rounds."""
    import pyarrow as pa
    import torch

    from polyhead.integrations.ray import PolyheadPredictor
    from polyhead.predict import load

    torch.set_num_threads(1)
    model, wrapped = load(model_dir), PolyheadPredictor(str(model_dir))
    tables = [pa.table({"text": texts[i : i + batch]}) for i in range(0, len(texts), batch)]
    plain: list[float] = []
    arrow: list[float] = []
    for _ in range(3):
        t0 = time.perf_counter()
        for table in tables:
            model.predict(table.column("text").to_pylist())
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for table in tables:
            wrapped(table)
        arrow.append(time.perf_counter() - t0)
    return {"predict_s": [round(t, 2) for t in plain], "callable_s": [round(t, 2) for t in arrow],
            "overhead_median": round(statistics.median(arrow) / statistics.median(plain) - 1, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["memory", "speed", "ray", "resume"])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--in-memory-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="memory: texts per batch (the tiny model's speed)")
    parser.add_argument("--out", type=Path, help="result file (default: bench/results/stream_<part>.json)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.part == "memory":
        result = memory(args.rows or 1_000_000, args.in_memory_rows, args.batch_size)
    elif args.part == "speed":
        result = speed(args.rows or 4000, args.repeats)
    elif args.part == "resume":
        result = resume(args.rows or 4000, args.repeats)
    else:
        result = ray_part(args.rows or 2000)
    result = {"machine": machine(), "command": "python bench/stream_speed.py " + " ".join(sys.argv[1:]), **result}
    out = args.out or ROOT / "bench" / "results" / f"stream_{args.part}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
