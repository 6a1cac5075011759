"""Pair figures: object-API rendering (no pyplot), PNG/SVG bytes and files, a layout fitting the images."""

import pathlib
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
import torch

import simexplain
from simexplain import SimexplainError
from simexplain.explanation import PairExplanation
from simexplain.figures.pairs import pair_figure, render_figure, save_figure
from simexplain.preprocessing import IDENTITY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _explanation(h1, w1, h2, w2, *, method="input-x-gradient", score=0.25, view=None, grid=False):
    """One pair's explanation; ``view`` is the transformed second image the maps belong to, if any."""
    fields = dict(
        map1=torch.rand(1, h1, w1),
        map2=torch.rand(1, h2, w2),
        score=None if score is None else torch.tensor([score]),
        grid1=torch.rand(1, 2, 3) if grid else None,
        grid2=torch.rand(1, 2, 3) if grid else None,
        method=method,
    )
    if view is not None:  # the transformed view lives in ``extras`` (older versions: an ``image2`` field)
        if "extras" in PairExplanation.__dataclass_fields__:
            fields["extras"] = {"image2": view}
        else:
            fields["image2"] = view
    return PairExplanation(**fields)


def test_figures_render_without_pyplot_in_a_fresh_process(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, pathlib, torch
        import simexplain
        from simexplain.explanation import PairExplanation
        from simexplain.figures import pairs, render_figure, sanity
        from simexplain.preprocessing import IDENTITY
        e = PairExplanation(map1=torch.rand(1, 16, 24), map2=torch.rand(1, 16, 24), score=[0.5], method="m")
        fig = pairs.pair_figure(torch.rand(1, 3, 16, 24), torch.rand(1, 3, 16, 24), [e], IDENTITY, title="t")
        out = pathlib.Path({str(tmp_path)!r})
        (out / "fig.png").write_bytes(pairs.render_figure(fig, "png", dpi=40))
        (out / "fig.svg").write_bytes(render_figure(fig, format="svg"))
        print("pyplot loaded:", "matplotlib.pyplot" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "pyplot loaded: False" in run.stdout
    assert (tmp_path / "fig.png").read_bytes().startswith(PNG_SIGNATURE)
    root = ET.fromstring((tmp_path / "fig.svg").read_bytes())
    assert root.tag.endswith("svg")


def test_the_package_never_imports_pyplot_or_switches_the_backend():
    package = pathlib.Path(simexplain.__file__).parent
    importing = re.compile(r"^\s*(import|from)\s+matplotlib(\.pyplot|\s+import\s.*\bpyplot\b)", re.MULTILINE)
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert not importing.search(text), source
        assert "matplotlib.use(" not in text and "pylab" not in text, source


def test_save_figure_writes_through_render_figure(tmp_path):
    e = _explanation(12, 12, 12, 12)
    fig = pair_figure(torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12), [e], IDENTITY)
    written = save_figure(fig, tmp_path / "pair.PNG")
    assert written == [str(tmp_path / "pair.png"), str(tmp_path / "pair.svg")]
    assert (tmp_path / "pair.png").read_bytes().startswith(PNG_SIGNATURE)
    ET.fromstring((tmp_path / "pair.svg").read_bytes())
    assert save_figure(fig, tmp_path / "only.svg") == [str(tmp_path / "only.svg")]
    assert not (tmp_path / "only.png").exists()
    with pytest.raises(SimexplainError) as info:
        save_figure(fig, tmp_path / "pair.nope")
    assert "\n" not in str(info.value) and "'nope'" in str(info.value)
    assert not (tmp_path / "pair.nope").exists()
    with pytest.raises(SimexplainError):
        render_figure(fig, "nope")


def test_titles_keep_method_score_and_transformed_view():
    view = torch.rand(1, 3, 10, 10)
    explanations = [
        _explanation(10, 10, 10, 10, score=0.5),
        _explanation(10, 10, 10, 10, view=view, grid=True),
    ]
    fig = pair_figure(torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 10), explanations, IDENTITY, title="T")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["image 1", "image 2"]
    assert titles[2] == "input-x-gradient   s = 0.500" and titles[3] == "map 2"
    assert titles[5] == "map 2 (on its transformed view)"
    assert fig.get_suptitle() == "T"
    overlays = [ax.images[1] for ax in fig.axes[2:6]]
    assert all(im.get_cmap().name == "inferno" and im.get_alpha() == 0.6 for im in overlays)


@pytest.mark.parametrize("title", [None, "a pair"])
def test_rows_fit_non_square_images_and_the_colour_bar_spans_the_map_rows(title):
    x1, x2 = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 96, 48)  # wide and tall
    view = torch.rand(1, 3, 40, 40)
    explanations = [
        _explanation(64, 128, 96, 48),
        _explanation(64, 128, 8, 8, view=view, grid=True, method="averaged-transforms"),  # map at grid size
    ]
    fig = pair_figure(x1, x2, explanations, IDENTITY, title=title)
    fig.canvas.draw()  # applies the image axes' aspect
    width, height = fig.get_size_inches()

    rows: dict[int, list] = {}
    bars = []
    for ax in fig.axes:
        if not ax.images:
            bars.append(ax)
            continue
        image_h, image_w = ax.images[0].get_array().shape[:2]
        box = ax.get_position()
        assert box.height * height / (box.width * width) == pytest.approx(image_h / image_w, rel=0.01)
        heat_extent = [im.get_extent() for im in ax.images]
        assert all(extent == heat_extent[0] for extent in heat_extent), "the map must cover its image"
        rows.setdefault(ax.get_subplotspec().rowspan.start, []).append(ax)
    assert sorted(rows) == [0, 1, 2] and all(len(r) == 2 for r in rows.values())

    cells = {}
    for r, axes in rows.items():
        cell = axes[0].get_subplotspec().get_position(fig)
        cells[r] = cell
        tallest = max(axes, key=lambda ax: ax.get_position().height)
        # No blank band: the row is exactly as tall as its tallest image, which fills its cell.
        assert tallest.get_position().height == pytest.approx(cell.height, rel=0.01)
        assert tallest.get_position().width == pytest.approx(cell.width, rel=0.01)
    used = sum(cells[r].height for r in cells) * height
    assert height - used < 0.45 * len(cells) + (0.5 if title else 0.2)  # only titles and thin margins remain

    (bar,) = bars
    box = bar.get_position()
    assert box.y1 == pytest.approx(cells[1].y1, abs=1e-3)  # from the top of the first map row
    assert box.y0 == pytest.approx(cells[2].y0, abs=1e-3)  # to the bottom of the last
    assert box.y1 < cells[0].y0
