"""Perturbation family (docs/methods.md, Perturbation): Conditional and Pairwise Occlusion.

Both methods only run forwards, under :func:`torch.inference_mode`. The clean embeddings are computed once;
the perturbed images are built chunk by chunk (at most ``batch_size`` images per forward) from the clean
images and boolean masks, so all occluded copies never exist at once, and all ``B`` pairs are handled in the
same chunks.

Every rectangle (an occlusion window or an erased box) is separable: a boolean row span times a boolean column
span. Masks are built by comparing row/column indices with the rectangles' bounds, and maps are accumulated
with one ``einsum`` over those spans, so no Python loop runs over pixels or masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, NamedTuple

import torch
from torch import Tensor

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel
from .registry import register, register_margin, register_one_to_many

FILLS = ("zero", "mean", "blur")
OUTPUTS = ("pixels", "grid")
# The blur of the insertion metric (docs/methods.md, Insertion and deletion), reused for the "blur" fill.
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0
ERASING_TRIES = 10  # RandomErasing's number of attempts per rectangle


# ---------------------------------------------------------------------------------------------- helpers
def fill_values(x: Tensor, fill: str) -> Tensor:
    """What an occluded pixel becomes, broadcastable to ``x`` (``B×3×H×W``, model-input space).

    ``"zero"``: 0; ``"mean"``: each image's per-channel mean; ``"blur"``: a Gaussian-blurred copy (kernel 11,
    σ 5, the blur of the insertion metric; blurring commutes with the per-channel affine preprocessing, so it
    is done in model-input space directly).

    Example:
        >>> fill_values(torch.ones(2, 3, 8, 8), "mean").shape
        torch.Size([2, 3, 1, 1])
    """
    checks.choice("fill", fill, FILLS)
    if fill == "zero":
        return x.new_zeros(x.shape[0], 1, 1, 1)
    if fill == "mean":
        return x.mean((2, 3), keepdim=True)
    from torchvision.transforms.functional import gaussian_blur

    # Reflect padding needs pad < side: shrink the kernel on images smaller than 6 pixels.
    kernel = min(BLUR_KERNEL, 2 * min(x.shape[-2:]) - 1)
    return gaussian_blur(x, [kernel, kernel], [BLUR_SIGMA, BLUR_SIGMA])


def window_starts(size: int, window: int, stride: int) -> Tensor:
    """Start offsets of a sliding window along one axis of ``size`` pixels.

    Offsets are ``0, stride, 2·stride, …`` while the window fits; when the stride does not divide
    ``size − window``, one last window aligned to the far border is added, so every pixel is covered. The
    window must fit (``window ≤ size``; :func:`conditional_occlusion` clips it first), and a stride larger
    than the window is refused, since it would leave pixels that no window covers.

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
    """Images ``x`` (``n×C×H×W``) with the rectangle ``rows[i] × cols[i]`` replaced by ``fill``
    (broadcastable)."""
    mask = rows[:, None, :, None] & cols[:, None, None, :]
    return torch.where(mask, fill, x)


def rectangle_sums(weights: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``Σ_n weights[b, n] · 1[rows[b, n]] ⊗ 1[cols[b, n]]`` as ``B×H×W`` without building any ``N×H×W`` mask.

    ``rows`` (``B×N×H``) and ``cols`` (``B×N×W``) are each pair's own rectangle spans.

    Example:
        >>> rows = cols = spans(torch.tensor([0, 1]), 2, 3).unsqueeze(0)
        >>> rectangle_sums(torch.tensor([[1.0, 2.0]]), rows, cols)[0].tolist()
        [[1.0, 1.0, 0.0], [1.0, 3.0, 2.0], [0.0, 2.0, 2.0]]
    """
    return torch.einsum("bn,bnh,bnw->bhw", weights, rows.to(weights.dtype), cols.to(weights.dtype))


def _plain(t: Tensor) -> Tensor:
    # Tensors made under inference mode refuse in-place updates later; hand the caller ordinary ones.
    with torch.inference_mode(False):
        return t.clone()


# ---------------------------------------------------------------------------------------------- conditional
class Windows(NamedTuple):
    """The sliding windows of one image: the window clipped to the image, and its start offsets per axis."""

    size: tuple[int, int]
    row_starts: Tensor
    col_starts: Tensor


def image_windows(height: int, width: int, window: int, stride: int) -> Windows:
    """The windows of a ``height×width`` image. Along an axis shorter than ``window`` the window is clipped
    to the whole axis; a stride that would skip pixels is refused (before any forward pass)."""
    size = (min(window, height), min(window, width))
    return Windows(size, window_starts(height, size[0], stride), window_starts(width, size[1], stride))


def _window_drops(
    model: PairModel,
    x: Tensor,
    side: str,
    partner: Tensor,
    score: Tensor,
    windows: Windows,
    fill: str,
    batch_size: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Drops ``B×nh×nw`` of every window of image ``side`` against the partner's clean embedding, with the
    windows' row/column spans."""
    batch, _, height, width = x.shape
    row_starts, col_starts = windows.row_starts.to(x.device), windows.col_starts.to(x.device)
    rows, cols = spans(row_starts, windows.size[0], height), spans(col_starts, windows.size[1], width)
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
    return drops.view(batch, n_rows, n_cols), rows, cols


def _query_window_drops(
    model: PairModel,
    query: Tensor,
    partners: Tensor,
    score: Tensor,
    windows: Windows,
    fill: str,
    batch_size: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Drops ``K×nh×nw`` of every window of ONE image 1 (``1×3×H×W``) against ``K`` partner embeddings: each
    occluded copy is embedded once and compared with all partners (retrieval: one query, K matches)."""
    _, _, height, width = query.shape
    row_starts, col_starts = windows.row_starts.to(query.device), windows.col_starts.to(query.device)
    rows, cols = spans(row_starts, windows.size[0], height), spans(col_starts, windows.size[1], width)
    n_rows, n_cols = len(row_starts), len(col_starts)
    positions, matches = n_rows * n_cols, partners.shape[0]
    fills = fill_values(query, fill)
    drops = score.new_empty(matches, positions)
    for part in chunk_slices(positions, batch_size):
        position = torch.arange(part.start, part.stop, device=query.device)
        images = occlude(
            query.expand(len(position), -1, -1, -1), fills, rows[position // n_cols], cols[position % n_cols]
        )
        z = model.embed(images, "a")
        n = len(position)
        occluded = model.similarity(z.repeat(matches, 1), partners.repeat_interleave(n, 0)).view(matches, n)
        drops[:, part] = score[:, None] - occluded
    return drops.view(matches, n_rows, n_cols), rows, cols


def windows_to_pixels(grid: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Pixel map where each pixel averages the values of the windows covering it.

    ``grid`` is ``B×nh×nw``; ``rows`` (``nh×H``) and ``cols`` (``nw×W``) are the windows' boolean spans. The
    sum over covering windows is ``rowsᵀ · grid · cols`` and the count is the outer product of the span
    counts.

    Example:
        >>> rows = cols = spans(torch.tensor([0, 2]), 2, 4)
        >>> windows_to_pixels(torch.arange(4.0).view(1, 2, 2), rows, cols)[0, 0].tolist()
        [0.0, 0.0, 1.0, 1.0]
    """
    rows_f, cols_f = rows.to(grid.dtype), cols.to(grid.dtype)
    total = torch.einsum("ih,bij,jw->bhw", rows_f, grid, cols_f)
    count = rows_f.sum(0)[:, None] * cols_f.sum(0)[None, :]
    return total / count


def _window_extras(windows: Windows, image: int, batch: int, device: torch.device) -> dict[str, Tensor]:
    # The same windows serve every pair of a batch; extras still carry one row per pair.
    return {
        f"window{image}": torch.tensor([windows.size], device=device).repeat(batch, 1),
        f"row_starts{image}": windows.row_starts.to(device).repeat(batch, 1),
        f"col_starts{image}": windows.col_starts.to(device).repeat(batch, 1),
    }


@register(
    "conditional-occlusion",
    "perturbation",
    "Sliding-window occlusion of one image against the other's clean embedding (baseline)",
)
def conditional_occlusion(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    window: checks.Count = 64,
    stride: checks.Stride = 8,
    fill: Annotated[str, checks.one_of(FILLS)] = "zero",
    output: Annotated[str, checks.one_of(OUTPUTS)] = "pixels",
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Conditional Occlusion: ``d_1 = s − sim(f(x1 with a window filled), f(x2))`` per window, and
    symmetrically (docs/methods.md, Conditional Occlusion).

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = simexplain.PairModel(encoder)
        >>> x = torch.rand(1, 3, 32, 32)
        >>> e = simexplain.explain(model, x, x.flip(-1), "conditional-occlusion", window=16, stride=8)
        >>> e.map1.shape, e.grid1.shape, e.extras["row_starts1"].tolist()
        (torch.Size([1, 32, 32]), torch.Size([1, 3, 3]), [[0, 8, 16]])

    Args:
        window: side of the square window in pixels. Along an axis shorter than the window, the window is
            clipped to the whole axis (one position there), so small and non-square images still get a map.
        stride: step between windows (at most the window, so no pixel is skipped). When it does not divide
            ``side − window``, a last window aligned to the far border is added, so every pixel is covered by
            at least one window.
        fill: ``"zero"`` (0 in model-input space, the paper's), ``"mean"`` (per-image channel mean) or
            ``"blur"`` (a Gaussian-blurred copy, kernel 11, σ 5).
        output: ``"pixels"`` (default): ``map_k`` is ``H×W`` and each pixel averages the drops of the windows
            covering it; ``"grid"``: ``map_k`` is the raw window grid (21×21 at 224² with 64/8), as the
            authors return it. The grid is always kept as ``grid1``/``grid2``.
        batch_size: occluded images per forward; ``None`` = 8 on a CPU, 64 on a GPU.

    Drops are signed (an occlusion that raises the score gives a negative value) and not normalised. The clean
    embeddings come from one forward. ``extras`` keeps, for image ``k`` and every pair, the clipped window
    ``window{k}`` (``B×2``: height, width) and its start offsets ``row_starts{k}`` (``B×nh``) and
    ``col_starts{k}`` (``B×nw``).
    """
    return occlude_windows(
        model, x1, x2, window=window, stride=stride, fill=fill, output=output, batch_size=batch_size
    )


def occlude_windows(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    window: int,
    stride: int,
    fill: str,
    output: str,
    batch_size: int | None,
    embeddings: tuple[Tensor, Tensor] | None = None,
) -> PairExplanation:
    """Conditional Occlusion's work; with ONE image 1 and ``K`` images 2 (a retrieval query and its matches),
    the query's occluded copies are embedded once for all ``K`` pairs, and ``embeddings`` (the clean
    ``f_a(x1)`` ``1×E`` and ``f_b(x2)`` ``K×E``, when the caller has them) save the clean forwards. The result
    equals :func:`conditional_occlusion` on ``x1`` repeated ``K`` times."""
    batch_size = resolve_batch_size(batch_size, x1.device)
    layouts = [image_windows(x.shape[-2], x.shape[-1], window, stride) for x in (x1, x2)]
    one_query = x1.shape[0] == 1 and x2.shape[0] > 1
    with torch.inference_mode():
        if embeddings is None:
            z1, z2 = (model.embed(x1, "a"), model.embed(x2, "b")) if one_query else model.embed_pair(x1, x2)
        else:
            z1, z2 = embeddings
        if one_query:
            z1 = z1.expand(x2.shape[0], -1)
        score = model.similarity(z1, z2)
        maps, grids = [], []
        for x, side, partner, windows in ((x1, "a", z2, layouts[0]), (x2, "b", z1, layouts[1])):
            if one_query and side == "a":
                grid, rows, cols = _query_window_drops(model, x, partner, score, windows, fill, batch_size)
            else:
                grid, rows, cols = _window_drops(model, x, side, partner, score, windows, fill, batch_size)
            maps.append(windows_to_pixels(grid, rows, cols) if output == "pixels" else grid)
            grids.append(grid)
    batch = x2.shape[0]
    extras = {
        **_window_extras(layouts[0], 1, batch, x1.device),
        **_window_extras(layouts[1], 2, batch, x1.device),
    }
    return PairExplanation(
        map1=_plain(maps[0]),
        map2=_plain(maps[1]),
        score=_plain(score),
        grid1=_plain(grids[0]),
        grid2=_plain(grids[1]),
        method="conditional-occlusion",
        config={"window": window, "stride": stride, "fill": fill, "output": output},
        extras=extras,
    )


@register_one_to_many("conditional-occlusion")
def _conditional_occlusion_one_to_many(
    model: PairModel, x1: Tensor, x2: Tensor, *, embeddings: tuple[Tensor, Tensor] | None, **settings
) -> PairExplanation:
    """Conditional Occlusion of ``K`` pairs sharing image 1: its occluded copies are embedded once and
    compared with the ``K`` partners, whose clean embeddings are reused when the caller has them."""
    return occlude_windows(model, x1, x2, embeddings=embeddings, **settings)


@register_margin("conditional-occlusion")
def _conditional_occlusion_margin(
    model: PairModel, q: Tensor, b: Tensor, w: Tensor, **settings
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """The margin's drop per window: query ``d(q,b) − d(q,w)``, better its drop, worse minus its drop; per
    triplet, the query's occluded copies are embedded once for both partners."""
    maps_q, maps_b, maps_w, better, worse = [], [], [], [], []
    for i in range(len(q)):
        e = occlude_windows(model, q[i : i + 1], torch.stack([b[i], w[i]]), **settings)
        maps_q.append(e.map1[0] - e.map1[1])
        maps_b.append(e.map2[0])
        maps_w.append(-e.map2[1])
        better.append(e.score[0])
        worse.append(e.score[1])
    stack = torch.stack
    return (stack(maps_q), stack(maps_b), stack(maps_w)), torch.cat([stack(better), stack(worse)])


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
    ``h/w ∈ ratio``; ``h = round(√(area·ratio))``, ``w = round(√(area/ratio))``; the first try with ``h < H``
    and ``w < W`` is kept and its corner drawn uniformly among the positions where it fits. When none of the
    10 tries fits (only with extreme ``scale``/``ratio``), RandomErasing leaves the image unchanged; here the
    rectangle is empty (height and width 0): nothing is erased and it receives no credit. Draws come from
    ``generator`` on the CPU, so a seed gives the same rectangles on every device.

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


def pair_rectangles(
    pair_seeds: Sequence[int],
    samples: int,
    size1: tuple[int, int],
    size2: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """Rectangles ``B×N×4`` for image 1 and image 2: pair ``i``'s come from its own CPU generator seeded with
    ``pair_seeds[i]``, image 1's drawn before image 2's, so they never depend on the other pairs.

    Example:
        >>> r1, r2 = pair_rectangles([3, 3], 4, (16, 16), (8, 12), (0.1, 0.3), (1, 1.5))
        >>> r1.shape, torch.equal(r1[0], r1[1])
        (torch.Size([2, 4, 4]), True)
    """
    boxes1, boxes2 = [], []
    for generator in checks.generators(pair_seeds):
        boxes1.append(sample_rectangles(samples, *size1, scale, ratio, generator))
        boxes2.append(sample_rectangles(samples, *size2, scale, ratio, generator))
    return torch.stack(boxes1), torch.stack(boxes2)


def rectangle_spans(boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Boolean row spans ``B×N×H`` and column spans ``B×N×W`` of ``B×N×4`` boxes
    ``(top, left, height, width)``."""
    flat = boxes.reshape(-1, 4)
    rows = spans(flat[:, 0], flat[:, 2], height).view(*boxes.shape[:-1], height)
    cols = spans(flat[:, 1], flat[:, 3], width).view(*boxes.shape[:-1], width)
    return rows, cols


def ridge_rectangle_credit(
    drops: Tensor, rows1: Tensor, cols1: Tensor, rows2: Tensor, cols2: Tensor, ridge: float
) -> tuple[Tensor, Tensor]:
    """Per-pixel coefficients ``a1`` (``B×H1×W1``), ``a2`` of the ridge fit
    ``d_n ≈ Σ_p a1[p]·1[p ∈ R1_n] + Σ_q a2[q]·1[q ∈ R2_n] + c`` (docs/methods.md, Pairwise Occlusion).

    Solved in its dual form: with ``N`` samples and ``H·W`` pixels per image, the ``N×N`` Gram matrix of the
    indicators is the rectangles' overlap areas (row overlap × column overlap), so no pixel design matrix is
    built. With centred drops and indicators (the intercept ``c``), ``α = (K_c + λI)⁻¹ d_c`` and
    ``a_k = Σ_n α_n 1[R_k,n]``; ``λ = ridge · mean(diag K_c)`` makes ``ridge`` independent of the image size.

    Example:
        >>> rows = cols = spans(torch.tensor([0, 2, 0, 2]), 2, 4).unsqueeze(0)
        >>> empty = torch.zeros_like(rows)
        >>> a1, a2 = ridge_rectangle_credit(torch.tensor([[1.0, 0, 0, 0]]), rows, cols, empty, empty, 1e-6)
        >>> a1[0, 0, 0] > a1[0, 3, 3], a2.abs().max().item()
        (tensor(True), 0.0)
    """
    dtype = torch.float64  # the Gram matrix holds pixel counts; solve it in double precision
    samples = drops.shape[1]

    def overlaps(rows: Tensor, cols: Tensor) -> Tensor:
        r, c = rows.to(dtype), cols.to(dtype)
        return torch.einsum("bnh,bmh->bnm", r, r) * torch.einsum("bnw,bmw->bnm", c, c)

    gram = overlaps(rows1, cols1) + overlaps(rows2, cols2)
    centre = torch.eye(samples, dtype=dtype, device=drops.device) - 1.0 / samples
    gram = centre @ gram @ centre
    scale = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
    system = gram + (ridge * scale)[:, None, None] * torch.eye(samples, dtype=dtype, device=drops.device)
    targets = drops.to(dtype) - drops.to(dtype).mean(1, keepdim=True)
    alpha = torch.linalg.solve(system, targets.unsqueeze(-1))[..., 0]
    alpha = alpha.to(drops.dtype)
    return rectangle_sums(alpha, rows1, cols1), rectangle_sums(alpha, rows2, cols2)


CREDITS = ("norm", "regression")


@register(
    "pairwise-occlusion",
    "perturbation",
    "Random rectangle pairs erased in both images, softmax-weighted credit (proposed)",
    needs=("embeddings",),  # the credit rule compares the perturbed embeddings' norms
)
def pairwise_occlusion(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    samples: checks.Samples = 100,
    scale: Annotated[tuple[float, float], checks.number_range] = (0.1, 0.3),
    ratio: Annotated[tuple[float, float], checks.number_range] = (1, 1.5),
    fill: Annotated[str, checks.one_of(FILLS)] = "zero",
    temperature: Annotated[float, checks.positive_number] = 1.0,
    credit: Annotated[str, checks.one_of(CREDITS)] = "norm",
    ridge: Annotated[float, checks.positive_number] = 0.1,
    seed: checks.SeedSetting = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Pairwise Occlusion: both images erased at once; the softmax of the drops credits one rectangle per pair
    (docs/methods.md, Pairwise Occlusion).

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = simexplain.PairModel(encoder)
        >>> x = torch.rand(1, 3, 32, 32)
        >>> e = simexplain.explain(model, x, x.flip(-1), "pairwise-occlusion", samples=20, seed=0)
        >>> e.map1.shape, e.extras["rectangles1"].shape, float(max(e.map1.max(), e.map2.max())) > 0.99
        (torch.Size([1, 32, 32]), torch.Size([1, 20, 4]), True)

    For sample ``n``: ``d_n = s − sim(f(x1 with R1_n erased), f(x2 with R2_n erased))``;
    ``w = softmax(d / T)`` over the samples; the whole ``w_n`` goes to the rectangle of the image whose
    perturbed embedding has the smaller L2 norm (ties → image 2); each map is divided by its max (+1e-9).

    Args:
        samples: number of rectangle pairs ``N``.
        scale, ratio: RandomErasing's area fraction and aspect ratio (``h/w``) ranges; see
            :func:`sample_rectangles` (including the rule when no rectangle fits).
        fill: ``"zero"`` (paper), ``"mean"`` or ``"blur"``, as in Conditional Occlusion.
        temperature: softmax temperature ``T`` (``credit="norm"`` only).
        credit: ``"norm"`` (the paper's softmax credit above) or ``"regression"``: the maps are the per-pixel
            coefficients of a ridge fit of the drops on both images' rectangle indicators
            (:func:`ridge_rectangle_credit`), signed and in score units; the same rectangles and forwards.
        ridge: the regression's penalty relative to the mean squared indicator norm (``credit="regression"``
            only).
        seed: an int seeds every pair alike (with equal image sizes all pairs get the same rectangles), a list
            gives one seed per pair, ``None`` draws one from torch's global generator. Pair ``i``'s rectangles
            come from its own generator (:func:`pair_rectangles`), so its map depends only on its images, the
            settings and its seed, never on the other pairs or the batch size. ``config["seed"]`` records it.
        batch_size: images per forward (``batch_size // 2`` perturbed pairs); ``None`` = 8 on a CPU, 64 on
            a GPU.

    The rectangles themselves are kept (never recovered by looking for zero pixels, which would also credit
    genuinely black pixels): ``extras["rectangles1"]``/``["rectangles2"]`` are ``B×N×4``
    ``(top, left, height, width)``, ``extras["drops"]`` is ``B×N`` and ``extras["credited"]`` (``B×N``) says
    which image (1 or 2) got each weight.
    """
    # Defaults skip the checks: canonicalise the ranges so the config is the same either way.
    scale, ratio = checks.number_range("scale", scale), checks.number_range("ratio", ratio)
    config_seed, pair_seeds = checks.seeds(seed, x1.shape[0])
    boxes = pair_rectangles(pair_seeds, samples, x1.shape[-2:], x2.shape[-2:], scale, ratio)
    boxes = [b.to(x1.device) for b in boxes]  # outside inference mode: extras the caller may change
    with torch.inference_mode():
        erased = _erase_pairs(model, x1, x2, boxes, fill, batch_size)
        maps = _credit(erased, credit, temperature, ridge)
    config = {
        "samples": samples,
        "scale": list(scale),
        "ratio": list(ratio),
        "fill": fill,
        "temperature": temperature,
        "credit": credit,
        "ridge": ridge,
        "seed": config_seed,
    }
    return _pairwise_explanation(erased, maps, config)


class _ErasedPairs(NamedTuple):
    """Pairwise Occlusion's forwards: the clean scores ``[B]``, the drops ``B×N``, whether image 1's perturbed
    embedding has the smaller norm (``B×N``), the rectangles ``B×N×4`` of each image and their row/column
    spans."""

    score: Tensor
    drops: Tensor
    first_smaller: Tensor
    rectangles: tuple[Tensor, Tensor]
    spans: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]


def _erase_pairs(
    model: PairModel, x1: Tensor, x2: Tensor, rectangles: list[Tensor], fill: str, batch_size: int | None
) -> _ErasedPairs:
    """Both images of every sample erased at once, ``batch_size // 2`` perturbed pairs per forward (run
    under inference mode)."""
    batch_size = resolve_batch_size(batch_size, x1.device)
    rects1, rects2 = rectangles
    device, batch, samples = x1.device, x1.shape[0], rects1.shape[1]
    rows1, cols1 = rectangle_spans(rects1, *x1.shape[-2:])
    rows2, cols2 = rectangle_spans(rects2, *x2.shape[-2:])
    fill1, fill2 = fill_values(x1, fill), fill_values(x2, fill)
    z1, z2 = model.embed_pair(x1, x2)
    score = model.similarity(z1, z2)
    drops = score.new_empty(batch * samples)
    first_smaller = torch.empty(batch * samples, dtype=torch.bool, device=device)
    for part in chunk_slices(batch * samples, max(1, batch_size // 2)):
        flat = torch.arange(part.start, part.stop, device=device)
        pair, n = flat // samples, flat % samples
        za, zb = model.embed_pair(
            occlude(x1[pair], fill1[pair], rows1[pair, n], cols1[pair, n]),
            occlude(x2[pair], fill2[pair], rows2[pair, n], cols2[pair, n]),
        )
        drops[part] = score[pair] - model.similarity(za, zb)
        # Strictly smaller: ties credit image 2.
        first_smaller[part] = za.flatten(1).norm(dim=1) < zb.flatten(1).norm(dim=1)
    shape = (batch, samples)
    spans = ((rows1, cols1), (rows2, cols2))
    return _ErasedPairs(score, drops.view(shape), first_smaller.view(shape), (rects1, rects2), spans)


def _credit(erased: _ErasedPairs, credit: str, temperature: float, ridge: float) -> tuple[Tensor, Tensor]:
    """The two maps: the softmax credit of each sample to the image with the smaller perturbed embedding,
    scaled to a maximum of 1 (``"norm"``), or the ridge fit's coefficients (``"regression"``)."""
    (rows1, cols1), (rows2, cols2) = erased.spans
    if credit == "regression":
        return ridge_rectangle_credit(erased.drops, rows1, cols1, rows2, cols2, ridge)
    weights = torch.softmax(erased.drops / temperature, dim=1)
    map1 = rectangle_sums(weights * erased.first_smaller, rows1, cols1)
    map2 = rectangle_sums(weights * ~erased.first_smaller, rows2, cols2)
    return map1 / (map1.amax((1, 2), keepdim=True) + 1e-9), map2 / (map2.amax((1, 2), keepdim=True) + 1e-9)


def _pairwise_explanation(
    erased: _ErasedPairs, maps: tuple[Tensor, Tensor], config: dict[str, Any]
) -> PairExplanation:
    with torch.inference_mode():
        credited = torch.where(erased.first_smaller, 1, 2).to(torch.uint8)
    extras = {
        "rectangles1": erased.rectangles[0],
        "rectangles2": erased.rectangles[1],
        "drops": _plain(erased.drops),
        "credited": _plain(credited),
    }
    return PairExplanation(
        map1=_plain(maps[0]),
        map2=_plain(maps[1]),
        score=_plain(erased.score),
        method="pairwise-occlusion",
        config=config,
        extras=extras,
    )
