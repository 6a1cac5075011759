"""``simexplain serve``: a web page and a JSON API that explain an uploaded image pair (the ``web`` extra).

Example:
    >>> from simexplain.web import WebSettings
    >>> WebSettings(models=("efficientnet-lite0",)).upload_limit
    20000000
"""

from __future__ import annotations

from typing import Any

from ..errors import SimexplainError


def _require_web() -> None:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise SimexplainError(
            f"the web page needs the web extra ({error.name} is missing): pip install 'simexplain[web]'"
        ) from None


def create_app(settings: Any = None):
    """The FastAPI application (see :mod:`simexplain.web.app`)."""
    _require_web()
    from .app import create_app as create

    return create(settings)


def serve(settings: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the page and the API under uvicorn until interrupted."""
    _require_web()
    from .app import serve as serve_app

    serve_app(settings, host=host, port=port)


def __getattr__(name: str) -> Any:
    if name == "WebSettings":  # plain data, but it lives with the app
        _require_web()
        from .app import WebSettings

        return WebSettings
    raise AttributeError(name)


__all__ = ["WebSettings", "create_app", "serve"]
