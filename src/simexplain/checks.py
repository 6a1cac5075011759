"""One validation policy for every method, metric, the service and the command line.

Each helper takes the setting's name and value and returns the value in its canonical type (an ``int``, a
``float``, a ``bool``, a tuple) or raises a one-line :class:`SimexplainError`. Values that arrive as text (the
command line's ``--set``, a web form) go through :func:`parse_setting` first, so ``"false"`` is ``False`` and
never a truthy string.

Example:
    >>> positive_int("samples", 2.0), boolean("guided", "no"), choice("fill", "mean", ("zero", "mean"))
    (2, False, 'mean')
"""

from __future__ import annotations

import ast
import functools
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Annotated, Any

import torch

from .errors import SimexplainError

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes any int below 2**64; keep seeds signed-64-safe

Seed = int | Sequence[int] | None
Validator = Callable[[str, Any], Any]  # (setting name, value) -> the value in its canonical type, or raise


def positive_int(name: str, value: Any) -> int:
    """A positive integer; an integral float (``2.0``, e.g. from JSON) is accepted, ``8.7`` or ``True``
    is not."""
    number = _integral(name, value)
    if number < 1:
        raise SimexplainError(f"{name} must be a positive integer, got {value!r}")
    return number


def non_negative_int(name: str, value: Any) -> int:
    """An integer ``≥ 0`` (same rules as :func:`positive_int`)."""
    number = _integral(name, value)
    if number < 0:
        raise SimexplainError(f"{name} must be a non-negative integer, got {value!r}")
    return number


def _integral(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise SimexplainError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise SimexplainError(f"{name} must be an integer, got {value!r}")


def number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, open_low: bool = False
) -> float:
    """A finite real number within ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise SimexplainError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if open_low else value < low)
    if too_low or (high is not None and value > high):
        left = "(" if open_low else "["
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise SimexplainError(f"{name} must lie in {bounds}, got {value!r}")
    return value


def positive_number(name: str, value: Any) -> float:
    """A finite number ``> 0``."""
    return number(name, value, low=0.0, open_low=True)


def non_negative_number(name: str, value: Any) -> float:
    """A finite number ``≥ 0``."""
    return number(name, value, low=0.0)


def boolean(name: str, value: Any) -> bool:
    """``True``/``False``, or the words ``true/false/1/0/yes/no`` (any case); anything else is refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise SimexplainError(f"{name} must be true or false (true/false/1/0/yes/no), got {value!r}")


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """One of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise SimexplainError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")
    return value


def text(name: str, value: Any) -> str:
    """A non-empty string (a module name, a transform name)."""
    if not isinstance(value, str) or not value.strip():
        raise SimexplainError(f"{name} must be a non-empty text, got {value!r}")
    return value


def one_of(options: Sequence[str]) -> Validator:
    """A validator accepting one of ``options`` (in a signature: ``Annotated[str, one_of(...)]``)."""

    def check(name: str, value: Any) -> str:
        return choice(name, value, options)

    return check


def optional(validator: Validator) -> Validator:
    """A validator that also accepts ``None`` (the setting's "use the default rule")."""

    def check(name: str, value: Any) -> Any:
        return None if value is None else validator(name, value)

    return check


def seed_setting(name: str, value: Any) -> int | list[int] | None:
    """A ``seed`` as given, checked without the number of pairs: ``None``, an int, or a list of ints."""
    if value is None:
        return None
    if isinstance(value, torch.Generator):
        raise SimexplainError(f"{name} must be an int or one int per pair, not a torch.Generator")
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_seed_int(v) for v in value]
    return _seed_int(value)


def number_range(name: str, value: Any, *, positive: bool = True) -> tuple[float, float]:
    """A pair ``(low, high)`` with ``low ≤ high`` (and ``0 < low`` when ``positive``), as floats."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SimexplainError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high or (positive and low <= 0):
        rule = "0 < low <= high" if positive else "low <= high"
        raise SimexplainError(f"{name} must satisfy {rule}, got {value!r}")
    return low, high


def seeds(value: Seed, pairs: int) -> tuple[int | list[int], list[int]]:
    """Resolve a method's ``seed`` for ``pairs`` pairs: ``(what the config records, one int per pair)``.

    An int seeds every pair alike; a sequence gives one int per pair; ``None`` draws one int from torch's
    global generator (so ``torch.manual_seed`` still controls it) and records it, so the result can be
    reproduced.

    Example:
        >>> seeds(7, 3)
        (7, [7, 7, 7])
        >>> seeds([1, 2], 2)
        ([1, 2], [1, 2])
    """
    if value is None:
        drawn = int(torch.randint(0, 2**31 - 1, (1,)).item())
        return drawn, [drawn] * pairs
    if isinstance(value, torch.Generator):
        raise SimexplainError(
            "seed must be an int or one int per pair, not a torch.Generator (record-able seeds only)"
        )
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | Integral | Real):
        raise SimexplainError(
            f"seed must be an int, a sequence of ints (one per pair) or None, got {value!r}"
        )
    if isinstance(value, Sequence):
        values = [_seed_int(v) for v in value]
        if len(values) != pairs:
            raise SimexplainError(
                f"seed holds {len(values)} values for {pairs} pairs; give one int or one per pair"
            )
        return values, values
    one = _seed_int(value)
    return one, [one] * pairs


def _seed_int(value: Any) -> int:
    seed = non_negative_int("seed", value)
    if seed >= SEED_LIMIT:
        raise SimexplainError(f"seed must be below 2**63, got {value!r}")
    return seed


def pick_seeds(config_seed: int | list[int], index: int | slice | Sequence[int]) -> int | list[int]:
    """The config seed of a subset of pairs (an int stays an int)."""
    if isinstance(config_seed, int):
        return config_seed
    if isinstance(index, int):
        return [config_seed[index]]
    if isinstance(index, slice):
        return list(config_seed[index])
    return [config_seed[i] for i in index]


def generators(pair_seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per pair: draws never depend on the device, the batch or the pair's position."""
    return [torch.Generator().manual_seed(seed) for seed in pair_seeds]


def parse_setting(text: str) -> Any:
    """A value typed on a command line or in a form: a Python/JSON literal (``3``, ``0.5``, ``(1, 2)``,
    ``[1, 2]``), the words ``true``/``false``/``yes``/``no``/``none``/``null``, or else the text itself.

    Example:
        >>> parse_setting("false"), parse_setting("12"), parse_setting("rotate-90"), parse_setting("none")
        (False, 12, 'rotate-90', None)
    """
    word = text.strip()
    lowered = word.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(word)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return word  # plain words such as mean, blur, combine


def finite_images(name: str, x: torch.Tensor) -> None:
    """Refuse image tensors with NaN or infinite values (every map computed from them would be NaN)."""
    if not bool(torch.isfinite(x).all()):
        raise SimexplainError(f"{name} holds NaN or infinite values")


# ---------------------------------------------------------------------------------------------- work
# What a parameter can multiply a request's work by: unit → (what one unit is, a server's default maximum per
# request; ``simexplain serve --max-UNIT`` changes it). Every method's own defaults lie well inside them.
WORK_UNITS: dict[str, tuple[str, int]] = {
    "samples": (
        "noise samples, random rectangles or sampled coalitions: a forward (and backward) each",
        1000,
    ),
    "steps": ("points on a path (transforms, integration): a forward and backward each", 1000),
    "windows": ("occluded windows or patches per image: a forward each", 4096),
    "curve-points": ("points on each insertion or deletion curve: a forward per image each", 4096),
    "dimensions": ("projected embedding dimensions explained: a backward row each", 4096),
}

Size = tuple[int, int]
WorkCount = Callable[[Mapping[str, Any], Size], int]  # (all settings, defaults included; input H×W) -> units


@dataclass(frozen=True)
class Work:
    """In a parameter's annotation (``Annotated[int, positive_int, Work("samples")]``): the parameter
    multiplies the work of its method (or of the metrics) in :data:`WORK_UNITS` ``unit``. ``count`` says how
    many units the settings ask for at an input size; without it, the value itself is the count.

    Example:
        >>> Work("samples").units("samples", {"samples": 40}, (224, 224))
        40
        >>> Work("windows", sliding_windows).units("stride", {"window": 64, "stride": 8}, (224, 224))
        441
    """

    unit: str
    count: WorkCount | None = None

    def __post_init__(self) -> None:
        if self.unit not in WORK_UNITS:
            raise SimexplainError(f"unknown work unit {self.unit!r}; known: {', '.join(WORK_UNITS)}")

    def units(self, name: str, settings: Mapping[str, Any], size: Size) -> int:
        """How many units the ``settings`` (parameter ``name`` among them) ask for on ``size`` inputs."""
        if self.count is not None:
            return int(self.count(settings, size))
        value = settings[name]
        return 0 if value is None else int(value)


def sliding_windows(settings: Mapping[str, Any], size: Size) -> int:
    """Windows per image of a ``window``² square slid by ``stride`` (clipped to the image; one more window
    at the far border when the stride does not reach it)."""
    window, stride = settings["window"], settings["stride"]
    return math.prod(math.ceil((side - min(window, side)) / stride) + 1 for side in size)


def patch_grid(settings: Mapping[str, Any], size: Size) -> int:
    """Patches per image of ``patch``² squares tiling it."""
    return math.prod(math.ceil(side / settings["patch"]) for side in size)


@functools.cache
def declared_work(fn: Callable) -> dict[str, Work]:
    """The parameters of ``fn`` that declare :class:`Work` in their annotation, each with its declaration.

    Example:
        >>> def method(model, x1, x2, *, samples: Samples = 50, guided: Flag = False): ...
        >>> declared_work(method)
        {'samples': Work(unit='samples', count=None)}
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    found = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated:
            found.update({name: meta for meta in hint.__metadata__ if isinstance(meta, Work)})
    return found


# Annotations for method signatures: ``samples: checks.Count = 50`` declares the type and its check at once.
Count = Annotated[int, positive_int]
# Counts that multiply the work (see Work): a server caps them per request.
Samples = Annotated[int, positive_int, Work("samples")]
Steps = Annotated[int, positive_int, Work("steps")]
Stride = Annotated[int, positive_int, Work("windows", sliding_windows)]  # next to a ``window`` parameter
Patch = Annotated[int, positive_int, Work("windows", patch_grid)]
Flag = Annotated[bool, boolean]
BatchSize = Annotated["int | None", optional(positive_int)]
SeedSetting = Annotated["int | list[int] | None", seed_setting]
LayerName = Annotated["str | None", optional(text)]
