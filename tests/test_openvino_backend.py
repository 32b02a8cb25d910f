"""The OpenVINO export and the torch-free openvino backends (#21 item 3): every head type in the graph, the
parity gate (fp32, NNCF int8), the same predictions as torch, the CLI, refusals, and no torch on the path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polyhead.errors import ModelDirError, PolyheadError

pytest.importorskip("openvino")
pytestmark = pytest.mark.slow
TEXTS = ["John met Mary in Paris", "new chips ship today", ["Pre", "tokenised", "input"], "a"]


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A model with every head type (pairs too), exported to OpenVINO with int8 and the gate."""
    from polyhead.export.openvino import export_openvino
    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64, projection_dim=16)
    model = MultiTaskModel(
        encoder,
        {
            "topic": TaskSpec("classification", ["a", "b", "c"]),
            "tags": TaskSpec("multilabel", ["x", "y"]),
            "score": TaskSpec("regression"),
            "ner": TaskSpec("token_classification", ["O", "B-PER", "I-PER"]),
            "nli": TaskSpec("pair_classification", ["no", "yes"]),
            "sts": TaskSpec("similarity"),
        },
    )
    path = model.save_pretrained(tmp_path_factory.mktemp("ov") / "model")
    return path, export_openvino(path, quantize="int8", check=True)


def test_export_writes_both_irs_and_the_gate_passes(exported) -> None:
    from polyhead.export.onnx import GATE

    path, report = exported
    meta = json.loads((path / "openvino.json").read_text())
    assert meta["files"] == {"fp32": "openvino_model.xml", "int8": "openvino_model.int8.xml"}
    assert meta["outputs"] == [
        "sentence_embedding", "pooled_embedding", "token_embeddings", "task.topic", "task.tags", "task.score",
        "task.ner", "task.nli",
    ]
    assert meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    for name in ("openvino_model.weights", "openvino_model.int8.weights"):
        assert (path / name).stat().st_size > 0
    gate = report["gate"]
    assert gate["fp32"]["cosine_min"] >= GATE["fp32_cosine_min"] and gate["fp32"]["label_agreement"] == 1.0
    assert gate["int8"]["cosine_mean"] >= GATE["int8_cosine_mean"] and gate["int8"]["decisions"] > 0
    assert meta["gate"] == gate and report["int8_recipe"] == meta["int8_recipe"]
    card = (path / "README.md").read_text()  # the model card lists the IRs and the gate's numbers
    assert "## OpenVINO" in card and "| int8 | `openvino_model.int8.xml` |" in card
    assert f"| fp32 | {gate['fp32']['cosine_mean']:.4f} | {gate['fp32']['cosine_min']:.4f} |" in card
    assert f"int8 recipe: `{meta['int8_recipe']}`" in card


def test_the_ir_has_fused_attention_and_torch_keeps_its_own(exported) -> None:
    """The graph is captured with SDPA so that OpenVINO runs its fused attention op (eager attention becomes plain
    MatMuls, slower at batch 1); the PyTorch model is back on its own attention afterwards."""
    import openvino as ov

    from polyhead.export.onnx import load_for_export
    from polyhead.export.openvino import sdpa_attention
    from polyhead.openvino_backend import bin_file

    path, _ = exported
    xml = path / "openvino_model.xml"
    ops = [op.get_type_name() for op in ov.Core().read_model(str(xml), str(bin_file(xml))).get_ops()]
    assert ops.count("ScaledDotProductAttention") == 2  # one per layer of the tiny encoder
    model = load_for_export(path)
    with sdpa_attention(model):
        assert model.encoder.transformer.config._attn_implementation == "sdpa"
    assert model.encoder.transformer.config._attn_implementation == "eager"


def test_openvino_predictions_match_torch(exported) -> None:
    from polyhead.predict import load

    path, _ = exported
    torch_model, ov_model = load(path, "torch"), load(path, "openvino")  # torch loads beside the IR files
    a, b = torch_model.predict(TEXTS), ov_model.predict(TEXTS)
    for x, y in zip(a, b, strict=True):
        assert x["topic"]["label"] == y["topic"]["label"] and x["tags"]["labels"] == y["tags"]["labels"]
        assert x["ner"]["tags"] == y["ner"]["tags"]
        assert x["score"]["score"] == pytest.approx(y["score"]["score"], abs=1e-4)
    pairs = [("a man plays", "someone plays"), ("cats", "the stock market fell")]
    pa, pb = torch_model.predict_pairs(pairs), ov_model.predict_pairs(pairs)
    assert [p["nli"]["label"] for p in pa] == [p["nli"]["label"] for p in pb]
    assert [p["nli"]["score"] for p in pa] == pytest.approx([p["nli"]["score"] for p in pb], abs=1e-4)
    texts = [t for t in TEXTS if isinstance(t, str)]
    e1, e2 = np.asarray(torch_model.encode(texts)), ov_model.encode(texts)
    assert e2.shape == (3, 16) and ((e1 * e2).sum(1) >= 0.9999).all()
    assert ov_model.encode("one").shape == (16,) and ov_model.dim == 16
    assert ov_model.encode([]).shape == (0, 16)
    assert ov_model.similarity(["a cat"], ["a cat", "bonds"]).shape == (1, 2)
    batched, alone = ov_model.encode(texts, batch_size=2), np.stack([ov_model.encode(t) for t in texts])
    assert np.allclose(batched, alone, atol=1e-5)  # padding never changes a vector


def int8_ops(nodes) -> list:
    """FakeQuantize nodes (static int8) and int8 / uint8 weight constants (weight compression)."""
    return [n for n in nodes if n.get_type_name() == "FakeQuantize"
            or (n.get_type_name() == "Constant" and n.get_element_type().get_type_name() in ("i8", "u8"))]


def test_int8_ir_quantises_the_encoder_and_leaves_the_heads_fp32(exported) -> None:
    import openvino as ov

    from polyhead.export.openvino import head_nodes

    path, report = exported
    read = lambda stem: ov.Core().read_model(str(path / f"{stem}.xml"), str(path / f"{stem}.weights"))  # noqa: E731
    int8 = read("openvino_model.int8")
    assert int8_ops(int8.get_ops()), f"no int8 layer in the int8 IR (recipe {report['int8_recipe']})"
    heads = [op for op in int8.get_ops() if op.get_friendly_name() in head_nodes(int8)]
    assert len(heads) >= 5, "the head MatMuls were not found"  # topic, tags, score, ner, nli
    for head in heads:  # what feeds each head MatMul, three steps up: no quantiser, no int8 weight
        feeding, frontier = [], [head]
        for _ in range(3):
            frontier = [port.get_source_output().get_node() for n in frontier for port in n.inputs()]
            feeding += frontier
        assert not int8_ops(feeding), head.get_friendly_name()
    assert not int8_ops(read("openvino_model").get_ops())


def test_bf16_precision_hint_and_bad_precisions(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    from polyhead import openvino_backend
    from polyhead.predict import load

    path, _ = exported
    model = load(path, "openvino")
    texts = ["John met Mary in Paris", "new chips ship today"]
    with pytest.raises(PolyheadError, match="precision 'fp16': the openvino backends take fp32 or bf16"):
        model.encode(texts, precision="fp16")
    if openvino_backend.cpu_has_bf16():
        fp32, bf16 = model.encode(texts), model.encode(texts, precision="bf16")
        assert (fp32 * bf16).sum(1).min() > 0.99 and not np.array_equal(fp32, bf16)  # bf16 arithmetic ran
    monkeypatch.setattr(openvino_backend, "cpu_has_bf16", lambda: False)
    with pytest.raises(PolyheadError, match="precision 'bf16' needs a CPU with AVX512-BF16 or AMX"):
        load(path, "openvino").encode(texts, precision="bf16")


def test_openvino_backend_runs_without_torch_or_transformers(exported) -> None:
    path, _ = exported
    code = (
        f"import sys; from polyhead.predict import load; m = load({str(path)!r}, 'openvino-int8'); "
        "v = m.encode(['hello world']); p = m.predict(['John met Mary']); "
        "assert v.shape == (1, 16) and 'ner' in p[0]; "
        "bad = [k for k in ('torch', 'transformers') if k in sys.modules]; assert not bad, bad; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_missing_stale_and_unknown_exports_are_refused(exported, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from polyhead.openvino_backend import OpenVinoModel
    from polyhead.predict import load

    path, _ = exported
    copy = tmp_path / "model"
    shutil.copytree(path, copy)
    (copy / "openvino_model.int8.weights").unlink()
    with pytest.raises(ModelDirError, match=r"no openvino_model.int8.xml: run `polyhead export .* --quantize int8`"):
        load(copy, "openvino-int8")
    with pytest.raises(PolyheadError, match="unknown OpenVINO variant 'fp16'; valid: fp32, int8"):
        OpenVinoModel(copy, "fp16")
    with pytest.raises(PolyheadError, match="unknown backend 'openvino-fp16'; valid: auto, torch"):
        load(copy, "openvino-fp16")
    with pytest.raises(PolyheadError, match="device 'cuda': the openvino backends run on the CPU"):
        load(copy, "openvino", device="cuda")
    heads = load_file(str(copy / "heads.safetensors"))
    save_file({k: v + 1 for k, v in heads.items()}, str(copy / "heads.safetensors"))
    with pytest.raises(ModelDirError, match="stale export"):
        load(copy, "openvino")
    fresh = tmp_path / "fresh"
    shutil.copytree(path, fresh, ignore=shutil.ignore_patterns("openvino*"))
    with pytest.raises(ModelDirError, match="run `polyhead export .* --format openvino`"):
        load(fresh, "openvino")


def test_a_gate_failure_removes_the_int8_ir_and_says_why(exported, tmp_path: Path, monkeypatch) -> None:
    from polyhead.export import onnx as onnx_export
    from polyhead.export import openvino as ov_export

    path, _ = exported
    copy = tmp_path / "model"
    shutil.copytree(path, copy, ignore=shutil.ignore_patterns("openvino*"))
    monkeypatch.setitem(onnx_export.GATE, "int8_cosine_mean", 1.01)  # no int8 model reaches it
    with pytest.raises(PolyheadError, match=r"parity gate failed for the OpenVINO int8 export \(mean cosine"):
        ov_export.export_openvino(copy, quantize="int8", check=True, texts=["John met Mary", "chips ship"])
    assert not (copy / "openvino_model.int8.xml").exists() and not (copy / "openvino_model.int8.weights").exists()
    meta = json.loads((copy / "openvino.json").read_text())
    assert list(meta["files"]) == ["fp32"]
    assert (copy / "openvino_model.xml").is_file()  # the fp32 IR that passed stays


def test_missing_openvino_is_a_clear_error(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    from polyhead.export.openvino import check_options
    from polyhead.predict import load

    path, _ = exported
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(PolyheadError, match=r"needs nncf, which is not installed: pip install 'polyhead\[openvino\]'"):
        check_options("int8", None)
    check_options(None, None)  # fp32 needs no nncf
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(PolyheadError, match=r"openvino, which is not installed: pip install 'polyhead\[openvino\]'"):
        load(path, "openvino")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyhead", *args], capture_output=True, text=True, timeout=600)


def test_cli_export_encode_and_predict_on_openvino(tiny_model_dir: Path, exported, tmp_path: Path) -> None:
    out = tmp_path / "enc"
    proc = run_cli("export", str(tiny_model_dir), "--output", str(out), "--format", "openvino", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "openvino_model.xml" in proc.stdout and "parity fp32" in proc.stdout and "passed" in proc.stdout
    proc = run_cli("encode", "hello world", "second text", "--model", str(out), "--backend", "openvino")
    assert proc.returncode == 0, proc.stderr
    assert "2 texts -> dimension 32" in proc.stdout
    path, _ = exported
    proc = run_cli("predict", str(path), "John met Mary", "--json", "--backend", "openvino-int8")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["topic"]["label"] in ("a", "b", "c")
    proc = run_cli("export", str(path), "--format", "tflite")
    assert proc.returncode == 2 and "--format 'tflite': valid: onnx, openvino" in proc.stderr
    proc = run_cli("export", str(path), "--format", "openvino", "--quantize", "int4")
    assert proc.returncode == 2 and "--quantize 'int4': valid: int8" in proc.stderr
    proc = run_cli("predict", str(path), "x", "--backend", "openvino", "--precision", "fp16")
    assert proc.returncode == 2 and "the openvino backends take fp32 or bf16" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serving_on_openvino(exported) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from polyhead.predict import load
    from polyhead.serving.app import ServeSettings, create_app

    path, _ = exported
    model = load(path, "openvino")
    with TestClient(create_app(model, ServeSettings(backend="openvino"))) as client:
        embed = client.post("/embed", json={"texts": ["hello", "world"]}).json()
        pred = client.post("/predict", json={"texts": ["John met Mary"]}).json()
    assert np.asarray(embed["embeddings"]).shape == (2, 16)
    assert pred["predictions"][0]["topic"]["label"] == model.predict(["John met Mary"])[0]["topic"]["label"]
