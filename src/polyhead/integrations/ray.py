"""Distributed batch inference on Ray Data: a polyhead model directory in ``Dataset.map_batches``.

    import ray
    from polyhead.integrations.ray import PolyheadPredictor

    ds = ray.data.read_parquet("s3://bucket/reviews/")
    ds = ds.map_batches(
        PolyheadPredictor,
        fn_constructor_kwargs={"model_dir": "/models/absa", "backend": "onnx"},
        batch_format="pyarrow", batch_size=1024,
        compute=ray.data.ActorPoolStrategy(size=4), num_cpus=1,   # 4 actors, each loads the model once
    )
    ds.write_parquet("s3://bucket/predictions/")

Each actor loads the model once (:func:`polyhead.predict.load`, any backend) and runs the same pipeline as a
single process: ``predict`` adds one struct column per task (the dict :meth:`Predictor.predict` returns),
``encode`` an ``embedding`` fixed-size list column. ``polyhead predict|encode --input F --output O --ray ADDRESS``
(:func:`run_file`) reads the file with Ray Data, runs the actors and writes the output in input order from
the driver. Ray is optional: ``pip install 'polyhead[ray]'``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.bulk.writers import EMBEDDING, Block, open_writer
from polyhead.data.stream import Columns, text_value
from polyhead.errors import PolyheadError
from polyhead.extras import require


class PolyheadPredictor:
    """A callable class for ``Dataset.map_batches``: the model is loaded once, in ``__init__``, per actor.

    Args:
        model_dir: a polyhead model directory (``mode="encode"``: also ``default`` or an encoder directory on torch).
        backend: ``torch``, ``onnx``, ``onnx-int8`` or any backend :func:`polyhead.predict.load` knows.
        mode: ``predict`` (a struct column per task) or ``encode`` (an ``embedding`` column, ``(dim,)`` float32).
        tasks: task names (default: every predicting head that has its input column).
        text_column / pair_columns: where the texts (a string, or a list of words) and text pairs are.
        keep_columns: input columns passed through (default: all).
        strip: strip whitespace around texts (as ``.txt`` input is read).
    """

    def __init__(
        self,
        model_dir: str,
        backend: str = "torch",
        device: Any = None,
        mode: str = "predict",
        tasks: Sequence[str] | None = None,
        text_column: str | None = "text",
        pair_columns: Sequence[str] | None = None,
        keep_columns: Sequence[str] | None = None,
        batch_size: int = 32,
        precision: str = "fp32",
        normalize: bool | None = None,
        encoder_options: dict[str, Any] | None = None,
        strip: bool = False,
    ) -> None:
        from polyhead.bulk import load_text_encoder, split_tasks
        from polyhead.predict import load

        if mode not in ("predict", "encode"):
            raise PolyheadError(f"mode {mode!r}: valid: predict, encode")
        pair = (pair_columns[0], pair_columns[1]) if pair_columns else None
        self.columns = Columns(text_column, pair, None, tuple(keep_columns or ()))
        self.keep_all = keep_columns is None
        self.mode, self.batch_size, self.precision, self.normalize, self.strip = (
            mode, batch_size, precision, normalize, strip
        )  # fmt: skip
        if mode == "encode":
            self.model = load_text_encoder(str(model_dir), backend, device, **(encoder_options or {}))
            self.text_names: list[str] = []
            self.pair_names: list[str] = []
        else:
            self.model = load(model_dir, backend, device)
            self.text_names, self.pair_names = split_tasks(self.model.tasks, tasks, self.columns, str(model_dir))

    def __call__(self, batch: Any) -> Any:
        """``batch``: a pyarrow Table (``batch_format="pyarrow"``), a pandas DataFrame or a dict of numpy arrays;
        returns a pyarrow Table: the kept columns, then the task columns (or ``embedding``)."""
        import pyarrow as pa

        table = as_arrow(batch)
        out = table if self.keep_all else table.select(list(self.columns.keep))
        if self.mode == "encode":
            vectors = self.model.encode(self.texts(table, self.columns.text or "", False), batch_size=self.batch_size,
                                        precision=self.precision, normalize=self.normalize)  # fmt: skip
            vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(table.num_rows, -1)
            flat = pa.array(vectors.reshape(-1))
            return out.append_column(EMBEDDING, pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]))
        results: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
        if self.text_names:
            texts = self.texts(table, self.columns.text or "", True)
            for row, res in zip(results, self.model.predict(texts, self.text_names, self.batch_size, self.precision),
                                strict=True):  # fmt: skip
                row.update(res)
        if self.pair_names and self.columns.pair:
            a, b = (self.texts(table, c, False) for c in self.columns.pair)
            pairs = list(zip(a, b, strict=True))
            for row, res in zip(results, self.model.predict_pairs(pairs, self.pair_names, self.batch_size,
                                                                  self.precision), strict=True):  # fmt: skip
                row.update(res)
        for name in (*self.text_names, *self.pair_names):
            out = out.append_column(name, pa.array([r[name] for r in results]))
        return out

    def texts(self, table: Any, column: str, words: bool) -> list[Any]:
        if column not in table.column_names:
            raise PolyheadError(f"Ray batch: no column {column!r}; columns: {', '.join(table.column_names)}")
        values = table.column(column).to_pylist()
        texts = [text_value({column: v}, column, ("Ray batch", -i - 1), words) for i, v in enumerate(values)]
        return [t.strip() for t in texts] if self.strip else texts


def as_arrow(batch: Any) -> Any:
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, dict):
        return pa.table({k: list(v) if getattr(v, "dtype", None) is np.dtype(object) else v for k, v in batch.items()})
    return pa.Table.from_pandas(batch, preserve_index=False)


# ------------------------------------------------------------------------------------------- the CLI path
def init_ray(address: str, num_actors: int) -> Any:
    """Connect to ``address`` (``auto``: the cluster this machine runs in), or start one here (``local``: one
    CPU slot per actor and one for the read tasks, which would otherwise wait forever for a free CPU)."""
    require("ray", "--ray")
    import ray

    if not ray.is_initialized():
        local = {"num_cpus": num_actors + 1} if address == "local" else {"address": address}
        ray.init(**local, include_dashboard=False, log_to_driver=False)
    return ray


def read_dataset(ray: Any, path: Path, fmt: str, columns: Columns) -> Any:
    """The input file as a Ray Dataset, texts read as strings (CSV type inference would make "42" a number)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    wanted = columns.wanted()
    if fmt == "parquet":
        from polyhead.data.shards import is_sharded, shard_files

        # shards (a directory or a glob) as a list in sorted order: with preserve_order, rows stay in that order
        paths = [str(f) for f in shard_files(path, "--input")] if is_sharded(path) else str(path)
        return ray.data.read_parquet(paths, columns=wanted)
    if fmt == "txt":
        return ray.data.read_text(str(path))
    if fmt in ("csv", "tsv"):
        texts = [c for c in (columns.text, *(columns.pair or ())) if c]
        return ray.data.read_csv(
            str(path),
            parse_options=pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in texts}),
        ).select_columns(wanted)
    return ray.data.read_json(str(path), lines=True).select_columns(wanted)


def run_file(
    command: str,
    input: Path,
    output: Path,
    *,
    address: str,
    num_actors: int,
    model: Any,
    backend: str = "torch",
    device: Any = None,
    tasks: Sequence[str] | None = None,
    columns: Columns | None = None,
    batch_size: int = 32,
    precision: str = "fp32",
    chunk_size: int = 10_000,
    overwrite: bool = False,
    normalize: bool | None = None,
    encoder_options: dict[str, Any] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """``input`` -> ``output`` through ``num_actors`` actors on the Ray cluster at ``address``; rows are
    written by this process in input order, with the same writers (and output) as a single-process run."""
    from polyhead.bulk import ID, make_job
    from polyhead.bulk.run import check_output

    columns = columns or Columns()
    job = make_job(input, output, columns, chunk_size, False, overwrite, words=command == "predict")
    fmt = check_output(job)
    if fmt == ".npy" and (command == "predict" or columns.id or columns.keep):
        raise PolyheadError(f"--output {output}: .npy holds encode's vectors only; write .jsonl or .parquet")
    if command == "predict":  # the task check before any actor starts (an actor's __init__ error is Ray's traceback)
        from polyhead.bulk import split_tasks
        from polyhead.modeldir import read_config

        split_tasks(read_config(Path(model)).tasks, tasks, columns, str(model))
    total = job.input.count_rows()
    ray = init_ray(address, num_actors)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if num_actors >= cpus:
        raise PolyheadError(
            f"--num-actors {num_actors}: the Ray cluster has {cpus} CPU(s); each actor takes one and Ray Data's "
            f"read tasks need one more, so give at most {max(cpus - 1, 0)} (or a bigger cluster)"
        )
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # output rows in input order
    kwargs = {"model_dir": str(Path(model).resolve()) if Path(model).exists() else str(model), "backend": backend,
              "device": device, "mode": command, "tasks": tasks, "text_column": columns.text,
              "pair_columns": columns.pair, "keep_columns": columns.wanted(), "batch_size": batch_size,
              "precision": precision, "normalize": normalize, "encoder_options": encoder_options,
              "strip": job.input.format == "txt"}  # fmt: skip
    # blocks of at most chunk_size rows (streaming), so a file Ray reads as one block still reaches every actor
    dataset = read_dataset(ray, job.input.path, job.input.format, columns).repartition(
        target_num_rows_per_block=chunk_size
    ).map_batches(
        PolyheadPredictor, fn_constructor_kwargs=kwargs, batch_format="pyarrow", batch_size=chunk_size,
        compute=ray.data.ActorPoolStrategy(size=num_actors), num_cpus=1,
    )  # fmt: skip
    job.work.mkdir(parents=True)
    try:
        writer = open_writer(fmt, job.work, None, total)
        start = 0
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=chunk_size):
            writer.write(arrow_block(batch, columns, start, ID), start)
            start += batch.num_rows
        writer.finish(job.output)
    except ray.exceptions.RayTaskError as exc:  # an actor's one-line error, not Ray's traceback of it
        message = actor_error(exc)
        if message is None:
            raise
        raise PolyheadError(f"--input {input} (rows counted within the Ray batch): {message}") from None
    finally:
        shutil.rmtree(job.work, ignore_errors=True)
    return {"total": start}


def actor_error(exc: BaseException) -> str | None:
    """The message of the PolyheadError an actor raised, from the exception chain or, where Ray passed on only
    its text (the chain isn't always kept), from the traceback text."""
    import re

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, PolyheadError):
            return str(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    found = re.findall(r"^polyhead\.errors\.\w+: (.+)$", str(exc), flags=re.M)
    return found[-1] if found else None


def arrow_block(batch: Any, columns: Columns, start: int, id_name: str) -> Block:
    """A batch the actors returned as a writer Block: ids, kept columns, task columns or the vectors."""
    ids = batch.column(columns.id).to_pylist() if columns.id else list(range(start, start + batch.num_rows))
    produced = [c for c in batch.column_names if c not in columns.wanted() and c != EMBEDDING]
    values = {id_name: ids, **{c: batch.column(c).to_pylist() for c in (*columns.keep, *produced)}}
    vectors = None
    if EMBEDDING in batch.column_names:
        embedding = batch.column(EMBEDDING).combine_chunks()
        vectors = embedding.flatten().to_numpy().reshape(batch.num_rows, embedding.type.list_size)
    return Block(values, vectors)
