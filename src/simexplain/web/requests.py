"""Reading and checking an explain request: the multipart upload, kept in memory and bounded, then the form.

Nothing here touches the file system: the body is read in chunks and refused once it passes the upload limit,
the parts are held in memory (never spooled to a temporary file), and each image's header is read to refuse
too many pixels before anything is decoded. Client file names are only shown, as short printable labels.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from PIL import Image, UnidentifiedImageError

from .. import service
from ..errors import SimexplainError

FIELDS = ("model", "methods", "params", "metrics")
DEFAULT_METHODS = "interaction-cam"


class RequestError(SimexplainError):
    """A refused request: one line, an HTTP status and optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Upload:
    """A checked upload: the served model's name, both images' bytes and labels, and the service's request."""

    model: str
    image1: bytes
    image2: bytes | None
    labels: tuple[str, str]
    request: service.Request
    text: str | None = None  # instead of image 2, for a model served with its text tower


async def read_upload(
    request: Any, limit: int, timeout: float
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The form fields and files of a multipart ``request`` (a Starlette request), held in memory.

    Raises :class:`RequestError` 413 past ``limit`` bytes (from ``Content-Length`` before reading, or while
    reading a body that has none), 408 when the whole body has not arrived ``timeout`` seconds after reading
    began (an idle or trickling client gives its slot back), 400 for a body that is not multipart form data or
    that stops because the client went away, and 422 for a field sent twice.
    """
    import anyio
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.requests import ClientDisconnect

    class InMemoryParser(MultiPartParser):
        spool_max_size = 0  # 0: a SpooledTemporaryFile that never rolls over to disk (the body is bounded)

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError(400, "send multipart/form-data with the files image1 and image2")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, _too_large(limit))

    async def bounded() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise RequestError(413, _too_large(limit))
            yield chunk

    parser = InMemoryParser(request.headers, bounded(), max_files=4, max_fields=16, max_part_size=64 * 1024)
    try:
        # The app reads the body itself, so the deadline is the app's: uvicorn times out idle connections
        # between requests, not a body that stops arriving.
        with anyio.fail_after(timeout):
            form = await parser.parse()
    except TimeoutError:
        raise RequestError(408, f"the upload did not arrive within {timeout:g} s; send it again") from None
    except ClientDisconnect:
        raise RequestError(400, "the upload stopped: the client went away") from None
    except MultiPartException as error:
        raise RequestError(400, f"malformed multipart body ({error.message})") from None
    try:
        return await _form_items(form)
    finally:
        await form.close()


async def _form_items(form: Any) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The text fields and the files (name, bytes) of a parsed form; a field sent twice is refused (422)
    rather than the last one silently winning."""
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for key, value in form.multi_items():
        if key in fields or key in files:
            raise RequestError(422, f"field {_short(key)!r} is sent twice; send each field once")
        if isinstance(value, str):
            fields[key] = value
        else:
            files[key] = (value.filename or "", await value.read())
    return fields, files


def _too_large(limit: int) -> str:
    return f"upload too large (limit {limit / 1e6:g} MB for both images together)"


def check_upload(
    fields: dict[str, str],
    files: dict[str, tuple[str, bytes]],
    models: list[str],
    *,
    max_pixels: int,
    text_models: Sequence[str] = (),
) -> Upload:
    """Every check that needs no model: files present and images by their headers (400/413), the model,
    methods, settings (``params``, the service's grammar) and metrics (422). A model served with its text
    tower (``text_models``) takes ``image1`` and a ``text`` field instead of ``image2``."""
    model = fields.get("model") or models[0]
    if model not in models:
        raise RequestError(422, f"unknown model {_short(model)!r}; served here: {', '.join(models)}")
    text = _text(fields, files, model, text_models)
    indices = (1,) if text is not None else (1, 2)
    images = [_uploaded_image(fields, files, index, max_pixels) for index in indices]
    settings = read_params(fields.get("params"))
    try:
        request = service.prepare(
            fields.get("methods") or DEFAULT_METHODS,
            settings,
            fields.get("metrics") or None,
            text=text is not None,
        )
    except (SimexplainError, TypeError, ValueError, KeyError) as error:
        raise RequestError(422, _line(error)) from None
    if text is not None:
        return Upload(model, images[0].data, None, (images[0].label, text), request, text)
    first, second = images
    return Upload(model, first.data, second.data, (first.label, second.label), request)


MAX_TEXT = 1000  # characters of a text; a model's context holds far fewer tokens


def _text(
    fields: dict[str, str], files: dict[str, tuple[str, bytes]], model: str, text_models: Sequence[str]
) -> str | None:
    """The ``text`` field of a request to a model served with its text tower (422 otherwise)."""
    text = fields.get("text")
    if model not in text_models:
        if text is not None:
            raise RequestError(422, f"model {_short(model)!r} compares two images; send image2, not text")
        return None
    if text is None or not text.strip():
        raise RequestError(
            422, f"model {_short(model)!r} compares an image with a text: send a non-empty text"
        )
    if len(text) > MAX_TEXT:
        raise RequestError(413, f"text too long ({len(text)} characters; limit {MAX_TEXT})")
    if "image2" in files:
        raise RequestError(422, "send image2 or text, not both")
    return "".join(c for c in text if c.isprintable() or c == " ")


class _Image(NamedTuple):
    label: str
    data: bytes


def _uploaded_image(
    fields: dict[str, str], files: dict[str, tuple[str, bytes]], index: int, max_pixels: int
) -> _Image:
    """The file ``image{index}``: present, sent as a file, and an image by its header (400/413)."""
    key = f"image{index}"
    if key not in files:
        if key in fields:
            raise RequestError(400, f"{key}: send it as a file, not as a text field")
        raise RequestError(400, f"missing file {key}")
    name, data = files[key]
    check_header(data, f"image {index}", max_pixels)
    return _Image(label(name, f"image {index}"), data)


def read_params(text: str | None) -> list[tuple[str, Any]]:
    """``params`` (a JSON object of ``"METHOD.KEY"``/``"KEY"``/``"metrics.KEY"`` → value) as key → value
    pairs, in order and with repeats kept, for the service's settings grammar to route (and refuse a
    repeat)."""
    if not text:
        return []
    try:
        params = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        raise RequestError(400, "params: not valid JSON (send an object of METHOD.KEY → value)") from None
    if not isinstance(params, _Pairs):
        raise RequestError(400, "params: send a JSON object of METHOD.KEY → value")
    return [(key, _plain(value)) for key, value in params]


class _Pairs(list):
    """A JSON object as its (key, value) pairs, so a repeated key is not lost."""


def _plain(value: Any) -> Any:
    """A value with the objects inside it as dicts again."""
    if isinstance(value, _Pairs):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def check_header(data: bytes, name: str, max_pixels: int) -> None:
    """Read only the image's header: refuse what is not an image (400) or has too many pixels (413)."""
    if not data:
        raise RequestError(400, f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: the header only, no pixel is decoded
            width, height = image.size
    except Image.DecompressionBombError:
        raise RequestError(413, f"{name}: too many pixels (limit {max_pixels})") from None
    except UnidentifiedImageError:
        raise RequestError(400, f"{name}: not an image file (PNG, JPEG, WebP, ... expected)") from None
    except Exception as error:  # noqa: BLE001  (a hostile header: one line, never a 500)
        raise RequestError(400, f"{name}: cannot read the image header ({_line(error)})") from None
    if width * height > max_pixels:
        raise RequestError(413, f"{name}: too many pixels ({width}×{height}; limit {max_pixels})")


def label(filename: str, fallback: str) -> str:
    """A client's file name as a short printable label (only ever shown, never used as a path)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in base if c.isprintable())[:80]
    return text or fallback


def _short(text: str, limit: int = 60) -> str:
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


__all__ = ["RequestError", "Upload", "check_header", "check_upload", "read_params", "read_upload"]
