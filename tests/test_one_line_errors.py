"""Raw errors of bad inputs become one line with the promised exit status: 2 for what is found before any
model work (image paths, a point outside the input, a box with a negative number, an unusable cache folder),
1 for what only the model run finds (an ONNX output that is not N×D, a python: target that builds nothing, a
refused checkpoint, without torch's warnings first)."""

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import simexplain
from simexplain import SimexplainError, service
from simexplain.cli import main

TESTS = Path(__file__).resolve().parent
CAT, COFFEE = (str(simexplain.sample_path(n)) for n in ("chelsea.jpg", "coffee.jpg"))
TINY = ["--model", "python:tiny:evaluation_model"]


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if the command reaches the model."""

    def refuse(*args, **kwargs):
        raise AssertionError("model work started before the arguments were checked")

    monkeypatch.setattr(service, "get_model", refuse)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("simexplain: error:"), err
    return err


@pytest.mark.parametrize(
    "args, words",
    [
        (["explain", CAT, "missing.jpg"], "missing.jpg: no such file"),
        (["explain", "missing.jpg", COFFEE, "--face-box", "1,2,3,4"], "missing.jpg: no such file"),
        (["explain", CAT, COFFEE, "--face-box", "-100,-100,150,150"], "X, Y must be ≥ 0"),
        (["explain", CAT, COFFEE, "--face-box", "5,5,9,9", "--face-box", "-1,0,5,5"], "X, Y must be ≥ 0"),
        (["explain", CAT, COFFEE, "--method", "pair-interaction", "--point", "1:224,5"], "outside"),
        (["explain", "--demo", "--method", "pair-interaction", "--point", "2:-3,5"], "non-negative"),
    ],
)
def test_inputs_boxes_and_points_exit_2_before_any_model_work(args, words, no_model_work, capsys):
    assert main(args) == 2
    assert words in one_line(capsys)


def test_image_paths_are_checked_before_model_work_and_contents_when_read(tmp_path, no_model_work, capsys):
    empty, folder = tmp_path / "empty.png", tmp_path / "folder.png"
    empty.write_bytes(b"")
    folder.mkdir()
    for bad, words in ((empty, "empty file"), (folder, "not a regular file")):
        assert main(["explain", CAT, str(bad)]) == 2
        assert f"{bad}: {words}" in one_line(capsys)


def test_a_point_outside_a_routes_input_is_refused_once_its_size_is_known(capsys, monkeypatch):
    from simexplain import methods

    def refuse(*args, **kwargs):
        raise AssertionError("a method ran")

    monkeypatch.setattr(methods, "explain", refuse)
    monkeypatch.syspath_prepend(str(TESTS))
    args = ["explain", CAT, COFFEE, *TINY, "--method", "pair-interaction", "--point", "1:31,32"]
    assert main(args) == 2  # the tiny model's input is 32×32: only the built model says so
    assert "--point 1:31,32 lies outside the model's 32×32 input" in one_line(capsys)


def test_a_cache_folder_that_cannot_be_used_exits_2_before_model_work(tmp_path, no_model_work, capsys):
    file = tmp_path / "file"
    file.write_text("not a folder")
    args = ["retrieve", CAT, str(Path(CAT).parent), "--top", "1", "--cache"]
    assert main([*args, str(file)]) == 2
    assert f"--cache {file}: a file, not a folder" in one_line(capsys)
    assert main([*args, str(file / "below")]) == 2
    assert "cannot create the folder" in one_line(capsys)


def test_a_corrupt_cache_entry_is_one_warning_line_on_stderr(tmp_path):
    gallery, cache = tmp_path / "gallery", tmp_path / "cache"
    gallery.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        (gallery / name).write_bytes(simexplain.sample_path(name).read_bytes())
    command = [sys.executable, "-m", "simexplain", "retrieve", CAT, str(gallery), "--top", "1", *TINY]
    command += ["--method", "input-x-gradient", "--cache", str(cache), "--keep-query"]  # both images cached
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    assert subprocess.run(command, env=environment, capture_output=True, timeout=300).returncode == 0
    for entry in cache.rglob("*.pt"):
        entry.write_bytes(b"\x80\x02 corrupt")
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert "CacheWarning: retrieval cache" in line and "2 entries not usable" in line, line
    assert "weights_only" not in line and "embedded now" in done.stdout


def test_an_onnx_output_that_is_not_one_row_per_image_is_one_line(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    def graph(name, node, shape):
        images = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
        model = helper.make_model(
            helper.make_graph([node], name, [images], [out]), opset_imports=[helper.make_opsetid("", 13)]
        )
        onnx.save(model, tmp_path / f"{name}.onnx")
        return f"onnx:{tmp_path / name}.onnx"

    scalar = graph("scalar", helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0), [])
    batch = graph("batch", helper.make_node("ReduceMean", ["x"], ["y"], axes=[0], keepdims=1), [1, 3, 8, 8])
    with pytest.raises(SimexplainError, match="scalar.onnx: its first output is a scalar"):
        simexplain.load_model(scalar)
    import torch

    with pytest.raises(SimexplainError, match=r"shape \[1, 3, 8, 8\] for 2 images; .* \(N×D\)"):
        simexplain.load_model(batch).embed(torch.rand(2, 3, 8, 8))
    args = [
        "explain",
        CAT,
        COFFEE,
        "--method",
        "conditional-occlusion",
        "--set",
        "window=4",
        "--set",
        "stride=4",
    ]
    assert main([*args, "--model", batch]) == 1
    assert "batch.onnx: its first output has shape [1, 3, 8, 8]" in one_line(capsys)


def test_a_python_target_that_is_not_a_model_builder_is_one_line(capsys):
    for target, words in (("os:getcwd", "unexpected keyword argument 'weights'"), ("json:dumps", "'obj'")):
        assert main(["explain", "--demo", "--model", f"python:{target}", "--method", "input-x-gradient"]) == 1
        err = one_line(capsys)
        assert f"python:{target}: not a model builder" in err and words in err


class _Calls:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_refused_checkpoint_is_one_line_without_torchs_warnings(tmp_path, capsys):
    path = tmp_path / "code.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state": _Calls()}, handle, protocol=4)  # a protocol torch warns about
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["explain", "--demo", "--weights", str(path), "--method", "input-x-gradient"]) == 1
    assert "could run code" in one_line(capsys)
    assert not [str(w.message) for w in caught if "pickle" in str(w.message)]


@pytest.mark.parametrize(
    "args, words",
    [
        (["explain", "--demo", "--engine", "bogus"], "invalid choice: 'bogus'"),
        (["explain", "--demo", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (["evaluate"], "the following arguments are required: --pairs, --db"),
    ],
)
def test_argparses_own_refusals_are_one_line_too(args, words, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(args)
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and err.count("\n") == 0 and words in err, err
    assert err.startswith("simexplain") and err.endswith("--help)")  # where the usage is, not the usage
