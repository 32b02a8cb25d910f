"""The HTTP server as a real process on a free loopback port: endpoints, limits, bad input, API key,
and micro-batching. The page in headless Chromium is tested in test_serving_browser.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

KEY = "s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_served_model(tiny_model_dir: Path, out: Path) -> Path:
    """A tiny model with a classification, a regression and a token-classification head, saved to ``out``."""
    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32)
    model = MultiTaskModel(encoder, {
        "topic": TaskSpec("classification", ["sport", "tech"]),
        "rating": TaskSpec("regression"),
        "ner": TaskSpec("token_classification", ["O", "B-PER", "I-PER"]),
    })
    return model.save_pretrained(out)


@pytest.fixture(scope="module")
def served_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_served_model(tiny_model_dir, tmp_path_factory.mktemp("serve") / "model")


def start(model_dir: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``polyhead serve`` on a free loopback port, once /health answers; returns (process, base URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "polyhead", "serve", str(model_dir), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def server(served_model: Path):
    proc, url = start(served_model, "--api-key", KEY, "--max-texts", "4", "--max-chars", "60",
                      "--max-body-bytes", "3000", "--max-wait-ms", "50")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def post(url: str, path: str, body: object, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(url + path, json=body, headers=headers, timeout=60, **kwargs)


def test_health_needs_no_key_and_describes_the_model_only_with_it(server: str, served_model: Path) -> None:
    anonymous = httpx.get(server + "/health")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok", "auth": True}
    for path in ("/health", "/docs", "/openapi.json"):  # nothing about the model without the key
        text = httpx.get(server + path).text
        assert str(served_model) not in text and "sport" not in text, path
    docs = httpx.get(server + "/docs").text
    assert "cdn" not in docs.lower() and "/docs-assets/swagger-ui-bundle.js" in docs  # works offline
    assert httpx.get(server + "/docs-assets/swagger-ui-bundle.js").status_code == 200
    health = httpx.get(server + "/health", headers={"X-API-Key": KEY}).json()
    assert health["status"] == "ok" and health["backend"] == "torch" and health["auth"] is True
    assert health["tasks"]["topic"] == {"type": "classification", "input": "text", "predicts": True,
                                       "labels": ["sport", "tech"]}
    assert health["tasks"]["ner"]["type"] == "token_classification"
    assert httpx.get(server + "/docs").status_code == 200
    assert "/predict" in httpx.get(server + "/openapi.json").json()["paths"]


def test_api_key(server: str) -> None:
    assert post(server, "/embed", {"texts": ["a"]}, key=None).status_code == 401
    wrong = post(server, "/embed", {"texts": ["a"]}, key="nope")
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
    bearer = httpx.post(server + "/embed", json={"texts": ["a"]}, headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200


def test_embed(server: str, served_model: Path) -> None:
    from polyhead.modeling.multitask import MultiTaskModel

    body = post(server, "/embed", {"texts": ["hello world", "a goal"]}).json()
    assert body["dimension"] == 32 and len(body["embeddings"]) == 2
    local = MultiTaskModel.from_pretrained(served_model).encode(["hello world", "a goal"])
    assert torch.allclose(torch.tensor(body["embeddings"]), torch.tensor(local), atol=1e-5)


def test_predict_matches_the_library(server: str, served_model: Path) -> None:
    from polyhead.modeling.multitask import MultiTaskModel

    texts = ["John met Mary in Paris", "new chips"]
    remote = post(server, "/predict", {"texts": texts}).json()["predictions"]
    local = MultiTaskModel.from_pretrained(served_model).predict(texts)
    assert [r["topic"]["label"] for r in remote] == [r["topic"]["label"] for r in local]
    assert [r["ner"]["tags"] for r in remote] == [r["ner"]["tags"] for r in local]
    assert remote[0]["rating"]["score"] == pytest.approx(local[0]["rating"]["score"], abs=1e-5)
    only = post(server, "/predict", {"texts": texts, "tasks": ["topic"]}).json()["predictions"]
    assert set(only[0]) == {"topic"}


def test_unknown_task(server: str) -> None:
    res = post(server, "/predict", {"texts": ["x"], "tasks": ["topic", "ghost"]})
    assert res.status_code == 422
    assert res.json()["valid_tasks"] == ["topic", "rating", "ner"] and "ghost" in res.json()["error"]


def test_similarity(server: str) -> None:
    body = {"pairs": [["a cat", "a cat"], ["a cat", "stock market"]]}
    pairs = post(server, "/similarity", body).json()["scores"]
    assert pairs[0] == pytest.approx(1.0, abs=1e-5) and pairs[1] < pairs[0]
    query = post(server, "/similarity", {"query": "a cat", "texts": ["a cat", "bonds"]}).json()["scores"]
    assert len(query) == 2 and query[0] == pytest.approx(1.0, abs=1e-5)
    matrix = post(server, "/similarity", {"texts": ["a cat", "bonds", "a cat"]}).json()["matrix"]
    assert len(matrix) == 3 and matrix[0][2] == pytest.approx(1.0, abs=1e-5)
    assert matrix[0][1] == pytest.approx(matrix[1][0], abs=1e-6)
    res = post(server, "/similarity", {"query": "a cat"})
    assert res.status_code == 422 and "pairs" in res.json()["error"]


@pytest.mark.parametrize(("body", "status", "limit"), [
    ({"texts": ["a"] * 5}, 422, "max_texts"),
    ({"texts": ["x" * 61]}, 422, "max_chars"),
    ({"texts": ["x" * 50] * 4, "tasks": ["y" * 3000]}, 413, "max_body_bytes"),
])
def test_limits(server: str, body: dict, status: int, limit: str) -> None:
    res = post(server, "/predict", body)
    assert res.status_code == status, res.text
    assert res.json()["limit"] == limit and limit in res.json()["error"]


def test_chunked_body_over_the_limit_is_cut_off(server: str) -> None:
    def chunks():  # no Content-Length: httpx sends Transfer-Encoding: chunked
        yield b'{"texts": ["'
        for _ in range(100):
            yield b"x" * 100
        yield b'"]}'

    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    res = httpx.post(server + "/predict", content=chunks(), headers=headers, timeout=60)
    assert res.status_code == 413 and res.json()["limit"] == "max_body_bytes"


@pytest.mark.parametrize(("content", "field"), [
    (b"{not json", "JSON"),
    (b'{"texts": "just a string"}', "texts"),
    (b'{"texts": [1, 2]}', "texts.0"),
    (b'{"texts": []}', "texts"),
    (b'{"texts": ["a"], "extra": 1}', "extra"),
    (b'{}', "texts"),
])
def test_bad_requests(server: str, content: bytes, field: str) -> None:
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    res = httpx.post(server + "/predict", content=content, headers=headers)
    assert res.status_code == 422, res.text
    assert field in res.json()["error"]


def test_concurrent_requests_are_batched(server: str) -> None:
    before = httpx.get(server + "/stats", headers={"X-API-Key": KEY}).json()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: post(server, "/predict", {"texts": [f"sentence {i}"]}), range(48)))
    assert all(r.status_code == 200 for r in results)
    assert all(r.json()["predictions"][0]["topic"]["label"] in ("sport", "tech") for r in results)
    after = httpx.get(server + "/stats", headers={"X-API-Key": KEY}).json()
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 48
    assert batches < requests, f"{batches} batches for {requests} concurrent requests: no micro-batching"
    assert after["largest_batch"] > 1


@pytest.mark.parametrize(("enabled", "batches"), [(True, 1), (False, 10)])
def test_batcher_groups_concurrent_jobs_unless_disabled(enabled: bool, batches: int) -> None:
    import asyncio

    from polyhead.serving.batcher import MicroBatcher

    calls: list[list[str]] = []

    def run(key: object, texts: list[str]) -> list[str]:
        calls.append(texts)
        return [t.upper() for t in texts]

    async def main() -> list[list[str]]:
        batcher = MicroBatcher(run, max_batch=64, max_wait=0.2, enabled=enabled)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit("k", [f"t{i}", f"u{i}"]) for i in range(10)))
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results == [[f"T{i}", f"U{i}"] for i in range(10)]  # each request gets its own slice, in order
    assert len(calls) == batches


def test_onnx_backend(tiny_model_dir: Path, tmp_path: Path) -> None:
    from polyhead.export.onnx import export_onnx
    from polyhead.modeling.multitask import MultiTaskModel

    model_dir = build_served_model(tiny_model_dir, tmp_path / "model")
    cmd = [sys.executable, "-m", "polyhead", "serve", str(model_dir), "--backend", "onnx", "--port", "1"]
    missing = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "error:" in missing.stderr and "Traceback" not in missing.stderr

    export_onnx(model_dir)
    proc, url = start(model_dir, "--backend", "onnx")
    try:
        assert httpx.get(url + "/health").json()["backend"] == "onnx"
        texts = ["John met Mary in Paris", "new chips"]
        remote = httpx.post(url + "/predict", json={"texts": texts}, timeout=60).json()["predictions"]
        local = MultiTaskModel.from_pretrained(model_dir).predict(texts)
        assert [r["topic"]["label"] for r in remote] == [r["topic"]["label"] for r in local]
        assert remote[1]["rating"]["score"] == pytest.approx(local[1]["rating"]["score"], abs=1e-4)
        assert [r["ner"]["tags"] for r in remote] == [r["ner"]["tags"] for r in local]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_model_without_heads_embeds_and_refuses_predict(tiny_model_dir: Path) -> None:
    """An encoder exported alone (`polyhead export ENCODER --output`) serves /embed; /predict says why not."""
    from fastapi.testclient import TestClient

    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.serving.app import create_app

    encoder = SentenceEncoder.from_pretrained(tiny_model_dir)
    for tasks in ({}, {"sts": TaskSpec("similarity")}):
        with TestClient(create_app(MultiTaskModel(encoder, tasks))) as client:
            assert client.post("/embed", json={"texts": ["a", "b"]}).json()["dimension"] == 32
            response = client.post("/predict", json={"texts": ["a"]})
            assert response.status_code == 422
            assert "no heads that predict" in response.json()["error"] and "/embed" in response.json()["error"]
    mixed = MultiTaskModel(encoder, {"sts": TaskSpec("similarity"), "topic": TaskSpec("classification", ["a", "b"])})
    with TestClient(create_app(mixed)) as client:
        response = client.post("/predict", json={"texts": ["a"], "tasks": ["sts"]})
        assert response.status_code == 422 and response.json()["valid_tasks"] == ["topic"]
        assert "the tasks asked for are similarity tasks" in response.json()["error"]
        assert client.post("/predict", json={"texts": ["a"]}).status_code == 200
