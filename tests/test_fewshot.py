"""Contrastive few-shot training (``few_shot: true``): seeded pairs covering every class, the stage plan,
a 4-example-per-class toy task learnt by a tiny model, several few-shot heads on one encoder, embedding
preservation alongside, exact resume, and one-line errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import tiny_config
from polyhead.config import Config, ConfigError, load_config
from polyhead.data.readers import Example
from polyhead.errors import DataError
from polyhead.training import fewshot, plan
from polyhead.training.trainer import Trainer, TrainingInterrupted

CLASSES = {
    "food": ["pizza", "pasta", "bread"],
    "music": ["guitar", "piano", "drums"],
    "weather": ["rain", "snow", "wind"],
}
FILLERS = ["today", "really", "the", "my", "again", "very", "some", "our"]


def toy_rows(per_class: int, seed: int) -> list[tuple[str, str]]:
    """(label, text) rows: a class's two keywords among filler words, so the label is in the words."""
    rng = random.Random(seed)
    rows = []
    for label, words in CLASSES.items():
        for _ in range(per_class):
            text = [rng.choice(FILLERS), rng.choice(words), rng.choice(FILLERS), rng.choice(words), rng.choice(FILLERS)]
            rows.append((label, " ".join(text)))
    rng.shuffle(rows)
    return rows


def write_toy(path: Path, per_class: int, seed: int) -> str:
    path.write_text("label\ttext\n" + "".join(f"{a}\t{b}\n" for a, b in toy_rows(per_class, seed)))
    return str(path)


def toy_config(tmp: Path, model_dir: Path, **training: Any) -> dict[str, Any]:
    data = {"train": write_toy(tmp / "train.tsv", 4, 1), "test": write_toy(tmp / "test.tsv", 20, 2)}
    return {
        "encoder": {"model": str(model_dir), "max_length": 16},
        "tasks": {"topic": {"type": "classification", "few_shot": True, "data": data}},
        "training": {
            "seed": 5,
            "log_with": [],
            "few_shot": {"pairs_per_example": 20, "epochs": 2, "lr": 1e-3, "head_steps": 150, "head_lr": 5e-2},
            **training,
        },
    }


# ------------------------------------------------------------------------------------------ pairs
def sets_of(labels: list[Any]) -> list[frozenset[str]]:
    return [frozenset(x) if isinstance(x, list) else frozenset({x}) for x in labels]


def test_pairs_are_seeded_and_cover_every_class() -> None:
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 2 + ["d"] * 3
    sets = sets_of(labels)
    first, second, target = fewshot.sample_pairs(sets, 3, seed=7)
    assert (first, second, target) == fewshot.sample_pairs(sets, 3, seed=7)
    assert (first, second) != fewshot.sample_pairs(sets, 3, seed=8)[:2]
    # every example gets 3 positive and 3 negative partners, so every class is paired with itself and others
    assert len(first) == 6 * len(labels)
    for i in range(len(labels)):
        mine = [(b, t) for a, b, t in zip(first, second, target, strict=True) if a == i]
        assert sorted(t for _, t in mine) == [0.0] * 3 + [1.0] * 3
        for partner, t in mine:
            assert partner != i
            assert (labels[partner] == labels[i]) == (t == 1.0)
    positives = {labels[a] for a, t in zip(first, target, strict=True) if t == 1.0}
    negatives = {labels[b] for b, t in zip(second, target, strict=True) if t == 0.0}
    assert positives == negatives == set(labels)


def test_multilabel_pairs_target_the_label_overlap() -> None:
    sets = sets_of([["x", "y"], ["x"], ["y"], ["z"], ["z", "x"], [""], [""]])
    first, second, target = fewshot.sample_pairs(sets, 4, seed=1)
    for a, b, t in zip(first, second, target, strict=True):
        expected = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
        assert t == pytest.approx(expected)
    assert 0 < min(t for t in target if t > 0) < 1  # partial overlaps exist: {x, y} with {x}


def test_self_pairs_make_each_example_one_of_its_own_positive_partners() -> None:
    labels = ["a", "a", "b", "b", "b"]
    first, second, target = fewshot.sample_pairs(sets_of(labels), 40, seed=3, self_pairs=True)
    for i in range(len(labels)):
        partners = {b for a, b, t in zip(first, second, target, strict=True) if a == i and t == 1.0}
        assert partners == {j for j in range(len(labels)) if labels[j] == labels[i]}  # itself included
    assert all(a != b for a, b in zip(*fewshot.sample_pairs(sets_of(labels), 40, seed=3)[:2], strict=True))


def distinct_pairs(labels: list[str], same: bool, self_pairs: bool) -> set[tuple[int, int]]:
    n = len(labels)
    return {(i, j) for i in range(n) for j in range(i if self_pairs else i + 1, n) if (labels[i] == labels[j]) == same}


@pytest.mark.parametrize("self_pairs", [True, False])
def test_all_pairs_cycles_every_distinct_pair_evenly(self_pairs: bool) -> None:
    labels = ["a", "a", "a", "b", "b"]  # 6 positive pairs i <= j (4 without i == j), 6 negative ones
    sets = sets_of(labels)
    first, second, target = fewshot.all_pairs(sets, 2, seed=[4, 1], self_pairs=self_pairs)
    assert (first, second, target) == fewshot.all_pairs(sets, 2, seed=[4, 1], self_pairs=self_pairs)
    assert (first, second) != fewshot.all_pairs(sets, 2, seed=[4, 2], self_pairs=self_pairs)[:2]
    assert len(first) == 2 * 2 * len(labels)  # per_example x examples of each kind
    assert target == [1.0, 0.0] * (2 * len(labels))  # positives and negatives alternate
    pairs = list(zip(first, second, strict=True))
    for same in (True, False):
        mine = [p for p, t in zip(pairs, target, strict=True) if (t == 1.0) == same]
        assert all(a <= b for a, b in mine)
        assert set(mine) == distinct_pairs(labels, same, self_pairs)
        uses = [mine.count(p) for p in set(mine)]
        assert max(uses) - min(uses) <= 1, uses  # cycled: no pair used twice before every pair is used once
    assert {labels[a] for a, t in zip(first, target, strict=True) if t == 1.0} == set(labels)


def test_all_pairs_draws_distinct_random_pairs_on_large_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = ["a"] * 30 + ["b"] * 20 + ["c"] * 10
    sets = sets_of(labels)
    monkeypatch.setattr(fewshot, "MAX_ENUMERATED", 100)  # 1830 pairs: drawn, not listed
    first, second, target = fewshot.all_pairs(sets, 3, seed=9)
    assert (first, second, target) == fewshot.all_pairs(sets, 3, seed=9)
    assert len(first) == 2 * 3 * len(labels)
    assert target == [1.0, 0.0] * (3 * len(labels))
    pairs = list(zip(first, second, strict=True))
    assert len(set(pairs)) == len(pairs)  # 180 of each kind exist many times over: no pair twice
    for (a, b), t in zip(pairs, target, strict=True):
        assert a <= b and (labels[a] == labels[b]) == (t == 1.0)
    assert {labels[a] for a, t in zip(first, target, strict=True) if t == 1.0} == set(labels)
    assert {labels[x] for a, b, t in zip(first, second, target, strict=True) if t == 0.0 for x in (a, b)} == set(labels)


def test_all_pairs_on_multilabel_sets_target_the_label_overlap() -> None:
    sets = sets_of([["x", "y"], ["x"], ["y"], ["z"], ["z", "x"], [""], [""]])
    first, second, target = fewshot.all_pairs(sets, 3, seed=2)
    for a, b, t in zip(first, second, target, strict=True):
        assert t == pytest.approx(len(sets[a] & sets[b]) / len(sets[a] | sets[b]))
    assert 0 < min(t for t in target if t > 0) < 1


def test_label_sets_treat_no_label_as_a_class() -> None:
    examples = [Example("a", ["x"]), Example("b", []), Example("c", [])]
    assert fewshot.label_sets("multilabel", examples) == [frozenset({"x"}), frozenset({""}), frozenset({""})]


def test_a_class_with_one_example_is_a_one_line_error() -> None:
    examples = [Example("t", label, source=f"train.tsv:{i + 2}") for i, label in enumerate("aabbc")]
    with pytest.raises(DataError) as info:
        fewshot.check_classes("topic", fewshot.label_sets("classification", examples), examples)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("train.tsv:6: tasks.topic.few_shot needs at least 2 training examples")
    assert "class 'c' has 1" in message


def test_the_cli_reports_a_single_example_class(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from polyhead.cli import main

    cfg = toy_config(tmp_path, tiny_model_dir)
    train = Path(cfg["tasks"]["topic"]["data"]["train"])
    train.write_text(train.read_text() + "lonely\tjust one of these\n")
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    monkeypatch.setattr(sys, "argv", ["polyhead", "train", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as refused:
        main()
    err = capsys.readouterr().err
    assert refused.value.code == 2
    assert f"error: {train}:14: tasks.topic.few_shot needs at least 2" in " ".join(err.split())
    assert "class 'lonely' has 1" in " ".join(err.split()) and "Traceback" not in err
    # refused before the model loads, and the run directory is left empty: the same command runs once fixed
    assert "parameters train" not in capsys.readouterr().out + err
    assert list((tmp_path / "r").iterdir()) == []
    train.write_text(train.read_text() + "lonely\tand a second one\n")
    monkeypatch.setattr(sys, "argv", ["polyhead", "train", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "r"),
                                      "--quiet"])
    main()
    assert (tmp_path / "r" / "model" / "polyhead.json").is_file()


def test_a_multilabel_row_without_labels_is_named_as_such() -> None:
    examples = [Example("a", ["x"]), Example("b", ["x"]), Example("c", [], source="train.jsonl:3")]
    with pytest.raises(DataError, match=r"train.jsonl:3: .* class \(no label\) has 1"):
        fewshot.check_classes("tags", fewshot.label_sets("multilabel", examples), examples)


# ------------------------------------------------------------------------------------------ config and plan
def test_few_shot_is_refused_for_types_without_sentence_labels(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = toy_config(tmp_path, tiny_model_dir)
    cfg["tasks"]["topic"]["type"] = "regression"
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    with pytest.raises(
        ConfigError,
        match=r"tasks.topic.few_shot: a regression task can't train few-shot; "
        r"task types that can: classification, multilabel",
    ):
        load_config(path)


def test_plan_adds_a_contrastive_and_a_heads_stage(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_model_dir)
    cfg["tasks"]["topic"]["few_shot"] = True
    cfg["tasks"]["sentiment"]["few_shot"] = True
    config = Config.model_validate(cfg)
    stages = fewshot.add_stages(config, plan.resolve_stages(config))
    assert [s.name for s in stages] == ["train", "few_shot", "few_shot_heads"]
    assert stages[0].tasks == ["entities"]  # the other task trains first, in the usual stage
    assert (stages[1].tasks, stages[1].pair_tasks, stages[1].batch_size) == ([], ["topic", "sentiment"], 16)
    assert stages[2].tasks == ["topic", "sentiment"] and stages[2].freeze.mode == "encoder"
    assert stages[2].steps == 200 and stages[2].optimizer.head_lr == 1e-2
    cfg["training"]["freeze"] = {"heads": ["sentiment"]}  # a frozen head stays frozen in the heads stage too
    config = Config.model_validate(cfg)
    assert fewshot.add_stages(config, plan.resolve_stages(config))[2].freeze.heads == ["sentiment"]
    del cfg["training"]["freeze"]
    cfg["training"]["freeze"] = {"mode": "encoder"}  # nothing for the contrastive stage to train
    config = Config.model_validate(cfg)
    with pytest.raises(ConfigError, match="few_shot trains the encoder on pairs, and training.freeze.mode: encoder"):
        fewshot.add_stages(config, plan.resolve_stages(config))
    del cfg["training"]["freeze"]
    cfg["training"]["stages"] = [{"tasks": ["topic", "sentiment", "entities"], "epochs": 2}]
    config = Config.model_validate(cfg)
    assert [s.name for s in fewshot.add_stages(config, plan.resolve_stages(config))] == ["few_shot", "stage1"]
    del cfg["tasks"]["topic"]["few_shot"], cfg["tasks"]["sentiment"]["few_shot"]
    config = Config.model_validate(cfg)
    assert [s.name for s in fewshot.add_stages(config, plan.resolve_stages(config))] == ["stage1"]


def test_stages_that_train_no_few_shot_head_are_reported(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(tmp_path, tiny_model_dir)
    cfg["tasks"]["topic"]["few_shot"] = True
    cfg["training"]["stages"] = [{"tasks": ["sentiment", "entities"], "epochs": 1}]
    config = Config.model_validate(cfg)
    with caplog.at_level("WARNING"):
        fewshot.add_stages(config, plan.resolve_stages(config))
    assert "training.stages train no head of topic" in caplog.text


# ------------------------------------------------------------------------------------------ training
def class_separation(trainer: Trainer, texts: list[str], labels: list[str]) -> float:
    """Mean cosine within a class minus mean cosine across classes, on the trainer's encoder."""
    emb = torch.nn.functional.normalize(torch.as_tensor(np.asarray(trainer.model.encoder.encode(texts))), dim=-1)
    cos = emb @ emb.T
    same = torch.tensor([[a == b for b in labels] for a in labels])
    off = ~torch.eye(len(labels), dtype=torch.bool)
    return float(cos[same & off].mean() - cos[~same].mean())


def test_a_tiny_model_learns_a_four_example_per_class_task(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = Config.model_validate(toy_config(tmp_path, tiny_model_dir))
    rows = toy_rows(20, 2)
    texts, labels = [t for _, t in rows], [lab for lab, _ in rows]
    trainer = Trainer(config, tmp_path / "run")
    trainer.setup()
    before = class_separation(trainer, texts, labels)
    results = trainer.run()
    after = class_separation(trainer, texts, labels)
    assert after > before + 0.3, (before, after)  # the contrastive stage pulled the classes apart
    assert results["test"]["topic"]["accuracy"] >= 0.85, results["test"]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    stages = {r.get("stage") for r in lines if "train/loss/topic" in r}
    assert stages == {"few_shot", "few_shot_heads"}


def test_several_few_shot_heads_share_one_encoder(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        few_shot={"pairs_per_example": 8, "epochs": 3, "lr": 1e-3, "head_steps": 100, "head_lr": 5e-2},
    )
    del cfg["tasks"]["entities"]
    cfg["tasks"]["topic"]["few_shot"] = cfg["tasks"]["sentiment"]["few_shot"] = True
    trainer = Trainer(Config.model_validate(cfg), tmp_path / "run")
    with caplog.at_level("WARNING"):
        results = trainer.run()
    # tiny_config's steps_per_epoch (4) cuts the contrastive epochs short, and the log says so
    assert "training.steps_per_epoch=4 sets the few_shot stage's epochs too: 4 of the" in caplog.text
    groups = trainer.start_stage(0)[0].step.groups
    assert sorted(groups) == ["few_shot:sentiment", "few_shot:topic"]
    assert results["dev"]["topic"]["accuracy"] >= 0.8 and results["dev"]["sentiment"]["accuracy"] >= 0.8, results


def test_preservation_works_in_the_contrastive_stage(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = toy_config(tmp_path, tiny_model_dir, preserve_embedding={"weight": 2.0})
    Trainer(Config.model_validate(cfg), tmp_path / "run").run()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in lines if r.get("stage") == "few_shot" and "train/loss/preserve_embedding" in r]
    assert logged and all(r["train/loss/preserve_embedding"] >= 0 for r in logged)


def test_resume_inside_the_contrastive_stage_is_exact(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    options = {"few_shot": {"pairs_per_example": 4, "lr": 1e-3, "head_steps": 10}}
    whole = Trainer(
        Config.model_validate(toy_config(tmp_path / "a", tiny_model_dir, **options)), tmp_path / "a" / "run"
    )
    whole.run()
    config = Config.model_validate(toy_config(tmp_path / "b", tiny_model_dir, **options))
    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "b" / "run").run(stop_after_steps=3)
    resumed = Trainer(config, tmp_path / "b" / "run", resume=True)
    resumed.run()
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_the_training_guide_example_is_a_valid_config() -> None:
    import yaml

    guide = (Path(__file__).resolve().parents[1] / "docs" / "training-guide.md").read_text()
    section = guide.split("## Few-shot", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = Config.model_validate(yaml.safe_load(block))
    assert [name for name, task in config.tasks.items() if task.few_shot] == ["intent", "topics"]
    stages = fewshot.add_stages(config, plan.resolve_stages(config))
    assert [s.name for s in stages] == ["few_shot", "few_shot_heads"]


def test_encode_once_gives_the_same_loss_and_gradients_from_fewer_encoder_rows(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    trainer = Trainer(Config.model_validate(toy_config(tmp_path, tiny_model_dir)), tmp_path / "run")
    trainer.setup()
    run, _ = trainer.start_stage(0)
    step, group = run.step, run.step.groups["few_shot:topic"]
    assert isinstance(group, fewshot.PairGroup) and group.encode_once
    trainer.model.eval()  # no dropout: encoding a sentence once or twice is the same function
    widths: list[int] = []
    hook = trainer.model.encoder.register_forward_hook(lambda m, args, out: widths.append(len(args[0]["input_ids"])))
    local = list(range(32))  # 12 examples: 32 pairs repeat sentences
    rows = {group.first[k] for k in local} | {group.second[k] for k in local}
    selves = {group.first[k] for k in local if group.first[k] == group.second[k]}
    assert selves  # a self pair's two sides stay two rows (dropout makes them differ)
    results, rows_encoded = [], []
    for once in (True, False):
        group.encode_once = once
        widths.clear()
        trainer.model.zero_grad()
        loss = step.forward_batch("few_shot:topic", local)["topic"]
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.encoder.parameters() if p.grad is not None]
        results.append((loss.detach(), grads))
        rows_encoded.append(sum(widths))
    hook.remove()
    assert rows_encoded == [len(rows) + len(selves), 64] and len(rows) <= 12
    torch.testing.assert_close(results[0][0], results[1][0])
    assert len(results[0][1]) == len(results[1][1]) > 0
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_length_chunks_cut_where_padding_shrinks() -> None:
    lengths = [30, 5, 6, 31, 5, 7, 29, 6, 32, 5]
    chunks = fewshot.length_chunks(lengths)
    assert sorted(i for c in chunks for i in c) == list(range(10))
    assert [sorted(lengths[i] for i in c) for c in chunks] == [[5, 5, 5, 6, 6, 7], [29, 30, 31, 32]]
    assert fewshot.length_chunks([10] * 12) == [list(range(12))]  # nothing to gain: one pass
    assert len(fewshot.length_chunks([5, 40, 5, 40])) == 1  # under min_rows a side
    assert fewshot.length_chunks([]) == []


def test_encoding_by_length_equals_one_padded_pass(tmp_path: Path, tiny_model_dir: Path) -> None:
    trainer = Trainer(Config.model_validate(toy_config(tmp_path, tiny_model_dir)), tmp_path / "run")
    trainer.setup()
    step = trainer.start_stage(0)[0].step
    assert isinstance(step, fewshot.ContrastiveStep)
    trainer.model.eval()
    words = ["pizza", "guitar", "rain", "snow", "piano", "bread", "drums", "wind", "pasta"]
    texts = [" ".join(words[: 1 + i % 3] if i % 2 else words + words[: i % 5]) for i in range(12)]
    encs = trainer.model.encoder.tokenize_lists(texts)  # 6 short, 6 long
    assert len(fewshot.length_chunks([len(e["input_ids"]) for e in encs])) > 1
    whole = trainer.model.encoder(fewshot.pad_batch(encs, trainer.model.encoder.pad_token_id))
    parts = step.encode_by_length(encs)
    for key in ("sentence_embedding", "pooled_embedding"):
        torch.testing.assert_close(parts[key], whole[key], rtol=1e-5, atol=1e-6)


def test_distinct_rows_keep_a_self_pairs_two_sides() -> None:
    rows = [0, 1, 2, 1, 1, 3]  # pairs (0, 1), (1, 1), (2, 3)
    encoded, where = fewshot.distinct(rows, 3)
    assert [encoded[w] for w in where.tolist()] == rows
    assert sorted(encoded) == [0, 1, 1, 2, 3] and where[1] != where[4]  # example 1: its self pair's two rows


def test_few_shot_batching_is_its_own_option(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = toy_config(tmp_path, tiny_model_dir)
    cfg["training"]["few_shot"]["bucket_by_length"] = False
    trainer = Trainer(Config.model_validate(cfg), tmp_path / "run")
    trainer.setup()
    assert [trainer.start_stage(i)[0].bucket_by_length for i in (0, 1)] == [False, True]
    cfg["training"]["few_shot"]["bucket_by_length"] = True
    trainer = Trainer(Config.model_validate(cfg), tmp_path / "run2")
    trainer.setup()
    assert trainer.start_stage(0)[0].bucket_by_length is True
