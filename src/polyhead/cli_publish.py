"""Commands that publish a model directory: ``polyhead export`` (ONNX / OpenVINO files into it) and ``polyhead push``
(upload it to the Hugging Face Hub). Thin Typer commands, registered on the app in :mod:`polyhead.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from polyhead.data.lines import read_text_lines
from polyhead.display import export_report_lines

console = Console()
Revision = Annotated[str | None, typer.Option(help="Branch, tag or commit of a Hugging Face Hub model name.")]


def export_model(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="A polyhead model directory (exported in place), or with --output: 'default', an HF / "
            "sentence-transformers encoder directory, or a Hub name (an encoder or a polyhead model)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="New directory: save the encoder MODEL_DIR there as a polyhead model without heads (or copy a "
            "polyhead model from the Hub there), then export it.",
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="onnx or openvino.")] = "onnx",
    revision: Revision = None,
    quantize: Annotated[
        str | None,
        typer.Option(help="int8: the fastest int8 recipe that holds the parity gate (docs/export.md), heads fp32."),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Run the parity gate against PyTorch.")] = False,
    sts: Annotated[Path | None, typer.Option(help="STS TSV for the int8 gate (e.g. stsb/test.tsv).")] = None,
    check_file: Annotated[
        Path | None,
        typer.Option(
            "--check-file",
            help="UTF-8 file, one text per line: in-domain texts for choosing the int8 recipe and for the gate "
            "(default: 16 built-in sample sentences).",
        ),
    ] = None,
) -> None:
    """Export the whole model (encoder, pooling, heads) as one ONNX or OpenVINO graph into MODEL_DIR (or --output)."""
    from polyhead.export.onnx import check_format, export_encoder

    texts = read_text_lines(check_file, "--check-file") if check_file is not None else None
    if output is not None:
        report = export_encoder(str(model_dir), output, quantize, check, texts, sts, revision, format)
    else:
        report = check_format(format, quantize, sts)(model_dir, quantize, check, texts, sts)
    for line in export_report_lines(report):
        console.print(line, markup=False, soft_wrap=True)


def push(
    model_dir: Annotated[Path, typer.Argument(help="A polyhead model directory (runs/NAME/model).")],
    repo_id: Annotated[str, typer.Argument(help="The Hub repository: org/name (created if missing).")],
    private: Annotated[
        bool, typer.Option("--private", help="Create the repository private (an existing one keeps its visibility).")
    ] = False,
    revision: Annotated[
        str | None, typer.Option(help="Branch to commit to (created if missing; default: the main branch).")
    ] = None,
    commit_message: Annotated[
        str | None, typer.Option("--commit-message", help="Default: 'Upload polyhead model (N files)'.")
    ] = None,
) -> None:
    """Upload a model directory to the Hugging Face Hub: the card refreshed, then the model's files only (no
    checkpoints, run files or partial outputs), with your own token (hf auth login or HF_TOKEN)."""
    from polyhead.modeldir.push import push_to_hub

    url = push_to_hub(model_dir, repo_id, private=private or None, revision=revision, commit_message=commit_message)
    console.print(f"pushed {model_dir} to {repo_id}: {url}", markup=False, soft_wrap=True)
