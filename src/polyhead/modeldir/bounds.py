"""Sane bounds on an encoder's ``config.json``, checked before transformers allocates anything.

A hand-edited or hostile ``config.json`` (``num_hidden_layers: 4000``) would otherwise allocate gigabytes
before any error. The bounds are far above every released BERT-family encoder (the largest, XLM-R XXL, has
48 layers, hidden 4,096, intermediate 16,384, a 250,002-token vocabulary, 514 positions).
"""

from __future__ import annotations

import json
from pathlib import Path

from polyhead.errors import ModelDirError

# config.json key -> the largest value polyhead loads
BOUNDS = {
    "num_hidden_layers": 256,
    "hidden_size": 16_384,
    "intermediate_size": 131_072,
    "num_attention_heads": 1_024,
    "vocab_size": 2_000_000,
    "max_position_embeddings": 1_048_576,
    "type_vocab_size": 1_024,
    # DistilBERT's names for the same sizes
    "n_layers": 256,
    "dim": 16_384,
    "hidden_dim": 131_072,
    "n_heads": 1_024,
}
MAX_PARAMETERS = 20_000_000_000  # 80 GB of float32 weights


def check_encoder_config(path: Path) -> None:
    """Refuse a ``config.json`` whose sizes are not positive integers within :data:`BOUNDS`, or whose
    estimated parameter count is over :data:`MAX_PARAMETERS`; one line naming the file, the key and the bound.
    A directory without ``config.json`` is left to transformers' own error."""
    file = path / "config.json"
    if not file.is_file():
        return
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{file}: not a readable JSON file ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelDirError(f"{file}: must be a JSON object")
    for key, bound in BOUNDS.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bound:
            raise ModelDirError(
                f"{file}: {key} is {value!r}; polyhead loads encoders with {key} from 1 to {bound:,}"
            )
    params = estimated_parameters(config)
    if params > MAX_PARAMETERS:
        raise ModelDirError(
            f"{file}: these sizes make an encoder of about {params / 1e9:,.0f} billion parameters; "
            f"polyhead loads encoders of at most {MAX_PARAMETERS / 1e9:,.0f} billion"
        )


def estimated_parameters(config: dict) -> int:
    """Embeddings plus each layer's attention (4 h^2) and feed-forward (2 h i) weights."""
    layers = int(config.get("num_hidden_layers") or config.get("n_layers") or 0)
    hidden = int(config.get("hidden_size") or config.get("dim") or 0)
    inner = int(config.get("intermediate_size") or config.get("hidden_dim") or 4 * hidden)
    vocab = int(config.get("vocab_size") or 0)
    positions = int(config.get("max_position_embeddings") or 0)
    return (vocab + positions) * hidden + layers * (4 * hidden * hidden + 2 * hidden * inner)
