"""File-to-file inference: ``predict_file`` and ``encode_file`` stream an input file through a model in chunks.

    from polyhead.bulk import predict_file, encode_file
    predict_file("runs/absa/model", "reviews.parquet", "predictions.parquet", backend="onnx")
    encode_file("default", "sentences.txt", "vectors.npy", chunk_size=10_000)

Memory is bounded by one chunk (its texts, encodings and results), whatever the file's size; an interrupted
run continues with ``resume=True`` after its last complete chunk (:mod:`polyhead.bulk.run`). Every backend
goes through :func:`polyhead.predict.load`. Output rows are in input order, each with an ``id`` (the row number
counted from 0, or the ``id`` column's value) and the ``keep`` columns copied from the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polyhead.bulk.run import Job, ProgressFn, check_output, run_job
from polyhead.bulk.writers import EMBEDDING, Block, output_format
from polyhead.data.stream import Chunk, Columns, InputFile
from polyhead.errors import PolyheadError
from polyhead.predict import check_tasks, nothing_to_predict

__all__ = ["Columns", "encode_file", "load_text_encoder", "predict_file", "split_tasks"]
ID = "id"


def predict_file(
    model_dir: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    backend: str = "torch",
    device: Any = None,
    tasks: Sequence[str] | None = None,
    columns: Columns | None = None,
    batch_size: int = 32,
    precision: str = "fp32",
    chunk_size: int = 10_000,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Every requested head on every row of ``input`` -> ``output`` (.jsonl or .parquet): per row ``id``, the
    kept columns and one field per task (the result :meth:`Predictor.predict` gives). Text heads read
    ``columns.text`` (a string, or a list of words in .jsonl / .parquet), pair heads ``columns.pair``."""
    from polyhead.predict import load

    columns = columns or Columns()
    job = make_job(input, output, columns, chunk_size, resume, overwrite, words=True)
    if output_format(job.output) == ".npy":
        raise PolyheadError(f"--output {output}: predictions go to .jsonl or .parquet (.npy holds encode's vectors)")
    job.settings = {
        "command": "predict", "model": str(Path(model_dir).resolve()), "backend": backend, "tasks": list(tasks or []),
        **column_settings(columns), "batch_size": batch_size, "precision": precision, "chunk_size": chunk_size,
    }  # fmt: skip
    check_output(job)
    model = load(model_dir, backend, device)
    text_names, pair_names = split_tasks(model.tasks, tasks, columns, str(model_dir))
    check_names(columns, [*text_names, *pair_names])

    def infer(chunk: Chunk) -> Block:
        results: list[dict[str, Any]] = [{} for _ in chunk.ids]
        if text_names:
            for row, out in zip(results, model.predict(chunk.texts, text_names, batch_size, precision), strict=True):
                row.update(out)
        if pair_names:
            pair_results = model.predict_pairs(chunk.pairs, pair_names, batch_size, precision)
            for row, out in zip(results, pair_results, strict=True):
                row.update(out)
        names = [*text_names, *pair_names]
        return Block({ID: chunk.ids, **chunk.keep, **{n: [r[n] for r in results] for n in names}})

    return run_job(job, infer, progress)


def encode_file(
    model: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    backend: str = "torch",
    device: Any = None,
    columns: Columns | None = None,
    batch_size: int = 32,
    precision: str = "fp32",
    normalize: bool | None = None,
    chunk_size: int = 10_000,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    encoder_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sentence embeddings of every row of ``input`` -> ``output``: a ``(rows, dim)`` float32 ``.npy`` (through a
    memory map), or ``.jsonl`` / ``.parquet`` rows with ``id``, the kept columns and ``embedding`` (a fixed-size
    list column in Parquet). ``encoder_options``: pooling, projection_dim, revision (torch; as ``polyhead encode``)."""
    columns = columns or Columns()
    job = make_job(input, output, columns, chunk_size, resume, overwrite, words=False)
    if output_format(job.output) == ".npy" and (columns.id or columns.keep):
        raise PolyheadError(
            f"--output {output}: a .npy file holds only the vectors (row i = input row i); "
            "write .jsonl or .parquet to carry --id-column / --keep-columns"
        )
    job.settings = {
        "command": "encode", "model": str(Path(model).resolve()) if Path(model).exists() else str(model),
        "backend": backend, **column_settings(columns), "batch_size": batch_size, "precision": precision,
        "normalize": normalize, "chunk_size": chunk_size, "encoder_options": encoder_options or {},
    }  # fmt: skip
    check_output(job)
    check_names(columns, [EMBEDDING])
    model_ = load_text_encoder(str(model), backend, device, **(encoder_options or {}))

    def infer(chunk: Chunk) -> Block:
        vectors = model_.encode(chunk.texts, batch_size=batch_size, precision=precision, normalize=normalize)
        return Block({ID: chunk.ids, **chunk.keep}, vectors)

    return run_job(job, infer, progress)


def make_job(
    input: str | Path, output: str | Path, columns: Columns, chunk_size: int, resume: bool, overwrite: bool, words: bool
) -> Job:
    if chunk_size < 1:
        raise PolyheadError(f"--chunk-size {chunk_size}: give a positive number of rows")
    return Job(InputFile(Path(input), columns, words=words), Path(output), chunk_size, {}, resume, overwrite)


def column_settings(columns: Columns) -> dict[str, Any]:
    return {"text_column": columns.text, "pair_columns": list(columns.pair or []), "id_column": columns.id,
            "keep_columns": list(columns.keep)}  # fmt: skip


def check_names(columns: Columns, produced: list[str]) -> None:
    """A kept column may not share a name with what the output adds (``id``, a task, ``embedding``)."""
    clash = [c for c in columns.keep if c in (ID, *produced)]
    if clash:
        raise PolyheadError(
            f"--keep-columns {', '.join(clash)}: the output already has a field of that name "
            f"({', '.join([ID, *produced])}); rename the column in the input"
        )


def split_tasks(
    tasks: dict[str, Any], names: Sequence[str] | None, columns: Columns, where: str
) -> tuple[list[str], list[str]]:
    """(text task names, pair task names) to run on rows with ``columns``; an error when nothing would run or
    a named task's input column wasn't given."""
    asked = check_tasks(tasks, list(names) if names else None)
    kinds = {"text": columns.text is not None, "pair": columns.pair is not None}
    missing = [n for n in asked if names and tasks[n].task.predicts and not kinds[tasks[n].task.input]]
    if missing:
        need = "--pair-columns A,B" if tasks[missing[0]].task.input == "pair" else "--text-column"
        raise PolyheadError(f"task(s) {', '.join(missing)} take {tasks[missing[0]].task.input} input: give {need}")
    run = {kind: [n for n in asked if tasks[n].task.predicts and tasks[n].task.input == kind and kinds[kind]]
           for kind in kinds}  # fmt: skip
    if not run["text"] and not run["pair"]:
        reason = nothing_to_predict(tasks, list(names) if names else None, "pair" if columns.pair else "text")
        hint = "give --pair-columns A,B for pair heads, " if not columns.pair else ""
        raise PolyheadError(
            f"{where}: nothing to predict ({reason or 'no heads take this input'}); {hint}"
            "or use polyhead encode for the embedding"
        )
    return run["text"], run["pair"]


def load_text_encoder(model: str, backend: str, device: Any = None, **options: Any) -> Any:
    """What ``polyhead encode`` embeds with: on torch any encoder (``default``, a Hub name, an HF or polyhead
    directory; ``options``: pooling, projection_dim, revision), else a polyhead model directory (or its Hub
    name) on that backend through :func:`polyhead.predict.load`. ``auto`` measures only local polyhead model
    directories with the encoder as saved (other encoders, Hub names, or a changed pooling / projection, run on
    torch)."""
    measurable = (Path(model) / "polyhead.json").is_file() and not any(
        options.get(k) is not None for k in ("pooling", "projection_dim")
    )
    if backend == "torch" or (backend == "auto" and not measurable):
        from polyhead.modeling.encoder import SentenceEncoder

        return SentenceEncoder.from_pretrained(model, device=device, **options)
    if model == "default" and not (Path(model) / "polyhead.json").is_file():
        raise PolyheadError(
            f"--backend {backend} needs --model MODEL_DIR: a polyhead model directory after `polyhead export` "
            "(for the default encoder: polyhead export default --output DIR)"
        )
    from polyhead.predict import load

    return load(model, backend, device, options.get("revision"))  # a Hub name: the export files of that backend

