"""``benchmarks/gpu.py --dry-run``: the GPU script runs end to end on tiny sizes, so it cannot rot."""

import importlib.util
import json
import sys
from pathlib import Path

GPU_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_the_gpu_script_runs_dry_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("gpu_script", GPU_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # dataclasses look their module up
    spec.loader.exec_module(script)
    assert script.main(["--dry-run", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["dry_run"] and "dry run" in result["device"]
    engines = {(r["engine"], r["precision"]) for r in result["forward"]}
    assert {("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32")} <= engines
    assert all(r["max_relative"] < (3e-2 if r["precision"] == "bf16" else 1e-4) for r in result["forward"])
    assert {r["family"] for r in result["families"]} == {"saliency", "perturbation", "activation"}
    assert result["table"][0]["failed"] == 0 and result["table"][0]["pairs_per_hour"] > 0
    assert "# simexplain on CPU" in (tmp_path / "gpu.md").read_text()
