"""`polyhead encode` and `polyhead predict`: output, files, and one-line errors with exit status 2.

Three error cases run the real program in a subprocess (exit status, stderr, no traceback); the other
error cases call the same entry point, ``polyhead.cli.main``, in-process, and the successful runs use
Typer's runner, to keep the file fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polyhead.cli import app
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel

runner = CliRunner()
TASKS = {
    "topic": TaskSpec("classification", ["sports", "politics"]),
    "rating": TaskSpec("regression"),
    "ner": TaskSpec("token_classification", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    "aspects": TaskSpec("multilabel", ["food", "service"]),
}


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    return MultiTaskModel(encoder, TASKS).save_pretrained(tmp_path_factory.mktemp("cli") / "model")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "polyhead", *args], capture_output=True, text=True, env=env, timeout=120
    )


def run_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str):
    """``polyhead.cli.main`` in this process (same error handling as the console script)."""
    import polyhead.cli

    monkeypatch.setattr(polyhead.cli, "setup_logging", lambda *_: None)  # keep global logging untouched
    monkeypatch.setattr(sys, "argv", ["polyhead", *args])
    capsys.readouterr()
    try:
        polyhead.cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["polyhead", *args], code, out, err)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


# ----------------------------------------------------------------------- errors
def test_encode_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert_user_error(run_cli("encode", "--file", str(empty)), "empty.txt is empty")


def test_encode_non_utf8_file(tmp_path: Path, capsys, monkeypatch) -> None:
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("first line\ncafé crème\n".encode("latin-1"))
    result = run_main(capsys, monkeypatch, "encode", "--file", str(latin))
    assert_user_error(result, "latin1.txt:2", "not UTF-8")


def test_encode_missing_file(tmp_path: Path, capsys, monkeypatch) -> None:
    result = run_main(capsys, monkeypatch, "encode", "--file", str(tmp_path / "nope.txt"))
    assert_user_error(result, "no such file")
    assert_user_error(run_main(capsys, monkeypatch, "encode", "--file", str(tmp_path)), "a directory; give a text file")


def test_lines_from_a_pipe() -> None:
    """--file /dev/stdin or <(...): a pipe is read like a file."""
    import os

    from polyhead.data.lines import read_text_lines

    read_end, write_end = os.pipe()
    os.write(write_end, b"first\n\nsecond\n")
    os.close(write_end)
    try:
        assert read_text_lines(Path(f"/dev/fd/{read_end}")) == ["first", "second"]
    finally:
        os.close(read_end)


def test_encode_no_texts(capsys, monkeypatch) -> None:
    assert_user_error(run_main(capsys, monkeypatch, "encode"), "no texts given")


def test_encode_unknown_pooling(tiny_model_dir: Path, capsys, monkeypatch) -> None:
    args = ["encode", "--model", str(tiny_model_dir), "--pooling", "median", "hi"]
    result = run_main(capsys, monkeypatch, *args)
    assert_user_error(result, "'median'", "mean, cls, max, mean_sqrt_len")


def test_encode_missing_model(tmp_path: Path, capsys, monkeypatch) -> None:
    result = run_main(capsys, monkeypatch, "encode", "--model", str(tmp_path / "nope"), "hi")
    assert_user_error(result, "is not a local directory, and not a Hugging Face Hub name")


def test_encode_directory_that_is_not_a_model(tmp_path: Path, capsys, monkeypatch) -> None:
    result = run_main(capsys, monkeypatch, "encode", "--model", str(tmp_path), "hi")
    assert_user_error(result, "is not a model directory")


def test_encode_bad_option_value(capsys, monkeypatch) -> None:
    assert_user_error(run_main(capsys, monkeypatch, "encode", "--batch-size", "0", "hi"), "batch-size")


def test_encode_hub_name_offline() -> None:
    assert_user_error(
        run_cli("encode", "--model", "sentence-transformers/all-mpnet-base-v2", "hi"),
        "sentence-transformers/all-mpnet-base-v2",
        "is not in the Hugging Face cache",
    )


def test_predict_unknown_task(model_dir: Path) -> None:
    assert_user_error(run_cli("predict", str(model_dir), "hi", "--tasks", "topic,sentimnet"), "'sentimnet'")


def test_predict_not_a_model_directory(tiny_model_dir: Path, capsys, monkeypatch) -> None:
    result = run_main(capsys, monkeypatch, "predict", str(tiny_model_dir), "hi")
    assert_user_error(result, "polyhead.json is missing")


# ----------------------------------------------------------------------- encode
def test_encode_prints_dimension_and_values(tiny_model_dir: Path) -> None:
    result = invoke("encode", "--model", str(tiny_model_dir), "A first sentence.", "A second one.")
    assert "2 texts -> dimension 32" in result.output
    assert "A first sentence." in result.output and "..." in result.output


def test_encode_projection_and_out_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\ufeffone line\n\nanother line\n", encoding="utf-8")  # BOM and blank lines
    out = tmp_path / "vectors.npy"
    result = invoke("encode", "--model", str(tiny_model_dir), "--file", str(texts), "--out", str(out))
    assert "wrote" in result.output
    vectors = np.load(out)
    expected = SentenceEncoder.from_pretrained(tiny_model_dir).encode(["one line", "another line"])
    assert np.allclose(vectors, expected, atol=1e-6)

    model = str(tiny_model_dir)
    invoke("encode", "--model", model, "--projection-dim", "8", "--no-normalize", "x", "--out", str(out), "--overwrite")
    vec = np.load(out)
    assert vec.shape == (1, 8) and not np.isclose(np.linalg.norm(vec), 1.0)


def test_encode_similarity_table(tiny_model_dir: Path) -> None:
    result = invoke("encode", "--model", str(tiny_model_dir), "--similarity", "cat", "a cat", "stock market")
    assert "Cosine similarity, high to low" in result.output
    assert result.output.count("stock market") == 2  # paired with each of the two others


def test_encode_similarity_needs_two_texts(tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["encode", "--model", str(tiny_model_dir), "--similarity", "alone"])
    assert result.exit_code != 0 and "at least two texts" in str(result.exception)


def test_encode_out_must_be_npy(tiny_model_dir: Path, tmp_path: Path) -> None:
    args = ["encode", "--model", str(tiny_model_dir), "x", "--out", str(tmp_path / "v.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "must end in .npy" in str(result.exception)


# ----------------------------------------------------------------------- predict
def test_predict_table(model_dir: Path) -> None:
    result = invoke("predict", str(model_dir), "John lives in Rome.", "The vote was close.")
    for task in TASKS:
        assert task in result.output
    assert "John lives in Rome." in result.output


def test_predict_json_lines_match_the_library(model_dir: Path, tmp_path: Path) -> None:
    texts = ["John lives in Rome.", "The vote was close."]
    file = tmp_path / "in.txt"
    file.write_text("\n".join(texts) + "\n")
    result = invoke("predict", str(model_dir), "--file", str(file), "--json", "--tasks", "topic,ner")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r["text"] for r in rows] == texts
    expected = MultiTaskModel.from_pretrained(model_dir).predict(texts, tasks=["topic", "ner"])
    for row, exp in zip(rows, expected, strict=True):
        assert set(row) == {"text", "topic", "ner"}
        assert row["topic"]["label"] == exp["topic"]["label"]
        assert row["ner"]["tags"] == exp["ner"]["tags"]


def test_markup_like_text_is_printed_as_written(tiny_model_dir: Path, model_dir: Path) -> None:
    """Rich would read "[/]" or "[red]" in user text as markup (and crash on "[/]")."""
    texts = ["a [/] b", "[red]hello\\"]
    for extra in ([], ["--similarity"]):
        result = invoke("encode", "--model", str(tiny_model_dir), *texts, *extra)
        assert "a [/] b" in result.output and "[red]hello\\" in result.output
        assert "[red]hello\\\\" not in result.output
    result = invoke("predict", str(model_dir), "[/] Rome [b]")
    assert "[/] Rome [b]" in result.output


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    """docs/cli.md has a section per command naming each of its options (long and short forms)."""
    import re

    import typer

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", doc, flags=re.S | re.M))
    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if name not in sections:
            missing.append(f"## {name}")
            continue
        for param in command.params:
            flags = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("-") and o != "--help"]
            missing += [f"{name} {flag}" for flag in flags if not re.search(rf"{re.escape(flag)}\b", sections[name])]
    assert not missing, f"docs/cli.md lacks: {missing}"


def test_no_normalize_applies_to_a_model_directory_too(model_dir: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "v.npy"
    with caplog.at_level("WARNING", logger="polyhead"):
        invoke("encode", "--model", str(model_dir), "--no-normalize", "a cat", "--out", str(out))
    raw = MultiTaskModel.from_pretrained(model_dir).encoder.encode(["a cat"], normalize=False)
    np.testing.assert_allclose(np.load(out), raw, atol=1e-6)
    assert not np.isclose(np.linalg.norm(raw), 1.0) and "saved encoder settings" not in caplog.text


def test_predict_without_predicting_heads_and_onnx_without_model(
    tiny_model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    encoder_only = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_model_dir), {}).save_pretrained(tmp_path / "m")
    result = run_main(capsys, monkeypatch, "predict", str(encoder_only), "hello")
    assert_user_error(result, "nothing to predict (the model has no heads", f"encode --model {encoder_only}")
    tasks = {"sts": TaskSpec("similarity"), "topic": TaskSpec("classification", ["a", "b"])}
    mixed = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_model_dir), tasks).save_pretrained(tmp_path / "x")
    result = run_main(capsys, monkeypatch, "predict", str(mixed), "hello", "--tasks", "sts")
    assert_user_error(result, "nothing to predict (the tasks asked for are similarity tasks")
    assert run_main(capsys, monkeypatch, "predict", str(mixed), "hello", "--json").returncode == 0
    result = run_main(capsys, monkeypatch, "encode", "hello", "--backend", "onnx")
    assert_user_error(result, "--backend onnx needs --model MODEL_DIR", "polyhead export default --output DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").rename(tmp_path / "default")  # a local model directory named "default" is that directory
    result = run_main(capsys, monkeypatch, "encode", "hello", "--backend", "onnx", "--model", "default")
    assert_user_error(result, "default has no model.onnx: run `polyhead export default")
