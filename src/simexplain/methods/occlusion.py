"""Perturbation family (SPEC §2): Conditional and Pairwise Occlusion.

Both methods only run forwards, under :func:`torch.inference_mode`. The clean embeddings are computed once; the
perturbed images are built chunk by chunk (at most ``batch_size`` images per forward) from the clean images and
boolean masks, so all occluded copies never exist at once, and all ``B`` pairs are handled in the same chunks.

Every rectangle (an occlusion window or an erased box) is separable: a boolean row span times a boolean column
span. Masks are built by comparing row/column indices with the rectangles' bounds, and maps are accumulated with
one ``einsum`` over those spans, so no Python loop runs over pixels or masks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel
from .registry import register

FILLS = ("zero", "mean", "blur")
OUTPUTS = ("pixels", "grid")
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # the blur of SPEC 4.1 (insertion), reused for the "blur" fill
ERASING_TRIES = 10  # RandomErasing's number of attempts per rectangle


# ---------------------------------------------------------------------------------------------- helpers
def fill_values(x: Tensor, fill: str) -> Tensor:
    """What an occluded pixel becomes, broadcastable to ``x`` (``B×3×H×W``, model-input space).

    ``"zero"``: 0; ``"mean"``: each image's per-channel mean; ``"blur"``: a Gaussian-blurred copy (kernel 11, σ 5,
    the blur of the insertion metric; blurring commutes with the per-channel affine preprocessing, so it is done
    in model-input space directly).

    Example:
        >>> fill_values(torch.ones(2, 3, 8, 8), "mean").shape
        torch.Size([2, 3, 1, 1])
    """
    if fill == "zero":
        return x.new_zeros(x.shape[0], 1, 1, 1)
    if fill == "mean":
        return x.mean((2, 3), keepdim=True)
    if fill == "blur":
        from torchvision.transforms.functional import gaussian_blur

        # Reflect padding needs pad < side: shrink the kernel on images smaller than 6 pixels.
        kernel = min(BLUR_KERNEL, 2 * min(x.shape[-2:]) - 1)
        return gaussian_blur(x, [kernel, kernel], [BLUR_SIGMA, BLUR_SIGMA])
    raise SimexplainError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")


def window_starts(size: int, window: int, stride: int) -> Tensor:
    """Start offsets of a sliding window along one axis of ``size`` pixels.

    Offsets are ``0, stride, 2·stride, …`` while the window fits; when the stride does not divide
    ``size − window``, one last window aligned to the far border is added, so every pixel is covered. The window
    must fit (``window ≤ size``; :func:`conditional_occlusion` clips it first), and a stride larger than the
    window is refused, since it would leave pixels that no window covers.

    Example:
        >>> window_starts(10, 4, 4).tolist()
        [0, 4, 6]
    """
    if not 1 <= window <= size:
        raise SimexplainError(f"a window of {window} pixels does not fit an axis of {size} pixels")
    if stride < 1 or (stride > window and size > window):
        raise SimexplainError(
            f"stride {stride} with a {window}-pixel window leaves pixels that no window covers; "
            "use 1 <= stride <= window"
        )
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return torch.tensor(starts, dtype=torch.long)


def spans(starts: Tensor, lengths: Tensor | int, size: int) -> Tensor:
    """Boolean ``n×size`` rows: ``spans[i, p]`` is true when ``starts[i] ≤ p < starts[i] + lengths[i]``.

    Example:
        >>> spans(torch.tensor([1]), 2, 4).int().tolist()
        [[0, 1, 1, 0]]
    """
    index = torch.arange(size, device=starts.device)
    ends = starts + lengths
    return (index >= starts[:, None]) & (index < torch.as_tensor(ends, device=starts.device).reshape(-1, 1))


def occlude(x: Tensor, fill: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Images ``x`` (``n×C×H×W``) with the rectangle ``rows[i] × cols[i]`` replaced by ``fill`` (broadcastable)."""
    mask = rows[:, None, :, None] & cols[:, None, None, :]
    return torch.where(mask, fill, x)


def rectangle_sums(weights: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``Σ_n weights[b, n] · 1[rows[n]] ⊗ 1[cols[n]]`` as ``B×H×W`` without building any ``n×H×W`` mask."""
    return torch.einsum("bn,nh,nw->bhw", weights, rows.to(weights.dtype), cols.to(weights.dtype))


def _embed_both(model: PairModel, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    # A shared encoder sees one batch [a; b]; images of different sizes cannot be concatenated.
    if model.shared and a.shape[1:] != b.shape[1:]:
        return model.embed(a, "a"), model.embed(b, "b")
    return model.embed_pair(a, b)


def _plain(t: Tensor) -> Tensor:
    # Tensors made under inference mode refuse in-place updates later; hand the caller ordinary ones.
    with torch.inference_mode(False):
        return t.clone()


# ---------------------------------------------------------------------------------------------- conditional
def _window_drops(
    model: PairModel,
    x: Tensor,
    side: str,
    partner: Tensor,
    score: Tensor,
    window: tuple[int, int],
    stride: int,
    fill: str,
    batch_size: int,
) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """Drops ``B×nh×nw`` of every window of image ``side`` against the partner's clean embedding, with the
    windows' row/column spans and start offsets."""
    batch, _, height, width = x.shape
    row_starts = window_starts(height, window[0], stride).to(x.device)
    col_starts = window_starts(width, window[1], stride).to(x.device)
    rows, cols = spans(row_starts, window[0], height), spans(col_starts, window[1], width)
    n_rows, n_cols = len(row_starts), len(col_starts)
    positions = n_rows * n_cols
    fills = fill_values(x, fill)
    drops = score.new_empty(batch * positions)
    # One flat index over (pair, window): chunks mix pairs, so B pairs share forwards.
    for part in chunk_slices(batch * positions, batch_size):
        flat = torch.arange(part.start, part.stop, device=x.device)
        pair, position = flat // positions, flat % positions
        images = occlude(x[pair], fills[pair], rows[position // n_cols], cols[position % n_cols])
        z = model.embed(images, side)
        # Keep the similarity's argument order: a user similarity need not be symmetric.
        occluded = model.similarity(z, partner[pair]) if side == "a" else model.similarity(partner[pair], z)
        drops[part] = score[pair] - occluded
    return drops.view(batch, n_rows, n_cols), rows, cols, (row_starts, col_starts)


def windows_to_pixels(grid: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Pixel map where each pixel averages the values of the windows covering it.

    ``grid`` is ``B×nh×nw``; ``rows`` (``nh×H``) and ``cols`` (``nw×W``) are the windows' boolean spans. The sum
    over covering windows is ``rowsᵀ · grid · cols`` and the count is the outer product of the span counts.

    Example:
        >>> rows = cols = spans(torch.tensor([0, 2]), 2, 4)
        >>> windows_to_pixels(torch.arange(4.0).view(1, 2, 2), rows, cols)[0, 0].tolist()
        [0.0, 0.0, 1.0, 1.0]
    """
    rows_f, cols_f = rows.to(grid.dtype), cols.to(grid.dtype)
    total = torch.einsum("ih,bij,jw->bhw", rows_f, grid, cols_f)
    count = rows_f.sum(0)[:, None] * cols_f.sum(0)[None, :]
    return total / count


@register(
    "conditional-occlusion",
    "perturbation",
    "Sliding-window occlusion of one image against the other's clean embedding (baseline; SPEC 2.1)",
)
def conditional_occlusion(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    window: int = 64,
    stride: int = 8,
    fill: str = "zero",
    output: str = "pixels",
    batch_size: int | None = None,
) -> PairExplanation:
    """Conditional Occlusion: ``d_1 = s − sim(f(x1 with a window filled), f(x2))`` per window, and symmetrically.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        >>> x = torch.rand(1, 3, 32, 32)
        >>> e = simexplain.explain(model, x, x.flip(-1), "conditional-occlusion", window=16, stride=8)
        >>> e.map1.shape, e.grid1.shape
        (torch.Size([1, 32, 32]), torch.Size([1, 3, 3]))

    Args:
        window: side of the square window in pixels. Along an axis shorter than the window, the window is clipped
            to the whole axis (one position there), so small and non-square images still get a map.
        stride: step between windows (at most the window, so no pixel is skipped). When it does not divide
            ``side − window``, a last window aligned to the far border is added, so every pixel is covered by at
            least one window.
        fill: ``"zero"`` (0 in model-input space, the paper's), ``"mean"`` (per-image channel mean) or ``"blur"``
            (a Gaussian-blurred copy, kernel 11, σ 5).
        output: ``"pixels"`` (default): ``map_k`` is ``H×W`` and each pixel averages the drops of the windows
            covering it; ``"grid"``: ``map_k`` is the raw window grid (21×21 at 224² with 64/8), as the authors
            return it. The grid is always kept as ``grid1``/``grid2``.
        batch_size: occluded images per forward; ``None`` = 8 on a CPU, 64 on a GPU.

    Drops are signed (an occlusion that raises the score gives a negative value) and not normalised. The clean
    embeddings come from one forward; ``params`` also records each image's window starts.
    """
    if output not in OUTPUTS:
        raise SimexplainError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    if fill not in FILLS:
        raise SimexplainError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    if int(window) < 1 or int(stride) < 1:
        raise SimexplainError(f"window and stride must be positive, got window={window}, stride={stride}")
    batch_size = resolve_batch_size(batch_size, x1.device)
    with torch.inference_mode():
        z1, z2 = _embed_both(model, x1, x2)
        score = model.similarity(z1, z2)
        results = []
        for x, side, partner in ((x1, "a", z2), (x2, "b", z1)):
            clipped = (min(int(window), x.shape[-2]), min(int(window), x.shape[-1]))
            grid, rows, cols, starts = _window_drops(
                model, x, side, partner, score, clipped, int(stride), fill, batch_size
            )
            pixels = windows_to_pixels(grid, rows, cols) if output == "pixels" else grid
            results.append((pixels, grid, clipped, starts))
    (map1, grid1, win1, starts1), (map2, grid2, win2, starts2) = results
    params = {
        "window": window,
        "stride": stride,
        "fill": fill,
        "output": output,
        "batch_size": batch_size,
        "window1": win1,
        "window2": win2,
        "starts1": tuple(_plain(s) for s in starts1),
        "starts2": tuple(_plain(s) for s in starts2),
    }
    return PairExplanation(
        map1=_plain(map1),
        map2=_plain(map2),
        score=_plain(score),
        grid1=_plain(grid1),
        grid2=_plain(grid2),
        method="conditional-occlusion",
        params=params,
    )


# ---------------------------------------------------------------------------------------------- pairwise
def sample_rectangles(
    count: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> Tensor:
    """``count`` rectangles ``(top, left, height, width)`` drawn like torchvision's RandomErasing, vectorised.

    For each rectangle, up to 10 tries draw an area ``U(scale)·H·W`` and a log-uniform aspect ratio
    ``h/w ∈ ratio``; ``h = round(√(area·ratio))``, ``w = round(√(area/ratio))``; the first try with ``h < H`` and
    ``w < W`` is kept and its corner drawn uniformly among the positions where it fits. When none of the 10 tries
    fits (only with extreme ``scale``/``ratio``), RandomErasing leaves the image unchanged; here the rectangle is
    empty (height and width 0): nothing is erased and it receives no credit. Draws come from ``generator`` on the
    CPU, so a seed gives the same rectangles on every device.

    Example:
        >>> boxes = sample_rectangles(5, 32, 32, (0.1, 0.3), (1, 1.5), torch.Generator().manual_seed(0))
        >>> boxes.shape
        torch.Size([5, 4])
    """
    area = float(height * width)
    tries = torch.rand(2, count, ERASING_TRIES, generator=generator, dtype=torch.float64)
    erase_area = area * (scale[0] + (scale[1] - scale[0]) * tries[0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * tries[1])
    h = torch.round(torch.sqrt(erase_area * aspect)).long()
    w = torch.round(torch.sqrt(erase_area / aspect)).long()
    fits = (h < height) & (w < width)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # index of the first try that fits
    found = fits.any(1)
    h = torch.where(found, h.gather(1, first)[:, 0], 0)
    w = torch.where(found, w.gather(1, first)[:, 0], 0)
    corner = torch.rand(2, count, generator=generator, dtype=torch.float64)
    top = (corner[0] * (height - h + 1)).floor().long().clamp_max(height - h)
    left = (corner[1] * (width - w + 1)).floor().long().clamp_max(width - w)
    return torch.stack([top, left, h, w], 1)


def _check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SimexplainError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not 0 < low <= high:
        raise SimexplainError(f"{name} must satisfy 0 < low <= high, got {value!r}")
    return low, high


@register(
    "pairwise-occlusion",
    "perturbation",
    "Random rectangle pairs erased in both images, softmax-weighted credit (proposed; SPEC 2.2)",
)
def pairwise_occlusion(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    samples: int = 100,
    scale: tuple[float, float] = (0.1, 0.3),
    ratio: tuple[float, float] = (1, 1.5),
    fill: str = "zero",
    temperature: float = 1.0,
    seed: int | None = None,
    batch_size: int | None = None,
) -> PairExplanation:
    """Pairwise Occlusion: both images erased at once; the softmax of the drops credits one rectangle per pair.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        >>> x = torch.rand(1, 3, 32, 32)
        >>> e = simexplain.explain(model, x, x.flip(-1), "pairwise-occlusion", samples=20, seed=0)
        >>> e.map1.shape, float(max(e.map1.max(), e.map2.max())) > 0.99
        (torch.Size([1, 32, 32]), True)

    For sample ``n``: ``d_n = s − sim(f(x1 with R1_n erased), f(x2 with R2_n erased))``; ``w = softmax(d / T)``
    over the samples; the whole ``w_n`` goes to the rectangle of the image whose perturbed embedding has the
    smaller L2 norm (ties → image 2); each map is divided by its max (+1e-9).

    Args:
        samples: number of rectangle pairs ``N``.
        scale, ratio: RandomErasing's area fraction and aspect ratio (``h/w``) ranges; see :func:`sample_rectangles`
            (including the rule when no rectangle fits).
        fill: ``"zero"`` (paper), ``"mean"`` or ``"blur"``, as in Conditional Occlusion.
        temperature: softmax temperature ``T``.
        seed: seeds the rectangles; ``None`` draws a fresh seed, recorded in ``params["seed"]``. The same
            rectangles serve every pair of the batch, so a pair explained alone with a seed gets the same map as
            inside a batch with that seed.
        batch_size: images per forward (``batch_size // 2`` pairs); ``None`` = 8 on a CPU, 64 on a GPU.

    The rectangles themselves are kept (never recovered by looking for zero pixels, which would also credit
    genuinely black pixels): ``params["rectangles1"]``/``["rectangles2"]`` are ``N×4`` ``(top, left, height,
    width)``, ``params["drops"]`` is ``B×N`` and ``params["credited"]`` (``B×N``) says which image got each weight.
    """
    if fill not in FILLS:
        raise SimexplainError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    if int(samples) < 1:
        raise SimexplainError(f"samples must be at least 1, got {samples}")
    if not float(temperature) > 0:
        raise SimexplainError(f"temperature must be positive, got {temperature}")
    scale, ratio = _check_range("scale", scale), _check_range("ratio", ratio)
    batch_size = resolve_batch_size(batch_size, x1.device)
    samples = int(samples)
    generator = torch.Generator()
    seed = int(generator.seed() if seed is None else seed)
    generator.manual_seed(seed)
    rects = [sample_rectangles(samples, *x.shape[-2:], scale, ratio, generator) for x in (x1, x2)]

    with torch.inference_mode():
        device, batch = x1.device, x1.shape[0]
        masks = []
        for x, r in zip((x1, x2), rects):
            r = r.to(device)
            masks.append((spans(r[:, 0], r[:, 2], x.shape[-2]), spans(r[:, 1], r[:, 3], x.shape[-1])))
        (rows1, cols1), (rows2, cols2) = masks
        fill1, fill2 = fill_values(x1, fill), fill_values(x2, fill)
        z1, z2 = _embed_both(model, x1, x2)
        score = model.similarity(z1, z2)
        drops = score.new_empty(batch * samples)
        first_smaller = torch.empty(batch * samples, dtype=torch.bool, device=device)
        for part in chunk_slices(batch * samples, max(1, batch_size // 2)):
            flat = torch.arange(part.start, part.stop, device=device)
            pair, n = flat // samples, flat % samples
            za, zb = _embed_both(
                model,
                occlude(x1[pair], fill1[pair], rows1[n], cols1[n]),
                occlude(x2[pair], fill2[pair], rows2[n], cols2[n]),
            )
            drops[part] = score[pair] - model.similarity(za, zb)
            # Strictly smaller: ties credit image 2.
            first_smaller[part] = za.flatten(1).norm(dim=1) < zb.flatten(1).norm(dim=1)
        drops, first_smaller = drops.view(batch, samples), first_smaller.view(batch, samples)
        weights = torch.softmax(drops / float(temperature), dim=1)
        map1 = rectangle_sums(weights * first_smaller, rows1, cols1)
        map2 = rectangle_sums(weights * ~first_smaller, rows2, cols2)
        map1 = map1 / (map1.amax((1, 2), keepdim=True) + 1e-9)
        map2 = map2 / (map2.amax((1, 2), keepdim=True) + 1e-9)
        credited = torch.where(first_smaller, 1, 2).to(torch.uint8)
    params = {
        "samples": samples,
        "scale": scale,
        "ratio": ratio,
        "fill": fill,
        "temperature": temperature,
        "seed": seed,
        "batch_size": batch_size,
        "rectangles1": rects[0],
        "rectangles2": rects[1],
        "drops": _plain(drops),
        "credited": _plain(credited),
    }
    return PairExplanation(
        map1=_plain(map1), map2=_plain(map2), score=_plain(score), method="pairwise-occlusion", params=params
    )
