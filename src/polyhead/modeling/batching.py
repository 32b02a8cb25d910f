"""Length-sorted batching and dynamic padding shared by encoding, prediction and training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from polyhead.errors import PolyheadError


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Group example indices into batches of similar token counts.

    Indices are sorted by token count, longest first (a batch that doesn't fit in memory fails at
    once, not at the end), and cut into batches of at most ``batch_size`` examples and at most
    ``max_tokens`` padded tokens (batch size x longest length). The caller restores the input order.
    """
    if batch_size < 1:
        raise PolyheadError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        too_many = len(current) >= batch_size
        too_long = max_tokens is not None and (len(current) + 1) * longest > max_tokens
        if current and (too_many or too_long):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def pad_batch(encodings: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad token-id lists to the longest in the batch.

    Returns ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when present): (batch, seq_len).
    """
    import torch  # here, so length_sorted_batches is importable without torch (the ONNX backend)

    width = max(len(e["input_ids"]) for e in encodings)
    out: dict[str, torch.Tensor] = {}
    for key, pad in (("input_ids", pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key not in encodings[0]:
            continue
        rows = [list(e[key]) + [pad] * (width - len(e[key])) for e in encodings]
        out[key] = torch.tensor(rows, dtype=torch.long)
    return out
