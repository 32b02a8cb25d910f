"""Parquet files and Hugging Face datasets directories as inputs, built from ../shared/data in the test:
every task type, ClassLabel names, lazy reading, errors that name the file, column and row, training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from helpers import tiny_config, write_config  # noqa: E402
from polyhead.config import Config  # noqa: E402
from polyhead.data import arrow  # noqa: E402
from polyhead.data.readers import ReaderOptions, read_examples  # noqa: E402
from polyhead.errors import DataError  # noqa: E402
from polyhead.modeling.multitask import MultiTaskModel  # noqa: E402
from polyhead.training.trainer import Trainer  # noqa: E402

N = 40


def tsv_rows(path: Path, n: int = N) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1 : n + 1]]


def key(examples: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.text, e.label, e.words, e.text_pair) for e in examples]


def save_dataset(columns: dict[str, list[Any]], features: Any, path: Path, split: str | None = None) -> Path:
    ds = datasets.Dataset.from_dict(columns, features=features)
    (datasets.DatasetDict({split: ds}) if split else ds).save_to_disk(str(path))
    return path


def sst2_classlabel(shared: Path) -> tuple[dict[str, list[Any]], Any, list[str]]:
    rows = tsv_rows(shared / "sst2/dev.tsv")
    names = sorted({r["label"] for r in rows})
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    columns = {"sentence": [r["text"] for r in rows], "label": [names.index(r["label"]) for r in rows]}
    return columns, features, [r["label"] for r in rows]


def wnut_classlabel(shared: Path, split: str = "dev") -> tuple[dict[str, list[Any]], Any, list[Any]]:
    reference = read_examples(shared / f"wnut17/{split}.conll", "token_classification", ReaderOptions(limit=N))
    names = sorted({t for e in reference for t in e.label})
    features = datasets.Features(
        {
            "tokens": datasets.List(datasets.Value("string")),
            "ner_tags": datasets.List(datasets.ClassLabel(names=names)),  # conll2003 / wikiann style
        }
    )
    tags = [[names.index(t) for t in e.label] for e in reference]
    columns = {"tokens": [e.words for e in reference], "ner_tags": tags}
    return columns, features, reference


# ---------------------------------------------------------------------- every task type, both formats
def type_cases(shared: Path) -> dict[str, tuple[dict[str, list[Any]], ReaderOptions, list[tuple[Any, ...]]]]:
    """type -> (columns, reader options, the (text, label, words, pair) each row must give)."""
    sst = tsv_rows(shared / "sst2/dev.tsv")
    sts = tsv_rows(shared / "stsb/dev.tsv")
    mrpc = tsv_rows(shared / "mrpc/dev.tsv")
    absa = [json.loads(line) for line in (shared / "semeval2014_absa_restaurants/train.jsonl").open()][:N]
    wnut = read_examples(shared / "wnut17/dev.conll", "token_classification", ReaderOptions(limit=N))
    pair = ReaderOptions(text_column="s1", pair_column="s2", label_column="score")
    sts_columns = {"s1": [r["sentence1"] for r in sts], "s2": [r["sentence2"] for r in sts],
                   "score": [float(r["score"]) for r in sts]}
    sts_expected = [(r["sentence1"], float(r["score"]), None, r["sentence2"]) for r in sts]
    return {
        "classification": (
            {"sentence": [r["text"] for r in sst], "label": [r["label"] for r in sst]},
            ReaderOptions(text_column="sentence"),
            [(r["text"], r["label"], None, None) for r in sst],
        ),
        "multilabel": (
            {"text": [r["text"] for r in absa], "aspects": [[c["category"] for c in r["categories"]] for r in absa]},
            ReaderOptions(label_column="aspects"),
            [(r["text"], [c["category"] for c in r["categories"]], None, None) for r in absa],
        ),
        "regression": (
            {"s1": sts_columns["s1"], "score": sts_columns["score"]},
            ReaderOptions(text_column="s1", label_column="score"),
            [(t, s, None, None) for t, s, _, _ in sts_expected],
        ),
        "similarity": (sts_columns, pair, sts_expected),
        "pair_regression": (sts_columns, pair, sts_expected),
        "pair_classification": (
            {
                "a": [r["sentence1"] for r in mrpc],
                "b": [r["sentence2"] for r in mrpc],
                "label": [r["label"] for r in mrpc],
            },
            ReaderOptions(text_column="a", pair_column="b"),
            [(r["sentence1"], r["label"], None, r["sentence2"]) for r in mrpc],
        ),
        "token_classification": (
            {"tokens": [e.words for e in wnut], "tags": [e.label for e in wnut]},
            ReaderOptions(label_column="tags"),
            key(wnut),
        ),
    }


TYPES = [
    "classification",
    "multilabel",
    "regression",
    "similarity",
    "pair_regression",
    "pair_classification",
    "token_classification",
]


@pytest.mark.parametrize("task_type", TYPES)
@pytest.mark.parametrize("fmt", ["parquet", "hf"])
def test_every_task_type_reads_parquet_and_datasets(
    tmp_path: Path, shared_data: Path, task_type: str, fmt: str
) -> None:
    columns, options, expected = type_cases(shared_data)[task_type]
    if fmt == "parquet":
        path = tmp_path / "data.parquet"
        pq.write_table(pa.table(columns), path)
    else:
        path = save_dataset(columns, None, tmp_path / "ds")
    examples = read_examples(path, task_type, options)  # the format comes from the suffix / the directory
    assert key(examples) == expected
    assert examples[3].source == f"{path} row 3"
    assert len(read_examples(path, task_type, ReaderOptions(**{**vars(options), "limit": 7}))) == 7


# ---------------------------------------------------------------------- ClassLabel names, splits
def test_classlabel_columns_read_as_names(tmp_path: Path, shared_data: Path) -> None:
    columns, features, labels = sst2_classlabel(shared_data)
    path = save_dataset(columns, features, tmp_path / "sst2")
    examples = read_examples(path, "classification", ReaderOptions(text_column="sentence"))
    assert [e.label for e in examples] == labels  # 'negative' / 'positive', not 0 / 1
    # the same through Parquet: Dataset.to_parquet stores the features in the schema metadata
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(tmp_path / "sst2.parquet"))
    examples = read_examples(tmp_path / "sst2.parquet", "classification", ReaderOptions(text_column="sentence"))
    assert [e.label for e in examples] == labels


def test_classlabel_sequences_feed_token_tasks(tmp_path: Path, shared_data: Path) -> None:
    columns, features, reference = wnut_classlabel(shared_data)
    options = ReaderOptions(label_column="ner_tags")
    path = save_dataset(columns, features, tmp_path / "wnut", split="train")
    assert key(read_examples(path, "token_classification", options)) == key(reference)
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(tmp_path / "wnut.parquet"))
    assert key(read_examples(tmp_path / "wnut.parquet", "token_classification", options)) == key(reference)
    assert any(tag.startswith("B-") for e in reference for tag in e.label)  # real tags, not only 'O'


def test_datasetdict_splits(tmp_path: Path, shared_data: Path) -> None:
    columns, features, labels = sst2_classlabel(shared_data)
    ds = datasets.Dataset.from_dict(columns, features=features)
    datasets.DatasetDict({"train": ds.select(range(30)), "validation": ds.select(range(30, 40))}).save_to_disk(
        str(tmp_path / "dd")
    )
    options = {"text_column": "sentence"}
    assert len(read_examples(tmp_path / "dd", "classification", ReaderOptions(**options))) == 30
    dev = read_examples(tmp_path / "dd", "classification", ReaderOptions(**options, role="dev"))
    assert [e.label for e in dev] == labels[30:] and dev[0].source == f"{tmp_path / 'dd'} (split 'validation') row 0"
    assert len(read_examples(tmp_path / "dd", "classification", ReaderOptions(**options, split="validation"))) == 10
    no_test = r"no split 'test' in this DatasetDict \(data.split\); splits: train, validation"
    with pytest.raises(DataError, match=no_test):
        read_examples(tmp_path / "dd", "classification", ReaderOptions(**options, split="test"))
    with pytest.raises(DataError, match=r"has no test split for data.test; splits: train, validation"):
        read_examples(tmp_path / "dd", "classification", ReaderOptions(**options, role="test"))


# ---------------------------------------------------------------------- lazy reading
def test_limit_reads_only_the_first_batch(tmp_path: Path, shared_data: Path, monkeypatch) -> None:
    rows = tsv_rows(shared_data / "sst2/train.tsv", 3000)
    columns = {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
    pq.write_table(pa.table(columns), tmp_path / "big.parquet", row_group_size=500)
    save_dataset(columns, None, tmp_path / "big")
    pulled: list[int] = []

    def counting(batches):
        for batch in batches:
            pulled.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(arrow, "records", lambda where, batches, real=arrow.records: real(where, counting(batches)))
    for path in (tmp_path / "big.parquet", tmp_path / "big"):
        pulled.clear()
        assert len(read_examples(path, "classification", ReaderOptions(limit=5))) == 5
        assert pulled == [arrow.BATCH_ROWS]  # one batch of 1024 rows, not 3000
        pulled.clear()
        assert len(read_examples(path, "classification", ReaderOptions())) == 3000
        assert sum(pulled) == 3000


# ---------------------------------------------------------------------- errors name file, column, row
def test_bad_inputs_name_the_file_column_and_row(tmp_path: Path, shared_data: Path) -> None:
    columns, features, _ = sst2_classlabel(shared_data)
    path = save_dataset(columns, features, tmp_path / "sst2")
    with pytest.raises(DataError, match=rf"^{tmp_path}/sst2: column\(s\) 'text' not found; columns: sentence, label$"):
        read_examples(path, "classification", ReaderOptions())
    columns["label"][7] = -1  # datasets' "no label", as in GLUE's test splits
    path = save_dataset(columns, features, tmp_path / "unlabelled")
    with pytest.raises(DataError, match=r"unlabelled row 7: column 'label' has no label \(ClassLabel -1"):
        read_examples(path, "classification", ReaderOptions(text_column="sentence"))
    pq.write_table(pa.table({"text": ["fine", None, "x"], "label": ["a", "b", "a"]}), tmp_path / "null.parquet")
    with pytest.raises(DataError, match=r"null.parquet row 1: column 'text' should hold text, got NoneType None"):
        read_examples(tmp_path / "null.parquet", "classification")
    pq.write_table(pa.table({"text": ["fine", "x"], "label": ["a", "b"]}), tmp_path / "ok.parquet")
    with pytest.raises(DataError, match=r"ok.parquet row 0: column 'text' should hold a list"):
        read_examples(tmp_path / "ok.parquet", "token_classification", ReaderOptions(tokens_column="text"))
    pq.write_table(pa.table({"tokens": [["a", "b"]], "tags": [[0, 1]]}), tmp_path / "ints.parquet")
    with pytest.raises(DataError, match=r"ints.parquet row 0: 'tags' holds numbers without tag names"):
        read_examples(tmp_path / "ints.parquet", "token_classification", ReaderOptions(label_column="tags"))
    (tmp_path / "fake.parquet").write_text("label\ttext\n")
    with pytest.raises(DataError, match=r"fake.parquet: not a readable Parquet file"):
        read_examples(tmp_path / "fake.parquet", "classification")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match=r"plain: a directory, but not a Hugging Face datasets directory"):
        read_examples(tmp_path / "plain", "classification")
    with pytest.raises(DataError, match=r"plain: not a Hugging Face datasets directory"):
        read_examples(tmp_path / "plain", "classification", ReaderOptions(format="hf"))


def test_integer_labels_stored_as_floats_are_the_same_classes(tmp_path: Path) -> None:
    """pandas stores an integer column with a gap as float64: its 1.0 is the class "1" an int column gives,
    and a missing label (NaN) is an error, not a class "nan"."""
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), tmp_path / "ints.parquet")
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0.0, 1.0]}), tmp_path / "floats.parquet")
    assert [e.label for e in read_examples(tmp_path / "ints.parquet", "pair_classification",
                                           ReaderOptions(pair_column="text"))] == ["0", "1"]
    assert [e.label for e in read_examples(tmp_path / "floats.parquet", "classification")] == ["0", "1"]
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0.0, float("nan")]}), tmp_path / "gap.parquet")
    with pytest.raises(DataError, match=r"gap.parquet row 1: label nan in 'label' is not a class name"):
        read_examples(tmp_path / "gap.parquet", "classification")


# ---------------------------------------------------------------------- config and training
def arrow_config(tmp_path: Path, shared_data: Path, model_dir: Path) -> dict[str, Any]:
    """SST-2 rows in a DatasetDict (ClassLabel) and WNUT-17 rows in Parquet (ClassLabel sequence)."""
    columns, features, _ = sst2_classlabel(shared_data)
    ds = datasets.Dataset.from_dict(columns, features=features)
    datasets.DatasetDict({"train": ds.select(range(30)), "validation": ds.select(range(30, 40))}).save_to_disk(
        str(tmp_path / "sst2")
    )
    wnut, wnut_features, _ = wnut_classlabel(shared_data)
    datasets.Dataset.from_dict(wnut, features=wnut_features).to_parquet(str(tmp_path / "wnut.parquet"))
    config = tiny_config(tmp_path, model_dir)
    config["tasks"] = {
        "sentiment": {
            "type": "classification",
            "data": {"train": str(tmp_path / "sst2"), "dev": str(tmp_path / "sst2"), "format": "hf",
                     "text_column": "sentence", "split": {"train": "train", "dev": "validation"}},
        },
        "entities": {
            "type": "token_classification",
            "data": {"train": str(tmp_path / "wnut.parquet"), "label_column": "ner_tags", "limit": 30},
        },
    }
    return config


def test_trains_from_datasets_and_parquet(tmp_path: Path, shared_data: Path, tiny_model_dir: Path) -> None:
    config = Config.model_validate(arrow_config(tmp_path, shared_data, tiny_model_dir))
    results = Trainer(config, tmp_path / "run").run()
    assert set(results["dev"]) == {"sentiment"}  # dev read from the 'validation' split
    model = MultiTaskModel.from_pretrained(tmp_path / "run" / "model")
    assert model.tasks["sentiment"].labels == ["negative", "positive"]  # ClassLabel names, not 0 / 1
    assert "B-location" in model.tasks["entities"].labels
    pred = model.predict(["a gorgeous film"])[0]
    assert pred["sentiment"]["label"] in {"negative", "positive"}


def test_cli_reports_a_bad_split_in_one_line(tmp_path: Path, shared_data: Path, tiny_model_dir: Path) -> None:
    config = arrow_config(tmp_path, shared_data, tiny_model_dir)
    config["tasks"]["sentiment"]["data"]["split"] = {"train": "training"}
    path = write_config(tmp_path, config)
    proc = subprocess.run(
        [sys.executable, "-m", "polyhead", "train", str(path), "--output", str(tmp_path / "run"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no split 'training' in this DatasetDict (data.split); splits: train, validation" in lines[0]


def test_multilabel_classlabel_sequences(tmp_path: Path, shared_data: Path) -> None:
    absa = [json.loads(line) for line in (shared_data / "semeval2014_absa_restaurants/train.jsonl").open()][:N]
    aspects = [[c["category"] for c in r["categories"]] for r in absa]
    names = sorted({a for row in aspects for a in row})
    features = datasets.Features(
        {"text": datasets.Value("string"), "aspects": datasets.List(datasets.ClassLabel(names=names))}
    )
    columns = {"text": [r["text"] for r in absa], "aspects": [[names.index(a) for a in row] for row in aspects]}
    path = save_dataset(columns, features, tmp_path / "absa")
    assert [e.label for e in read_examples(path, "multilabel", ReaderOptions(label_column="aspects"))] == aspects


@pytest.mark.parametrize(
    ("split", "ok"),
    [("train", True), ({"dev": "validation_matched"}, True), ({"valid": "x"}, False), (3, False), ("", False)],
)
def test_config_split_values(tmp_path: Path, split: Any, ok: bool) -> None:
    from polyhead.config import DataConfig

    if ok:
        assert DataConfig(train="d", format="hf", split=split).split == split
        return
    with pytest.raises(ValueError, match=r"is not a split name or a mapping \{train\|dev\|test: split name\}"):
        DataConfig(train="d", format="hf", split=split)


def test_corrupt_parquet_is_one_data_error(tmp_path: Path, shared_data: Path) -> None:
    """Truncated files and flipped bytes (also inside strings: Parquet doesn't check UTF-8) -> DataError only."""
    import random

    rows = tsv_rows(shared_data / "sst2/dev.tsv", 200)
    pq.write_table(pa.table({"label": [r["label"] for r in rows], "text": [r["text"] for r in rows]}),
                   tmp_path / "ok.parquet", row_group_size=50)
    data = (tmp_path / "ok.parquet").read_bytes()
    rng = random.Random(0)
    outcomes = {"error": 0, "read": 0}
    for i in range(200):
        broken = bytearray(data[: rng.randrange(len(data))] if i % 2 else data)
        for _ in range(0 if i % 2 else rng.randint(1, 20)):
            broken[rng.randrange(len(broken))] = rng.randrange(256)
        (tmp_path / "bad.parquet").write_bytes(bytes(broken))
        try:
            read_examples(tmp_path / "bad.parquet", "classification")
            outcomes["read"] += 1
        except DataError as exc:
            assert str(exc).startswith(str(tmp_path / "bad.parquet")) and "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 150
