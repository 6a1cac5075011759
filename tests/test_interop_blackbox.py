"""Black-box models (a score function, an ONNX encoder) and the optional extras' absence."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from tiny import small_pair_model

import simexplain

METRICS = ["SI", "SD", "CI", "CD", "SAD", "CAD"]


def same_metrics(model_a, model_b, x1, x2, explanation, step=32):
    a = simexplain.metrics.evaluate(model_a, x1, x2, explanation, METRICS, step=step)
    b = simexplain.metrics.evaluate(model_b, x1, x2, explanation, METRICS, step=step)
    for name in METRICS:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_score_function_gives_the_models_occlusion_maps_and_metrics():
    model = small_pair_model(seed=2)
    calls = []

    def score(images1, images2):  # a service returning numpy, no gradients
        calls.append(len(images1))
        with torch.no_grad():
            return model(images1, images2).numpy()

    black_box = simexplain.PairModel.from_score_function(score, batch_size=16)
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    ours = simexplain.explain(black_box, x1, x2, "conditional-occlusion", window=8, stride=4)
    reference = simexplain.explain(model, x1, x2, "conditional-occlusion", window=8, stride=4)
    torch.testing.assert_close(ours.map1, reference.map1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.map2, reference.map2, rtol=1e-5, atol=1e-6)
    assert calls and max(calls) <= 16  # the function is called in chunks of at most batch_size pairs
    same_metrics(black_box, model, x1, x2, reference)


def test_gradient_and_activation_methods_refuse_a_black_box_in_one_line():
    black_box = simexplain.PairModel.from_score_function(lambda a, b: torch.zeros(len(a)), name="service")
    x = torch.rand(1, 3, 8, 8)
    for method in ("input-x-gradient", "interaction-cam", "captum:IntegratedGradients", "grad-cam:GradCAM"):
        if method not in simexplain.methods.available():
            continue
        with pytest.raises(simexplain.SimexplainError) as error:
            simexplain.explain(black_box, x, x, method)
        message = str(error.value)
        assert "needs a differentiable model" in message and "'service'" in message and "\n" not in message
    # pairwise occlusion credits the image whose perturbed embedding is smaller: a score function has none
    with pytest.raises(simexplain.SimexplainError, match="needs a model with embeddings"):
        simexplain.explain(black_box, x, x, "pairwise-occlusion")
    # an embedding function has embeddings: pairwise occlusion runs on it
    embedder = simexplain.PairModel.from_embedding_function(lambda images: images.mean((2, 3)))
    assert simexplain.explain(embedder, x, x, "pairwise-occlusion", samples=2, seed=0).map1.shape == (1, 8, 8)
    # the registry's checked function refuses it too (direct calls)
    from simexplain.methods.saliency import input_x_gradient

    with pytest.raises(simexplain.SimexplainError, match="differentiable"):
        input_x_gradient(black_box, x, x)


def test_perturbation_methods_from_captum_run_on_a_black_box():
    pytest.importorskip("captum")
    model = small_pair_model()
    black_box = simexplain.PairModel.from_embedding_function(lambda x: model.embed(x).numpy())
    x1, x2 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    ours = simexplain.explain(black_box, x1, x2, "captum:Occlusion", window=8, stride=4)
    reference = simexplain.explain(model, x1, x2, "captum:Occlusion", window=8, stride=4)
    torch.testing.assert_close(ours.map1, reference.map1, rtol=1e-5, atol=1e-6)


def test_score_function_output_is_checked():
    bad = simexplain.PairModel.from_score_function(lambda a, b: np.zeros(3))
    with pytest.raises(simexplain.SimexplainError, match="3 scores for 2 pairs"):
        bad(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))


def test_onnx_export_gives_the_same_embeddings_and_occlusion_maps(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from simexplain.interop.onnx import export_encoder

    model = small_pair_model(seed=1)
    path = export_encoder(model, tmp_path / "tiny.onnx", (16, 16))
    loaded = simexplain.load_model(f"onnx:{path}", batch_size=3)
    assert not loaded.differentiable and loaded.preprocessing.input_size == (16, 16)
    x1, x2 = torch.rand(5, 3, 16, 16), torch.rand(5, 3, 16, 16)
    torch.testing.assert_close(loaded.embed(x1), model.embed(x1).detach(), rtol=0, atol=1e-4)
    ours = simexplain.explain(loaded, x1[:2], x2[:2], "conditional-occlusion", window=8, stride=4)
    reference = simexplain.explain(model, x1[:2], x2[:2], "conditional-occlusion", window=8, stride=4)
    torch.testing.assert_close(ours.map1, reference.map1, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.map2, reference.map2, rtol=1e-4, atol=1e-5)
    with pytest.raises(simexplain.SimexplainError, match="needs a differentiable model"):
        simexplain.explain(loaded, x1, x2, "pair-grad-cam")


def test_onnx_route_errors_are_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(simexplain.SimexplainError, match="no ONNX file"):
        simexplain.load_model(f"onnx:{tmp_path / 'missing.onnx'}")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(simexplain.SimexplainError, match="cannot load") as error:
        simexplain.load_model(f"onnx:{tmp_path / 'junk.onnx'}")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_onnx_export_of_the_default_model(tmp_path):
    from simexplain.interop.onnx import export_encoder

    model = simexplain.load_model("efficientnet-lite0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_encoder(model, tmp_path / "default.onnx")
    loaded = simexplain.load_model(f"onnx:{path}")
    x1, x2 = torch.rand(2, 3, 224, 224), torch.rand(2, 3, 224, 224)
    torch.testing.assert_close(loaded.embed(x1), model.embed(x1).detach(), rtol=0, atol=1e-4)
    ours = simexplain.explain(loaded, x1, x2, "conditional-occlusion", window=64, stride=32)
    reference = simexplain.explain(model, x1, x2, "conditional-occlusion", window=64, stride=32)
    torch.testing.assert_close(ours.map1, reference.map1, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_score_function_wrapping_the_default_model():
    model = simexplain.load_model("efficientnet-lite0")
    black_box = simexplain.PairModel.from_score_function(lambda a, b: model(a, b), batch_size=32)
    x1, x2 = torch.rand(1, 3, 224, 224), torch.rand(1, 3, 224, 224)
    ours = simexplain.explain(black_box, x1, x2, "conditional-occlusion", window=64, stride=32)
    reference = simexplain.explain(model, x1, x2, "conditional-occlusion", window=64, stride=32)
    torch.testing.assert_close(ours.map1, reference.map1, rtol=1e-4, atol=1e-5)
    same_metrics(black_box, model, x1, x2, reference, step=224 * 224 // 8)  # 8 points per curve


MISSING = """
import sys
for name in ("captum", "pytorch_grad_cam", "onnxruntime"):
    sys.modules[name] = None  # as if the extras were not installed
import simexplain
names = list(simexplain.methods.available())
assert not any(n.startswith(("captum:", "grad-cam:")) for n in names), names
assert "input-x-gradient" in names
for name, extra in (("captum:IntegratedGradients", "captum"), ("grad-cam:GradCAM", "gradcam")):
    try:
        simexplain.methods.get(name)
    except simexplain.SimexplainError as error:
        assert f"pip install 'simexplain[{extra}]'" in str(error) and "\\n" not in str(error), error
    else:
        raise AssertionError(name)
try:
    simexplain.load_model("onnx:model.onnx")
except simexplain.SimexplainError as error:
    assert "simexplain[onnx]" in str(error), error
else:
    raise AssertionError("onnx")
from simexplain.cli import main
assert main(["explain", "--demo", "--method", "captum:Saliency"]) == 2
"""


def test_missing_extras_remove_the_methods_and_name_the_extra():
    result = subprocess.run([sys.executable, "-c", MISSING], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "simexplain[captum]" in result.stderr  # the command line's one-line error
