"""Guided backpropagation (docs/methods.md, Guided backprop), the "(G)" variants of the saliency family.

During the backward, every ReLU passes only positive gradients where its input was positive:
``grad_in = relu(grad_out) · 1[input > 0]``.

How every call is covered: instead of hooking ``nn.ReLU`` modules, :func:`guided_backprop` installs a
``torch.overrides.TorchFunctionMode`` for the duration of the forward. It sees every call of ``F.relu``,
``torch.relu``, ``Tensor.relu`` (and their in-place forms), ``F.relu6`` and ``F.hardtanh`` with a lower
bound of 0, whoever makes it: an ``nn.ReLU`` module called several times (torchvision's ResNet reuses one
per block), a ReLU inside a projection or prediction head, or a functional ``F.relu`` in a ``forward``,
which module hooks cannot reach. Each such output gets a tensor hook (``Tensor.register_hook``, not a
deprecated module backward hook) that clamps the incoming gradient at 0; the ReLU's own backward then
applies the mask ``1[input > 0]``. The tensor hooks belong to the autograd graph of that forward and vanish
with it; the mode is always popped, also after an exception.

ReLU6 (``nn.ReLU6``, used by EfficientNet-Lite0, the embedded default) is ``hardtanh(x, 0, 6)``; it is
guided the same way, with its own mask ``1[0 < input < 6]``: the gradient passes only where the unit is
active and only when positive. Other activations (GELU, SiLU, LeakyReLU) and ReLUs hidden in compiled or C++
code (TorchScript, ``torch.compile`` graphs, fused kernels) are not guided; a model whose forward runs no
ReLU at all raises a clear error rather than returning a silently unguided map.

Threads: torch keeps the stack of torch-function modes per thread (``tests/test_guided.py`` checks it with
two threads guiding two different models at once, and with a guided and a plain explanation side by side),
so the mode guides only the forwards of the thread that entered it. The backward may run on autograd's own
threads (CUDA): that is fine, the guiding lives in tensor hooks of the graph, not in the mode. A forward
that hands its work to other threads (``nn.DataParallel`` on several GPUs) is not guided there; when no ReLU
at all runs in the calling thread, the no-ReLU error says so.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from simexplain import PairModel
    >>> model = PairModel(nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 3)))
    >>> x1 = torch.rand(1, 3, 2, 2, requires_grad=True)
    >>> with guided_backprop(model) as guide:
    ...     score = model(x1, torch.rand(1, 3, 2, 2))
    ...     guide.check()
    >>> (grad,) = torch.autograd.grad(score.sum(), x1)
    >>> guide.relu_calls  # one shared forward of [x1; x2], one ReLU call in it
    1
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import SimexplainError
from ..pair import PairModel

_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_, F.relu6}
_HARDTANHS = {F.hardtanh, F.hardtanh_}


def _positive_part(grad: Tensor) -> Tensor:
    return grad.clamp_min(0)


def _is_relu_call(func, args: tuple, kwargs: dict) -> bool:
    if func in _RELUS:
        return True
    if func in _HARDTANHS:
        # hardtanh(x, 0, t) is a ReLU capped at t (nn.ReLU6 is hardtanh(x, 0, 6)); other bounds are not ReLUs.
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        return low == 0
    return False


class _GuidedMode(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _is_relu_call(func, args, kwargs) and isinstance(out, Tensor):
            self.calls += 1
            if out.requires_grad:
                out.register_hook(_positive_part)
        return out


class GuidedBackprop:
    """Handle yielded by :func:`guided_backprop`: counts the ReLU calls guided so far."""

    def __init__(self, model: PairModel) -> None:
        self.model = model
        self._mode = _GuidedMode()

    @property
    def relu_calls(self) -> int:
        """How many ReLU outputs were guided since the context was entered."""
        return self._mode.calls

    def check(self) -> None:
        """Raise a clear error when the forwards run so far called no ReLU (e.g. a ViT with GELU)."""
        if self._mode.calls == 0:
            found = sorted({type(m).__name__ for m in self.model.modules() if _looks_like_activation(m)})
            seen = f" (activations found: {', '.join(found)})" if found else ""
            name = getattr(self.model, "name", type(self.model).__name__)
            raise SimexplainError(
                f"guided backprop needs ReLU activations, but model {name!r} ran none{seen}; use guided=False"
            )


def _looks_like_activation(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.nn.modules.activation")


@contextmanager
def guided_backprop(model: PairModel) -> Iterator[GuidedBackprop]:
    """Guide every ReLU call of the forwards run inside the context (see the module docstring).

    Backwards may run inside or after the context: the guiding hooks are part of the graph built inside it.
    Call ``guide.check()`` after the first forward to fail early on a model without ReLUs; on leaving the
    context without an exception the check runs anyway.
    """
    guide = GuidedBackprop(model)
    # The mode is popped on the way out, also after an exception: no mode is left on this thread's stack.
    with guide._mode:
        yield guide
    guide.check()


__all__ = ["GuidedBackprop", "guided_backprop"]
