"""Config loading: typed sections, dotted overrides, errors with file:line, key path and valid keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from polyhead.config import Config, load_config, sub_model
from polyhead.errors import ConfigError

BASE = """\
name: t
encoder:
  model: default
tasks:
  topic:
    type: classification
    data:
      train: a.tsv
training:
  epochs: 2
  optimizer:
    lr: 1.0e-4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_valid_config_and_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.training.epochs == 2
    assert cfg.training.optimizer.lr == 1e-4
    assert cfg.training.sampling.strategy == "proportional"
    assert cfg.tasks["topic"].head.dropout == 0.1


def test_overrides_are_typed(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, BASE),
        [
            "training.epochs=1",
            "training.optimizer.lr=3e-5",
            "tasks.topic.data.limit=10",
            "training.freeze.heads=[topic]",
        ],
    )
    assert cfg.training.epochs == 1
    assert cfg.training.optimizer.lr == pytest.approx(3e-5)
    assert cfg.tasks["topic"].data.limit == 10
    assert cfg.training.freeze.heads == ["topic"]


def test_typo_names_line_key_and_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("    lr: 1.0e-4", "    lrr: 1.0e-4"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{path}:12" in msg
    assert "training.optimizer.lrr" in msg
    assert "valid keys: lr, head_lr" in msg


def test_typo_inside_a_task_lists_data_keys(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("      train: a.tsv", "      train: a.tsv\n      lable_column: x"))
    with pytest.raises(
        ConfigError, match=r"c.yaml:9: tasks.topic.data.lable_column: unknown key .*label_column"
    ):
        load_config(path)


def test_wrong_type_and_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:10: training.epochs"):
        load_config(write(tmp_path, BASE.replace("epochs: 2", "epochs: two")))
    with pytest.raises(ConfigError, match=r"training.epochs: Input should be greater than 0"):
        load_config(write(tmp_path, BASE), ["training.epochs=0"])
    with pytest.raises(ConfigError, match=r"tasks.topic.type"):
        load_config(write(tmp_path, BASE.replace("type: classification", "type: clasification")))


def test_bad_override_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(write(tmp_path, BASE), ["training.epochs"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(write(tmp_path, BASE), ["training.epochs.x=1"])


def test_unknown_task_references(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training.freeze.heads names unknown task 'nope'"):
        load_config(write(tmp_path, BASE), ["training.freeze.heads=[nope]"])
    with pytest.raises(ConfigError, match=r"stages\[0\] names unknown task 'x'"):
        load_config(write(tmp_path, BASE), ["training.stages=[{tasks: [x]}]"])


def test_similarity_needs_pair_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pair_column is required"):
        load_config(write(tmp_path, BASE.replace("classification", "similarity")))


def test_missing_file_invalid_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        load_config(write(tmp_path, "tasks: [\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def all_keys(model: type, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(name)
        sub = sub_model(field.annotation)
        if sub is not None:
            keys += all_keys(sub, f"{prefix}{name}.")
    return keys


def test_every_config_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    documented = set(re.findall(r"\| `([a-z_0-9]+)` \|", doc))
    missing = sorted(set(all_keys(Config)) - documented)
    assert not missing, f"docs/config.md lacks rows for: {missing}"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
)
def test_shipped_configs_load_and_open_with_a_command(name: str) -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    path = next(root.rglob(name))
    assert path.read_text().startswith("#"), "each config opens with a comment showing its command"
    assert "polyhead " in path.read_text().split("\n\n")[0]
    load_config(path)


def test_unset_pooling_and_normalize_come_from_the_model(tmp_path: Path, st_cls_dir: Path) -> None:
    """A sentence-transformers model trains with its own pooling and normalisation unless the config says."""
    from polyhead.modeldir import TaskSpec
    from polyhead.training.setup import build_model

    specs = {"topic": TaskSpec("classification", ["a", "b"])}
    cfg = load_config(write(tmp_path, BASE.replace("model: default", f"model: {st_cls_dir}")))
    assert (cfg.encoder.pooling, cfg.encoder.normalize) == (None, None)
    encoder = build_model(cfg, specs).encoder
    assert (encoder.pooling.mode, encoder.normalize, encoder.max_length) == ("cls", False, 128)  # config's length
    cfg = load_config(write(tmp_path, BASE.replace("model: default", f"model: {st_cls_dir}\n  pooling: mean")))
    assert build_model(cfg, specs).encoder.pooling.mode == "mean"


def test_errors_in_set_overrides_name_the_override_not_a_file_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=r"^--set training.epochs=zero: training.epochs: Input should be a valid int"):
        load_config(path, ["training.epochs=zero"])
    with pytest.raises(ConfigError, match=r"^--set training.epoch=1: training.epoch: unknown key 'epoch'"):
        load_config(path, ["training.epoch=1"])
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: training.epochs: Input should be a valid int"):
        load_config(write(tmp_path, BASE.replace("epochs: 2", "epochs: two")), ["training.seed=1"])  # the file's


def test_set_errors_in_sections_the_override_made_or_replaced(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=r"^--set encoder.pooling.mode=cls: encoder.pooling: "):
        load_config(path, ["encoder.pooling.mode=cls"])  # turned a value into a section
    with pytest.raises(ConfigError, match=r"^--set training.gradual_unfreezing.unit=steps: training.gradual_unf"):
        load_config(path, ["training.gradual_unfreezing.unit=steps"])  # a section the file doesn't have
