"""PairModel: the one abstraction every method talks to.

A pair model holds one encoder (shared by both images) or two (asymmetric pairs, e.g. MoCo v3's query and
momentum encoders), a similarity function, the preprocessing facts and, for activation methods, the layer to
tap. With a shared encoder, images of one size go through ONE forward of the concatenated batch, so a hooked
module runs once and no branch is lost; images of two sizes are embedded side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .engines import EngineState
from .errors import SimexplainError
from .preprocessing import IDENTITY, Preprocessing
from .text import ScaledCosine, TextTower

Similarity = Callable[[Tensor, Tensor], Tensor]


def cosine(z1: Tensor, z2: Tensor) -> Tensor:
    """Cosine similarity of flattened embeddings, eps 1e-8 (docs/methods.md, Notation)."""
    return F.cosine_similarity(z1.flatten(1), z2.flatten(1), dim=1, eps=1e-8)


def dot(z1: Tensor, z2: Tensor) -> Tensor:
    """Inner product of flattened embeddings."""
    return (z1.flatten(1) * z2.flatten(1)).sum(1)


SIMILARITIES: dict[str, Similarity] = {"cosine": cosine, "dot": dot}


@dataclass(frozen=True)
class TokenLayout:
    """How a transformer block lays out its output ``B×N×D``: leading tokens, then a patch grid.

    Example:
        >>> layout = TokenLayout(patch_size=14, prefix_tokens=1, register_tokens=4)  # DINOv2 with registers
        >>> layout.grid((224, 168)), layout.leading_tokens
        ((16, 12), 5)
        >>> layout.to_grid(torch.zeros(2, 5 + 16 * 12, 8), (224, 168)).shape
        torch.Size([2, 8, 16, 12])

    Attributes:
        patch_size: the patch side in pixels; the grid at any input size is ``H // patch × W // patch``
            (models that interpolate their position embeddings take any size).
        prefix_tokens: class (+ distillation) tokens before the patch tokens.
        register_tokens: register tokens after the prefix tokens and before the patches (DINOv2 with
            registers: 4). They hold no position, so they are dropped with the prefix tokens.
    """

    patch_size: int = 16
    prefix_tokens: int = 1
    register_tokens: int = 0

    @property
    def leading_tokens(self) -> int:
        """Tokens before the patch grid: prefix and register tokens."""
        return self.prefix_tokens + self.register_tokens

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """The patch grid ``(h, w)`` of an ``H×W`` input."""
        return input_hw[0] // self.patch_size, input_hw[1] // self.patch_size

    def to_grid(self, tokens: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """``B×N×D`` tokens to ``B×D×h×w`` patch features (prefix and register tokens dropped)."""
        h, w = self.grid(input_hw)
        patches = tokens[:, self.leading_tokens :]
        if patches.shape[1] != h * w:
            registers = f" + {self.register_tokens} register" if self.register_tokens else ""
            raise SimexplainError(
                f"token layout mismatch: {tokens.shape[1]} tokens, expected {self.prefix_tokens} prefix"
                f"{registers} + {h}×{w} patches for a {input_hw[0]}×{input_hw[1]} input with patch "
                f"{self.patch_size}"
            )
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def _resolve_similarity(similarity: str | Similarity) -> Similarity:
    if callable(similarity):
        return similarity
    if similarity not in SIMILARITIES:
        raise SimexplainError(
            f"unknown similarity {similarity!r}; known: {', '.join(SIMILARITIES)} or a callable"
        )
    return SIMILARITIES[similarity]


class PairModel(nn.Module):
    """Two-image similarity model: ``score = similarity(f_a(x1), f_b(x2))``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = PairModel(encoder, layer="0")
        >>> x = torch.rand(2, 3, 32, 32)
        >>> model(x, x.flip(-1)).shape
        torch.Size([2])

    Args:
        encoder: maps a ``B×3×H×W`` batch in model-input space to ``B×D`` embeddings.
        encoder_b: optional second encoder for image 2 (asymmetric pairs). ``None`` shares ``encoder``.
        similarity: ``"cosine"`` (default), ``"dot"`` or a callable ``(z1, z2) -> B`` scores.
        layer: module name (in ``encoder``) whose output activation methods tap; ``layer_b`` names it in
            ``encoder_b`` (defaults to the same name).
        preprocessing: input size, crop and scaling (default: identity scaling, 224 crop of 256).
        token_layout: for transformer layers, how tokens map to a patch grid.
        name, description: for listings and figures.
        differentiable: ``False`` for a black-box model (a score or embedding function without gradients,
            an ONNX session): only methods that need no gradients or activations run on it
            (:meth:`from_score_function`, :meth:`from_embedding_function`).
        engine: what runs the forwards that need no gradient: ``"auto"`` (default), ``"torch"``,
            ``"compile"``, ``"onnxruntime"`` or ``"openvino"`` (docs/engine.md); settable later
            (``model.engine = "torch"``). A black box keeps its own runtime.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` for those forwards (autocast; the
            ``torch`` and ``compile`` engines only); settable later.

    The wrapped encoders are put in eval mode. Methods run inside :meth:`explaining`, which freezes parameters
    and restores every mode and ``requires_grad`` flag afterwards, also after an exception.

    Thread safety: a model serialises its callers. Every explain, evaluate and sanity call holds the model's
    (re-entrant) lock from start to end, so threads sharing a model never see each other's hooks, modes or
    frozen flags; calls on different models run in parallel.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        encoder_b: nn.Module | None = None,
        similarity: str | Similarity = "cosine",
        layer: str | None = None,
        layer_b: str | None = None,
        preprocessing: Preprocessing | None = None,
        token_layout: TokenLayout | None = None,
        name: str = "custom",
        description: str = "",
        differentiable: bool = True,
        engine: str = "auto",
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module) or (
            encoder_b is not None and not isinstance(encoder_b, nn.Module)
        ):
            raise SimexplainError("PairModel needs torch.nn.Module encoders")
        self.encoder = encoder.eval()
        self.encoder_b = encoder_b.eval() if encoder_b is not None else None
        self.similarity = _resolve_similarity(similarity)
        self.layer = layer
        self.layer_b = layer_b
        self.preprocessing = preprocessing or IDENTITY
        self.token_layout = token_layout
        self.name = name
        self.description = description
        self.differentiable = differentiable
        self.has_embeddings = True  # False for a score function: its "embedding" is the image itself
        self._lock = threading.RLock()
        self._taps = 0  # layer taps in progress: their forwards run in PyTorch
        self._engines = EngineState(engine, precision)

    # A lock cannot be copied or pickled, and runners belong to one model: a deep copy (the sanity check's)
    # gets a fresh lock and builds its own runners; the engine settings travel, for the copy's weights as
    # they are (the sanity cascade's randomised steps run in PyTorch: EngineState.pin).
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_lock", None)
        engines = state.pop("_engines", None)
        if engines is not None:
            state["_engine_settings"] = (engines.engine, engines.precision)
        return state

    def __setstate__(self, state: dict) -> None:
        engine, precision = state.pop("_engine_settings", ("auto", "fp32"))
        super().__setstate__(state)
        self._lock = threading.RLock()
        self._taps = 0
        self._engines = EngineState(engine, precision)
        self._engines.pin({"a": self.encoder} if self.shared else {"a": self.encoder, "b": self.encoder_b})

    @property
    def engine(self) -> str:
        """The engine of the gradient-free forwards (``"auto"`` unless set); setting it drops the runners."""
        return self._engines.engine

    @engine.setter
    def engine(self, engine: str) -> None:
        self._engines.configure(engine, self._engines.precision)

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"`` for the gradient-free forwards; setting it drops the
        runners."""
        return self._engines.precision

    @precision.setter
    def precision(self, precision: str) -> None:
        self._engines.configure(self._engines.engine, precision)

    @classmethod
    def from_module(cls, encoder: nn.Module, **options) -> PairModel:
        """Wrap any image-to-embedding module; same options as the constructor."""
        return cls(encoder, **options)

    @classmethod
    def from_score_function(
        cls,
        fn: Callable,
        *,
        batch_size: int | None = None,
        preprocessing: Preprocessing | None = None,
        name: str = "score-function",
        description: str = "",
    ) -> PairModel:
        """A black-box pair model from ``fn(images1, images2) -> scores`` (numpy or torch, no gradients).

        ``fn`` receives two ``N×3×H×W`` torch tensors in model-input space and returns ``N`` scores; it is
        called under :func:`torch.no_grad`, at most ``batch_size`` pairs at a time (``None``: all at once).
        Perturbation methods and every metric run on it; gradient and activation methods, and methods that
        read embeddings (pairwise occlusion's credit rule), refuse it in one line. Its "embedding" is the
        image itself, so the metrics' "embed once" still calls ``fn`` only on
        the pairs they score.

        Example:
            >>> import torch
            >>> score = lambda a, b: -(a - b).flatten(1).abs().mean(1).numpy()  # any black box
            >>> model = PairModel.from_score_function(score)
            >>> x = torch.rand(2, 3, 8, 8)
            >>> model(x, x).tolist(), model.differentiable
            ([-0.0, -0.0], False)
        """
        from .blackbox import ImagesAsEmbedding, ScoreFunction

        model = cls(
            ImagesAsEmbedding(),
            similarity=ScoreFunction(fn, batch_size),
            preprocessing=preprocessing,
            name=name,
            description=description,
            differentiable=False,
        )
        model.has_embeddings = False
        return model

    @classmethod
    def from_embedding_function(
        cls,
        fn: Callable,
        *,
        fn_b: Callable | None = None,
        similarity: str | Similarity = "cosine",
        batch_size: int | None = None,
        preprocessing: Preprocessing | None = None,
        name: str = "embedding-function",
        description: str = "",
    ) -> PairModel:
        """A black-box pair model from ``fn(images) -> embeddings`` (numpy or torch, no gradients).

        ``fn`` (and ``fn_b`` for image 2, when the pair is asymmetric) maps an ``N×3×H×W`` torch tensor to
        ``N×D`` embeddings, called under :func:`torch.no_grad` at most ``batch_size`` images at a time. Like
        :meth:`from_score_function`, only methods without gradients or activations run on it.

        Example:
            >>> import torch
            >>> model = PairModel.from_embedding_function(lambda x: x.mean((2, 3)).numpy())
            >>> x = torch.rand(2, 3, 8, 8)
            >>> [round(s, 4) for s in model(x, x).tolist()]
            [1.0, 1.0]
        """
        from .blackbox import FunctionEncoder

        return cls(
            FunctionEncoder(fn, batch_size),
            encoder_b=None if fn_b is None else FunctionEncoder(fn_b, batch_size),
            similarity=similarity,
            preprocessing=preprocessing,
            name=name,
            description=description,
            differentiable=False,
        )

    @classmethod
    def image_text(
        cls,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        tokenizer: Callable,
        *,
        logit_scale: float | Tensor = 1.0,
        logit_bias: float | Tensor | None = None,
        context_length: int | None = None,
        token_embedding: str | None = None,
        text_layer: str | None = None,
        pass_mask: bool = True,
        **options,
    ) -> PairModel:
        """An image–text pair model: the image tower on side 1, the text tower on side 2, the score
        ``logit_scale · cos + logit_bias`` (CLIP: no bias; SigLIP: the sigmoid's logit) unless
        ``similarity=`` says otherwise (docs/image_text.md).

        ``tokenizer(list_of_str)`` returns a mapping with ``input_ids`` and ``attention_mask`` (``B×T``) and
        optionally ``word_ids``; ``text_encoder(input_ids, attention_mask)`` returns ``B×D``. Its first
        ``nn.Embedding`` is the token embedding unless ``token_embedding=`` names another; ``text_layer``
        names the module (``B×T×D`` output) that the word Interaction-CAM and pair-interaction tap.
        ``options`` are the constructor's (``layer``, ``preprocessing``, ``name``, ...).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from simexplain.text import BagOfWords
            >>> tokenizer = lambda texts: {"input_ids": [[len(w) for w in t.split()] for t in texts]}
            >>> image = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
            >>> model = PairModel.image_text(image, BagOfWords(12, 4, 4), tokenizer)
            >>> tokens = model.text_tower.tokenize(["a cat"])
            >>> model(torch.rand(1, 3, 4, 4), tokens).shape, sorted(model.capabilities)
            (torch.Size([1]), ['embeddings', 'gradients', 'text'])
        """
        tower = TextTower(
            text_encoder,
            tokenizer,
            context_length=context_length,
            token_embedding=token_embedding,
            layer=text_layer,
            pass_mask=pass_mask,
        )
        options.setdefault("similarity", ScaledCosine(logit_scale, logit_bias))
        model = cls(image_encoder, encoder_b=tower, **options)
        model.layer_b = tower.layer  # what pair-interaction taps on the text side
        return model

    @property
    def text_tower(self) -> TextTower | None:
        """Side 2's text tower of an image–text model (:meth:`image_text`), else ``None``."""
        return self.encoder_b if isinstance(self.encoder_b, TextTower) else None

    @property
    def capabilities(self) -> frozenset[str]:
        """What methods may need from this model (``simexplain.methods.registry.NEEDS``): ``"gradients"``
        unless it is a black box, ``"embeddings"`` unless it is a score function, ``"text"`` for an
        image–text model."""
        return frozenset(
            name
            for name, has in (
                ("gradients", self.differentiable),
                ("embeddings", self.has_embeddings),
                ("text", self.text_tower is not None),
            )
            if has
        )

    # ------------------------------------------------------------------ forward
    @property
    def shared(self) -> bool:
        """True when both images go through the same encoder."""
        return self.encoder_b is None

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's parameters (inputs are cast to it); float32 without any."""
        for tensor in self.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def encoder_for(self, side: str) -> nn.Module:
        if side not in ("a", "b"):
            raise SimexplainError(f"side must be 'a' or 'b', got {side!r}")
        return self.encoder if side == "a" or self.encoder_b is None else self.encoder_b

    def embed(self, x: Tensor, side: str = "a") -> Tensor:
        """Embeddings ``B×D`` of images ``x`` through the encoder of ``side`` ('a': image 1, 'b': image 2).

        The one routing point of the engines: under :func:`torch.inference_mode`, outside any layer tap,
        the model's :attr:`engine` runs the forward (docs/engine.md); otherwise the encoder itself does.
        """
        encoder = self.encoder_for(side)
        z = None
        # A text tower or a fixed partner embedding says engine_routed = False: engines only ever see images.
        routed = getattr(encoder, "engine_routed", True)
        if self.differentiable and routed and not self._taps and torch.is_inference_mode_enabled():
            z = self._engines.embed(self.name, "a" if self.shared else side, encoder, x, self._lock)
        return self._checked(encoder(x) if z is None else z, len(x), side)

    def embed_pair(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings of both images; a shared encoder sees ONE batch ``[x1; x2]`` when the images have one
        size, and embeds them side by side otherwise (the one place that handles pairs of two sizes)."""
        if self.shared and x1.shape[1:] == x2.shape[1:]:
            z = self.embed(torch.cat([x1, x2]), "a")
            return z[: len(x1)], z[len(x1) :]
        return self.embed(x1, "a"), self.embed(x2, "b")

    def _checked(self, z: object, batch: int, side: str) -> Tensor:
        """The encoder's output if it is one ``B×D`` tensor; otherwise one line naming what it returned."""
        which = "encoder" if side == "a" or self.shared else "encoder_b"
        if not isinstance(z, Tensor):
            what = type(z).__name__
            if isinstance(z, tuple | list):
                what = f"a {what} of {len(z)} items"
            elif isinstance(z, dict):
                what = f"a dict with keys {', '.join(map(str, list(z)[:6]))}"
            raise SimexplainError(
                f"the {which} of model {self.name!r} returned {what}; it must return one B×D tensor "
                "(wrap it in a module that picks the embedding)"
            )
        if z.dim() != 2 or z.shape[0] != batch:
            raise SimexplainError(
                f"the {which} of model {self.name!r} returned a tensor of shape {tuple(z.shape)} for {batch} "
                "images; it must return one B×D tensor (flatten or pool it)"
            )
        return z

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Similarity scores ``[B]`` of the pairs ``(x1[i], x2[i])``."""
        return self.similarity(*self.embed_pair(x1, x2))

    # ------------------------------------------------------------------ safety
    @contextmanager
    def locked(self) -> Iterator[PairModel]:
        """Hold the model's lock: other threads wait until the block ends (re-entrant for this thread)."""
        with self._lock:
            yield self

    @contextmanager
    def explaining(self) -> Iterator[PairModel]:
        """The model's lock, eval mode and frozen parameters for the duration of a method; modes and flags are
        restored afterwards, also after an exception."""
        with self._lock:
            modes = [(module, module.training) for module in self.modules()]
            flags = [(param, param.requires_grad) for param in self.parameters()]
            try:
                self.eval()
                for param, _ in flags:
                    param.requires_grad_(False)
                yield self
            finally:
                for module, mode in modes:
                    module.training = mode
                for param, flag in flags:
                    param.requires_grad_(flag)

    # ------------------------------------------------------------------ feature taps
    @contextmanager
    def tapped(self) -> Iterator[PairModel]:
        """Forwards inside the block run in PyTorch whatever the engine (a hooked layer must run)."""
        self._taps += 1
        try:
            yield self
        finally:
            self._taps -= 1

    def layer_name(self, side: str, layer: str | None = None) -> str:
        name = layer or (self.layer_b if side == "b" and self.layer_b else self.layer)
        if name is None:
            raise SimexplainError(
                f"model {self.name!r} has no layer to tap: pass layer=<module name> or build the "
                "PairModel with layer="
            )
        return name

    def layer_module(self, side: str, layer: str | None = None) -> nn.Module:
        name = self.layer_name(side, layer)
        try:
            return self.encoder_for(side).get_submodule(name)
        except AttributeError:
            known = [n for n, _ in self.encoder_for(side).named_modules() if n][:12]
            raise SimexplainError(
                f"layer {name!r} not found in model {self.name!r}; some module names: {', '.join(known)}"
            ) from None

    def activations_and_gradients(
        self, x1: Tensor, x2: Tensor, layer: str | None = None, *, gradients: bool = True
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Tap ``layer`` for both images, differentiate the model's own score.

        Returns ``(score [B], A1, A2, G1, G2)`` with activations and gradients as ``B×D×h×w`` (transformer
        tokens reshaped to the patch grid, prefix tokens dropped), all detached. One forward and one backward,
        which only runs through the part of the network after the layer (one hooked forward per side when the
        encoders differ or the images have two sizes). ``gradients=False`` skips the backward (for a rule
        that only reads activations): the forward runs without a graph and ``G1``, ``G2`` are ``None``.
        """
        captured: dict[str, Tensor] = {}

        def capture(key: str) -> Callable:
            name = self.layer_name("b" if key == "b" else "a", layer)

            def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
                if not isinstance(output, Tensor):
                    raise SimexplainError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
                if key in captured:
                    raise SimexplainError(
                        f"layer {name!r} runs more than once per forward; tap another layer"
                    )
                # The clone keeps the captured value intact if the network modifies its output in place.
                if not gradients:
                    captured[key] = output.detach().clone()
                    return output
                # Start the graph here: parameters are frozen, so only the head after the layer is
                # differentiated.
                out = output if output.requires_grad else output.detach().requires_grad_(True)
                captured[key] = out
                return out.clone()

            return hook

        with self.tapped(), torch.enable_grad() if gradients else torch.no_grad():
            if self.shared and x1.shape[1:] == x2.shape[1:]:
                # One batch [x1; x2]: the hooked module runs once and no branch is lost.
                with forward_hook(self.layer_module("a", layer), capture("ab")):
                    z1, z2 = self.embed_pair(x1, x2)
                score = self.similarity(z1, z2)
                acts = captured["ab"].detach().chunk(2)
                grads = (
                    torch.autograd.grad(score.sum(), captured["ab"])[0].chunk(2)
                    if gradients
                    else (None, None)
                )
            else:
                # Two encoders, or one encoder on images of two sizes: one hooked forward per side.
                with forward_hook(self.layer_module("a", layer), capture("a")):
                    z1 = self.embed(x1, "a")
                with forward_hook(self.layer_module("b", layer), capture("b")):
                    z2 = self.embed(x2, "b")
                score = self.similarity(z1, z2)
                acts = captured["a"].detach(), captured["b"].detach()
                grads = (
                    torch.autograd.grad(score.sum(), (captured["a"], captured["b"]))
                    if gradients
                    else (None, None)
                )
        # Each side keeps its own input size.
        hw1, hw2 = (x1.shape[-2], x1.shape[-1]), (x2.shape[-2], x2.shape[-1])
        a1, g1 = (None if t is None else self._as_grid(t, hw1) for t in (acts[0], grads[0]))
        a2, g2 = (None if t is None else self._as_grid(t, hw2) for t in (acts[1], grads[1]))
        return score.detach(), a1, a2, g1, g2

    def as_grid(self, t: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """A tapped activation (or its attribution) as ``B×D×h×w``: feature maps as they are, transformer
        tokens ``B×N×D`` through the model's :class:`TokenLayout`."""
        return self._as_grid(t, input_hw)

    def _as_grid(self, t: Tensor, input_hw: tuple[int, int]) -> Tensor:
        if t.dim() == 4:
            return t
        if t.dim() == 3:
            layout = self.token_layout or TokenLayout()
            return layout.to_grid(t, input_hw)
        raise SimexplainError(
            f"tapped activation has shape {tuple(t.shape)}; expected B×D×h×w or B×N×D tokens"
        )

    def extra_repr(self) -> str:
        black_box = "" if self.differentiable else ", differentiable=False"
        return f"name={self.name!r}, shared={self.shared}, layer={self.layer!r}{black_box}"


@contextmanager
def forward_hook(module: nn.Module, hook: Callable) -> Iterator[None]:
    """``hook`` on ``module``'s forward for the ``with`` block, removed however the block ends."""
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
