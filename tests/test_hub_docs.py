"""The hf: examples of docs/models.md run offline, on tiny models cached under the published names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from hub_cache import save_repo, tiny_models  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"
NAMES = {
    "facebook/dinov2-small": "simexplain-tests/dinov2",
    "facebook/dinov2-with-registers-small": "simexplain-tests/dinov2-reg",
    "openai/clip-vit-base-patch32": "simexplain-tests/clip",
}


def test_the_hf_examples_of_the_published_names_section_run(tmp_path):
    models = tiny_models(clip_projection=64)  # pair-interaction's projection=64 needs 64 dimensions
    for name, tiny in NAMES.items():
        save_repo(tmp_path / "hub", name, *models[tiny])
    section = DOC.read_text(encoding="utf-8").split("## Models by their published names")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    runnable = [b for b in blocks if "hf:" in b and "open_clip:" not in b and "timm:" not in b]
    assert len(runnable) == 2
    environment = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    environment.pop("HF_HUB_CACHE", None)
    script = "\n".join(runnable) + "\nprint('done')\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=environment
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "register_tokens=4" in result.stdout and result.stdout.endswith("done\n")
