"""MultiTaskModel: an overfit test per head type (loss falls, predictions right, save -> load identical,
batched == one-by-one), one encoder pass for many heads, and the predict() output format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.batching import pad_batch
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.tokens import IGNORE_INDEX, align_labels, split_words, tokenize_words

STEPS = 40


def fit(
    model: MultiTaskModel, loss_fn: Callable[[], torch.Tensor], steps: int = STEPS, lr: float = 3e-3
) -> list[float]:
    """A few dozen plain AdamW steps on the whole model; returns the loss per step."""
    torch.manual_seed(0)  # passes for every seed tried (0-7); fixed so a failure is reproducible
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def assert_learned(losses: list[float]) -> None:
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.3 * first, f"loss did not fall enough: {first:.4f} -> {last:.4f}"


def same_prediction(a: Any, b: Any, tol: float = 1e-4) -> bool:
    """Equal label strings / spans / tags, and floats within tol."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_prediction(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_prediction(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return abs(a - b) <= tol
    return a == b


def check_save_load_and_batching(model: MultiTaskModel, texts: list[Any], tmp_path: Path) -> MultiTaskModel:
    """save -> load gives identical outputs and label strings; batched == one-by-one predictions."""
    model.eval()
    strings = [t if isinstance(t, str) else " ".join(t) for t in texts]
    features = model.encoder.tokenize(strings)
    with torch.inference_mode():
        before = model(features)
    predictions = model.predict(texts, batch_size=len(texts))

    loaded = MultiTaskModel.from_pretrained(model.save_pretrained(tmp_path / "model"))
    with torch.inference_mode():
        after = loaded(features)
    for name in before:
        assert torch.allclose(before[name], after[name], atol=1e-6), name
    assert {n: s.labels for n, s in loaded.tasks.items()} == {n: s.labels for n, s in model.tasks.items()}
    reloaded = loaded.predict(texts, batch_size=len(texts))
    assert same_prediction(predictions, reloaded, tol=1e-6), (predictions, reloaded)

    one_by_one = [loaded.predict([t])[0] for t in texts]
    assert same_prediction(reloaded, one_by_one), (reloaded, one_by_one)
    in_twos = loaded.predict(texts, batch_size=2)
    assert same_prediction(reloaded, in_twos)
    return loaded


# ----------------------------------------------------------------------- classification
def test_classification_overfit(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    texts = ["I loved this film", "great acting and a great story", "a terrible boring movie", "awful waste"]
    gold = ["pos", "pos", "neg", "neg"]
    spec = TaskSpec("classification", ["neg", "pos"], hidden=[16], dropout=0.0)
    model = MultiTaskModel(tiny_encoder, {"sentiment": spec})
    features = tiny_encoder.tokenize(texts)
    target = torch.tensor([spec.labels.index(g) for g in gold])

    losses = fit(model, lambda: F.cross_entropy(model(features)["sentiment"], target))
    assert_learned(losses)
    predictions = model.predict(texts)
    assert [p["sentiment"]["label"] for p in predictions] == gold
    for p in predictions:
        probs = p["sentiment"]["probabilities"]
        assert set(probs) == {"neg", "pos"} and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert p["sentiment"]["score"] == max(probs.values())
    check_save_load_and_batching(model, texts, tmp_path)


# ----------------------------------------------------------------------- multilabel
def test_multilabel_overfit(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    texts = ["the food was great", "slow service and rude staff", "tasty food, friendly staff", "just fine"]
    labels = ["food", "service"]
    gold = [["food"], ["service"], ["food", "service"], []]
    spec = TaskSpec("multilabel", labels, hidden=[16], dropout=0.0, threshold=0.5)
    model = MultiTaskModel(tiny_encoder, {"aspects": spec})
    features = tiny_encoder.tokenize(texts)
    target = torch.tensor([[float(lab in g) for lab in labels] for g in gold])

    def loss() -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(features)["aspects"], target)

    losses = fit(model, loss, steps=100)
    assert_learned(losses)
    predictions = model.predict(texts)
    assert [p["aspects"]["labels"] for p in predictions] == gold
    assert all(set(p["aspects"]["probabilities"]) == set(labels) for p in predictions)
    check_save_load_and_batching(model, texts, tmp_path)


# ----------------------------------------------------------------------- regression
def test_regression_overfit(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    texts = ["wonderful", "pretty good overall", "mediocre at best", "an utter disaster of a film"]
    gold = [1.0, 0.5, -0.25, -1.0]
    model = MultiTaskModel(tiny_encoder, {"rating": TaskSpec("regression", hidden=[16], dropout=0.0)})
    features = tiny_encoder.tokenize(texts)
    target = torch.tensor(gold)

    losses = fit(model, lambda: F.mse_loss(model(features)["rating"], target), steps=100)
    assert_learned(losses)
    scores = [p["rating"]["score"] for p in model.predict(texts)]
    assert np.allclose(scores, gold, atol=0.15), scores
    check_save_load_and_batching(model, texts, tmp_path)


# ----------------------------------------------------------------------- token classification
NER_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
NER_DATA = [
    ("John Smith lives in Berlin.", ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
    ("Mary visited New York yesterday!", ["B-PER", "O", "B-LOC", "I-LOC", "O", "O"]),
    ("Ask Schwarzenegger about Tokyo, please.", ["O", "B-PER", "O", "B-LOC", "O", "O", "O"]),
    ("nothing to see here", ["O", "O", "O", "O"]),
]


def ner_batch(encoder: SentenceEncoder) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Word labels aligned to first sub-tokens (IGNORE_INDEX elsewhere), padded like the features."""
    words = [[w.text for w in split_words(text)] for text, _ in NER_DATA]
    for ws, (_, tags) in zip(words, NER_DATA, strict=True):
        assert len(ws) == len(tags), ws
    encodings = tokenize_words(encoder.tokenizer, words, encoder.max_length)
    features = pad_batch(encodings, encoder.pad_token_id)
    width = features["input_ids"].shape[1]
    rows = []
    for enc, (_, tags) in zip(encodings, NER_DATA, strict=True):
        aligned = align_labels(enc["word_ids"], [NER_TAGS.index(t) for t in tags])
        rows.append(aligned + [IGNORE_INDEX] * (width - len(aligned)))
    return features, torch.tensor(rows)


def test_token_classification_overfit(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    model = MultiTaskModel(tiny_encoder, {"ner": TaskSpec("token_classification", NER_TAGS, dropout=0.0)})
    features, target = ner_batch(tiny_encoder)

    def loss() -> torch.Tensor:
        logits = model(features)["ner"]  # (batch, seq_len, tags)
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)

    assert_learned(fit(model, loss, steps=60))
    texts = [text for text, _ in NER_DATA]
    predictions = model.predict(texts)
    assert [p["ner"]["tags"] for p in predictions] == [tags for _, tags in NER_DATA]
    spans = [[(e["type"], e["text"]) for e in p["ner"]["entities"]] for p in predictions]
    assert spans == [
        [("PER", "John Smith"), ("LOC", "Berlin")],
        [("PER", "Mary"), ("LOC", "New York")],
        [("PER", "Schwarzenegger"), ("LOC", "Tokyo")],
        [],
    ]
    for text, p in zip(texts, predictions, strict=True):
        assert p["ner"]["truncated_words"] == 0
        for e in p["ner"]["entities"]:
            assert text[e["start"] : e["end"]] == e["text"]
            assert 0.0 < e["score"] <= 1.0
    new_york = predictions[1]["ner"]["entities"][1]
    assert (new_york["word_start"], new_york["word_end"]) == (2, 4)

    # pre-tokenised input (a list of words) gives the same tags
    words = [[w.text for w in split_words(t)] for t in texts]
    assert [p["ner"]["tags"] for p in model.predict(words)] == [tags for _, tags in NER_DATA]
    check_save_load_and_batching(model, texts, tmp_path)
    check_save_load_and_batching(model, words, tmp_path / "words")


# ----------------------------------------------------------------------- similarity
def test_similarity_overfit(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    pairs = [
        ("a cat sits on the mat", "a kitten rests on the rug", 1.0),
        ("stocks fell sharply today", "the market dropped", 1.0),
        ("a cat sits on the mat", "stocks fell sharply today", 0.0),
        ("the market dropped", "a kitten rests on the rug", 0.0),
    ]
    model = MultiTaskModel(tiny_encoder, {"sts": TaskSpec("similarity", loss="cosine")})
    left = tiny_encoder.tokenize([a for a, _, _ in pairs])
    right = tiny_encoder.tokenize([b for _, b, _ in pairs])
    target = torch.tensor([s for _, _, s in pairs])

    def loss() -> torch.Tensor:  # cosine loss: MSE between cos(u, v) and the gold score
        cos = F.cosine_similarity(model(left)["sts"], model(right)["sts"])
        return F.mse_loss(cos, target)

    assert_learned(fit(model, loss))
    sims = [float(model.similarity(a, b)[0, 0]) for a, b, _ in pairs]
    assert min(sims[:2]) > max(sims[2:]) + 0.3, sims
    # similarity tasks have no per-text output in predict()
    assert model.predict(["a cat sits on the mat"]) == [{}]
    loaded = MultiTaskModel.from_pretrained(model.save_pretrained(tmp_path / "model"))
    assert np.allclose([float(loaded.similarity(a, b)[0, 0]) for a, b, _ in pairs], sims, atol=1e-5)
    firsts = [a for a, _, _ in pairs]
    assert np.allclose(loaded.encode(firsts), model.encode(firsts), atol=1e-6)
    one_by_one = np.stack([loaded.encode(t) for t in firsts])
    assert np.allclose(loaded.encode(firsts, batch_size=4), one_by_one, atol=1e-5)


# ----------------------------------------------------------------------- several heads, one pass
MULTI = {
    "topic": TaskSpec("classification", ["sports", "politics"]),
    "rating": TaskSpec("regression"),
    "ner": TaskSpec("token_classification", NER_TAGS),
}


def count_encoder_calls(model: MultiTaskModel) -> list[int]:
    calls = [0]
    original = model.encoder.transformer.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    model.encoder.transformer.forward = counting  # type: ignore[method-assign]
    return calls


def test_all_heads_from_one_encoder_pass(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, MULTI)
    calls = count_encoder_calls(model)
    texts = ["Messi lives in Paris.", "The senate vote was close.", "A quiet day."]
    predictions = model.predict(texts, batch_size=32)
    assert calls[0] == 1
    assert all(set(p) == {"topic", "rating", "ner"} for p in predictions)
    calls[0] = 0
    model.predict(texts, batch_size=1)
    assert calls[0] == len(texts)  # one pass per batch, not per head
    calls[0] = 0
    model(tiny_encoder.tokenize(texts))
    assert calls[0] == 1


def test_predict_output_format(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, {**MULTI, "aspects": TaskSpec("multilabel", ["a", "b"])})
    (result,) = model.predict("John lives in Rome.")
    assert set(result["topic"]) == {"label", "score", "probabilities"}
    assert result["topic"]["label"] in ("sports", "politics")
    assert set(result["rating"]) == {"score"} and isinstance(result["rating"]["score"], float)
    assert set(result["aspects"]) == {"labels", "probabilities"}
    assert set(result["ner"]) == {"entities", "tags", "truncated_words"}
    assert len(result["ner"]["tags"]) == 5  # John lives in Rome .
    for entity in result["ner"]["entities"]:
        assert set(entity) == {"type", "text", "start", "end", "word_start", "word_end", "score"}


def test_predict_tasks_subset_and_unknown(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, MULTI)
    assert set(model.predict(["x"], tasks=["rating"])[0]) == {"rating"}
    with pytest.raises(PolyheadError) as info:
        model.predict(["x"], tasks=["rating", "sentimnet"])
    message = str(info.value)
    assert "'sentimnet'" in message and "topic, rating, ner" in message and "\n" not in message
    with pytest.raises(PolyheadError, match="unknown task"):
        model(tiny_encoder.tokenize(["x"]), tasks=["nope"])


def test_predict_empty_inputs(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, MULTI)
    assert model.predict([]) == []
    for empty in ("", "  ", [], ["", " "]):  # #22 item 10: refused as the CLI and the server refuse them
        with pytest.raises(PolyheadError, match="text 0 is empty; give a text with something to read"):
            model.predict([empty])


def test_predict_rejects_bad_items(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, MULTI)
    with pytest.raises(PolyheadError, match="text 1 must be a string or a list of word strings"):
        model.predict(["fine", ["ok", 3]])


def test_encode_matches_the_encoder(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, MULTI)
    texts = ["one", "two sentences here"]
    assert np.array_equal(model.encode(texts), tiny_encoder.encode(texts))
    assert model.encode("one").shape == (tiny_encoder.dim,)


def test_predict_restores_training_mode(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, MULTI)
    model.train()
    model.predict(["x"])
    assert model.training and model.heads["topic"].training
