"""simexplain: explain why a two-image model finds two images similar.

Example:
    >>> import simexplain
    >>> model = simexplain.load_model("efficientnet-lite0")   # offline default (a SUPERVISED ImageNet model)
    >>> x1, x2 = simexplain.load_images(simexplain.sample_path("chelsea.jpg"),
    ...                                 simexplain.sample_path("coffee.jpg"), model)
    >>> explanation = simexplain.explain(model, x1, x2, "input-x-gradient")
    >>> explanation.map1.shape
    torch.Size([1, 224, 224])
"""

# Importing interop registers the captum:/grad-cam: methods whose package is installed and the onnx: model
# route; it sits above methods and models (docs/architecture.md), so the package root loads it.
from . import checks, interop, methods, metrics, service
from .errors import SimexplainError
from .explanation import PairExplanation
from .images import load_image, load_images, sample_path
from .methods import explain
from .methods.text_margin import explain_zero_shot
from .models import DEFAULT_MODEL, load_model
from .pair import PairModel, TokenLayout
from .preprocessing import IDENTITY, IMAGENET, Preprocessing
from .retrieval import explain_margin, explain_top_k

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "IDENTITY",
    "IMAGENET",
    "PairExplanation",
    "PairModel",
    "Preprocessing",
    "SimexplainError",
    "TokenLayout",
    "checks",
    "explain",
    "explain_margin",
    "explain_top_k",
    "explain_zero_shot",
    "interop",
    "load_image",
    "load_images",
    "load_model",
    "methods",
    "metrics",
    "sample_path",
    "service",
]
