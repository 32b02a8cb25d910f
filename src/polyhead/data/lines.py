"""Texts given on the command line: arguments, or UTF-8 files with one text (or one tab-separated pair) a line."""

from __future__ import annotations

import re
from pathlib import Path

from polyhead.errors import PolyheadError

LINE_END = re.compile(r"\r\n|\r|\n")


def read_text_lines(file: Path, option: str = "--file") -> list[str]:
    """Non-empty lines of a UTF-8 text file, or a one-line error. Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only:
    U+2028/U+2029, U+0085 and the other characters ``str.splitlines`` breaks at stay inside the text."""
    if file.is_dir():
        raise PolyheadError(f"{option} {file}: a directory; give a text file")
    if not file.exists():  # a pipe (/dev/stdin, <(...)) is read like a file
        raise PolyheadError(f"{option} {file}: no such file")
    try:
        lines = [line.strip() for line in LINE_END.split(file.read_text(encoding="utf-8-sig"))]
    except UnicodeDecodeError as exc:
        line_no = exc.object[: exc.start].count(b"\n") + 1
        raise PolyheadError(
            f"{option} {file}:{line_no}: not UTF-8 text (byte {exc.start}); convert the file to UTF-8"
        ) from exc
    lines = [line for line in lines if line]
    if not lines:
        raise PolyheadError(f"{option} {file} is empty: give one text per line")
    return lines


def gather_texts(texts: list[str] | None, file: Path | None) -> list[str]:
    if texts and file:
        raise PolyheadError("give texts as arguments or --file, not both")
    if file:
        return read_text_lines(file)
    if not texts:
        raise PolyheadError("no texts given: pass TEXT arguments or --file FILE (one text per line)")
    for i, text in enumerate(texts, 1):
        check_argument_text(text, f"TEXT argument {i}")
    return texts


def check_argument_text(text: str, where: str) -> None:
    """A text from the command line: not empty, and valid UTF-8 (bytes that aren't reach Python as lone
    surrogates, which no tokenizer can encode)."""
    if not text.strip():
        raise PolyheadError(f"{where} is empty; give a text with something to read")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PolyheadError(
            f"{where} is not valid UTF-8 (byte at character {exc.start}); pass UTF-8 text"
        ) from None


PAIR_SEPARATOR = " ||| "


def gather_pairs(pairs: list[str] | None, file: Path | None) -> list[tuple[str, str]]:
    """--pair 'A ||| B' values, or the lines of --pairs-file split at their tab, as (a, b) pairs."""
    if pairs and file:
        raise PolyheadError("give pairs as --pair or --pairs-file, not both")
    if file is None:
        out = []
        for value in pairs or []:
            a, sep, b = value.partition(PAIR_SEPARATOR.strip())
            if not sep or not a.strip() or not b.strip() or PAIR_SEPARATOR.strip() in b:
                raise PolyheadError(f"--pair {value!r}: write the two texts as 'TEXT_A ||| TEXT_B' (one '|||'; "
                                    "texts holding '|||' go in a --pairs-file)")
            check_argument_text(value, "--pair")
            out.append((a.strip(), b.strip()))
        return out
    out = []
    for n, line in enumerate(read_text_lines(file, "--pairs-file"), 1):
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise PolyheadError(f"--pairs-file {file}: line {n} must be text_a<TAB>text_b (two non-empty texts)")
        out.append((parts[0].strip(), parts[1].strip()))
    return out
