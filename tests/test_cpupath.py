"""CPU paths chosen by measuring (#21 item 4): probed once, cached per CPU and library versions, reused,
overridable; the torch linear kernel and load(dir, "auto") both go through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from polyhead import cpupath
from polyhead.errors import PolyheadError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLYHEAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("POLYHEAD_LINEARS", raising=False)
    monkeypatch.delenv("POLYHEAD_BACKEND", raising=False)
    return tmp_path / "cache" / "cpu_paths.json"


def counting(seconds: dict[str, float], calls: dict[str, int]) -> dict[str, object]:
    def probe(name: str):
        def run() -> float:
            calls[name] = calls.get(name, 0) + 1
            return seconds[name]

        return run

    return {name: probe(name) for name in seconds}


def test_the_fastest_path_is_measured_once_cached_and_reused(cache: Path) -> None:
    calls: dict[str, int] = {}
    probes = counting({"slow": 0.3, "fast": 0.1}, calls)
    assert cpupath.choose("linears", "shapes A", probes, ["torch"]) == "fast"
    assert calls == {"slow": 3, "fast": 3}  # three alternating rounds
    entry = next(iter(json.loads(cache.read_text()).values()))
    assert entry["choice"] == "fast" and entry["probe_seconds"] == {"slow": 0.3, "fast": 0.1}
    key = next(iter(json.loads(cache.read_text())))
    assert cpupath.cpu_description() in key and "torch==" in key and "shapes A" in key
    # another process (the same cache file), even if the timings would now say otherwise: no new probe
    assert cpupath.choose("linears", "shapes A", counting({"slow": 0.0, "fast": 1.0}, calls), ["torch"]) == "fast"
    assert calls == {"slow": 3, "fast": 3}


def test_another_cpu_library_version_or_subject_measures_again(cache: Path, monkeypatch) -> None:
    calls: dict[str, int] = {}
    cpupath.choose("linears", "shapes A", counting({"a": 0.1, "b": 0.2}, calls), ["torch"])
    monkeypatch.setattr(cpupath, "versions", lambda libs: "torch==99.0")
    assert cpupath.choose("linears", "shapes A", counting({"a": 0.2, "b": 0.1}, calls), ["torch"]) == "b"
    monkeypatch.setattr(cpupath, "cpu_description", lambda: "Some Other CPU [avx2] x64")
    assert cpupath.choose("linears", "shapes A", counting({"a": 0.1, "b": 0.2}, calls), ["torch"]) == "a"
    assert cpupath.choose("linears", "shapes B", counting({"a": 0.2, "b": 0.1}, calls), ["torch"]) == "b"
    assert calls == {"a": 12, "b": 12} and len(json.loads(cache.read_text())) == 4


def test_overrides_win_and_bad_names_are_one_line_errors(cache: Path, monkeypatch) -> None:
    calls: dict[str, int] = {}
    probes = counting({"mkl": 0.1, "onednn": 0.2}, calls)
    assert cpupath.choose("linears", "s", probes, ["torch"], explicit="onednn") == "onednn"
    monkeypatch.setenv("POLYHEAD_LINEARS", "onednn")
    assert cpupath.choose("linears", "s", probes, ["torch"]) == "onednn"
    assert calls == {} and not cache.exists()  # an override measures nothing
    monkeypatch.setenv("POLYHEAD_LINEARS", "auto")
    assert cpupath.choose("linears", "s", probes, ["torch"]) == "mkl"
    monkeypatch.setenv("POLYHEAD_LINEARS", "blas")
    with pytest.raises(PolyheadError, match="POLYHEAD_LINEARS linears path 'blas': valid: auto, mkl, onednn"):
        cpupath.choose("linears", "s", probes, ["torch"])


def test_an_unreadable_cache_is_measured_again_and_rewritten(cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert cpupath.choose("backend", "s", counting({"x": 0.2, "y": 0.1}, {}), []) == "y"
    assert next(iter(json.loads(cache.read_text()).values()))["choice"] == "y"


def test_the_encoder_linears_follow_the_choice(cache: Path, tiny_model_dir: Path, monkeypatch) -> None:
    from polyhead.modeling import onednn
    from polyhead.modeling.encoder import SentenceEncoder

    if not onednn.onednn_available():
        pytest.skip("this torch build has no oneDNN")
    kinds = lambda enc: {type(m) for m in enc.transformer.modules() if isinstance(m, nn.Linear)}  # noqa: E731
    monkeypatch.setenv("POLYHEAD_LINEARS", "mkl")
    enc = SentenceEncoder.from_pretrained(tiny_model_dir)
    assert enc.linears == "mkl" and kinds(enc) == {nn.Linear}
    monkeypatch.setenv("POLYHEAD_LINEARS", "onednn")
    enc = SentenceEncoder.from_pretrained(tiny_model_dir)
    assert enc.linears == "onednn" and kinds(enc) == {onednn.OneDNNLinear}
    monkeypatch.delenv("POLYHEAD_LINEARS")  # measured: the real GEMM probe, cached with the model's shapes
    enc = SentenceEncoder.from_pretrained(tiny_model_dir)
    entry = json.loads(cache.read_text())
    key = next(iter(entry))
    assert "(32, 32), (32, 64), (64, 32)" in key and entry[key]["choice"] == enc.linears
    assert set(entry[key]["probe_seconds"]) == {"mkl", "onednn"}
    assert all(s > 0 for s in entry[key]["probe_seconds"].values())


def test_load_auto_picks_the_measured_backend_and_caches_it(cache: Path, tmp_path: Path, tiny_model_dir, monkeypatch):
    pytest.importorskip("openvino")
    from polyhead import predict
    from polyhead.export.openvino import export_openvino
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.openvino_backend import OpenVinoModel

    monkeypatch.setenv("POLYHEAD_LINEARS", "onednn")  # only the backend probe writes the cache here
    path = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_model_dir), {}).save_pretrained(tmp_path / "m")
    assert predict.full_fidelity_backends(path) == ["torch"]

    def backend_entries() -> dict:
        return {k: v for k, v in json.loads(cache.read_text()).items() if k.startswith("backend")}

    assert predict.load_named(path, "auto")[0] == "torch" and not cache.exists()  # one candidate: nothing timed
    export_openvino(path)
    assert predict.full_fidelity_backends(path) == ["torch", "openvino"]
    name, model = predict.load_named(path, "auto")
    entry = next(iter(backend_entries().values()))
    assert name == entry["choice"] and set(entry["probe_seconds"]) == {"torch", "openvino"}
    assert isinstance(model, OpenVinoModel) == (name == "openvino")
    # cached: the next load reads the choice; rigging the cache shows it is what decides
    data = backend_entries()
    other = "torch" if name == "openvino" else "openvino"
    cache.write_text(json.dumps({k: {**v, "choice": other} for k, v in data.items()}))
    assert predict.load_named(path, "auto")[0] == other
    monkeypatch.setenv("POLYHEAD_BACKEND", name)  # the environment overrides the cache
    assert predict.load_named(path, "auto")[0] == name
    monkeypatch.delenv("POLYHEAD_BACKEND")
    (path / "openvino.json").write_text("{}")  # an export that lists nothing is no candidate
    assert predict.full_fidelity_backends(path) == ["torch"]
