"""The Python examples of docs/interop.md run, in order, in a fresh process."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "interop.md"


def test_interop_examples_run():
    for module in ("captum", "pytorch_grad_cam", "onnxruntime", "onnx"):
        pytest.importorskip(module)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 8
    script = "\n".join(blocks) + "\nprint('done')\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "needs a differentiable model" in result.stdout and result.stdout.endswith("done\n")
