"""The FastAPI application: the page, the JSON API (described at ``/openapi.json``) and the downloads.

Models are loaded once at startup through :func:`simexplain.service.get_model` and shared; each has one
worker (one explanation at a time) behind a bounded admission count (:class:`.jobs.JobQueue`). Every error is
``{"error": "<one line>"}`` with a 4xx status (a 500 only for a bug, with the same shape).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import service
from . import jobs as jobs_module
from .requests import RequestError, check_request, read_upload
from .results import ResultStore, answer, explain_job, json_safe

log = logging.getLogger("simexplain.web")

STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
SAMPLES = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg")
# The page loads nothing from elsewhere: scripts, styles and images come from this server only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class WebSettings:
    """What ``simexplain serve`` is told: served models, device and the limits.

    Attributes:
        models: registered model names (or ``python:module:function`` routes), the first is the default.
        weights: checkpoint files, one per model in order (fewer: the rest use their built-in weights).
        device: where the models run.
        upload_limit: bytes per request body (both images together); larger is refused with 413.
        max_pixels: pixels per image, read from its header before decoding; more is refused with 413.
        queue_size: explanations queued or running at once; one more is refused with 429.
        keep: finished results (figures, JSON) kept for download; older ones are dropped.
    """

    models: tuple[str, ...] = ()
    weights: tuple[str | None, ...] = ()
    device: str = "cpu"
    upload_limit: int = 20_000_000
    max_pixels: int = 50_000_000
    queue_size: int = 8
    keep: int = 32


# ---------------------------------------------------------------------------------------------- schemas
class ErrorBody(BaseModel):
    error: str


class MethodAnswer(BaseModel):
    method: str
    config: dict[str, Any]
    score: float | None
    seconds: float
    metrics: dict[str, Any] | None = None
    map1: list[list[float]]
    map2: list[list[float]]
    # pair-interaction only: I[y1][x1][y2][x2] of the first pair (the page's click-to-match view)
    interaction: list[list[list[list[float]]]] | None = None


class ExplainAnswer(BaseModel):
    id: str
    model: str
    model_name: str
    score: float | None
    images: list[str]
    device: str
    explanations: list[MethodAnswer]
    figures: dict[str, str]
    inputs: list[str]


class JobStatus(BaseModel):
    id: str
    model: str
    state: str
    progress: float
    stage: str
    error: str | None
    result: ExplainAnswer | None = None


class ModelInfo(BaseModel):
    name: str
    model_name: str
    default: bool
    input_size: list[int]
    layer: str | None
    description: str


class MethodInfo(BaseModel):
    name: str
    family: str
    description: str
    parameters: dict[str, Any]


class Health(BaseModel):
    status: str
    models: list[str]
    pending: int
    capacity: int


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": "one-line error"} for code in codes}


# The multipart body, described by hand: the route reads it itself (bounded, in memory).
EXPLAIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image1", "image2"],
                    "properties": {
                        "image1": {"type": "string", "format": "binary", "description": "first image"},
                        "image2": {"type": "string", "format": "binary", "description": "second image"},
                        "model": {"type": "string", "description": "a served model (default: the first)"},
                        "methods": {
                            "type": "string",
                            "description": "comma-separated method names (default interaction-cam)",
                        },
                        "params": {
                            "type": "string",
                            "description": 'JSON object, "METHOD.KEY" (or "KEY", "metrics.KEY") → value',
                        },
                        "metrics": {"type": "string", "description": "comma-separated metrics, or all"},
                    },
                }
            }
        },
    }
}


# ---------------------------------------------------------------------------------------------- the app
def create_app(settings: WebSettings | None = None) -> FastAPI:
    """The web application for ``settings`` (models load when it starts, e.g. under uvicorn or TestClient).

    Example:
        >>> app = create_app(WebSettings(models=("efficientnet-lite0",)))
        >>> sorted(r.path for r in app.routes if r.path.startswith("/api/"))[:3]
        ['/api/explain', '/api/health', '/api/jobs']
    """
    from ..models import DEFAULT_MODEL

    settings = settings or WebSettings()
    names = list(dict.fromkeys(settings.models or (DEFAULT_MODEL,)))
    for name in names:
        service.check_model_name(name)
    device = service.check_device(settings.device)
    state = _State(settings, names, device)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()  # models load now, not on the first request
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="simexplain",
        version="1",
        description="Explain why a two-image model finds two images similar.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's /docs and /redoc pages load scripts from a CDN: not offline, so not served
        redoc_url=None,
    )
    _add_error_handlers(app)
    _add_page(app)
    _add_facts(app, state)
    _add_explaining(app, state)
    app.state.simexplain = state
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Security headers on every answer; every error as ``{"error": "<one line>"}``."""

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"error": f"internal error: {type(error).__name__}"}, status_code=500)


def _add_page(app: FastAPI) -> None:
    """The page, its two static files (read once, looked up by name) and the bundled sample photos."""
    static = {name: (resources.files(__package__) / "static" / name).read_bytes() for name in STATIC}

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(static["index.html"], media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in STATIC:
            raise RequestError(404, "no such file")
        return Response(static[name], media_type=STATIC[name] + "; charset=utf-8")

    @app.get(
        "/api/samples/{name}",
        responses={200: {"content": {"image/jpeg": {}}}, **_errors(404, 422)},
        response_class=Response,
        summary="A bundled sample photo (chelsea.jpg, coffee.jpg, astronaut.jpg)",
    )
    def sample(name: str) -> Response:
        if name not in SAMPLES:
            raise RequestError(404, f"no sample {name!r}; samples: {', '.join(SAMPLES)}")
        from ..images import sample_path

        return Response(sample_path(name).read_bytes(), media_type="image/jpeg")


def _add_facts(app: FastAPI, state: _State) -> None:
    """Health, the served models and the registered methods."""
    names = state.names

    @app.get("/api/health", response_model=Health)
    def health() -> dict[str, Any]:
        queue = state.jobs
        return {"status": "ok", "models": names, "pending": queue.pending, "capacity": queue.capacity}

    @app.get("/api/models", response_model=list[ModelInfo])
    def models() -> list[dict[str, Any]]:
        from ..models import available

        known = available()
        listed = []
        for index, name in enumerate(names):
            model = state.models[name]
            entry = known.get(name)
            listed.append(
                {
                    "name": name,
                    "model_name": model.name,
                    "default": index == 0,
                    "input_size": list(model.preprocessing.input_size),
                    "layer": model.layer,
                    "description": entry.description if entry else f"{model.name} (loaded by the server)",
                }
            )
        return listed

    @app.get("/api/methods", response_model=list[MethodInfo])
    def methods() -> list[dict[str, Any]]:
        from ..methods import available, get

        listed = []
        for name, description in available().items():
            method = get(name)
            listed.append(
                {
                    "name": name,
                    "family": method.family,
                    "description": description,
                    "parameters": json_safe(method.parameters()),
                }
            )
        return listed


def _add_explaining(app: FastAPI, state: _State) -> None:
    """Explain (waiting), jobs (start, poll, cancel) and the results' downloads."""
    settings, names = state.settings, state.names

    async def submit(request: Request) -> jobs_module.Job:
        queue: jobs_module.JobQueue = state.jobs
        try:
            queue.admit()  # before the body is read: memory stays bounded under a flood
        except jobs_module.QueueFull as error:
            raise RequestError(429, str(error), {"Retry-After": str(error.retry_after)}) from None
        try:
            fields, files = await read_upload(request, settings.upload_limit)
            checked = check_request(fields, files, names, max_pixels=settings.max_pixels)
        except BaseException:
            queue.release()
            raise
        model = state.models[checked.model]

        def work(job: jobs_module.Job) -> bytes:
            report = explain_job(job, model, checked)
            # Kept as compact JSON bytes: a 224×224 map as Python floats would take ~4× the memory.
            document = json.dumps(answer(job.id, checked.model, report), separators=(",", ":")).encode()
            state.results.put(job.id, report, document)
            return document

        return queue.submit(checked.model, work, admitted=True)

    @app.post(
        "/api/explain",
        response_model=None,
        responses={200: {"model": ExplainAnswer}, **_errors(400, 409, 413, 422, 429, 500)},
        openapi_extra=EXPLAIN_BODY,
        summary="Explain a pair of images (waits for the answer)",
    )
    async def explain(request: Request) -> Response:
        job = await submit(request)
        await asyncio.wrap_future(job.future)
        if job.state != "done":
            return JSONResponse({"error": job.error or job.state}, status_code=job.status_code)
        return Response(job.result, media_type="application/json")

    @app.post(
        "/api/jobs",
        status_code=202,
        response_model=JobStatus,
        responses=_errors(400, 413, 422, 429),
        openapi_extra=EXPLAIN_BODY,
        summary="Start explaining a pair; poll /api/jobs/{id} for progress and the answer",
    )
    async def start_job(request: Request) -> Response:
        job = await submit(request)
        return job_status(job, 202)

    def job_status(job: jobs_module.Job, status_code: int = 200) -> Response:
        """The job as JSON, its answer (already encoded) spliced in as ``result`` once it is done."""
        status = json.dumps({**job.status(), "result": None}, separators=(",", ":")).encode()
        if job.state == "done":
            status = status[: -len(b"null}")] + job.result + b"}"
        return Response(status, media_type="application/json", status_code=status_code)

    def known_job(job_id: str) -> jobs_module.Job:
        job = state.jobs.get(job_id)
        if job is None:
            raise RequestError(404, "no such job (finished jobs are forgotten after a while)")
        return job

    @app.get("/api/jobs/{job_id}", response_model=JobStatus, responses=_errors(404, 422))
    def job(job_id: str) -> Response:
        return job_status(known_job(job_id))

    @app.delete("/api/jobs/{job_id}", response_model=JobStatus, responses=_errors(404, 422))
    def cancel_job(job_id: str) -> Response:
        known_job(job_id)
        return job_status(state.jobs.cancel(job_id))

    @app.get(
        "/api/results/{result_id}/{name}",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}, "image/svg+xml": {}, "application/json": {}}},
            **_errors(404, 422),
        },
        summary="A result's download: figure.png, figure.svg, result.json, image1.png, image2.png",
    )
    def download(result_id: str, name: str) -> Response:
        found = state.results.download(result_id, name)
        if found is None:
            raise RequestError(
                404, "no such result or file (results are kept for this session, the last few)"
            )
        data, media = found
        disposition = "inline" if name.startswith("image") else f'attachment; filename="simexplain-{name}"'
        return Response(data, media_type=media, headers={"Content-Disposition": disposition})


class _State:
    """The app's shared parts, started by the lifespan or, when an ASGI host runs none, on first use."""

    def __init__(self, settings: WebSettings, names: list[str], device) -> None:
        self.settings, self.names, self.device = settings, names, device
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            settings = self.settings
            weights = dict(zip(settings.models, settings.weights))
            self._models = {
                name: service.get_model(name, weights=weights.get(name), device=self.device)
                for name in self.names
            }
            self._jobs = jobs_module.JobQueue(
                self.names, capacity=settings.queue_size, keep=settings.keep * 2
            )
            self._results = ResultStore(settings.keep)
            self._started = True

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._jobs.close()
                self._results.close()
                self._started = False

    @property
    def models(self) -> dict[str, Any]:
        self.start()
        return self._models

    @property
    def jobs(self) -> jobs_module.JobQueue:
        self.start()
        return self._jobs

    @property
    def results(self) -> ResultStore:
        self.start()
        return self._results


def serve(settings: WebSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app under uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


__all__ = ["ErrorBody", "ExplainAnswer", "WebSettings", "create_app", "serve"]
