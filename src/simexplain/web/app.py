"""The FastAPI application: the page, the JSON API (described at ``/openapi.json``) and the downloads.

FastAPI's own shape: two ``APIRouter`` (the page, the API) whose routes ask for what they need through
dependencies (:func:`served`: the app's shared parts; :func:`submitted`: an upload admitted, checked and
queued; :func:`known_job`). Models are loaded once at startup through :func:`simexplain.service.get_model` and
shared; each has one worker (one explanation at a time) behind a bounded admission count
(:class:`.jobs.JobQueue`); a job runs :func:`simexplain.service.run` with itself as the observer. Work nobody
waits for is shed: a waiting request whose client hangs up cancels its job, a body must arrive within the body
timeout, each request's work is capped (:mod:`.limits`), and :class:`Server` cancels the jobs when it stops.
Every error is ``{"error": "<one line>"}`` with a 4xx status (503 while stopping; a 500 only for a bug, with
the same shape).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import service
from .jobs import Job, JobQueue, QueueFull
from .limits import DEFAULT_LIMITS, check_work, describe, work_limits
from .requests import RequestError, Upload, check_upload, read_upload
from .results import ExplainAnswer, ResultStore, answer

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
        device: where the models run; engine, precision: what runs their gradient-free forwards.
        upload_limit: bytes per request body (both images together); larger is refused with 413.
        max_pixels: pixels per image, read from its header before decoding; more is refused with 413.
        queue_size: explanations queued or running at once; one more is refused with 429.
        keep: finished results (figures, JSON) kept for download; older ones are dropped.
        work_limits: the most of each unit of work (:data:`simexplain.checks.WORK_UNITS`) one request may
            ask for; more is refused with 422. Units left out keep their default.
        body_timeout: seconds a request body may take to arrive once its reading begins; then 408.
        text_models: models served with their text tower (``pair="image-text"``): the page shows a text box
            in place of image 2 for them (docs/image_text.md).
    """

    models: tuple[str, ...] = ()
    weights: tuple[str | None, ...] = ()
    device: str = "cpu"
    engine: str = "auto"
    precision: str = "fp32"
    upload_limit: int = 20_000_000
    max_pixels: int = 50_000_000
    queue_size: int = 8
    keep: int = 32
    work_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    body_timeout: float = 30.0
    text_models: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------- schemas
class ErrorBody(BaseModel):
    error: str


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
    text: bool = False  # an image–text model: an image and a text, not two images


class MethodInfo(BaseModel):
    name: str
    family: str
    library: str | None  # captum, grad-cam: an external library's method; None: simexplain's own
    description: str
    parameters: dict[str, Any]
    work: dict[str, str]  # parameter → the unit of work it multiplies (capped per request: /api/limits)
    text: bool = False  # it runs on image–text pairs


class WorkLimit(BaseModel):
    max: int
    counts: str


class Limits(BaseModel):
    upload_limit: int
    max_pixels: int
    queue: int
    body_timeout: float
    work: dict[str, WorkLimit]


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
                    "required": ["image1"],
                    "properties": {
                        "image1": {"type": "string", "format": "binary", "description": "first image"},
                        "image2": {
                            "type": "string",
                            "format": "binary",
                            "description": "second image (required unless text is given)",
                        },
                        "text": {
                            "type": "string",
                            "description": "instead of image2, for a model served with its text tower",
                        },
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


# ---------------------------------------------------------------------------------------------- shared parts
class Served:
    """The app's shared parts (models, job queue, results), started by the lifespan or, when an ASGI host runs
    none, on first use."""

    def __init__(self, settings: WebSettings, names: list[str], device) -> None:
        self.settings, self.names, self.device = settings, names, device
        self.limits = work_limits(settings.work_limits)
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> Served:
        with self._lock:
            if not self._started:
                weights = dict(zip(self.settings.models, self.settings.weights))
                self.models = {
                    name: service.get_model(
                        name,
                        weights=weights.get(name),
                        device=self.device,
                        engine=self.settings.engine,
                        precision=self.settings.precision,
                    )
                    for name in self.names
                    if name not in self.settings.text_models
                }
                self.models.update(_text_models(self.settings, self.device))
                self.jobs = JobQueue(
                    self.names, capacity=self.settings.queue_size, keep=self.settings.keep * 2
                )
                self.results = ResultStore(self.settings.keep)
                self._started = True
        return self

    def close(self) -> None:
        """Cancel the jobs, stop the workers, remove the temporary folder (once; later calls do nothing)."""
        with self._lock:
            if self._started:
                self.jobs.close()
                self.results.close()
                self._started = False

    def stop_jobs(self) -> None:
        """Cancel every queued and running job; their waiting clients are answered 503."""
        with self._lock:
            if self._started:
                self.jobs.cancel_all()

    def input_size(self, name: str) -> tuple[int, int]:
        """The ``H×W`` a served model is fed (what the work of a request is counted on)."""
        height, width = self.models[name].preprocessing.input_size
        return int(height), int(width)


def _text_models(settings: WebSettings, device) -> dict:
    """The models served with their text tower."""
    return {
        name: service.get_model(
            name, device=device, engine=settings.engine, precision=settings.precision, pair="image-text"
        )
        for name in settings.text_models
    }


def served(request: Request) -> Served:
    """Dependency: the app's shared parts, started."""
    return request.app.state.simexplain.start()


ServedParts = Annotated[Served, Depends(served)]


async def submitted(request: Request, parts: ServedParts) -> Job:
    """Dependency: the upload admitted (before its body is read: memory stays bounded under a flood), read
    within the body timeout, checked (its work within the caps) and queued as a job that runs
    :func:`simexplain.service.run` and keeps its answer."""
    try:
        parts.jobs.admit()
    except QueueFull as error:
        raise RequestError(429, str(error), {"Retry-After": str(error.retry_after)}) from None
    settings = parts.settings
    try:
        fields, files = await read_upload(request, settings.upload_limit, settings.body_timeout)
        upload = check_upload(
            fields, files, parts.names, max_pixels=settings.max_pixels, text_models=settings.text_models
        )
        check_work(upload.request, parts.input_size(upload.model), parts.limits)
    except BaseException:
        parts.jobs.release()
        raise
    return parts.jobs.submit(upload.model, functools.partial(_explain, parts, upload), admitted=True)


def _explain(parts: Served, upload: Upload, job: Job) -> bytes:
    """A job's work: the request on the served model, its answer kept (as compact JSON bytes: a 224×224 map as
    Python floats would take ~4× the memory) with the report for the downloads."""
    model = parts.models[upload.model]
    options = {"labels": upload.labels, "model_label": upload.model, "observer": job.report}
    report = service.run(model, upload.image1, upload.image2, upload.request, text=upload.text, **options)
    document = json.dumps(answer(job.id, report), separators=(",", ":")).encode()
    parts.results.put(job.id, report, document)
    return document


def known_job(job_id: str, parts: ServedParts) -> Job:
    """Dependency: the job named in the path; 404 when it is unknown or forgotten."""
    job = parts.jobs.get(job_id)
    if job is None:
        raise RequestError(404, "no such job (finished jobs are forgotten after a while)")
    return job


SubmittedJob = Annotated[Job, Depends(submitted)]
KnownJob = Annotated[Job, Depends(known_job)]


def job_status(job: Job, status_code: int = 200) -> Response:
    """The job as JSON, its answer (already encoded) spliced in as ``result`` once it is done."""
    status = json.dumps({**job.status(), "result": None}, separators=(",", ":")).encode()
    if job.state == "done":
        status = status[: -len(b"null}")] + job.result + b"}"
    return Response(status, media_type="application/json", status_code=status_code)


# ---------------------------------------------------------------------------------------------- the page
page = APIRouter(include_in_schema=False)


@functools.cache
def _static() -> dict[str, bytes]:
    """The page's files, read once."""
    return {name: (resources.files(__package__) / "static" / name).read_bytes() for name in STATIC}


@page.get("/")
def index() -> Response:
    return Response(_static()["index.html"], media_type="text/html; charset=utf-8")


@page.get("/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC:
        raise RequestError(404, "no such file")
    return Response(_static()[name], media_type=STATIC[name] + "; charset=utf-8")


# ---------------------------------------------------------------------------------------------- the API
api = APIRouter(prefix="/api")


@api.get(
    "/samples/{name}",
    responses={200: {"content": {"image/jpeg": {}}}, **_errors(404, 422)},
    response_class=Response,
    summary="A bundled sample photo (chelsea.jpg, coffee.jpg, astronaut.jpg)",
)
def sample(name: str) -> Response:
    if name not in SAMPLES:
        raise RequestError(404, f"no sample {name!r}; samples: {', '.join(SAMPLES)}")
    from ..images import sample_path

    return Response(sample_path(name).read_bytes(), media_type="image/jpeg")


@api.get("/limits", response_model=Limits, summary="What one request may ask for")
def limits(parts: ServedParts) -> dict[str, Any]:
    settings = parts.settings
    return {
        "upload_limit": settings.upload_limit,
        "max_pixels": settings.max_pixels,
        "queue": settings.queue_size,
        "body_timeout": settings.body_timeout,
        "work": describe(parts.limits),
    }


@api.get("/health", response_model=Health)
def health(parts: ServedParts) -> dict[str, Any]:
    queue = parts.jobs
    return {"status": "ok", "models": parts.names, "pending": queue.pending, "capacity": queue.capacity}


@api.get("/models", response_model=list[ModelInfo])
def models(parts: ServedParts) -> list[dict[str, Any]]:
    from ..models import available

    known = available()
    listed = []
    for index, name in enumerate(parts.names):
        model, entry = parts.models[name], known.get(name)
        listed.append(
            {
                "name": name,
                "model_name": model.name,
                "default": index == 0,
                "input_size": list(model.preprocessing.input_size),
                "layer": model.layer,
                "description": entry.description if entry else f"{model.name} (loaded by the server)",
                "text": model.text_tower is not None,
            }
        )
    return listed


@api.get("/methods", response_model=list[MethodInfo])
def methods() -> list[dict[str, Any]]:
    """Every method, simexplain's own first (family by family), then the external libraries'."""
    from ..methods import available, get

    listed = []
    for name, description in available().items():
        method = get(name)
        parameters = service.json_safe(method.parameters())
        listed.append(
            {
                "name": name,
                "family": method.family,
                "library": method.library,
                "description": description,
                "parameters": parameters,
                "work": {key: work.unit for key, work in method.work().items()},
                "text": method.text is not None,
            }
        )
    return listed


@api.post(
    "/explain",
    response_model=None,
    responses={200: {"model": ExplainAnswer}, **_errors(400, 409, 413, 422, 429, 500)},
    openapi_extra=EXPLAIN_BODY,
    summary="Explain a pair of images (waits for the answer)",
)
async def explain(job: SubmittedJob, request: Request, parts: ServedParts) -> Response:
    if not await _answered_before_gone(job, request):
        # Nobody waits for the answer: the job is cancelled as DELETE /api/jobs/{id} would (a queued one
        # leaves the queue, a running one stops at its next chunk) and its slot is freed.
        parts.jobs.cancel(job.id, "the client went away")
        return Response(status_code=204)  # never read: the connection is closed
    if job.state != "done":
        return JSONResponse({"error": job.error or job.state}, status_code=job.status_code)
    return Response(job.result, media_type="application/json")


async def _answered_before_gone(job: Job, request: Request) -> bool:
    """Wait for the job's end or the client's disconnect, whichever comes first; True for the job's end."""
    answered = asyncio.wrap_future(job.future)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({answered, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    return answered.done()


async def _disconnected(request: Request) -> None:
    """Return once the client closes the connection. The body has been read, so the server's next message
    can only be ``http.disconnect`` (sent when the connection is lost, or once the response is complete)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@api.post(
    "/jobs",
    status_code=202,
    response_model=JobStatus,
    responses=_errors(400, 413, 422, 429),
    openapi_extra=EXPLAIN_BODY,
    summary="Start explaining a pair; poll /api/jobs/{id} for progress and the answer",
)
async def start_job(job: SubmittedJob) -> Response:
    return job_status(job, 202)


@api.get("/jobs/{job_id}", response_model=JobStatus, responses=_errors(404, 422))
def job_state(job: KnownJob) -> Response:
    return job_status(job)


@api.delete("/jobs/{job_id}", response_model=JobStatus, responses=_errors(404, 422))
def cancel_job(job: KnownJob, parts: ServedParts) -> Response:
    return job_status(parts.jobs.cancel(job.id))


@api.get(
    "/results/{result_id}/{name}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/svg+xml": {}, "application/json": {}}},
        **_errors(404, 422),
    },
    summary="A result's download: figure.png, figure.svg, result.json, image1.png, image2.png",
)
def download(result_id: str, name: str, parts: ServedParts) -> Response:
    found = parts.results.download(result_id, name)
    if found is None:
        raise RequestError(404, "no such result or file (results are kept for this session, the last few)")
    data, media = found
    disposition = "inline" if name.startswith("image") else f'attachment; filename="simexplain-{name}"'
    return Response(data, media_type=media, headers={"Content-Disposition": disposition})


# ---------------------------------------------------------------------------------------------- the app
def create_app(settings: WebSettings | None = None) -> FastAPI:
    """The web application for ``settings`` (models load when it starts, e.g. under uvicorn or TestClient).

    Example:
        >>> app = create_app(WebSettings(models=("efficientnet-lite0",)))
        >>> sorted(app.openapi()["paths"])[:3]
        ['/api/explain', '/api/health', '/api/jobs']
    """
    from ..models import DEFAULT_MODEL

    settings = settings or WebSettings()
    names = list(dict.fromkeys(settings.models + settings.text_models or (DEFAULT_MODEL,)))
    for name in names:
        service.check_model_name(name)
    parts = Served(settings, names, service.check_device(settings.device))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        parts.start()  # models load now, not on the first request
        try:
            yield
        finally:
            parts.close()

    app = FastAPI(
        title="simexplain",
        version="1",
        description="Explain why a two-image model finds two images similar.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's /docs and /redoc pages load scripts from a CDN: not offline, so not served
        redoc_url=None,
    )
    app.state.simexplain = parts
    _add_error_handlers(app)
    app.include_router(page)
    app.include_router(api)
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


# Seconds uvicorn waits for open requests at shutdown (their jobs are cancelled first, so they end at their
# next chunk; an upload still arriving would otherwise hold the shutdown until its body timeout).
SHUTDOWN_GRACE = 3.0


class Server(uvicorn.Server):
    """uvicorn's server for the app of ``parts``, which stops in a few seconds on SIGTERM or SIGINT: the jobs
    are cancelled before uvicorn waits for the open requests (a running job would otherwise hold the
    shutdown for as long as it runs), the wait is bounded, and the served parts (workers, temporary folder)
    are closed even when the shutdown is forced (a second SIGINT skips the app's own shutdown)."""

    def __init__(self, config: uvicorn.Config, parts: Served) -> None:
        super().__init__(config)
        self.parts = parts

    async def shutdown(self, sockets: Any = None) -> None:
        try:
            self.parts.stop_jobs()
            await super().shutdown(sockets)
        finally:
            self.parts.close()


def serve(settings: WebSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app under uvicorn until SIGTERM or SIGINT."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE
    )
    Server(config, app.state.simexplain).run()


__all__ = [
    "ErrorBody",
    "ExplainAnswer",
    "Served",
    "Server",
    "WebSettings",
    "api",
    "create_app",
    "page",
    "serve",
]
