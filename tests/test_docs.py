"""The examples in docs/architecture.md run (in a subprocess: they register a method and a metric)."""

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

CHECK = """
import torch, simexplain
from simexplain import metrics
model = simexplain.PairModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3)))
x1, x2 = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
e = simexplain.explain(model, x1, x2, "gradient-power", power=3)
assert e.config == {"power": 3.0}, e.config
r = metrics.evaluate(model, x1, x2, e, ["BASE"])
assert torch.allclose(r["BASE"], model(x1, x2).double()), r
try:
    simexplain.service.prepare(["gradient-power"], {"power": "-1"})
except simexplain.SimexplainError as error:
    assert "power" in str(error)
else:
    raise AssertionError("power=-1 was accepted")
"""


def test_architecture_examples_register_a_working_method_and_metric():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    runnable = [b for b in blocks if "@register" in b or "@metrics.register" in b]
    assert len(runnable) == 2
    script = "\n".join(runnable) + CHECK
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
