"""Interop: captum attributions and pytorch-grad-cam CAMs run on pairs, and ONNX models.

Importing this package (the package root does) registers ``captum:NAME`` and ``grad-cam:NAME`` methods through
the ordinary method registry, each family only when its own package is installed (the packages themselves are
imported only when such a method runs); when one is missing, its names are absent from
:func:`simexplain.methods.available` and asking for one says which extra to install. It sits above
:mod:`simexplain.methods` and :mod:`simexplain.models`, which never import it. ``docs/interop.md`` has the
table of what runs how.

Example:
    >>> import simexplain
    >>> "captum:IntegratedGradients" in simexplain.methods.available()  # with simexplain[captum] installed
    True
"""

from __future__ import annotations

import importlib.util
import sys

from ..methods.registry import register_missing
from . import onnx  # noqa: F401  (registers the onnx: model route; onnxruntime is imported on use)

# The optional method families: name prefix → (the module that imports, the extra that installs it).
OPTIONAL = {
    "captum:": ("captum", "captum"),
    "grad-cam:": ("pytorch_grad_cam", "gradcam"),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a ``None`` in ``sys.modules`` blocks it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(module: str, extra: str) -> str:
    """The one line that says what to install."""
    return f"it needs the {module} package: pip install 'simexplain[{extra}]'"


def _register_optional_methods() -> None:
    """Register the ``captum:`` and ``grad-cam:`` methods whose package is installed; record the others as
    missing. Each adapter module registers only its own family."""
    for prefix, (module, extra) in OPTIONAL.items():
        if not installed(module):
            register_missing(prefix, missing_extra(module, extra))
        elif prefix == "captum:":
            from . import captum_methods  # noqa: F401  (importing registers)
        else:
            from . import gradcam_methods  # noqa: F401


_register_optional_methods()  # once per process: the registry refuses a second registration
