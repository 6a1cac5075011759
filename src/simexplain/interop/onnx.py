"""ONNX image encoders as black-box pair models: ``load_model("onnx:path/to/encoder.onnx")``.

The file holds an image encoder (``N×3×H×W`` model-input images → ``N×D`` embeddings, or any output that
flattens to one row per image); onnxruntime runs it, at most ``batch_size`` images per call (a file exported
with a fixed batch size gets chunks of that size, the last one padded). The pair model is a black box:
perturbation methods and every metric run on it, gradient and activation methods refuse it in one line.
Extra ``simexplain[onnx]`` (onnxruntime; :func:`export_encoder` needs nothing more).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..engines import export_onnx
from ..errors import SimexplainError
from ..models.registry import register_model
from ..pair import PairModel
from ..preprocessing import Preprocessing


def _onnxruntime():  # noqa: ANN202
    try:
        import onnxruntime
    except ImportError:
        raise SimexplainError("onnx: models need onnxruntime: pip install 'simexplain[onnx]'") from None
    return onnxruntime


class OnnxEncoder(nn.Module):
    """An onnxruntime session as an encoder module (no gradients), batched."""

    def __init__(self, path: str | Path, batch_size: int = 32, providers: list[str] | None = None) -> None:
        super().__init__()
        runtime = _onnxruntime()  # a missing extra is said first
        path = Path(path)
        if not path.is_file():
            raise SimexplainError(f"no ONNX file at {str(path)!r}")
        try:
            self.session = runtime.InferenceSession(
                str(path), providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise SimexplainError(
                f"onnxruntime cannot load {str(path)!r}: {str(error).splitlines()[0]}"
            ) from None
        (first, *others) = self.session.get_inputs()
        if others:
            raise SimexplainError(f"{path.name} takes {1 + len(others)} inputs; an image encoder takes one")
        self.input_name = first.name
        if not self.session.get_outputs()[0].shape:  # a scalar: no row per image, whatever the batch
            raise SimexplainError(
                f"{path.name}: its first output is a scalar; an image encoder outputs one row per image (N×D)"
            )
        fixed = first.shape[0] if isinstance(first.shape[0], int) and first.shape[0] > 0 else None
        self.fixed_batch = fixed
        self.batch_size = fixed or batch_size
        self.path = str(path)

    def forward(self, x: Tensor) -> Tensor:
        images = x.detach().to("cpu", torch.float32).numpy()
        parts = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            count = len(chunk)
            if self.fixed_batch and count < self.fixed_batch:  # pad a fixed-batch file's last chunk
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.fixed_batch - count, 0)])
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(chunk)})[0]
            parts.append(self._rows(out, len(chunk))[:count])
        return torch.from_numpy(np.concatenate(parts)).to(device=x.device, dtype=x.dtype)

    def _rows(self, out: np.ndarray, images: int) -> np.ndarray:
        """The output as one row per image (``N×D``); one line when it is not one row per image."""
        if out.ndim < 1 or out.shape[0] != images or out.size == 0:
            raise SimexplainError(
                f"{Path(self.path).name}: its first output has shape {list(out.shape)} for {images} images; "
                "an image encoder outputs one row per image (N×D)"
            )
        return out.reshape(images, -1)


def onnx_model(
    path: str,
    weights: str | None = None,
    *,
    similarity: str = "cosine",
    batch_size: int = 32,
    input_size: int | None = None,
) -> PairModel:
    """The ``onnx:`` route: a black-box :class:`PairModel` around the encoder in ``path``.

    ``input_size`` (pixels, square) sets the preprocessing's crop when images come from files (default: the
    file's own input size when it is fixed, else 224); scaling is the identity, so export the encoder with
    its normalisation inside.
    """
    if weights is not None:
        raise SimexplainError("an onnx: model carries its weights in the file; drop weights=/--weights")
    encoder = OnnxEncoder(path, batch_size=batch_size)
    shape = encoder.session.get_inputs()[0].shape
    side = input_size or (shape[-1] if isinstance(shape[-1], int) else 224)
    resize = max(side, round(side * 256 / 224))
    return PairModel(
        encoder,
        similarity=similarity,
        preprocessing=Preprocessing(input_size=(side, side), resize=resize),
        name=f"onnx:{Path(path).name}",
        description=f"ONNX encoder {path} through onnxruntime (black box)",
        differentiable=False,
    )


register_model(
    "onnx:",
    "an image encoder exported to ONNX, run by onnxruntime as a black box: onnx:PATH (simexplain[onnx])",
    embedding="the file's first output, one row per image",
    preprocessing="identity scaling (export the normalisation inside); crop input_size=N (the file's own)",
    layer="none: a black box (perturbation methods only)",
)(onnx_model)


def export_encoder(model: PairModel, path: str | Path, input_size: tuple[int, int] = (224, 224)) -> Path:
    """Export a shared-encoder model's encoder to ONNX with a free batch dimension.

    ``input_size`` is the ``H×W`` the file will take. The model is left as it was (modes included). The
    export is the engines' own (:func:`simexplain.engines.export_onnx`); an encoder it cannot export is
    refused in one line.
    """
    if not model.shared:
        raise SimexplainError("export_encoder exports one shared encoder; this model has two")
    example = torch.zeros(2, 3, *input_size, device=model.device, dtype=model.dtype)
    with model.explaining():
        return export_onnx(model.encoder, path, example)
