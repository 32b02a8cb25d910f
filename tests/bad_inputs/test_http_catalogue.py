"""HTTP cases of the bad-input catalogue, against the app in-process (fastapi.testclient)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

CASES = yaml.safe_load((Path(__file__).parent / "http_cases.yaml").read_text())


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path):
    from fastapi.testclient import TestClient

    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.serving.app import ServeSettings, create_app

    torch.manual_seed(0)
    model = MultiTaskModel(
        SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32),
        {"topic": TaskSpec("classification", ["a", "b"])},
    ).eval()
    app = create_app(model, ServeSettings(max_texts=3, max_chars=40, max_body_bytes=2000, api_key="k"))
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_http_case(client, case: dict) -> None:
    headers = {"Content-Type": "application/json"}
    key = case.get("key", "k")
    if key is not None:
        headers["X-API-Key"] = key
    raw_headers = {k: v.encode() for k, v in headers.items()}
    if "key_bytes" in case:  # a header value that is not ASCII, sent as raw bytes
        raw_headers["X-API-Key"] = bytes.fromhex(case["key_bytes"])
    if "bearer_bytes" in case:
        raw_headers["Authorization"] = b"Bearer " + bytes.fromhex(case["bearer_bytes"])
    if "raw_size" in case:
        body = ('{"texts": ["' + "x" * case["raw_size"] + '"]}').encode()
        res = client.post(case["path"], content=body, headers=raw_headers)
    elif "raw" in case:
        res = client.post(case["path"], content=case["raw"].encode(), headers=raw_headers)
    else:
        res = client.post(case["path"], json=case["json"], headers=raw_headers)
    assert res.status_code == case["status"], res.text
    error = res.json()["error"]
    assert "\n" not in error
    assert case["expect"] in error, error
