"""FastAPI app: /embed, /predict, /similarity, /health, /stats, a page at /, OpenAPI docs at /docs.

Requests are checked against limits (texts per request, characters per text, body bytes) and an optional
API key; inference runs in a worker thread through the micro-batcher, so the event loop never blocks.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polyhead.errors import PolyheadError
from polyhead.predict import Predictor, nothing_to_predict, predicting_tasks
from polyhead.serving.batcher import MicroBatcher

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
OPEN_PATHS = {"/", "/health", "/docs", "/openapi.json"}


@dataclass
class ServeSettings:
    max_texts: int = 64
    max_chars: int = 2000
    max_body_bytes: int = 1_000_000
    max_batch: int = 64
    max_wait_ms: float = 5.0
    batching: bool = True
    api_key: str | None = None
    backend: str = "torch"
    model_name: str = ""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedRequest(Strict):
    texts: list[str] = Field(..., min_length=1, description="Texts to embed.")


class PredictRequest(Strict):
    texts: list[str] | None = Field(None, min_length=1, description="Texts for the single-text heads.")
    pairs: list[tuple[str, str]] | None = Field(
        None, min_length=1, description="[text_a, text_b] pairs for the pair heads (pair_classification, ...)."
    )
    tasks: list[str] | None = Field(None, description="Task names; default: every task of that input kind.")

    @model_validator(mode="after")
    def one_input(self) -> PredictRequest:
        if (self.texts is None) == (self.pairs is None):
            raise ValueError("give either 'texts' (single texts) or 'pairs' ([text_a, text_b] pairs)")
        return self


class SimilarityRequest(Strict):
    pairs: list[tuple[str, str]] | None = Field(None, description="Score each [a, b] pair.")
    query: str | None = Field(None, description="Score the query against every text in `texts`.")
    texts: list[str] | None = Field(
        None, description="With `query`: the texts to score; alone: every pair (a matrix)."
    )


class LimitError(Exception):
    def __init__(self, status: int, limit: str, value: int, message: str) -> None:
        super().__init__(message)
        self.status, self.limit, self.value, self.message = status, limit, value, message


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, **extra})


def create_app(model: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """An app serving ``model``: any backend's predictor (polyhead.predict.load)."""
    settings = settings or ServeSettings()

    def run(key: tuple[str, tuple[str, ...] | None], items: list[Any]) -> list[Any]:
        kind, tasks = key
        if kind == "embed":
            return list(np.asarray(model.encode(items, batch_size=settings.max_batch), dtype=np.float32))
        names = list(tasks) if tasks is not None else None
        if kind == "pairs":
            return model.predict_pairs(items, tasks=names, batch_size=settings.max_batch)
        return model.predict(items, tasks=names, batch_size=settings.max_batch)

    batcher = MicroBatcher(run, settings.max_batch, settings.max_wait_ms / 1000, enabled=settings.batching)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="polyhead", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Sentence embeddings and multi-task predictions from one shared encoder.")
    add_local_docs(app)
    app.state.batcher = batcher

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        return error(422, f"{where}: {message}", detail=jsonable(exc.errors()))

    @app.exception_handler(PolyheadError)
    async def user_error(request: Request, exc: PolyheadError) -> JSONResponse:
        return error(422, str(exc))

    @app.exception_handler(LimitError)
    async def too_much(request: Request, exc: LimitError) -> JSONResponse:
        return error(exc.status, exc.message, limit=exc.limit, value=exc.value)

    api_key_bytes = (settings.api_key or "").encode("utf-8")

    def check_key(request: Request) -> None:
        if settings.api_key is None or request.url.path in OPEN_PATHS:
            return
        check_key_always(request)

    def check_key_always(request: Request) -> None:
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        if not given or not secrets.compare_digest(given.encode("latin-1", "replace"), api_key_bytes):
            raise LimitError(
                401, "api_key", 0, "missing or wrong API key (send X-API-Key or Authorization: Bearer)"
            )

    def check_texts(items: Sequence[str | tuple[str, str]], field: str = "texts") -> None:
        """Limits: inputs (texts, or pairs) per request, characters per text; errors name the request's field
        (``texts[3]``, ``pairs[2][1]``)."""
        if len(items) > settings.max_texts:
            raise LimitError(422, "max_texts", settings.max_texts,
                             f"{len(items)} {field} exceed max_texts={settings.max_texts} per request")
        for i, item in enumerate(items):
            for where, text in ([(f"{field}[{i}]", item)] if isinstance(item, str) else
                                [(f"{field}[{i}][{j}]", t) for j, t in enumerate(item)]):
                check_text(where, text)

    def check_text(where: str, text: str) -> None:
        bad = invalid_text(text) or ("" if text.strip() else "empty text (nothing to read)")
        if bad:
            raise PolyheadError(f"{where}: {bad}")
        if len(text) > settings.max_chars:
            raise LimitError(422, "max_chars", settings.max_chars,
                             f"{where} has {len(text)} characters, over max_chars={settings.max_chars}")

    guarded = [Depends(check_key)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        if settings.api_key is not None:  # without the key: liveness only, nothing about the model
            try:
                check_key_always(request)
            except LimitError:
                return {"status": "ok", "auth": True}
        return {
            "status": "ok",
            "model": settings.model_name,
            "backend": settings.backend,
            "version": _version(),
            "dimension": int(model.dim),
            "tasks": {name: {"type": spec.type, "input": spec.task.input, "predicts": spec.task.predicts,
                             "labels": spec.labels} for name, spec in model.tasks.items()},
            "limits": {"max_texts": settings.max_texts, "max_chars": settings.max_chars,
                       "max_body_bytes": settings.max_body_bytes},
            "auth": settings.api_key is not None,
        }

    @app.get("/stats", dependencies=guarded)
    async def stats() -> dict[str, Any]:
        return {**batcher.stats, "batching": settings.batching}

    @app.post("/embed", dependencies=guarded)
    async def embed(body: EmbedRequest) -> dict[str, Any]:
        check_texts(body.texts)
        vectors = await batcher.submit(("embed", None), body.texts)
        return {"embeddings": [v.tolist() for v in vectors], "dimension": len(vectors[0])}

    @app.post("/predict", dependencies=guarded)
    async def predict(body: PredictRequest) -> Any:
        kind = "pairs" if body.pairs is not None else "predict"
        items: list[Any] = list(body.pairs) if body.pairs is not None else list(body.texts or [])
        check_texts(items, kind if kind == "pairs" else "texts")
        if body.tasks is not None:
            unknown = [t for t in body.tasks if t not in model.tasks]
            if unknown:
                return error(422, f"unknown task(s) {unknown}; valid tasks: {list(model.tasks)}",
                             valid_tasks=list(model.tasks))
        input_kind = "pair" if kind == "pairs" else "text"
        reason = nothing_to_predict(model.tasks, body.tasks, input_kind)
        if reason:
            return error(422, f"nothing to predict ({reason}; similarity heads are the embedding): "
                         "use /embed or /similarity, or send 'texts' / 'pairs' as the heads take them",
                         valid_tasks=predicting_tasks(model.tasks, input_kind))
        key = (kind, tuple(body.tasks) if body.tasks is not None else None)
        return {"predictions": await batcher.submit(key, items)}

    @app.post("/similarity", dependencies=guarded)
    async def similarity(body: SimilarityRequest) -> Any:
        if body.pairs:
            check_texts(body.pairs, "pairs")
            left, right = [a for a, _ in body.pairs], [b for _, b in body.pairs]
            vectors = await batcher.submit(("embed", None), left + right)
            a, b = np.stack(vectors[: len(left)]), np.stack(vectors[len(left):])
            return {"scores": cosine_rows(a, b).tolist()}
        if body.query is not None and body.texts:
            check_text("query", body.query)
            check_texts(body.texts)
            vectors = await batcher.submit(("embed", None), [body.query, *body.texts])
            q, rest = np.stack(vectors[:1]), np.stack(vectors[1:])
            return {"scores": (unit(rest) @ unit(q)[0]).tolist()}
        if body.query is None and body.texts:
            check_texts(body.texts)
            rows = unit(np.stack(await batcher.submit(("embed", None), body.texts)))
            return {"matrix": (rows @ rows.T).tolist()}
        return error(422, "give `pairs` ([[a, b], ...]), `query` with `texts`, or `texts` alone (a matrix)")

    return app


def add_local_docs(app: FastAPI) -> None:
    """/docs with the Swagger UI files from the swagger-ui-bundle package, served by the app itself (no CDN:
    the page works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="polyhead - API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (unit(a) * unit(b)).sum(axis=-1)


def jsonable(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's error dicts with anything not strict JSON (the exception in ``ctx``, a NaN or Infinity
    the request body held, a lone surrogate) as a string."""
    return [{k: strict_json(v) for k, v in e.items()} for e in errors]


def strict_json(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return repr(value)
    return value


def invalid_text(text: str) -> str | None:
    """Why ``text`` can't be tokenised (a lone surrogate: not Unicode text), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode text (a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start})"
    return None


def _version() -> str:
    import polyhead

    return polyhead.__version__


class BodyLimit:
    """ASGI middleware: 413 when a request body is over ``max_bytes``, by Content-Length or while streaming.

    A body sent without Content-Length (chunked) is counted as it arrives, so an oversized upload is cut
    off after ``max_bytes`` instead of being read into memory whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(int(declared), scope, receive, send)
            return
        chunks, size = [], 0
        while True:  # read the body up front (it is small by construction) and replay it to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.reject(size, scope, receive, send, at_least=True)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def reject(
        self, size: int, scope: Scope, receive: Receive, send: Send, at_least: bool = False
    ) -> None:
        what = f"more than {self.max_bytes}" if at_least else str(size)
        response = error(413, f"request body of {what} bytes exceeds max_body_bytes={self.max_bytes}",
                         limit="max_body_bytes", value=self.max_bytes)
        await response(scope, receive, send)
