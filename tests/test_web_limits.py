"""The work a request asks for, as the server counts it: the counts equal what the methods and metrics do.

The server caps each unit of work (``serve --max-...``) from the ``checks.Work`` declarations of the method
parameters and metric options; these tests hold the declared counts to the methods' own windows, patches and
curve points, and check that every method's defaults fit the default caps.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")

from simexplain import checks, service  # noqa: E402
from simexplain.errors import SimexplainError  # noqa: E402
from simexplain.methods import available, explain, get  # noqa: E402
from simexplain.methods.occlusion import image_windows  # noqa: E402
from simexplain.metrics.insertion_deletion import curve_fractions  # noqa: E402
from simexplain.web.limits import DEFAULT_LIMITS, asked_work, work_limits  # noqa: E402


@pytest.mark.parametrize("height, width", [(32, 32), (224, 224), (30, 47)])
@pytest.mark.parametrize("window, stride", [(4, 1), (8, 3), (64, 8), (5, 5), (100, 7)])
def test_sliding_windows_count_the_windows_of_conditional_occlusion(height, width, window, stride):
    windows = image_windows(height, width, window, stride)
    expected = len(windows.row_starts) * len(windows.col_starts)
    assert checks.sliding_windows({"window": window, "stride": stride}, (height, width)) == expected


def test_the_counted_windows_are_the_ones_the_method_slides():
    from tiny import evaluation_model

    model = evaluation_model()
    x = torch.rand(1, 3, 32, 32)
    request = service.prepare("conditional-occlusion", {"window": 6, "stride": 4})
    (asked,) = asked_work(request, (32, 32))
    e = explain(model, x, x.flip(-1), "conditional-occlusion", **request.methods[0].params)
    assert asked.count == e.extras["row_starts1"].shape[1] * e.extras["col_starts1"].shape[1] == 64


@pytest.mark.parametrize("step", [1, 6, 224, 5000])
def test_curve_points_count_the_points_of_the_curves(step):
    request = service.prepare("input-x-gradient", {"metrics.step": step}, metrics="SI")
    (asked,) = asked_work(request, (30, 40))
    assert (asked.setting, asked.unit) == ("metrics.step", "curve-points")
    assert asked.count == curve_fractions(30, 40, step).numel()


def test_patches_count_the_features_captum_ablates():
    captum_methods = pytest.importorskip("simexplain.interop.captum_methods")
    x = torch.zeros(1, 3, 30, 47)
    for patch in (1, 7, 16, 64):
        first, _ = captum_methods.patch_masks(x, x, patch)
        assert checks.patch_grid({"patch": patch}, (30, 47)) == int(first.max()) + 1


def test_every_method_fits_the_default_caps_with_its_own_defaults():
    for name in available():
        request = service.prepare(name)
        for asked in asked_work(request, (224, 224)):
            assert asked.count <= DEFAULT_LIMITS[asked.unit], (name, asked)


def test_work_declarations_and_limits_refuse_what_they_do_not_know():
    with pytest.raises(SimexplainError, match="unknown work unit 'hours'"):
        checks.Work("hours")
    with pytest.raises(SimexplainError, match="no work unit 'hours'"):
        work_limits({"hours": 3})
    with pytest.raises(SimexplainError, match="--max-steps must be a positive integer"):
        work_limits({"steps": 0})
    assert get("smooth-grad").work() == {"samples": checks.Work("samples")}
