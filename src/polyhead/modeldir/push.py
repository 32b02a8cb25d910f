"""Upload a polyhead model directory to the Hugging Face Hub (importable without torch).

``polyhead push MODEL_DIR REPO_ID``, :func:`push_to_hub` and ``MultiTaskModel.push_to_hub`` do what
sentence-transformers' and SetFit's ``push_to_hub`` do: the model card is refreshed (it names the repository),
the repository is created if it is missing (``HfApi.create_repo(exist_ok=True)``), and the model's files go up
in one commit (``HfApi.upload_folder``). Only the files of the model are uploaded (:func:`model_files`: the
files polyhead writes into a model directory), never checkpoints, an unfinished ``*.polyhead-partial`` output,
run-directory files or anything else that happens to lie in the directory. Export files that the directory no
longer holds are deleted from the repository in the same commit, so a stale ONNX or OpenVINO export never
outlives the weights it was made from.

The token and endpoint are the user's own, as huggingface_hub finds them (``HF_TOKEN`` or ``hf auth login``;
``HF_ENDPOINT``); polyhead sets none of them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from polyhead.errors import PolyheadError
from polyhead.modeldir.card import write_card
from polyhead.modeldir.format import CONFIG_NAME, EXPORTS, WEIGHTS_NAME, export_files, read_config
from polyhead.modeldir.hub import MODEL_DIR_PATTERNS, is_in_hub_cache

logger = logging.getLogger(__name__)

# The export files (ONNX, OpenVINO and their JSON records): uploaded when present, deleted from the repository
# when the directory no longer has them.
EXPORT_FILES = sorted({name for kind in EXPORTS for variant in ("", "-int8") for name in export_files(kind + variant)})
# Top-level files of a model directory (no wildcards: a stray *.safetensors is not the model's).
TOP_FILES = {p for p in MODEL_DIR_PATTERNS if "*" not in p and "/" not in p} | {"heads.safetensors", WEIGHTS_NAME}
# sentence-transformers module folders: N_Pooling/config.json, N_Dense/config.json and model.safetensors.
MODULE_FILE = re.compile(r"^\d+_(Pooling|Dense)/(config\.json|model\.safetensors)$")


def model_files(model_dir: Path) -> list[str]:
    """The files of the model in ``model_dir`` (paths relative to it, sorted): what polyhead writes into a model
    directory and reads back. Anything else found there is left out (and logged)."""
    kept: list[str] = []
    left: list[str] = []
    for file in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        name = file.relative_to(model_dir).as_posix()
        is_model = name in TOP_FILES or name in EXPORT_FILES or MODULE_FILE.match(name) is not None
        (kept if is_model else left).append(name)
    if left:
        more = " ..." if len(left) > 20 else ""
        logger.info("not uploaded (not part of the model): %s%s", ", ".join(left[:20]), more)
    return kept


def check_repo_id(repo_id: str) -> None:
    """A Hub repository id (``org/name`` or ``name``), or a one-line error saying what is valid."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if not repo_id or repo_id.count("/") > 1:
            raise HFValidationError("at most one '/'")
        validate_repo_id(repo_id)
    except HFValidationError:
        raise PolyheadError(
            f"repository id {repo_id!r} is not a Hugging Face Hub name: give org/name (or name, for your own "
            "namespace) of letters, digits, '-', '_' and '.', at most 96 characters"
        ) from None


def check_model_dir(model_dir: Path) -> None:
    """A polyhead model directory with its weights; one line naming what is wrong otherwise."""
    if not model_dir.is_dir():
        raise PolyheadError(f"model directory {model_dir} {'is a file' if model_dir.exists() else 'does not exist'}")
    if not (model_dir / CONFIG_NAME).is_file():
        hint = f"; the model is in {model_dir / 'model'}" if (model_dir / "model" / CONFIG_NAME).is_file() else ""
        raise PolyheadError(f"{model_dir} is not a polyhead model directory: it has no {CONFIG_NAME}{hint}")
    read_config(model_dir)
    if not (model_dir / WEIGHTS_NAME).is_file():
        raise PolyheadError(f"{model_dir} has no {WEIGHTS_NAME}: it is not a whole model directory")


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload the model in ``model_dir`` to the Hub repository ``repo_id``; returns the commit's URL.

    Args:
        model_dir: a polyhead model directory (``runs/x/model``).
        repo_id: ``org/name`` (or ``name`` in your own namespace); created if missing.
        private: visibility of a repository created now (None: the Hub's default); an existing one is unchanged.
        revision: the branch to commit to (created from the default branch if missing); None: the default branch.
        commit_message: default "Upload polyhead model (N files)".
        token: None uses the user's own (``HF_TOKEN`` or ``hf auth login``).
        create_pr: open a pull request instead of committing to the branch.

    Raises:
        PolyheadError: one line: not a model directory, a bad repository id, or the Hub's answer.
    """
    from huggingface_hub import HfApi

    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    check_repo_id(repo_id)
    if revision is not None and not revision.strip():
        raise PolyheadError("--revision is empty: give a branch name, or leave it out for the default branch")
    if not is_in_hub_cache(model_dir):  # a downloaded snapshot is huggingface_hub's: its card stays as it is
        write_card(model_dir, repo_id=repo_id)
    files = model_files(model_dir)
    message = commit_message or f"Upload polyhead model ({len(files)} files)"
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=model_dir,
            repo_type="model",
            revision=revision,
            commit_message=message,
            allow_patterns=files,
            delete_patterns=[f for f in EXPORT_FILES if f not in files],
            create_pr=create_pr,
        )
    except Exception as exc:  # noqa: BLE001 - HTTP, auth, offline and connection errors all become one line
        raise PolyheadError(hub_error(repo_id, exc)) from exc
    logger.info("pushed %d files of %s to %s", len(files), model_dir, repo_id)
    return str(getattr(commit, "commit_url", None) or commit)


def hub_error(repo_id: str, exc: BaseException) -> str:
    """One line for a failed push: what the Hub (or the connection) said, and what to do."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    first = " ".join(str(exc).split())[:300] or type(exc).__name__
    if isinstance(exc, OfflineModeIsEnabled) or constants.HF_HUB_OFFLINE:
        return f"push to {repo_id!r}: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it to push"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        return (
            f"push to {repo_id!r}: the Hub refused ({status}): log in with a write token (hf auth login, or set "
            f"HF_TOKEN), and check that you may write to {repo_id.split('/')[0] if '/' in repo_id else 'it'}"
        )
    if isinstance(exc, HfHubHTTPError):
        return f"push to {repo_id!r}: the Hub answered with an error: {first}"
    return f"push to {repo_id!r} failed ({type(exc).__name__}: {first}); check the connection to {constants.ENDPOINT}"
