"""``polyhead push`` / ``push_to_hub``: HfApi is replaced by a recorder (this machine has no Hub), which checks
the exact calls and, as ``upload_folder`` does, which files its ``allow_patterns`` select from the folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub
import pytest

from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.modeldir.push import EXPORT_FILES, model_files, push_to_hub
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from test_cli_encode_predict import assert_user_error, run_main

REPO = "someone/tiny-polyhead"


class RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: records every call; ``upload_folder`` also records the files
    its patterns select from the folder and the model card as it was at upload time."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, token: str | None = None, **kwargs: Any) -> None:
        self.calls.append(("init", {"token": token, **kwargs}))

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id: str, **kwargs: Any) -> None:
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs: Any) -> str:
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(kwargs["folder_path"])
        present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        selected = set(filter_repo_objects(present, allow_patterns=kwargs["allow_patterns"]))
        self.calls.append(("upload_folder", {**kwargs, "selected": selected,
                                             "card": (folder / "README.md").read_text()}))
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> type[RecordingApi]:
    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    return RecordingApi


@pytest.fixture(scope="module")
def saved(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tasks = {"topic": TaskSpec("classification", ["sport", "tech"]), "ner": TaskSpec("token_classification",
                                                                                    ["O", "B-PER", "I-PER"])}
    model = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_model_dir, projection_dim=16), tasks)
    return model.save_pretrained(tmp_path_factory.mktemp("push") / "model")


def with_clutter(saved: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """A run directory whose model directory also holds what must never be uploaded; returns (model dir, the
    files save_pretrained wrote)."""
    written = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    run = tmp_path / "run"
    model = shutil.copytree(saved, run / "model")
    (run / "checkpoints" / "step-4").mkdir(parents=True)
    (run / "checkpoints" / "step-4" / "model.safetensors").write_bytes(b"x")
    (run / "metrics.jsonl").write_text("{}\n")
    clutter = {
        "checkpoints/step-2/model.safetensors": b"checkpoint", "checkpoints/step-2/optimizer.safetensors": b"o",
        "preds.jsonl.polyhead-partial/progress.json": b"{}", "preds.jsonl.polyhead-partial/chunk-0.jsonl": b"",
        "metrics.jsonl": b"{}", "training_curves.png": b"png", ".model.onnx.tmp-123": b"tmp",
        "pytorch_model.bin": b"pickle", "custom.py": b"code", "notes.txt": b"mine", "extra.safetensors": b"x",
        "3_Dense/stray.bin": b"x",
    }  # fmt: skip
    for name, data in clutter.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(data)
    return model, written


def test_push_uploads_exactly_the_model_files(api: type[RecordingApi], saved: Path, tmp_path: Path) -> None:
    model, written = with_clutter(saved, tmp_path)
    assert {"polyhead.json", "config.json", "model.safetensors", "heads.safetensors", "modules.json",
            "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors", "README.md"} <= written
    url = push_to_hub(model, REPO, private=True, revision="dev", commit_message="first model")
    assert url == f"https://huggingface.co/{REPO}/commit/abc123"
    names = [name for name, _ in api.calls]
    assert names == ["init", "create_repo", "create_branch", "upload_folder"]
    calls = dict(api.calls)
    assert calls["init"] == {"token": None}  # the user's own token, as huggingface_hub finds it
    assert calls["create_repo"] == {"repo_id": REPO, "private": True, "exist_ok": True, "repo_type": "model"}
    assert calls["create_branch"] == {"repo_id": REPO, "branch": "dev", "exist_ok": True, "repo_type": "model"}
    upload = calls["upload_folder"]
    assert upload["selected"] == written == set(upload["allow_patterns"]) == set(model_files(model))
    assert Path(upload["folder_path"]) == model
    assert (upload["repo_id"], upload["revision"], upload["commit_message"]) == (REPO, "dev", "first model")
    assert upload["create_pr"] is False and upload["repo_type"] == "model"
    assert set(upload["delete_patterns"]) == set(EXPORT_FILES)  # no export here: a stale one is removed remotely
    # the card was refreshed before the upload: it loads the model by its Hub name
    assert f'MultiTaskModel.from_pretrained("{REPO}")' in upload["card"]
    assert f"polyhead predict {REPO}" in upload["card"]


def test_exports_are_uploaded_and_not_deleted(api: type[RecordingApi], saved: Path, tmp_path: Path) -> None:
    model = shutil.copytree(saved, tmp_path / "model")
    for name in ("onnx.json", "model.onnx", "openvino.json", "openvino_model.xml", "openvino_model.weights"):
        (model / name).write_bytes(b"export")
    push_to_hub(model, REPO)
    calls = dict(api.calls)
    upload = calls["upload_folder"]
    assert {"model.onnx", "onnx.json", "openvino_model.weights"} <= upload["selected"]
    assert set(upload["delete_patterns"]) == {"model.int8.onnx", "openvino_model.int8.xml",
                                              "openvino_model.int8.weights"}
    assert "create_branch" not in calls and upload["revision"] is None
    assert calls["create_repo"]["private"] is None and upload["commit_message"].startswith("Upload polyhead model (")


def test_a_users_own_card_is_uploaded_as_it_is(api: type[RecordingApi], saved: Path, tmp_path: Path) -> None:
    model = shutil.copytree(saved, tmp_path / "model")
    (model / "README.md").write_text("# My own card\n")
    push_to_hub(model, REPO)
    assert dict(api.calls)["upload_folder"]["card"] == "# My own card\n"


def test_model_push_to_hub_saves_then_uploads(api: type[RecordingApi], saved: Path) -> None:
    model = MultiTaskModel.from_pretrained(saved)
    url = model.push_to_hub(REPO, private=False, token="hf_given")
    assert url.endswith("/commit/abc123")
    calls = dict(api.calls)
    assert calls["init"] == {"token": "hf_given"} and calls["create_repo"]["private"] is False
    written = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert calls["upload_folder"]["selected"] == written
    assert not Path(calls["upload_folder"]["folder_path"]).exists()  # a temporary directory, removed after


def test_errors_are_one_line(api: type[RecordingApi], saved: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    model, _ = with_clutter(saved, tmp_path)
    run = model.parent
    assert_user_error(run_main(capsys, monkeypatch, "push", str(run), REPO),
                      f"{run} is not a polyhead model directory", f"the model is in {model}")
    assert_user_error(run_main(capsys, monkeypatch, "push", str(tmp_path / "nope"), REPO), "does not exist")
    for bad in ("a/b/c", "bad name!", "org/" + "x" * 100):
        assert_user_error(run_main(capsys, monkeypatch, "push", str(model), bad),
                          f"repository id {bad!r} is not a Hugging Face Hub name")
    assert api.calls == []  # nothing was sent

    def refuse(self: Any, repo_id: str, **kwargs: Any) -> None:
        from huggingface_hub.errors import HfHubHTTPError

        request = httpx.Request("POST", "http://127.0.0.1:9/api/repos/create")
        raise HfHubHTTPError("401 Client Error: Unauthorized", response=httpx.Response(401, request=request))

    monkeypatch.setattr(RecordingApi, "create_repo", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert_user_error(run_main(capsys, monkeypatch, "push", str(model), REPO), "the Hub refused (401)",
                      "hf auth login")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert_user_error(run_main(capsys, monkeypatch, "push", str(model), REPO), "HF_HUB_OFFLINE is set")


def test_cli_push(api: type[RecordingApi], saved: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    model = shutil.copytree(saved, tmp_path / "model")
    result = run_main(capsys, monkeypatch, "push", str(model), REPO, "--private", "--revision", "v2",
                      "--commit-message", "retrained")
    assert result.returncode == 0, result.stderr
    assert f"pushed {model} to {REPO}: https://huggingface.co/{REPO}/commit/abc123" in result.stdout
    calls = dict(api.calls)
    assert calls["create_repo"]["private"] is True and calls["create_branch"]["branch"] == "v2"
    assert (calls["upload_folder"]["revision"], calls["upload_folder"]["commit_message"]) == ("v2", "retrained")


def test_push_refuses_an_empty_revision(api: type[RecordingApi], saved: Path) -> None:
    with pytest.raises(PolyheadError, match="--revision is empty"):
        push_to_hub(saved, REPO, revision=" ")
