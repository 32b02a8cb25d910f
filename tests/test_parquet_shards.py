"""Sharded Parquet (a directory of *.parquet files or a glob) read as one table in sorted file order, for
training data and for --input streaming; real shards written by ``datasets`` from ../shared/data in the test
(``Dataset.shard(...).to_parquet``, the Hub's ``train-0000N-of-0000M.parquet`` layout), errors naming the shard
file and the column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from helpers import tiny_config, write_config  # noqa: E402
from polyhead.bulk import encode_file, predict_file  # noqa: E402
from polyhead.config import Config, load_config  # noqa: E402
from polyhead.data.readers import ReaderOptions, read_examples  # noqa: E402
from polyhead.data.stream import Columns, InputFile  # noqa: E402
from polyhead.errors import DataError, PolyheadError  # noqa: E402
from polyhead.modeling.multitask import MultiTaskModel  # noqa: E402
from polyhead.training.setup import load_task_data  # noqa: E402
from polyhead.training.trainer import Trainer  # noqa: E402
from test_arrow_readers import key, sst2_classlabel, wnut_classlabel  # noqa: E402
from test_bulk import TASKS, read_output  # noqa: E402

SHARDS = 3


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_bulk's tiny model with text, token and pair heads."""
    from polyhead.modeling.encoder import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    return MultiTaskModel(encoder, TASKS).save_pretrained(tmp_path_factory.mktemp("shards") / "model")


def write_shards(columns: dict[str, list[Any]], features: Any, folder: Path, split: str = "train") -> list[Path]:
    """``folder/<split>-0000i-of-00003.parquet``, contiguous pieces of one Dataset (its ClassLabel features in each
    file's metadata), written last shard first so that creation order is not file order."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset.from_dict(columns, features=features)
    files = [folder / f"{split}-{i:05d}-of-{SHARDS:05d}.parquet" for i in range(SHARDS)]
    for i in reversed(range(SHARDS)):
        ds.shard(SHARDS, i, contiguous=True).to_parquet(str(files[i]))
    return files


def test_a_directory_or_a_glob_of_shards_reads_as_one_table(tmp_path: Path, shared_data: Path) -> None:
    columns, features, labels = sst2_classlabel(shared_data)
    files = write_shards(columns, features, tmp_path / "data")
    whole = tmp_path / "whole.parquet"
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(whole))
    options = ReaderOptions(text_column="sentence")
    expected = key(read_examples(whole, "classification", options))
    assert [e[1] for e in expected] == labels  # ClassLabel indices read as their names
    for spec in (tmp_path / "data", tmp_path / "data" / "train-*.parquet"):
        examples = read_examples(spec, "classification", options)
        assert key(examples) == expected  # every row, in sorted file order
    rows0 = pq.ParquetFile(files[0]).metadata.num_rows
    examples = read_examples(tmp_path / "data", "classification", options)
    assert examples[rows0 + 2].source == f"{files[1]} row 2"  # the shard and its own row
    limited = read_examples(tmp_path / "data", "classification", ReaderOptions(text_column="sentence", limit=rows0 + 3))
    assert key(limited) == expected[: rows0 + 3]


def test_token_task_shards_with_classlabel_sequences(tmp_path: Path, shared_data: Path) -> None:
    columns, features, reference = wnut_classlabel(shared_data)
    write_shards(columns, features, tmp_path / "ner")
    examples = read_examples(tmp_path / "ner" / "*.parquet", "token_classification",
                             ReaderOptions(label_column="ner_tags"))
    assert [(e.words, e.label) for e in examples] == [(e.words, e.label) for e in reference]


def test_shard_errors_name_the_file_and_column(tmp_path: Path, shared_data: Path) -> None:
    columns, features, _ = sst2_classlabel(shared_data)
    files = write_shards(columns, features, tmp_path / "data")
    options = ReaderOptions(text_column="sentence")
    pq.write_table(pa.table({"text": ["x"], "label": ["positive"]}), files[1])  # a shard with another column name
    with pytest.raises(DataError) as info:
        read_examples(tmp_path / "data", "classification", options)
    assert str(info.value) == f"{files[1]}: column(s) 'sentence' not found; columns: text, label"
    pq.write_table(pa.table({"sentence": ["fine", "  "], "label": ["positive", "negative"]}), files[1])
    with pytest.raises(DataError, match=rf"^{files[1]} row 1: empty text in 'sentence'$"):
        read_examples(tmp_path / "data", "classification", options)
    files[2].write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=rf"^{files[2]}: not a readable Parquet file"):
        read_examples(tmp_path / "data", "classification", options)
    (tmp_path / "data" / "train-notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"train-notes.txt matches but is not a .parquet file"):
        read_examples(tmp_path / "data" / "train-*", "classification", options)
    with pytest.raises(DataError, match=r"valid-\*.parquet: no file matches this pattern"):
        read_examples(tmp_path / "data" / "valid-*.parquet", "classification", options)


def test_trains_from_a_glob_and_a_directory(tmp_path: Path, shared_data: Path, tiny_model_dir: Path) -> None:
    columns, features, labels = sst2_classlabel(shared_data)
    write_shards(columns, features, tmp_path / "sst2", "train")
    write_shards(columns, features, tmp_path / "dev")
    config = tiny_config(tmp_path, tiny_model_dir, epochs=1, steps_per_epoch=2)
    sst = {"train": str(tmp_path / "sst2" / "train-*.parquet"), "dev": str(tmp_path / "dev"), "text_column": "sentence"}
    config["tasks"] = {"sst2": {"type": "classification", "data": sst}}
    cfg = Config.model_validate(config)
    data = load_task_data("sst2", cfg.tasks["sst2"], 0)
    assert [e.label for e in data.train] == labels and len(data.dev) == len(labels)
    Trainer(cfg, tmp_path / "run").run()
    assert MultiTaskModel.from_pretrained(tmp_path / "run" / "model").tasks["sst2"].labels == sorted(set(labels))
    config["tasks"]["sst2"]["data"]["train"] = str(tmp_path / "sst2" / "test-*.parquet")
    with pytest.raises(DataError, match=r"tasks.sst2.data.train: .*test-\*.parquet: no file matches this pattern"):
        load_task_data("sst2", load_config(write_config(tmp_path, config)).tasks["sst2"], 0)


# ----------------------------------------------------------------------- streaming --input
def text_shards(tmp_path: Path, shared_data: Path) -> tuple[Path, Path]:
    """(a glob of 3 shards, one Parquet file with the same rows): sst2 texts with an id column."""
    lines = (shared_data / "sst2" / "dev.tsv").read_text().splitlines()[1:31]
    table = {"text": [line.split("\t")[1] for line in lines], "key": [f"r{i}" for i in range(len(lines))]}
    write_shards(table, None, tmp_path / "in")
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table(table), whole)
    return tmp_path / "in" / "train-*.parquet", whole


def test_streaming_input_from_shards_equals_one_file(model_dir: Path, tmp_path: Path, shared_data: Path) -> None:
    glob, whole = text_shards(tmp_path, shared_data)
    columns = Columns(id="key")
    sharded = predict_file(model_dir, glob, tmp_path / "a.jsonl", columns=columns, chunk_size=7)
    single = predict_file(model_dir, whole, tmp_path / "b.jsonl", columns=columns, chunk_size=7)
    assert sharded["total"] == single["total"] == 30
    assert read_output(tmp_path / "a.jsonl") == read_output(tmp_path / "b.jsonl")
    assert [r["id"] for r in read_output(tmp_path / "a.jsonl")] == [f"r{i}" for i in range(30)]
    encode_file(model_dir, tmp_path / "in", tmp_path / "a.npy", chunk_size=8)
    encode_file(model_dir, whole, tmp_path / "b.npy", chunk_size=8)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


def test_streaming_resumes_across_shards(model_dir: Path, tmp_path: Path, shared_data: Path) -> None:
    glob, whole = text_shards(tmp_path, shared_data)
    source = InputFile(glob, Columns())
    assert source.count_rows() == 30 and len(source.files()) == SHARDS
    chunks = list(source.chunks(7))
    assert [c.start for c in chunks] == [0, 7, 14, 21, 28]
    later = list(source.chunks(7, chunks[1].start + 7, chunks[1].position))  # as a resumed run reads on
    assert [c.texts for c in later] == [c.texts for c in chunks[2:]]
    out = tmp_path / "out.jsonl"

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done >= 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_file(model_dir, glob, out, chunk_size=7, progress=stop_after_two_chunks)
    result = predict_file(model_dir, glob, out, chunk_size=7, resume=True)
    assert result["resumed_from"] == 14
    predict_file(model_dir, whole, tmp_path / "whole.jsonl", chunk_size=7)  # the same batches: the same numbers
    assert read_output(out) == read_output(tmp_path / "whole.jsonl")
    with pytest.raises(KeyboardInterrupt):
        predict_file(model_dir, glob, out, chunk_size=7, overwrite=True, progress=stop_after_two_chunks)
    shard = sorted(glob.parent.glob("*.parquet"))[2]
    pq.write_table(pa.table({"text": ["changed"]}), shard)  # one shard rewritten: the input is not the same
    with pytest.raises(PolyheadError, match=r"changed since the unfinished run started"):
        predict_file(model_dir, glob, out, chunk_size=7, resume=True, overwrite=True)


def test_streaming_errors_name_the_shard(model_dir: Path, tmp_path: Path, shared_data: Path, capsys, monkeypatch):
    from test_cli_encode_predict import assert_user_error, run_main

    glob, _ = text_shards(tmp_path, shared_data)
    shard = sorted(glob.parent.glob("*.parquet"))[1]
    pq.write_table(pa.table({"sentence": ["x"]}), shard)
    result = run_main(capsys, monkeypatch, "predict", str(model_dir), "--input", str(glob), "--output",
                      str(tmp_path / "o.jsonl"))
    assert_user_error(result, f"{shard}: column(s) 'text' not found; columns: sentence")
    pq.write_table(pa.table({"text": ["fine", None]}), shard)
    result = run_main(capsys, monkeypatch, "encode", "--input", str(glob), "--output", str(tmp_path / "o.npy"),
                      "--model", str(model_dir))
    assert_user_error(result, f"{shard} row 1: column 'text' should hold a string")
    result = run_main(capsys, monkeypatch, "encode", "--input", str(tmp_path / "none-*.parquet"), "--output",
                      str(tmp_path / "n.npy"), "--model", str(model_dir))
    assert_user_error(result, "none-*.parquet: no file matches this pattern")
