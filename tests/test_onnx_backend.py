"""The torch-free ONNX backend on a plain tiny encoder: gate passes (fp32, int8), CLI exit codes, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polyhead.errors import PolyheadError

pytestmark = pytest.mark.slow
TEXTS = ["The fish was superb.", "Apple unveiled a new phone in California.", "How far is Denver?", "ok"]


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MultiTaskModel with zero tasks (a plain encoder) saved as a polyhead model directory."""
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    return MultiTaskModel(encoder, {}).save_pretrained(tmp_path_factory.mktemp("plain") / "model")


def test_plain_encoder_export_passes_the_fp32_gate_and_matches_torch(
    plain: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from polyhead.export.onnx import export_onnx
    from polyhead.modeling.encoder import SentenceEncoder

    report = export_onnx(plain, check=True, texts=TEXTS)
    gate = report["gate"]["fp32"]
    assert gate["cosine_min"] >= 0.9999 and gate["label_agreement"] == 1.0
    meta = json.loads((plain / "onnx.json").read_text())
    assert meta["outputs"] == ["sentence_embedding", "pooled_embedding"] and meta["gate"]["fp32"] == gate
    assert "model.safetensors" in meta["source_sha256"]
    onnx_enc = SentenceEncoder.from_pretrained(plain, backend="onnx")
    torch_enc = SentenceEncoder.from_pretrained(plain)
    a, b = np.asarray(torch_enc.encode(TEXTS)), onnx_enc.encode(TEXTS)
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)
    assert onnx_enc.encode("one text").shape == (a.shape[1],)
    sim = onnx_enc.similarity(TEXTS)
    assert sim.shape == (4, 4) and np.allclose(np.diag(sim), 1, atol=1e-5)
    huge = "word " * 200_000  # #22 item 7: cut to max_length x 100 characters before tokenisation, as torch does
    with caplog.at_level("WARNING", logger="polyhead.tokens"):
        assert onnx_enc.tokenize_texts([huge]) == [{"input_ids": torch_enc.tokenize_lists([huge])[0]["input_ids"]}]
    assert caplog.text.count("1 text(s) longer than 6,400 characters were cut to 6,400") == 2  # onnx, torch
    assert np.allclose(onnx_enc.encode([huge]), np.asarray(torch_enc.encode([huge])), atol=1e-5)


def test_int8_gate_on_the_tiny_encoder(plain: Path) -> None:
    from polyhead.export.onnx import export_onnx, gate_failure

    try:
        report = export_onnx(plain, quantize="int8", check=True, texts=TEXTS)
    except PolyheadError as exc:
        # random 32-wide weights may quantise below the bound: then the gate must say so and clean up
        assert "parity gate failed for the int8 export" in str(exc)
        assert not (plain / "model.int8.onnx").exists()
        assert "int8" not in json.loads((plain / "onnx.json").read_text())["files"]
        return
    res = report["gate"]["int8"]
    assert gate_failure("int8", res) is None and res["cosine_mean"] >= 0.99
    assert (plain / "model.int8.onnx").stat().st_size < (plain / "model.onnx").stat().st_size


def test_sessions_leave_out_the_slow_skip_layer_norm_fusion(plain: Path, tmp_path: Path, monkeypatch) -> None:
    import onnx

    from polyhead import onnx_backend
    from polyhead.export.onnx import export_onnx

    if not (plain / "model.onnx").is_file():
        export_onnx(plain)

    def optimized_ops(name: str) -> set[str]:
        onnx_backend.create_session(plain / "model.onnx", 1, tmp_path / name)
        return {n.op_type for n in onnx.load(str(tmp_path / name)).graph.node}

    assert "SkipLayerNormalization" not in optimized_ops("ours.onnx")
    with monkeypatch.context() as m:  # without the exclusion onnxruntime fuses them: the check above can fail
        m.setattr(onnx_backend, "DISABLED_OPTIMIZERS", ())
        assert "SkipLayerNormalization" in optimized_ops("default.onnx")
    calls: list[tuple] = []  # and OnnxModel builds its session with create_session
    original = onnx_backend.create_session
    monkeypatch.setattr(onnx_backend, "create_session", lambda *a, **k: calls.append(a) or original(*a, **k))
    onnx_backend.OnnxModel(plain)
    assert calls and calls[0][0] == plain / "model.onnx"


def test_missing_onnxruntime_is_a_clear_error(plain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polyhead.onnx_backend import OnnxModel

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python records for a module it can't import
    with pytest.raises(PolyheadError, match=r"onnxruntime, which is not installed: pip install 'polyhead\[onnx\]'"):
        OnnxModel(plain)


def test_unknown_variant_and_backend(plain: Path) -> None:
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.onnx_backend import OnnxModel

    with pytest.raises(PolyheadError, match="unknown ONNX variant 'fp16'; valid: fp32, int8"):
        OnnxModel(plain, "fp16")
    with pytest.raises(PolyheadError, match="unknown backend 'tensorrt'"):
        MultiTaskModel.from_pretrained(plain, backend="tensorrt")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyhead", *args], capture_output=True, text=True, timeout=600)


def test_cli_export_check_exits_0_and_encode_runs_on_onnx(plain: Path) -> None:
    proc = run_cli("export", str(plain), "--format", "onnx", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "parity fp32" in proc.stdout and "passed" in proc.stdout
    proc = run_cli("encode", "hello world", "second text", "--model", str(plain), "--backend", "onnx")
    assert proc.returncode == 0, proc.stderr
    assert "2 texts -> dimension 32" in proc.stdout


def test_cli_export_errors_exit_2(plain: Path, tmp_path: Path) -> None:
    proc = run_cli("export", str(plain), "--format", "tflite")
    assert proc.returncode == 2 and "--format 'tflite': valid: onnx" in proc.stderr
    proc = run_cli("export", str(plain), "--quantize", "int4")
    assert proc.returncode == 2 and "valid: int8" in proc.stderr
    proc = run_cli("predict", str(tmp_path), "x", "--backend", "onnx")
    assert proc.returncode == 2 and "not a polyhead model directory" in proc.stderr


@pytest.mark.parametrize("damage", ["drop tokenizer.json", "drop tokenizer_config.json", "edit tokenizer.json"])
def test_onnx_backend_refuses_a_tokenizer_other_than_the_saved_one(plain: Path, tmp_path: Path, damage: str) -> None:
    """#22 item 3: the onnx backend loads only with the tokenizer files the model was saved with."""
    import shutil

    from polyhead.errors import ModelDirError
    from polyhead.export.onnx import export_onnx
    from polyhead.predict import load

    if not (plain / "onnx.json").is_file():
        export_onnx(plain, check=False, texts=TEXTS)
    copy = tmp_path / "model"
    shutil.copytree(plain, copy)
    load(copy, "onnx")  # intact: loads
    action, name = damage.split()
    if action == "drop":
        (copy / name).unlink()
    else:
        (copy / name).write_text((copy / name).read_text().replace('"[UNK]"', '"[UNK2]"', 1))
    expected = "is missing; the model was saved with it" if action == "drop" else "differs from the tokenizer file"
    with pytest.raises(ModelDirError, match=expected):
        load(copy, "onnx")
