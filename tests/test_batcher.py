"""The micro-batcher isolates failures per request (#22 item 2): any mix of good and bad requests, every
good one gets the answer it gets alone; each bad one gets its own error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyhead.serving.batcher import MicroBatcher


def fake_model(key: str, texts: list[str]) -> list[str]:
    """A model that fails the whole call when any text in it is bad (as a tokenizer does)."""
    if any(t.startswith("bad") for t in texts):
        raise ValueError("bad text in the batch")
    return [f"{key}:{t.upper()}" for t in texts]


async def answer_all(requests: list[tuple[str, list[str]]], max_batch: int) -> list[object]:
    batcher = MicroBatcher(fake_model, max_batch=max_batch, max_wait=0.01)
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(k, t) for k, t in requests), return_exceptions=True)
    finally:
        await batcher.stop()


request = st.tuples(
    st.sampled_from(["a", "b"]),
    st.lists(st.sampled_from(["x", "y", "bad1", "z", "bad2"]), min_size=1, max_size=4),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(request, min_size=1, max_size=25), st.integers(1, 16))
def test_any_mix_every_good_request_gets_its_own_answer(requests: list, max_batch: int) -> None:
    results = asyncio.run(answer_all(requests, max_batch))
    for (key, texts), result in zip(requests, results, strict=True):
        if any(t.startswith("bad") for t in texts):
            assert isinstance(result, ValueError)
        else:
            assert result == fake_model(key, texts)  # the same answer it gets alone


def test_mixed_bad_and_good_http_requests(tiny_model_dir: Path) -> None:
    """40 requests with a lone surrogate among 40 good ones, at once: every good one 200 with its lone answer."""
    import httpx
    import torch

    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.serving.app import ServeSettings, create_app

    torch.manual_seed(0)
    model = MultiTaskModel(
        SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32),
        {"topic": TaskSpec("classification", ["a", "b"])},
    ).eval()
    app = create_app(model, ServeSettings(max_wait_ms=50))
    good = [f"good text number {i}" for i in range(40)]
    alone = model.predict(good, batch_size=1)
    bodies = []
    for i, text in enumerate(good):
        bodies += [json.dumps({"texts": [text]}).encode(), b'{"texts": ["bad \\ud800 %d"]}' % i]

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                headers = {"Content-Type": "application/json"}
                return await asyncio.gather(*(client.post("/predict", content=b, headers=headers) for b in bodies))

    responses = asyncio.run(asyncio.wait_for(run(), 120))
    assert [r.status_code for r in responses] == [200, 422] * 40
    for i, res in enumerate(responses[::2]):
        got = res.json()["predictions"][0]["topic"]
        assert got["label"] == alone[i]["topic"]["label"]
        assert got["score"] == pytest.approx(alone[i]["topic"]["score"], abs=1e-5)
    assert all("lone surrogate" in r.json()["error"] for r in responses[1::2])
    assert np.isfinite([r.json()["predictions"][0]["topic"]["score"] for r in responses[::2]]).all()
