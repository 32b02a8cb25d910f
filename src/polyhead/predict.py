"""The predictor contract and its one pipeline: tokenise -> run the backend on a batch -> decode in numpy.

Backends (torch: :class:`polyhead.modeling.multitask.MultiTaskModel` and
:class:`polyhead.modeling.encoder.SentenceEncoder`; onnxruntime: :class:`polyhead.onnx_backend.OnnxModel`;
OpenVINO: :class:`polyhead.openvino_backend.OpenVinoModel`)
differ only in :class:`Backend`: how texts become token ids and how one padded batch runs. Batching,
embedding normalisation, the task check and decoding (each task type's own, in numpy) are written once here.

    from polyhead.predict import load
    model = load("runs/demo/model", backend="onnx-int8")     # any backend, one API (Predictor)
    model.predict(["..."]); model.encode(["..."]); model.similarity(["a"], ["b"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from polyhead.errors import PolyheadError
from polyhead.modeldir.format import EXPORTS
from polyhead.modeldir.hub import resolve_model_dir
from polyhead.modeldir.spec import TaskSpec
from polyhead.modeling.batching import length_sorted_batches
from polyhead.tasks.base import DecodeInput
from polyhead.tokens import TextInput, Word, check_text_inputs, item_text, prediction_inputs

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
MAX_TOKENS = 16384  # padded tokens per batch (batch size x longest text), so long texts come in small batches
# One tokenised text: "input_ids" (and "attention_mask", "token_type_ids") lists, "word_ids" when tokenised from
# words. Backends may add their own keys.
Encoding = dict[str, Any]


class Backend(Protocol):
    """What a backend provides to the pipeline."""

    @property
    def tasks(self) -> dict[str, TaskSpec]: ...

    @property
    def max_length(self) -> int: ...

    @property
    def normalize(self) -> bool:
        """Whether embeddings are L2-normalised by default."""
        ...

    def tokenize_texts(self, texts: Sequence[str]) -> list[Encoding]: ...

    def tokenize_words(self, words: Sequence[Sequence[str]]) -> list[Encoding]: ...

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[Encoding]:
        """Each pair as one sequence, ``[CLS] a [SEP] b [SEP]`` (with ``token_type_ids``), truncated to fit."""
        ...

    def run_batch(self, encodings: Sequence[Encoding], outputs: Sequence[str], precision: str) -> dict[str, np.ndarray]:
        """Pad and run one batch; ``outputs`` are ``pooled_embedding`` (batch, dim) and ``task.<name>`` for the
        task heads (batch, ...; token heads (batch, seq_len, tags)), returned as float32 numpy arrays."""
        ...


@runtime_checkable
class Predictor(Protocol):
    """What the CLI, the server and users call, whatever the backend."""

    @property
    def tasks(self) -> dict[str, TaskSpec]: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Any, batch_size: int = 32, normalize: bool | None = None, **kwargs: Any) -> Any: ...

    def predict(
        self, texts: Any, tasks: Sequence[str] | None = None, batch_size: int = 32, precision: str = "fp32"
    ) -> list[dict[str, Any]]: ...

    def predict_pairs(
        self, pairs: Any, tasks: Sequence[str] | None = None, batch_size: int = 32, precision: str = "fp32"
    ) -> list[dict[str, Any]]: ...

    def similarity(self, a: Any, b: Any = None, **kwargs: Any) -> np.ndarray: ...


class PipelineMethods:
    """``predict`` / ``predict_pairs`` as methods, for a class that is a :class:`Backend` (both backends)."""

    def predict(
        self,
        texts: TextInput | Sequence[TextInput],
        tasks: Sequence[str] | None = None,
        batch_size: int = 32,
        precision: str = "fp32",
    ) -> list[dict[str, Any]]:
        """One encoder pass per batch -> every requested head's decoded output, per text (:func:`predict`).

        A text is a string or a pre-tokenised list of words. Similarity tasks have no per-text output
        (use ``similarity``). Returns a list (input order) of ``{task: result}``; see docs/python-api.md.
        """
        return predict(cast(Backend, self), texts, tasks, batch_size, precision)

    def predict_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        tasks: Sequence[str] | None = None,
        batch_size: int = 32,
        precision: str = "fp32",
    ) -> list[dict[str, Any]]:
        """Pair tasks (``pair_classification``, ``pair_regression``) on ``(text_a, text_b)`` pairs, each pair
        encoded as one sequence (:func:`predict_pairs`). Returns ``[{task: result}]`` in input order."""
        return predict_pairs(cast(Backend, self), pairs, tasks, batch_size, precision)


def load(model_dir: str | Path, backend: str = "torch", device: Any = None, revision: str | None = None) -> Predictor:
    """A model directory (or the Hub name ``org/name`` of one, at ``revision``) on a backend: ``torch``
    (MultiTaskModel), ``onnx`` or ``onnx-int8`` (OnnxModel),
    ``openvino`` or ``openvino-int8`` (OpenVinoModel), the last four after ``polyhead export`` and without torch;
    ``auto``: the fastest full-fidelity one on this machine (:func:`choose_backend`).

    ``device`` (torch backend): ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``;
    default ``auto``. The onnx and openvino backends run on the CPU (``cpu`` / ``auto`` / None).

    A Hub name resolves through ``huggingface_hub`` (:func:`polyhead.modeldir.hub.resolve_model_dir`: the cache
    first, the user's own ``HF_HUB_OFFLINE`` / ``HF_HOME``), fetching the files that backend reads.
    """
    if backend == "auto":
        return choose_backend(model_dir, device, revision)[1]
    if backend not in BACKENDS:
        raise PolyheadError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    model_dir = resolve_model_dir(model_dir, revision, backend)
    if backend == "torch":
        from polyhead.modeling.multitask import MultiTaskModel

        return MultiTaskModel.from_pretrained(model_dir, device=device)
    check_onnx_device(device, backend)
    variant = "int8" if backend.endswith("-int8") else "fp32"
    if backend.startswith("openvino"):
        from polyhead.openvino_backend import OpenVinoModel

        return OpenVinoModel(Path(model_dir), variant)
    from polyhead.onnx_backend import OnnxModel

    return OnnxModel(Path(model_dir), variant)


def load_named(
    model_dir: str | Path, backend: str = "torch", device: Any = None, revision: str | None = None
) -> tuple[str, Predictor]:
    """:func:`load`, and the name of the backend it loaded (what ``auto`` chose)."""
    if backend == "auto":
        return choose_backend(model_dir, device, revision)
    return backend, load(model_dir, backend, device, revision)


def full_fidelity_backends(model_dir: Path) -> list[str]:
    """torch and the directory's fp32 exports whose runtime is installed (int8 changes the numbers: never
    chosen for the user)."""
    import json

    from polyhead.extras import installed

    found = ["torch"]
    for backend, module in (("onnx", "onnxruntime"), ("openvino", "openvino")):
        try:
            listed = "fp32" in json.loads((model_dir / EXPORTS[backend][0]).read_text()).get("files", {})
        except (OSError, ValueError, AttributeError):
            listed = False
        if listed and installed(module):
            found.append(backend)
    return found


def choose_backend(model_dir: str | Path, device: Any = None, revision: str | None = None) -> tuple[str, Predictor]:
    """The backend ``load(dir, "auto")`` runs ``model_dir`` on, and the model loaded on it: torch on a device
    other than the CPU; else the fastest of torch and the directory's fp32 exports (onnx, openvino), timed on a
    short probe the first time this machine sees this architecture and these library versions, then cached
    (polyhead.cpupath; ``POLYHEAD_BACKEND`` overrides). A stale or broken export is left out, with a warning."""
    import logging

    from polyhead import cpupath
    from polyhead.modeldir import read_config

    fixed = cpupath.override("backend", BACKENDS)
    if fixed is not None:
        return fixed, load(model_dir, fixed, device, revision)
    if device is not None and str(device).strip().lower() not in ("cpu", "auto"):
        return "torch", load(model_dir, "torch", device, revision)
    path = resolve_model_dir(model_dir, revision)  # a Hub model: its torch files (exports only when asked for)
    settings = read_config(path).encoder
    loaded: dict[str, Predictor] = {}
    for name in full_fidelity_backends(path):
        try:
            loaded[name] = load(path, name, device)
        except PolyheadError as exc:
            if name == "torch":  # the model itself is broken: that is the user's error, not a path to skip
                raise
            logging.getLogger(__name__).warning("backend auto: leaving out %s (%s)", name, exc)
    keys = ("hidden_size", "num_layers", "projection_dim", "max_length", "pooling")
    subject = "encode " + ", ".join(f"{k}={settings.get(k)}" for k in keys) + f", device {device or 'auto'}"

    def probe(model: Predictor) -> Callable[[], float]:
        def run() -> float:
            import time

            model.encode(cpupath.PROBE_TEXTS[:8])  # warm-up
            start = time.perf_counter()
            model.encode(cpupath.PROBE_TEXTS, batch_size=32)
            return time.perf_counter() - start

        return run

    probes = {name: probe(model) for name, model in loaded.items()}
    choice = cpupath.choose("backend", subject, probes, ["torch", "onnxruntime", "openvino"])
    return choice, loaded[choice]


def check_onnx_device(device: Any, backend: str = "onnx") -> None:
    """The onnx and openvino backends run on the CPU: another device is an error, never ignored."""
    if device is not None and str(device).strip().lower() not in ("cpu", "auto"):
        kind = backend.split("-")[0]
        raise PolyheadError(
            f"device {str(device)!r}: the {kind} backends run on the CPU; use --backend torch for {str(device)!r}"
        )


# ------------------------------------------------------------------------------------------ the pipeline
def batches(
    backend: Backend,
    encodings: Sequence[Encoding],
    outputs: Sequence[str],
    batch_size: int,
    precision: str,
    show_progress: bool = False,
    max_tokens: int | None = MAX_TOKENS,
) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """(indices, outputs) for token-sorted batches padded only to their own longest text (and at most
    ``max_tokens`` padded tokens each)."""
    order = length_sorted_batches([len(e["input_ids"]) for e in encodings], batch_size, max_tokens)
    bar = progress_bar(len(encodings)) if show_progress else None
    for batch in order:
        yield batch, backend.run_batch([encodings[i] for i in batch], outputs, precision)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()


def encode(
    backend: Backend,
    texts: str | Sequence[str],
    batch_size: int = 32,
    normalize: bool | None = None,
    precision: str = "fp32",
    show_progress: bool = False,
    max_tokens: int | None = MAX_TOKENS,
) -> np.ndarray:
    """Sentence embeddings (n, dim) in input order, or (dim,) for one string; L2-normalised when ``normalize``
    (None: as the model says)."""
    single = isinstance(texts, str)
    items = [texts] if isinstance(texts, str) else list(texts)
    check_texts(items)
    check_text_inputs(items)
    rows: dict[int, np.ndarray] = {}
    if items:
        encodings = backend.tokenize_texts(items)
        outputs = ["pooled_embedding"]
        for batch, out in batches(backend, encodings, outputs, batch_size, precision, show_progress, max_tokens):
            for row, index in enumerate(batch):
                rows[index] = out["pooled_embedding"][row]
    vectors = (
        np.stack([rows[i] for i in range(len(items))]).astype(np.float32, copy=False)
        if items
        else (np.zeros((0, 0), dtype=np.float32))
    )
    if items and (backend.normalize if normalize is None else normalize):
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors[0] if single else vectors


def similarity(
    backend: Backend, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any
) -> np.ndarray:
    """Cosine similarities: (len(a), len(b)), or (len(a), len(a)) when ``b`` is None."""
    ea = encode(backend, [a] if isinstance(a, str) else a, normalize=True, **kwargs)
    eb = ea if b is None else encode(backend, [b] if isinstance(b, str) else b, normalize=True, **kwargs)
    return ea @ eb.T


def predict(
    backend: Backend,
    texts: TextInput | Sequence[TextInput],
    tasks: Sequence[str] | None = None,
    batch_size: int = 32,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """One encoder pass per batch -> every requested head's decoded output, per text, in input order.

    A text is a string or a pre-tokenised list of words. Tasks without a per-text output (similarity) and
    pair tasks (see :func:`predict_pairs`) are left out. Returns ``[{task: result}]``; see docs/python-api.md.
    """
    names = tasks_for(backend.tasks, tasks, "text")
    token_heads = any(backend.tasks[t].level == "token" for t in names)
    items, item_words = prediction_inputs(texts, token_heads, backend.max_length)
    words: list[list[Word]] = item_words or []
    if item_words is not None:
        encodings = backend.tokenize_words([[w.text for w in ws] for ws in words])
    else:
        encodings = backend.tokenize_texts(items)  # type: ignore[arg-type]

    def decode_input(index: int) -> DecodeInput:
        if item_words is None:
            return DecodeInput(max_length=backend.max_length)
        return DecodeInput(encodings[index]["word_ids"], words[index], item_text(items[index]), backend.max_length)

    return run_and_decode(backend, encodings, names, batch_size, precision, decode_input)


def predict_pairs(
    backend: Backend,
    pairs: Sequence[Sequence[str]],
    tasks: Sequence[str] | None = None,
    batch_size: int = 32,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """Every requested pair task's decoded output per ``(text_a, text_b)`` pair, in input order; each pair is
    encoded as one sequence (a cross-encoder), one encoder pass per batch for all pair heads."""
    names = tasks_for(backend.tasks, tasks, "pair")
    items = check_pairs(pairs)
    encodings = backend.tokenize_pairs(items) if items else []

    def decode_input(index: int) -> DecodeInput:
        return DecodeInput(max_length=backend.max_length)

    return run_and_decode(backend, encodings, names, batch_size, precision, decode_input)


def run_and_decode(
    backend: Backend,
    encodings: Sequence[Encoding],
    names: list[str],
    batch_size: int,
    precision: str,
    decode_input: Callable[[int], DecodeInput],
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in encodings]
    if not names or not encodings:  # a plain encoder (or only tasks of another input kind): nothing to run
        return results
    outputs = [f"task.{n}" for n in names]
    for batch, out in batches(backend, encodings, outputs, batch_size, precision):
        for name in names:
            spec, values = backend.tasks[name], out[f"task.{name}"]
            decode = spec.task.decode  # looked up once per batch, not per row (a registry lookup)
            for row, index in enumerate(batch):
                results[index][name] = decode(spec, values[row], decode_input(index))
    return results


def head_outputs(
    backend: Backend, inputs: Sequence[Any], name: str, batch_size: int = 32, precision: str = "fp32"
) -> np.ndarray:
    """A sentence-level head's raw outputs (n, outputs) in input order, undecoded: ``inputs`` are texts, or
    (text_a, text_b) pairs for a pair task (what temperature scaling and threshold tuning fit on)."""
    spec = backend.tasks[name]
    assert spec.level == "sentence", f"task {name} is not sentence-level"
    if spec.task.input == "pair":
        encodings = backend.tokenize_pairs(check_pairs(inputs))
    else:
        check_texts(inputs)
        encodings = backend.tokenize_texts(list(inputs))
    out = np.zeros((len(encodings), spec.task.num_outputs(spec)), dtype=np.float32)
    for batch, values in batches(backend, encodings, [f"task.{name}"], batch_size, precision):
        out[batch] = values[f"task.{name}"]
    return out


def tasks_for(tasks: Mapping[str, TaskSpec], names: Sequence[str] | None, kind: str) -> list[str]:
    """The predicting tasks of one input kind ("text" or "pair") among ``names`` (all when None); asking for a
    task of the other kind by name is an error that says which call takes it."""
    asked = check_tasks(tasks, names)
    wrong = [t for t in asked if names is not None and tasks[t].task.predicts and tasks[t].task.input != kind]
    if wrong:
        how = ("pairs of texts: predict_pairs in Python, --pair / --pairs-file on the CLI, 'pairs' over HTTP"
               if kind == "text" else "single texts: predict in Python, texts / --file on the CLI, 'texts' over HTTP")
        raise PolyheadError(f"task(s) {', '.join(map(repr, wrong))} take {how}")
    return [t for t in asked if tasks[t].task.predicts and tasks[t].task.input == kind]


def check_pairs(pairs: Any) -> list[tuple[str, str]]:
    """Pairs as a list of (str, str); anything else is a one-line error naming the item."""
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise PolyheadError("pairs must be a list of [text_a, text_b] pairs")
    items = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise PolyheadError(f"pair {i} must be two texts [text_a, text_b], got {pair!r:.80}")
        if not all(isinstance(t, str) for t in pair):
            raise PolyheadError(f"pair {i} must hold two strings")
        check_text_inputs(pair, f"pair {i}: text")
        items.append((pair[0], pair[1]))
    return items


def check_tasks(tasks: Mapping[str, TaskSpec], names: Sequence[str] | None) -> list[str]:
    """The requested task names (all when None); unknown names are an error listing the valid ones."""
    if names is None:
        return list(tasks)
    unknown = [t for t in names if t not in tasks]
    if unknown:
        raise PolyheadError(f"unknown task(s) {', '.join(map(repr, unknown))}; valid: {', '.join(tasks)}")
    return list(names)


def nothing_to_predict(tasks: Mapping[str, TaskSpec], names: Sequence[str] | None, kind: str = "text") -> str | None:
    """Why predicting these tasks (all when ``names`` is None) on inputs of ``kind`` ("text" or "pair") would
    return nothing, or None. Similarity heads have no per-text output (they are the embedding). Unknown names,
    and named tasks of the other kind, are left to predict's own error."""
    asked = list(tasks) if names is None else list(names)
    if names is not None and not asked:
        return "no task names were given" + (f" (valid: {', '.join(tasks)})" if tasks else "")
    if any(name not in tasks for name in asked):
        return None
    if any(tasks[n].task.predicts and (names is not None or tasks[n].task.input == kind) for n in asked):
        return None
    others = [n for n in asked if tasks[n].task.predicts]
    if others:
        return f"the model's heads ({', '.join(others)}) take {'pairs of texts' if kind == 'text' else 'single texts'}"
    return "the model has no heads that predict" if names is None else "the tasks asked for are similarity tasks"


def predicting_tasks(tasks: Mapping[str, TaskSpec], kind: str | None = None) -> list[str]:
    """Names of the tasks with a per-input prediction (of one input kind, "text" or "pair", if given)."""
    return [n for n, spec in tasks.items() if spec.task.predicts and kind in (None, spec.task.input)]


def check_texts(texts: Sequence[Any]) -> None:
    """Texts must be strings (the pipeline's entry points also refuse empty ones: ``check_text_inputs``)."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise PolyheadError(f"text {i} is a {type(text).__name__}, not a string")


def progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Encoding", unit="text")
