"""The device option: names, one-line errors for devices that aren't here, and the device reaching the model's
parameters (checked on the CPU through torch's "meta" device); real GPU runs where a GPU is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import polyhead.modeling.encoder as encoder_module
import polyhead.modeling.multitask as multitask_module
from helpers import tiny_config, write_config
from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.device import resolve_device
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.predict import load
from polyhead.runtime import check_precision
from test_cli_encode_predict import assert_user_error, run_cli, run_main

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
TEXTS = ["a cat sat on the mat", "stocks fell sharply today", "the match ended in a draw"]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32)
    model = MultiTaskModel(encoder, {"topic": TaskSpec("classification", ["sport", "tech"])})
    return model.save_pretrained(tmp_path_factory.mktemp("device") / "model")


def fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


# ----------------------------------------------------------------------- names
def test_auto_is_cpu_without_a_gpu_and_cuda_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    monkeypatch.setattr("polyhead.modeling.device.mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr("polyhead.modeling.device.mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    fake_gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("CUDA:1") == torch.device("cuda", 1)
    with pytest.raises(PolyheadError, match=r"'cuda:2': no such GPU; available: cpu, cuda:0, cuda:1, mps$"):
        resolve_device("cuda:2")


@no_cuda
def test_a_device_that_is_not_here_is_one_line_naming_what_is() -> None:
    with pytest.raises(PolyheadError) as info:
        resolve_device("cuda", "--device")
    message = str(info.value)
    assert message.startswith("--device 'cuda': CUDA is not available here") and message.endswith("available: cpu")
    with pytest.raises(PolyheadError, match=r"--device 'tpu' is not a device; valid: auto, cpu, cuda, cuda:N, mps"):
        resolve_device("tpu", "--device")


def test_fp16_is_cuda_only_and_bf16_checks_the_cpu_only_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PolyheadError, match="'fp16' runs on CUDA GPUs only"):
        check_precision("fp16", "cpu")
    assert check_precision("fp16", "cuda") == "fp16"
    monkeypatch.setattr("polyhead.runtime.cpu_supports_bf16", lambda: False)
    with pytest.raises(PolyheadError, match="AVX512-BF16"):
        check_precision("bf16", "cpu")
    assert check_precision("bf16", "cuda") == "bf16"  # GPUs take torch's own autocast path


# ----------------------------------------------------------------------- the device reaches the parameters
def spy_device(monkeypatch: pytest.MonkeyPatch, *modules: object) -> list[object]:
    """Replace resolve_device in ``modules`` by one that records its argument and answers torch's meta device
    (parameters without storage): a model whose parameters end up there was moved to what device= chose."""
    asked: list[object] = []

    def fake(name: object = "auto", what: str = "device") -> torch.device:
        asked.append(name)
        return torch.device("meta")

    for module in modules:
        monkeypatch.setattr(module, "resolve_device", fake)
    return asked


def test_device_reaches_the_encoder_and_the_multitask_model(
    tiny_model_dir: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = spy_device(monkeypatch, encoder_module, multitask_module)
    assert SentenceEncoder.from_pretrained(tiny_model_dir, device="cuda:3").device.type == "meta"
    assert next(MultiTaskModel.from_pretrained(model_dir, device="mps").parameters()).device.type == "meta"
    loaded = load(model_dir, "torch", device="cuda")
    assert isinstance(loaded, MultiTaskModel) and next(loaded.parameters()).device.type == "meta"
    assert asked == ["cuda:3", "mps", "cuda"]


def test_the_api_default_is_auto(tiny_model_dir: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir)
    assert encoder.device == resolve_device("auto")


def test_onnx_backends_refuse_another_device(model_dir: Path) -> None:
    with pytest.raises(PolyheadError, match="the onnx backends run on the CPU"):
        load(model_dir, "onnx", device="cuda")


def test_training_device_reaches_the_model(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> None:
    import polyhead.training.trainer as trainer_module
    from polyhead.training.trainer import Trainer

    config = Config.model_validate(tiny_config(tmp_path, tiny_model_dir, device="cpu"))
    trainer = Trainer(config, tmp_path / "run")
    trainer.setup()
    assert trainer.device == torch.device("cpu") and next(trainer.model.parameters()).device.type == "cpu"
    asked = spy_device(monkeypatch, trainer_module)
    config = Config.model_validate(tiny_config(tmp_path, tiny_model_dir, device="cuda:1"))
    trainer = Trainer(config, tmp_path / "run2")
    trainer.setup()
    assert asked == ["cuda:1"] and next(trainer.model.parameters()).device.type == "meta"


@no_cuda
def test_training_device_not_here_is_a_config_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    from polyhead.training.trainer import Trainer

    config = Config.model_validate(tiny_config(tmp_path, tiny_model_dir, device="cuda"))
    with pytest.raises(PolyheadError, match=r"^training.device 'cuda': CUDA is not available here"):
        Trainer(config, tmp_path / "run")


# ----------------------------------------------------------------------- the CLI
@no_cuda
def test_every_command_with_device_gives_one_line(model_dir: Path, tmp_path: Path, tiny_model_dir: Path,
                                                  capsys, monkeypatch) -> None:
    config = write_config(tmp_path, tiny_config(tmp_path, tiny_model_dir))
    for args in (
        ["encode", "hi", "--model", str(tiny_model_dir), "--device", "cuda"],
        ["predict", str(model_dir), "hi", "--device", "cuda"],
        ["evaluate", str(model_dir), "--config", str(config), "--device", "cuda"],
        ["serve", str(model_dir), "--device", "cuda"],
    ):
        result = run_main(capsys, monkeypatch, *args)
        assert_user_error(result, "device 'cuda': CUDA is not available", "available: cpu")
    assert_user_error(run_main(capsys, monkeypatch, "predict", str(model_dir), "hi", "--device", "gpu"),
                      "'gpu' is not a device; valid: auto, cpu, cuda, cuda:N, mps")
    result = run_cli("encode", "hi", "--model", str(tiny_model_dir), "--precision", "fp16")
    assert_user_error(result, "'fp16' runs on CUDA GPUs only")
    result = run_main(capsys, monkeypatch, "train", str(config), "--set", "training.device=cuda:0",
                      "--output", str(tmp_path / "run"))
    assert_user_error(result, "training.device 'cuda:0': CUDA is not available")
    assert not (tmp_path / "run").exists()


def test_cpu_and_auto_run_here(model_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    for device in ("cpu", "auto"):
        out = tmp_path / f"{device}.npy"
        result = run_main(capsys, monkeypatch, "encode", *TEXTS, "--model", str(model_dir), "--device", device,
                          "--out", str(out))
        assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "cpu.npy"), np.load(tmp_path / "auto.npy"), atol=1e-6)


# ----------------------------------------------------------------------- real GPUs
@needs_cuda
def test_cuda_encodes_as_the_cpu_does(tiny_model_dir: Path) -> None:
    cpu = SentenceEncoder.from_pretrained(tiny_model_dir).to("cpu").encode(TEXTS)
    gpu_model = SentenceEncoder.from_pretrained(tiny_model_dir, device="cuda")
    assert gpu_model.device.type == "cuda"
    np.testing.assert_allclose(gpu_model.encode(TEXTS), cpu, atol=1e-4)
    np.testing.assert_allclose(gpu_model.encode(TEXTS, precision="fp16"), cpu, atol=2e-2)


@needs_cuda
def test_cuda_trains_in_fp16(tmp_path: Path, tiny_model_dir: Path) -> None:
    from polyhead.training.trainer import Trainer

    config = Config.model_validate(tiny_config(tmp_path, tiny_model_dir, device="cuda", precision="fp16"))
    results = Trainer(config, tmp_path / "run").run()
    assert (tmp_path / "run" / "model" / "polyhead.json").is_file() and results
