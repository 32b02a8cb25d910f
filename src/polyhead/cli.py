"""Command line: thin Typer commands that parse arguments and call one library function each.

Errors from user input (PolyheadError) and usage errors print one line to stderr and exit with status 2.
The entry point (:func:`main`) owns its process, so the process-wide settings live there
(:func:`configure_process`), never in the library.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from polyhead.bulk import options as bulk
from polyhead.cli_publish import Revision, export_model, push
from polyhead.data.lines import gather_pairs, gather_texts
from polyhead.display import prediction_table, short, similarity_table
from polyhead.errors import PolyheadError
from polyhead.extras import require
from polyhead.interrupt import quiet_exit, reliable_ctrl_c
from polyhead.outputs import check_output_dir, check_output_file, check_output_files, save_npy_atomic
from polyhead.runtime import configure_process, keep_freed_memory, setup_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help="polyhead: one encoder, many task heads.")
console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger("polyhead.cli")
Device = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
Precision = Annotated[str, typer.Option(help="fp32, bf16 or fp16 (fp16: CUDA only).")]
MODEL_DIR_HELP = "A polyhead model directory, or the Hugging Face Hub name (org/name) of one."
BACKEND_HELP = "auto (the fastest measured), torch, onnx, onnx-int8, openvino, openvino-int8 (after polyhead export)."


@app.command()
def encode(
    texts: Annotated[list[str] | None, typer.Argument(help="Sentences to embed.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="UTF-8 file, one text per line.")] = None,
    model: Annotated[
        str, typer.Option(help="'default', a Hub name (org/name), an HF encoder or a polyhead model directory.")
    ] = "default",
    revision: Revision = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            help="mean, cls, max or mean_sqrt_len (default: the model's sentence-transformers Pooling, else mean)."
        ),
    ] = None,
    projection_dim: Annotated[
        int | None, typer.Option(min=1, max=65536, help="Add a (randomly initialised) projection to this size.")
    ] = None,
    no_normalize: Annotated[
        bool, typer.Option("--no-normalize", help="Skip L2 normalisation (default: normalise, as the model says).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write the vectors to this .npy file.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out / --output file.")] = False,
    similarity: Annotated[bool, typer.Option("--similarity", help="Print pairwise cosine similarities.")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    precision: Precision = "fp32",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    device: Device = "auto",
    input_: bulk.Input = None,
    output: bulk.Output = None,
    text_column: bulk.TextColumn = None,
    id_column: bulk.IdColumn = None,
    keep_columns: bulk.KeepColumns = None,
    chunk_size: bulk.ChunkSize = 10_000,
    resume: bulk.Resume = False,
    ray: bulk.Ray = None,
    num_actors: bulk.NumActors = 1,
) -> None:
    """Embed sentences: print the dimension and first values, a similarity table, or write .npy; or stream
    --input FILE to --output FILE (.npy, .jsonl, .parquet)."""
    import numpy as np

    from polyhead.bulk import load_text_encoder

    streaming = {"--text-column": text_column, "--id-column": id_column, "--keep-columns": keep_columns,
                 "--resume": resume, "--ray": ray}  # fmt: skip
    options = {"pooling": pooling, "projection_dim": projection_dim, "revision": revision}
    normalize = False if no_normalize else None  # applied by encode(), for every kind of model
    if bulk.check_streaming(input_, output, streaming, {"TEXT": texts, "--file": file, "--out": out,
                                                        "--similarity": similarity}):  # fmt: skip
        return bulk.run("encode", console, input_, output, ray, num_actors, model=model, backend=backend, device=device,
                        columns=bulk.make_columns(text_column, None, id_column, keep_columns), batch_size=batch_size,
                        precision=precision, chunk_size=chunk_size, normalize=normalize, resume=resume,
                        overwrite=overwrite, encoder_options=options)  # fmt: skip
    items = gather_texts(texts, file)
    check_output_file(out, "--out", overwrite, ".npy")
    if similarity and len(items) < 2:
        raise PolyheadError(f"--similarity compares texts pairwise: give at least two texts, got {len(items)}")
    encoder = load_text_encoder(model, backend, device, **options)
    vectors = np.asarray(encoder.encode(items, batch_size=batch_size, precision=precision,
                                        show_progress=len(items) > 1000, normalize=normalize))  # fmt: skip
    console.print(f"{len(items)} texts -> dimension {vectors.shape[1]}")
    if out is not None:
        save_npy_atomic(out, vectors)
        console.print(f"wrote {out}", markup=False)
    elif not similarity:
        for text, vec in zip(items[:20], vectors, strict=False):
            console.print(f"{short(text)}  [{', '.join(f'{x:.4f}' for x in vec[:5])}, ...]", markup=False)
    if similarity:
        console.print(similarity_table(items, vectors))


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_DIR_HELP)],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to predict.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="UTF-8 file, one text per line.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    precision: Precision = "fp32",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    device: Device = "auto",
    revision: Revision = None,
    pair: Annotated[
        list[str] | None,
        typer.Option("--pair", help="A text pair for the pair heads: --pair 'TEXT_A ||| TEXT_B' (repeatable)."),
    ] = None,
    pairs_file: Annotated[
        Path | None, typer.Option("--pairs-file", help="UTF-8 file, one pair per line: text_a<TAB>text_b.")
    ] = None,
    input_: bulk.Input = None,
    output: bulk.Output = None,
    text_column: bulk.TextColumn = None,
    pair_columns: bulk.PairColumns = None,
    id_column: bulk.IdColumn = None,
    keep_columns: bulk.KeepColumns = None,
    chunk_size: bulk.ChunkSize = 10_000,
    resume: bulk.Resume = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")] = False,
    ray: bulk.Ray = None,
    num_actors: bulk.NumActors = 1,
) -> None:
    """Run every head (or --tasks) on texts, or the pair heads on --pair / --pairs-file: a table each, or JSON;
    or stream --input FILE to --output FILE (.jsonl, .parquet)."""
    from polyhead.modeldir.hub import resolve_model_dir
    from polyhead.predict import load, nothing_to_predict

    names = bulk.split_list(tasks) if tasks else None
    streaming = {"--text-column": text_column, "--pair-columns": pair_columns, "--id-column": id_column,
                 "--keep-columns": keep_columns, "--resume": resume, "--overwrite": overwrite, "--ray": ray}
    memory = {"TEXT": texts, "--file": file, "--pair": pair, "--pairs-file": pairs_file, "--json": as_json}
    if bulk.check_streaming(input_, output, streaming, memory):
        model_path = resolve_model_dir(model_dir, revision, backend)  # a Hub name: its snapshot in the cache
        return bulk.run("predict", console, input_, output, ray, num_actors, model=model_path, backend=backend,
                        device=device, tasks=names, columns=bulk.make_columns(text_column, pair_columns, id_column,
                        keep_columns), batch_size=batch_size, precision=precision, chunk_size=chunk_size,
                        resume=resume, overwrite=overwrite)  # fmt: skip
    pairs = gather_pairs(pair, pairs_file)
    if pairs and (texts or file):
        raise PolyheadError("give texts (arguments / --file) or pairs (--pair / --pairs-file), not both")
    items = pairs or gather_texts(texts, file)
    model = load(model_dir, backend, device, revision)
    reason = nothing_to_predict(model.tasks, names, "pair" if pairs else "text")
    if reason:
        raise PolyheadError(
            f"{model_dir}: nothing to predict ({reason}; similarity heads are the embedding): "
            f"use polyhead encode --model {model_dir}, or give texts / --pair as the heads take them"
        )
    if pairs:
        results = model.predict_pairs(pairs, tasks=names, batch_size=batch_size, precision=precision)
    else:
        results = model.predict(items, tasks=names, batch_size=batch_size, precision=precision)
    for item, result in zip(items, results, strict=True):
        shown = {"pair": list(item)} if pairs else {"text": item}
        if as_json:
            sys.stdout.write(json.dumps({**shown, **result}) + "\n")
        else:
            console.print(prediction_table(" ||| ".join(item) if pairs else str(item), result, model.tasks))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config (see docs/config.md).")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: --set training.epochs=1 (repeatable).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run directory (default runs/<name>-<time>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --output from its latest checkpoint.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    num_processes: Annotated[
        int,
        typer.Option(
            "--num-processes",
            min=1,
            help="Train in N processes on this machine via `accelerate launch` (CPU: gloo; GPUs: one each).",
        ),
    ] = 1,
) -> None:
    """Train every task of CONFIG on one shared encoder; writes the model and logs to the run directory."""
    from polyhead.config import load_config
    from polyhead.training.checkpoint import latest_checkpoint
    from polyhead.training.rundir import check_same_config, refuse_non_empty
    from polyhead.training.trainer import Trainer, TrainingInterrupted

    cfg = load_config(config, set_ or [])
    if resume and output is None:
        raise PolyheadError("--resume needs --output: the run directory to continue")
    out = output or default_run_dir(cfg.name)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # a process of `accelerate launch`/torchrun
    if num_processes > 1 and not launched:
        from polyhead.training.distributed import launch_processes
        from polyhead.training.setup import load_all_data

        if not resume:
            refuse_non_empty(out)
        elif latest_checkpoint(out) is not None:
            check_same_config(cfg.model_dump(mode="json"), out)  # once, here, rather than from every process
        load_all_data(cfg)  # data errors once, here, rather than from every process
        args = ["train", str(config), "--output", str(out), *[a for s in set_ or [] for a in ("--set", s)]]
        args += ["--resume"] * resume + ["--quiet"] * quiet
        console.print(f"[bold]polyhead train[/] {config} -> {out} ({num_processes} processes)")
        raise SystemExit(launch_processes(args, num_processes))
    if launched and output is None:
        from polyhead.training.distributed import DistContext

        out = DistContext.create().broadcast_object(out)  # one run directory, named by the main process
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"[bold]polyhead train[/] {config} -> {out}")
    keep_freed_memory()  # the step's memory stays warm (polyhead.runtime; BENCHMARKS.md, training speed)
    trainer = Trainer(cfg, out, resume=resume, show_progress=not quiet, report=console.print)
    try:
        trainer.run()
    except TrainingInterrupted as exc:
        if trainer.dist.is_main:  # one message, not one per process
            import shlex

            command = ["polyhead", "train", str(config), *[a for s in set_ or [] for a in ("--set", s)]]
            command += ["--output", str(out), "--resume"]
            command += ["--num-processes", os.environ["WORLD_SIZE"]] if launched else []
            err_console.print(f"{exc.summary}. Resume with: {shlex.join(command)}", markup=False, soft_wrap=True)
        raise SystemExit(130) from None
    if trainer.dist.is_main:
        console.print(f"model: {out / 'model'}\nmetrics: {out / 'metrics.jsonl'}\ncurves: {out}/training_curves.png")


def default_run_dir(name: str) -> Path:
    import time

    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_DIR_HELP)],
    config: Annotated[Path, typer.Option("--config", "-c", help="The config whose data to evaluate on.")],
    split: Annotated[str, typer.Option(help="dev, test or train.")] = "test",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    device: Device = "auto",
    revision: Revision = None,
    plot_dir: Annotated[Path | None, typer.Option(help="Write <task>_confusion.png files into this directory.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing confusion PNGs.")] = False,
) -> None:
    """Per-task metrics, per-class P/R/F1/support, confusion matrices, worst-confused pairs on a split."""
    from polyhead.config import load_config
    from polyhead.display import evaluation_tables
    from polyhead.modeldir import read_config
    from polyhead.modeldir.hub import resolve_model_dir
    from polyhead.training import api

    if split not in ("dev", "test", "train"):
        raise PolyheadError(f"--split {split!r}: valid: dev, test, train")
    path = resolve_model_dir(model_dir, revision)
    check_output_dir(plot_dir, "--plot-dir", overwrite, [f"{t}_confusion.png" for t in read_config(path).tasks])
    metrics = api.evaluate_model(path, load_config(config, set_ or []), split, device, reports=True)
    written = api.write_confusion_plots(metrics, plot_dir, split) if plot_dir is not None else []
    if as_json:
        sys.stdout.write(json.dumps(metrics, indent=2) + "\n")
        return
    for item in [*evaluation_tables(f"{model_dir} on {split}", metrics), *(f"wrote {p}" for p in written)]:
        console.print(item)


@app.command()
def demo(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run directory (default runs/demo-<time>).")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the demo data splits are written.")] = Path("runs/demo-data"),
    quick: Annotated[bool, typer.Option("--quick", help="A few steps only: checks the whole path in seconds.")] = False,
    data_only: Annotated[bool, typer.Option("--data-only", help="Only write the data splits.")] = False,
    sts: Annotated[Path | None, typer.Option(help="STS-B test TSV: the embedding before/after training.")] = None,
    encoder: Annotated[
        str | None, typer.Option(help="Encoder instead of the demo config's: a Hub name or a model directory.")
    ] = None,
    sample: Annotated[
        int | None, typer.Option(min=1, help="At most this many sentences drawn from each dataset (seeded).")
    ] = None,
) -> None:
    """Train and show a three-task model (topic, sentiment, entities) on real data from pip packages."""
    from polyhead.demo import run_demo
    from polyhead.demo_data import write_demo_data

    if data_only:
        counts = write_demo_data(data_dir, sample=sample)
        console.print(f"wrote demo data to {data_dir}: {counts}")
        return
    from polyhead.modeldir import check_new_directory

    out = output or default_run_dir("demo")
    check_new_directory(out, "--output", "choose another --output")
    console.print(f"[bold]polyhead demo[/]: run directory {out} (each run gets its own; nothing is overwritten)")
    run_demo(out, data_dir, quick, console, sample=sample, encoder_model=encoder, sts_file=sts)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (results.json) or benchmark result .json files.")],
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write the tables as Markdown here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a bar chart (PNG) here.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing --markdown / --plot files.")] = False,
) -> None:
    """Per-task test metrics, STS, parameters and time of finished runs side by side; multi- vs single-task."""
    from polyhead.compare import compare as compare_runs
    from polyhead.compare import plot as plot_runs
    from polyhead.fileio import write_text_atomic

    check_output_files({"--markdown": markdown, "--plot": plot}, overwrite)
    result = compare_runs(runs)
    for title, (header, rows) in (("Runs", result["table"]), ("Did multi-task help?", result["multitask"])):
        if not rows:
            continue
        table = Table(title=title)
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if markdown is not None:
        write_text_atomic(markdown, result["markdown"] + "\n")
        console.print(f"wrote {markdown}")
    if plot is not None:
        console.print(f"wrote {plot_runs(result['strategies'], plot)}")


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_DIR_HELP)],
    host: Annotated[str, typer.Option(help="Interface to bind; loopback unless told otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    max_batch: Annotated[int, typer.Option(min=1, help="Most texts run together in one micro-batch.")] = 64,
    max_texts: Annotated[int, typer.Option(min=1, help="Most texts per request.")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Most characters per text.")] = 2000,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.")] = 1_000_000,
    api_key: Annotated[
        str | None, typer.Option(envvar="POLYHEAD_API_KEY", help="Require this key (X-API-Key or Bearer).")
    ] = None,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="Run every request alone.")] = False,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="How long a micro-batch waits for more requests.")] = 5.0,
    device: Device = "auto",
    revision: Revision = None,
) -> None:
    """Serve a model over HTTP: /embed, /predict, /similarity, /health, a page at /, docs at /docs."""
    require("serve", "polyhead serve")
    import uvicorn

    from polyhead.predict import load_named
    from polyhead.serving.app import ServeSettings, create_app
    from polyhead.serving.listen import check_listen

    check_listen(host, port, api_key)
    backend, model = load_named(model_dir, backend, device, revision)
    settings = ServeSettings(
        max_texts=max_texts,
        max_chars=max_chars,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        batching=not no_batching,
        api_key=api_key,
        backend=backend,
        model_name=str(model_dir),
        max_wait_ms=max_wait_ms,
    )
    console.print(f"serving {model_dir} on http://{host}:{port}  (docs: /docs, page: /)")
    uvicorn.run(create_app(model, settings), host=host, port=port, log_level="warning")


app.command(name="export")(export_model)
app.command()(push)


def main() -> None:
    """Console-script entry point: user errors -> one line on stderr, exit status 2; no arguments -> help."""
    configure_process()
    setup_logging(err_console)
    try:
        with reliable_ctrl_c():
            code = app(args=sys.argv[1:] or ["--help"], standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(code) and Ctrl-C (130) come back as a return value here
            raise KeyboardInterrupt if code == 130 else SystemExit(code)
    except PolyheadError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except typer.TyperException as exc:  # Click's usage errors (bad option values, missing arguments) subclass it
        err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except (typer.Abort, KeyboardInterrupt):
        quiet_exit()  # from here on no second interrupt may turn exit status 130 into a death by SIGINT (-2)
        err_console.print("aborted", markup=False)
        raise SystemExit(130) from None
