"""Words, sub-tokens and BIO spans: the glue between word-level labels and sub-token models.

Used by the data collator (training) and by prediction, so both align words the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

logger = logging.getLogger(__name__)

TextInput = str | Sequence[str]  # raw text, or a pre-tokenised list of words

# Label id that the loss skips: CrossEntropyLoss's default ignore_index.
IGNORE_INDEX = -100

# Words as a CoNLL file would hold them: URLs, @mentions/#hashtags and words (with inner ' or -) whole;
# every other grapheme (punctuation, an emoji, a flag) on its own. Words are runs of whole grapheme clusters
# (`regex`'s \X, Unicode's extended grapheme clusters), so an entity span never cuts a letter from its accent
# ("a" + U+0301), a flag in half or a Devanagari syllable from its vowel sign. Whitespace-only graphemes are
# dropped in split_words.
WORD_RE = regex.compile(r"https?://\S+|[@#]?(?:(?=\w)\X)+(?:[-'’](?:(?=\w)\X)+)*|\X")

# Characters per token allowed before tokenisation: a text is cut to max_length x this many characters (25,600
# for 256 tokens) first, so a 16 MB text costs what 25,600 characters cost. A WordPiece/BPE token covers far
# fewer characters (BERT turns a word over 100 characters into one [UNK]), so the tokens kept are the same
# unless a text is mostly whitespace.
CHARS_PER_TOKEN = 100


@dataclass(frozen=True)
class Word:
    text: str
    start: int
    end: int


def split_words(text: str) -> list[Word]:
    """Split raw text into words with character offsets (``text[start:end] == word``), each word whole grapheme
    clusters."""
    return [Word(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text) if not m.group().isspace()]


def char_limit(max_length: int) -> int:
    """Characters of one text read before tokenisation for a ``max_length``-token model."""
    return max(int(max_length), 1) * CHARS_PER_TOKEN


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at the last whitespace before the cut when there is one in
    the last 1,000 characters (so no word is split), else at a grapheme boundary."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = regex.search(r"\s\S{0,999}\Z", head)
    if space is not None and space.start() > 0:
        return head[: space.start()]
    graphemes = regex.findall(r"\X", text[max(0, limit - 64) : limit + 64])
    keep, total = max(0, limit - 64), 0
    for g in graphemes:  # the last grapheme boundary at or before the limit
        if keep + total + len(g) > limit:
            break
        total += len(g)
    return text[: keep + total] or head


def clip_texts(texts: Sequence[str], max_length: int) -> list[str]:
    """Each text cut to ``char_limit(max_length)`` characters; a warning says how many were cut."""
    limit = char_limit(max_length)
    out = [clip_text(t, limit) if isinstance(t, str) and len(t) > limit else t for t in texts]
    warn_cut(sum(1 for a, b in zip(texts, out, strict=True) if a is not b), max_length)
    return out


def warn_cut(count: int, max_length: int) -> None:
    if count:
        limit = f"{char_limit(max_length):,}"
        logger.warning(
            "%d text(s) longer than %s characters were cut to %s before tokenisation (max_length %d tokens x %d "
            "characters; the model reads only the first %d tokens anyway)", count, limit, limit,
            max_length, CHARS_PER_TOKEN, max_length,
        )


def clip_words(words: Sequence[Sequence[str]], max_length: int) -> list[list[str]]:
    """Each word list cut after the word that brings it past ``char_limit(max_length)`` characters (words past
    it have no sub-token after truncation anyway); a warning says how many were cut."""
    limit, out, cut = char_limit(max_length), [], 0
    for ws in words:
        total, kept = 0, 0
        for w in ws:
            total += len(w) + 1
            if total > limit and kept:
                break
            kept += 1
        cut += kept < len(ws)
        out.append(list(ws[:kept]) if kept < len(ws) else list(ws))
    if cut:
        logger.warning("%d word list(s) longer than %s characters were cut before tokenisation", cut, f"{limit:,}")
    return out


def words_from_tokens(tokens: Sequence[str]) -> tuple[str, list[Word]]:
    """Pre-tokenised input: join with single spaces and compute offsets into the joined text."""
    words, pos = [], 0
    for token in tokens:
        words.append(Word(token, pos, pos + len(token)))
        pos += len(token) + 1
    return " ".join(tokens), words


def tokenize_words(tokenizer: Any, words: Sequence[Sequence[str]], max_length: int) -> list[dict[str, Any]]:
    """Tokenise word lists; each result has the id lists plus ``word_ids`` (word index per sub-token).

    Special tokens get word id None. Words cut off by ``max_length`` have no sub-token.
    """
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    out = []
    for i in range(len(words)):
        item: dict[str, Any] = {k: enc[k][i] for k in keys}
        item["word_ids"] = enc.word_ids(i)
        out.append(item)
    return out


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Word label on the first sub-token of each word, IGNORE_INDEX on the rest and on special tokens."""
    aligned, previous = [], None
    for word_id in word_ids:
        if word_id is None or word_id == previous:
            aligned.append(IGNORE_INDEX)
        else:
            aligned.append(word_labels[word_id])
        previous = word_id
    return aligned


def first_subtoken_positions(word_ids: Sequence[int | None]) -> dict[int, int]:
    """word index -> position of its first sub-token (words cut by truncation are absent)."""
    positions: dict[int, int] = {}
    for pos, word_id in enumerate(word_ids):
        if word_id is not None and word_id not in positions:
            positions[word_id] = pos
    return positions


def bio_viterbi(labels: Sequence[str], log_probs: np.ndarray) -> list[int]:
    """The most probable tag sequence in which every ``I-X`` follows a ``B-X`` or an ``I-X``.

    log_probs: (words, tags) per-word log-probabilities over ``labels``. Argmax per word can start an
    entity with ``I-X`` or switch type mid-entity; both read as spurious entities. This is the constrained
    Viterbi decoding of BIO taggers (e.g. AllenNLP's ``allowed_transitions`` + ``viterbi_decode``), in numpy
    so every backend decodes alike; transitions carry no weight, only the constraint. Returns tag ids.
    """
    scores = np.asarray(log_probs, dtype=np.float64)
    n, k = scores.shape
    if n == 0:
        return []
    inside = [lab[2:] if lab.startswith("I-") else None for lab in labels]
    # allowed[prev, cur]: I-X only after B-X or I-X; anything else anywhere
    allowed = np.ones((k, k), dtype=bool)
    for cur, kind in enumerate(inside):
        if kind is not None:
            allowed[:, cur] = [lab in (f"B-{kind}", f"I-{kind}") for lab in labels]
    transition = np.where(allowed, 0.0, -np.inf)
    start = np.array([0.0 if kind is None else -np.inf for kind in inside])
    best = start + scores[0]  # (tags,)
    back = np.zeros((n, k), dtype=np.int64)
    for i in range(1, n):
        total = best[:, None] + transition  # (prev, cur)
        back[i] = total.argmax(axis=0)
        best = total.max(axis=0) + scores[i]
    path = [int(best.argmax())]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


def decode_bio(tags: Sequence[str], scores: Sequence[float]) -> list[tuple[str, int, int, float]]:
    """Word-level BIO tags -> spans (type, first word, last word inclusive, mean word score).

    An I-X that doesn't continue a span of type X starts a new one (as seqeval's default mode reads it).
    """
    spans: list[tuple[str, int, int, float]] = []
    current: list[Any] | None = None  # [type, start, end, score sum]
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, kind = (tag[:2], tag[2:]) if tag != "O" else ("O", "")
        continues = current is not None and prefix == "I-" and kind == current[0]
        if current is not None and not continues:
            spans.append((current[0], current[1], current[2], current[3] / (current[2] - current[1] + 1)))
            current = None
        if continues and current is not None:
            current[2] = i
            current[3] += scores[i]
        elif prefix in ("B-", "I-"):
            current = [kind, i, i, scores[i]]
    return spans


def item_text(item: TextInput) -> str:
    """The text that character offsets point into: the raw string, or pre-tokenised words joined by spaces."""
    return item if isinstance(item, str) else words_from_tokens(list(item))[0]


def as_words(item: TextInput, index: int, max_length: int | None = None) -> list[Word]:
    """Words of one prediction input: split raw text, or take a pre-tokenised list as it is; with
    ``max_length``, only the words within ``char_limit(max_length)`` characters (the rest can't be read)."""
    if isinstance(item, str):
        return split_words(item if max_length is None else clip_text(item, char_limit(max_length)))
    words = words_from_tokens(list(item))[1]
    if max_length is not None:
        words = words[: len(clip_words([[w.text for w in words]], max_length)[0])]
    return words


def check_text_inputs(items: Sequence[Any], what: str = "text") -> None:
    """Prediction inputs from the Python API: strings (or lists of word strings) that hold something to read
    and are valid Unicode, checked as the CLI and the server check theirs; a one-line error names the item."""
    from polyhead.errors import PolyheadError

    for i, item in enumerate(items):
        if isinstance(item, str):
            pieces: Sequence[Any] = [item]
        elif isinstance(item, Sequence) and all(isinstance(w, str) for w in item):
            pieces = item
        else:
            raise PolyheadError(f"{what} {i} must be a string or a list of word strings, not {type(item).__name__}")
        if not any(p.strip() for p in pieces):
            raise PolyheadError(f"{what} {i} is empty; give a text with something to read")
        for p in pieces:
            if p.isascii():  # the common case, without a copy
                continue
            try:
                p.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise PolyheadError(
                    f"{what} {i} is not valid Unicode (a lone surrogate at character {exc.start}); pass UTF-8 text"
                ) from None


def prediction_inputs(
    texts: TextInput | Sequence[TextInput], token_heads: bool, max_length: int | None = None
) -> tuple[list[TextInput], list[list[Word]] | None]:
    """predict() input as a list of items, plus their words when they must be tokenised word by word
    (a token head runs, or some item is pre-tokenised); None means tokenise the raw strings. Empty, non-text
    or invalid items are a one-line error (:func:`check_text_inputs`)."""
    items: list[TextInput] = [texts] if isinstance(texts, str) else list(texts)  # type: ignore[list-item]
    check_text_inputs(items)
    if token_heads or any(not isinstance(x, str) for x in items):
        if max_length is not None:  # strings are cut before they are split into words (lists: by clip_words)
            warn_cut(sum(1 for x in items if isinstance(x, str) and len(x) > char_limit(max_length)), max_length)
        return items, [as_words(x, i, max_length) for i, x in enumerate(items)]
    return items, None
