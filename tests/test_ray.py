"""Ray Data batch inference (polyhead.integrations.ray) on a local cluster started here (``num_cpus=2``):
predictions of every task type and embeddings equal the single-process ones, through ``map_batches`` and through
``polyhead predict|encode --input ... --ray``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from polyhead.bulk import Columns, encode_file, predict_file
from polyhead.errors import PolyheadError
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.predict import load
from test_bulk import TASKS, close, read_output, rows, write_input

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    return MultiTaskModel(encoder, TASKS).save_pretrained(tmp_path_factory.mktemp("ray") / "model")


def test_map_batches_predictions_equal_single_process_for_every_task_type(cluster, model_dir: Path):
    from polyhead.integrations.ray import PolyheadPredictor

    data = rows(60, seed=5)
    kwargs = {"model_dir": str(model_dir), "text_column": "text", "pair_columns": ("text", "b"), "batch_size": 8}
    dataset = ray.data.from_items(data, override_num_blocks=4).map_batches(
        PolyheadPredictor, fn_constructor_kwargs=kwargs, batch_format="pyarrow", batch_size=16,
        compute=ray.data.ActorPoolStrategy(size=2)
    )
    got = sorted(dataset.take_all(), key=lambda r: r["n"])
    model = load(model_dir)
    texts = model.predict([r["text"] for r in data])
    pairs = model.predict_pairs([(r["text"], r["b"]) for r in data])
    assert len(got) == 60 and {t.task.name for t in (s for s in model.tasks.values())} >= {
        "classification", "regression", "token_classification", "multilabel", "pair_classification", "pair_regression"}
    for row, source, text, pair in zip(got, data, texts, pairs, strict=True):
        assert {k: row[k] for k in ("text", "b", "key", "n")} == source  # every input column kept by default
        assert close({t: row[t] for t in TASKS}, {**text, **pair}), row["n"]


def test_map_batches_encode_keeps_chosen_columns(cluster, model_dir: Path):
    from polyhead.integrations.ray import PolyheadPredictor

    data = rows(25, seed=6)
    kwargs = {"model_dir": str(model_dir), "mode": "encode", "keep_columns": ["key"]}
    got = ray.data.from_items(data).map_batches(
        PolyheadPredictor, fn_constructor_kwargs=kwargs, batch_format="pyarrow", batch_size=10,
        compute=ray.data.ActorPoolStrategy(size=1)
    ).take_all()
    assert [r["key"] for r in got] == [r["key"] for r in data] and set(got[0]) == {"key", "embedding"}
    expected = load(model_dir).encode([r["text"] for r in data])
    np.testing.assert_allclose(np.stack([r["embedding"] for r in got]), expected, atol=1e-5)


def test_cli_path_writes_what_a_single_process_writes(cluster, model_dir: Path, tmp_path: Path):
    from polyhead.integrations.ray import run_file

    source = write_input(tmp_path / "in.parquet", rows(50, seed=7))
    columns = Columns(text="text", pair=("text", "b"), id="key", keep=("n",))
    predict_file(model_dir, source, tmp_path / "local.jsonl", columns=columns, chunk_size=16)
    result = run_file("predict", source, tmp_path / "ray.jsonl", address="auto", num_actors=1, model=model_dir,
                      columns=columns, chunk_size=16)  # fmt: skip
    assert result["total"] == 50 and not (tmp_path / "ray.jsonl.polyhead-partial").exists()
    local, distributed = read_output(tmp_path / "local.jsonl"), read_output(tmp_path / "ray.jsonl")
    assert [r["id"] for r in distributed] == [r["id"] for r in local]  # input order
    assert all(close(a, b) for a, b in zip(distributed, local, strict=True))

    txt = write_input(tmp_path / "in.txt", rows(30, seed=8))
    encode_file(model_dir, txt, tmp_path / "local.npy", chunk_size=7)
    run_file("encode", txt, tmp_path / "ray.npy", address="auto", num_actors=1, model=model_dir, chunk_size=7)
    np.testing.assert_allclose(np.load(tmp_path / "ray.npy"), np.load(tmp_path / "local.npy"), atol=1e-5)
    with pytest.raises(PolyheadError, match=r"--num-actors 2: the Ray cluster has 2 CPU\(s\); each actor takes one"):
        run_file("encode", txt, tmp_path / "r2.npy", address="auto", num_actors=2, model=model_dir)


def test_actor_errors_are_one_line(cluster, model_dir: Path, tmp_path: Path):
    from polyhead.integrations.ray import run_file

    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["fine", "also fine"], "other": [1, 2]}), source)
    with pytest.raises(PolyheadError, match=r"task\(s\) nli take pair input: give --pair-columns A,B"):
        run_file("predict", source, tmp_path / "o.jsonl", address="auto", num_actors=1, model=model_dir,
                 tasks=["nli"])  # fmt: skip
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.polyhead-partial").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"text": 5}) + "\n")
    with pytest.raises(PolyheadError, match=r"column 'text' should hold a string"):
        run_file("encode", bad, tmp_path / "o.npy", address="auto", num_actors=1, model=model_dir)
