"""`--input FILE --output FILE` errors: one line naming the file and line (or row), the column or the option,
exit status 2, and nothing written; plus the CLI's own output of a streaming run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from test_cli_encode_predict import assert_user_error, run_main


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    tasks = {"topic": TaskSpec("classification", ["a", "b"]), "nli": TaskSpec("pair_classification", ["y", "n"])}
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32)
    return MultiTaskModel(encoder, tasks).save_pretrained(tmp_path_factory.mktemp("bulk-errors") / "model")


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def predict(capsys, monkeypatch, model_dir: Path, source: Path, *extra: str, output: str = "out.jsonl"):
    out = source.parent / output
    result = run_main(capsys, monkeypatch, "predict", str(model_dir), "--input", str(source), "--output", str(out),
                      *extra)  # fmt: skip
    return result, out


def test_bad_rows_name_the_file_and_line(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    cases = [
        ("a.jsonl", '{"text": "fine"}\n\n{"text": "fine", \n', "a.jsonl:3: not valid JSON"),
        ("b.jsonl", '{"text": "fine"}\n["a list"]\n', "b.jsonl:2: each line must be a JSON object, got list"),
        ("c.jsonl", '{"text": "fine"}\n{"txt": "typo"}\n', "c.jsonl:2: no 'text' field; fields: txt"),
        ("d.jsonl", '{"text": 42}\n', "d.jsonl:1: column 'text' should hold a string or a list of words, got 42"),
        ("e.csv", "text,n\nfine,1\n\"two\nlines\",2\nthree,fields,here\n", "e.csv:5: 3 fields, but the header names 2"),
        ("f.txt", b"fine\n\xff\xfe bad\n", "f.txt:2: not UTF-8 text"),
        ("g.csv", "", "g.csv is empty: the first line must name the columns"),
        # an empty text is named by its line, not by its place in a chunk
        ("h.tsv", "text\tn\nfine\t1\nok\t2\n \t3\n", "h.tsv:4: empty text in column 'text'"),
    ]
    for name, content, message in cases:
        result, out = predict(capsys, monkeypatch, model_dir, write(tmp_path / name, content))
        assert_user_error(result, message)
        assert not out.exists() and not (tmp_path / "out.jsonl.polyhead-partial").exists(), name


def test_bad_columns_and_rows_in_parquet_name_the_column_and_row(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["fine", None, "x"], "b": ["1", "2", "3"]}), source)
    result, _ = predict(capsys, monkeypatch, model_dir, source, "--text-column", "body")
    assert_user_error(result, "in.parquet: column(s) 'body' not found; columns: text, b")
    result, _ = predict(capsys, monkeypatch, model_dir, source, "--keep-columns", "b,c", "--overwrite")
    assert_user_error(result, "column(s) 'c' not found")
    result, _ = predict(capsys, monkeypatch, model_dir, source, "--resume")
    assert_user_error(result, "in.parquet row 1: column 'text' should hold a string or a list of words, got None")
    csv_source = write(tmp_path / "in.csv", "body,b\nhello,1\n")
    result, _ = predict(capsys, monkeypatch, model_dir, csv_source, output="o2.jsonl")
    assert_user_error(result, "in.csv: column(s) 'text' not found; columns: body, b")


def test_option_errors(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    source = write(tmp_path / "in.txt", "hello\nworld\n")
    jsonl = write(tmp_path / "in.jsonl", json.dumps({"text": "hi", "b": "ho", "id": 1}) + "\n")
    cases = [
        (["predict", str(model_dir), "--output", "x.jsonl"], "--output needs --input FILE"),
        (["predict", str(model_dir), "--input", str(source)], "needs --output FILE"),
        (["predict", str(model_dir), "hi", "--input", str(source), "--output", "x.jsonl"],
         "--input streams a file to --output: TEXT is for texts given as arguments / --file"),
        (["predict", str(model_dir), "--input", str(source), "--output", "x.jsonl", "--json"], "--json is for texts"),
        (["encode", "--input", str(source), "--output", "x.npy", "--out", "y.npy"], "--out is for texts"),
        (["encode", "hi", "--ray", "auto"], "--ray works with --input FILE --output FILE"),
        (["predict", str(model_dir), "hi", "--resume"], "--resume works with --input FILE --output FILE"),
        (["predict", str(model_dir), "--input", str(tmp_path / "in.xml"), "--output", "x.jsonl"],
         "unknown file type '.xml'; valid: .txt, .jsonl, .csv, .tsv, .parquet"),
        (["predict", str(model_dir), "--input", str(tmp_path / "nope.txt"), "--output", "x.jsonl"], "no such file"),
        (["predict", str(model_dir), "--input", str(source), "--output", str(tmp_path / "x.csv")],
         "unknown output type '.csv'; valid: .jsonl, .parquet, .npy"),
        (["predict", str(model_dir), "--input", str(source), "--output", str(tmp_path / "x.npy")],
         "predictions go to .jsonl or .parquet"),
        (["predict", str(model_dir), "--input", str(source), "--output", str(tmp_path), ], "unknown output type"),
        (["predict", str(model_dir), "--input", str(source), "--output", "x.jsonl", "--text-column", "t"],
         "a .txt file has one text per line and no columns"),
        (["predict", str(model_dir), "--input", str(jsonl), "--output", str(tmp_path / "x.jsonl"), "--tasks", "nli"],
         "task(s) nli take pair input: give --pair-columns A,B"),
        (["predict", str(model_dir), "--input", str(jsonl), "--output", str(tmp_path / "x.jsonl"),
          "--pair-columns", "text"], "--pair-columns 'text': name two columns, A,B"),
        (["predict", str(model_dir), "--input", str(jsonl), "--output", str(tmp_path / "x.jsonl"),
          "--keep-columns", "id"], "--keep-columns id: the output already has a field of that name"),
        (["encode", "--model", str(model_dir), "--input", str(jsonl), "--output", str(tmp_path / "x.npy"),
          "--keep-columns", "b"], "a .npy file holds only the vectors"),
        (["predict", str(model_dir), "--input", str(source), "--output", "x.jsonl", "--ray", "local",
          "--resume"], "--resume is for runs in this process"),
    ]
    for args, message in cases:
        assert_user_error(run_main(capsys, monkeypatch, *args), message)
    assert not list(tmp_path.glob("x.*")) and not Path("x.jsonl").exists()


def test_cli_streaming_run_prints_rows_and_ids(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    lines = [json.dumps({"a": f"x{i}", "b": "y", "k": i}) + "\n" for i in range(5)]
    source = write(tmp_path / "in.jsonl", "".join(lines))
    result, out = predict(capsys, monkeypatch, model_dir, source, "--pair-columns", "a,b", "--id-column", "k")
    assert result.returncode == 0, result.stderr
    assert "5 rows -> " in result.stdout
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == list(range(5)) and all(set(r) == {"id", "nli"} for r in got)


def test_ray_without_the_ray_extra(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what Python does for a module that can't be imported
    source = write(tmp_path / "in.txt", "hello\n")
    result, out = predict(capsys, monkeypatch, model_dir, source, "--ray", "local")
    assert_user_error(result, "--ray needs ray, which is not installed: pip install 'polyhead[ray]'")
    assert not out.exists() and not (tmp_path / "out.jsonl.polyhead-partial").exists()


def test_parquet_output_without_pyarrow(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    source = write(tmp_path / "in.txt", "hello\n")
    result, out = predict(capsys, monkeypatch, model_dir, source, output="out.parquet")
    assert_user_error(result, "writing Parquet needs pyarrow, which is not installed: pip install 'polyhead[datasets]'")
    assert not out.exists() and not (tmp_path / "out.parquet.polyhead-partial").exists()
