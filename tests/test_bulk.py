"""Streaming file-to-file inference (`polyhead predict|encode --input FILE --output FILE`, polyhead.bulk).

Every input format (.txt/.jsonl/.csv/.tsv/.parquet) and output format (.jsonl/.parquet/.npy) against the
in-memory predictor, ids and carried columns, pair columns, resume after SIGKILL equal to an uninterrupted run
(with a half-written chunk left behind), and bad input as one-line errors naming file:line or row.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from polyhead.bulk import Columns, encode_file, predict_file
from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.predict import load

TASKS = {
    "topic": TaskSpec("classification", ["sports", "politics"]),
    "rating": TaskSpec("regression"),
    "ner": TaskSpec("token_classification", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    "aspects": TaskSpec("multilabel", ["food", "service"]),
    "nli": TaskSpec("pair_classification", ["yes", "no"]),
    "sts": TaskSpec("pair_regression"),
}
TEXT_TASKS = ["topic", "rating", "ner", "aspects"]
WORDS = ["alice", "went", "to", "paris", "the", "match", "was", "great", "food", "rude", "waiter", "bob"]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    return MultiTaskModel(encoder, TASKS).save_pretrained(tmp_path_factory.mktemp("bulk") / "model")


def rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))), "b": rng.choice(WORDS),
         "key": f"k{i}", "n": i * 10}
        for i in range(n)
    ]  # fmt: skip


def write_input(path: Path, data: list[dict[str, Any]]) -> Path:
    if path.suffix == ".txt":
        path.write_text("".join(r["text"] + "\n" for r in data), encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    elif path.suffix in (".csv", ".tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(data[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(data)
    else:
        pq.write_table(pa.Table.from_pylist(data), path, row_group_size=7)
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return pq.read_table(path).to_pylist()


def close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    """Same structure, same strings and labels, floats within ``tol`` (batches differ in padding)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return abs(a - b) <= tol
    return bool(a == b)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".tsv", ".parquet"])
def test_predict_every_input_format_matches_the_in_memory_predictor(model_dir: Path, tmp_path: Path, suffix: str):
    data = rows(41)
    out = tmp_path / "out.jsonl"
    result = predict_file(model_dir, write_input(tmp_path / f"in{suffix}", data), out, chunk_size=16)
    assert result["total"] == 41 and not (tmp_path / "out.jsonl.polyhead-partial").exists()
    expected = load(model_dir).predict([r["text"] for r in data], TEXT_TASKS)
    got = read_output(out)
    assert [r["id"] for r in got] == list(range(41))
    assert all(close({t: g[t] for t in TEXT_TASKS}, e) for g, e in zip(got, expected, strict=True))
    assert all(set(g) == {"id", *TEXT_TASKS} for g in got)  # pair heads need --pair-columns


def test_parquet_output_equals_jsonl_output_with_ids_kept_columns_and_pairs(model_dir: Path, tmp_path: Path):
    data = rows(30, seed=1)
    source = write_input(tmp_path / "in.parquet", data)
    columns = Columns(text="text", pair=("text", "b"), id="key", keep=("n", "b"))
    for suffix in (".jsonl", ".parquet"):
        predict_file(model_dir, source, tmp_path / f"out{suffix}", columns=columns, chunk_size=8)
    as_jsonl, as_parquet = read_output(tmp_path / "out.jsonl"), read_output(tmp_path / "out.parquet")
    assert as_jsonl == as_parquet  # same values, same field order, whatever the format
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 4  # one per chunk
    assert [r["id"] for r in as_jsonl] == [r["key"] for r in data] and [r["n"] for r in as_jsonl] == [
        r["n"] for r in data]  # fmt: skip
    assert list(as_jsonl[0]) == ["id", "n", "b", *TEXT_TASKS, "nli", "sts"]
    model = load(model_dir)
    pairs = model.predict_pairs([(r["text"], r["b"]) for r in data])
    assert all(close({"nli": g["nli"], "sts": g["sts"]}, e) for g, e in zip(as_jsonl, pairs, strict=True))


def test_words_in_jsonl_run_the_token_head_on_them(model_dir: Path, tmp_path: Path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": ["alice", "went", "to", "paris"]}) + "\n")
    predict_file(model_dir, source, tmp_path / "out.jsonl", tasks=["ner"])
    expected = load(model_dir).predict([["alice", "went", "to", "paris"]], ["ner"])
    assert close(read_output(tmp_path / "out.jsonl")[0]["ner"], expected[0]["ner"])


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".parquet"])
def test_encode_every_output_format(model_dir: Path, tmp_path: Path, suffix: str):
    data = rows(37, seed=2)
    out = tmp_path / f"vectors{suffix}"
    columns = Columns(keep=("key",)) if suffix != ".npy" else None
    encode_file(model_dir, write_input(tmp_path / "in.csv", data), out, columns=columns, chunk_size=10)
    expected = load(model_dir).encode([r["text"] for r in data])
    if suffix == ".npy":
        vectors = np.load(out)
    else:
        got = read_output(out)
        assert [r["id"] for r in got] == list(range(37)) and [r["key"] for r in got] == [r["key"] for r in data]
        vectors = np.array([r["embedding"] for r in got], dtype=np.float32)
    if suffix == ".parquet":
        assert pq.read_schema(out).field("embedding").type == pa.list_(pa.float32(), expected.shape[1])
    assert vectors.shape == expected.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


# -------------------------------------------------------------------------------------------- resume
def run_polyhead(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "polyhead", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def rows_done(work: Path) -> int:
    try:
        return int(json.loads((work / "progress.json").read_text())["rows_done"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize(("command", "suffix"), [("predict", ".jsonl"), ("predict", ".parquet"), ("encode", ".npy")])
def test_resume_after_sigkill_equals_an_uninterrupted_run(model_dir: Path, tmp_path: Path, command: str, suffix: str):
    source = write_input(tmp_path / "in.jsonl", rows(400, seed=3))
    model = [str(model_dir)] if command == "predict" else ["--model", str(model_dir)]
    common = [command, *model, "--input", str(source), "--chunk-size", "25"]
    whole, part = tmp_path / f"whole{suffix}", tmp_path / f"part{suffix}"
    assert run_polyhead(*common, "--output", str(whole)).wait(timeout=300) == 0
    work = part.with_name(part.name + ".polyhead-partial")
    proc = run_polyhead(*common, "--output", str(part))
    stop_after = random.Random().randint(25, 300)  # a random moment after at least one chunk
    deadline = time.monotonic() + 300
    while rows_done(work) < stop_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not part.exists(), "a killed run never leaves an output that looks complete"
    done = rows_done(work)
    assert 25 <= done < 400, done
    # what a kill in the middle of writing a chunk leaves beyond the recorded state: dropped on resume
    if suffix == ".jsonl":
        with open(work / "data.jsonl", "ab") as f:  # longer than what is left to write: only truncation drops it
            f.write(b'{"id": 99999, "topic": {"la' + b"x" * 2**20)
    elif suffix == ".parquet":
        (work / "parts" / f"part-{10**5 - 1:06d}.parquet").write_bytes(b"PAR1 half")
    resumed = run_polyhead(*common, "--output", str(part), "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert part.read_bytes() == whole.read_bytes() if suffix != ".parquet" else (
        pq.read_table(part).equals(pq.read_table(whole)))  # fmt: skip
    assert not work.exists()


def test_resume_refuses_other_settings_and_a_changed_input(model_dir: Path, tmp_path: Path):
    source = write_input(tmp_path / "in.jsonl", rows(20))
    out = tmp_path / "out.jsonl"
    work = tmp_path / "out.jsonl.polyhead-partial"

    def stop_after_first_chunk(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_file(model_dir, source, out, chunk_size=5, progress=stop_after_first_chunk)
    assert rows_done(work) == 5 and not out.exists()
    with pytest.raises(PolyheadError, match=r"an unfinished run left .*polyhead-partial; pass --resume to continue"):
        predict_file(model_dir, source, out, chunk_size=5)
    with pytest.raises(PolyheadError, match=r"--resume: chunk_size was 5 in the unfinished run, now 6; give the"):
        predict_file(model_dir, source, out, chunk_size=6, resume=True)
    with pytest.raises(PolyheadError, match=r"--resume: tasks was \[\] in the unfinished run, now \['topic'\]"):
        predict_file(model_dir, source, out, chunk_size=5, resume=True, tasks=["topic"])
    result = predict_file(model_dir, source, out, chunk_size=5, resume=True)
    assert result["resumed_from"] == 5 and [r["id"] for r in read_output(out)] == list(range(20))
    with pytest.raises(PolyheadError, match=r"out.jsonl already exists; pass --overwrite to replace it"):
        predict_file(model_dir, source, out)
    with pytest.raises(KeyboardInterrupt):
        predict_file(model_dir, source, out, chunk_size=5, overwrite=True, progress=stop_after_first_chunk)
    assert len(read_output(out)) == 20, "the old output stays until the new one is complete"
    with open(source, "a") as f:
        f.write(json.dumps({"text": "one more"}) + "\n")
    with pytest.raises(PolyheadError, match=r"the input .*in.jsonl changed since the unfinished run started"):
        predict_file(model_dir, source, out, chunk_size=5, resume=True, overwrite=True)


def test_the_docs_list_the_formats_the_code_reads_and_writes() -> None:
    import re

    from polyhead.bulk.writers import OUTPUT_FORMATS
    from polyhead.data.stream import FORMATS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "bulk-inference.md").read_text()
    inputs = doc.split("## Input")[1].split("## Output")[0]
    outputs = doc.split("## Output")[1].split("## Chunks")[0]
    assert set(re.findall(r"^\| `(\.\w+)`(?:, `(\.\w+)`)?", inputs, flags=re.M)) and {
        s for pair in re.findall(r"^\| `(\.\w+)`(?:, `(\.\w+)`)?", inputs, flags=re.M) for s in pair if s
    } == set(FORMATS)
    assert set(re.findall(r"^\| `(\.\w+)` \|", outputs, flags=re.M)) == set(OUTPUT_FORMATS)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_streaming_runs_on_the_onnx_backends(model_dir: Path, tmp_path: Path, backend: str):
    """The same chunks through polyhead.predict.load(dir, backend): predictions and vectors as that backend
    gives them in memory."""
    import shutil

    from polyhead.export.onnx import export_onnx

    exported = tmp_path / "model"
    shutil.copytree(model_dir, exported)
    export_onnx(exported, quantize="int8" if backend == "onnx-int8" else None)
    data = rows(23, seed=9)
    source = write_input(tmp_path / "in.parquet", data)
    predict_file(exported, source, tmp_path / "out.jsonl", backend=backend, chunk_size=10,
                 columns=Columns(pair=("text", "b")))  # fmt: skip
    encode_file(exported, source, tmp_path / "out.npy", backend=backend, chunk_size=10)
    model = load(exported, backend)
    chunks = [data[i : i + 10] for i in range(0, len(data), 10)]  # int8's activation scales are per batch
    expected = [p for c in chunks for p in model.predict_pairs([(r["text"], r["b"]) for r in c])]
    got = read_output(tmp_path / "out.jsonl")
    assert all(close({"nli": g["nli"], "sts": g["sts"]}, e) for g, e in zip(got, expected, strict=True))
    vectors = np.concatenate([model.encode([r["text"] for r in c]) for c in chunks])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), vectors, atol=1e-5)
