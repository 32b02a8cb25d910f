"""The saved-model format, importable without torch: polyhead.json, task specs, the sentence-transformers
layout, directory safety checks, the model card (README.md). Both backends (torch and ONNX) read a model
directory through here."""

from polyhead.modeldir.card import render_card, save_training_card, write_card
from polyhead.modeldir.format import (
    CONFIG_NAME,
    FORMAT_VERSION,
    HEADS_NAME,
    WEIGHTS_NAME,
    ModelConfig,
    check_new_directory,
    check_safe_directory,
    library_versions,
    read_config,
    write_config,
    write_directory_atomic,
)
from polyhead.modeldir.spec import TaskSpec

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "HEADS_NAME",
    "WEIGHTS_NAME",
    "ModelConfig",
    "TaskSpec",
    "check_new_directory",
    "check_safe_directory",
    "library_versions",
    "read_config",
    "render_card",
    "save_training_card",
    "write_config",
    "write_card",
    "write_directory_atomic",
]
