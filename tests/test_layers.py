"""The layers as a contract: lint-imports keeps it, docs/architecture.md draws exactly it, and each interop
extra registers only its own methods (checked in fresh processes with the other package hidden)."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]

# A fresh process where ``hidden`` cannot be imported (None in sys.modules blocks an import); it prints the
# optional methods it lists and the refusal of one method of the hidden family.
LISTING = """
import sys
sys.modules[{hidden!r}] = None
import simexplain
names = list(simexplain.methods.available())
print(sorted({{name.split(":")[0] for name in names if ":" in name}}))
try:
    simexplain.methods.get({refused!r})
except simexplain.SimexplainError as error:
    print(error)
"""


def _listing(hidden: str, refused: str) -> list[str]:
    code = LISTING.format(hidden=hidden, refused=refused)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()


def _contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return layers


@pytest.mark.skipif(importlib.util.find_spec("pytorch_grad_cam") is None, reason="needs simexplain[gradcam]")
def test_the_gradcam_extra_alone_lists_no_captum_method():
    families, refusal = _listing("captum", "captum:Saliency")
    assert families == "['grad-cam']"
    assert refusal.startswith("method 'captum:Saliency' is not available: it needs the captum package")
    assert refusal.endswith("pip install 'simexplain[captum]'")


@pytest.mark.skipif(importlib.util.find_spec("captum") is None, reason="needs simexplain[captum]")
def test_the_captum_extra_alone_lists_no_gradcam_method():
    families, refusal = _listing("pytorch_grad_cam", "grad-cam:GradCAM")
    assert families == "['captum']"
    assert "pip install 'simexplain[gradcam]'" in refusal


@pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None, reason="dev")
def test_the_import_contract_holds():
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def test_the_architecture_picture_is_the_contract():
    text = (ROOT / "docs" / "architecture.md").read_text()
    picture = re.search(r"## The layers\n.*?```\n(.*?)```", text, re.S).group(1)
    # A layer's line starts at the margin; its first column (up to two spaces) is the contract's expression.
    drawn = [re.split(r"\s{2,}", line)[0] for line in picture.splitlines() if line[:1].strip()]
    assert drawn == _contract_layers()


def test_every_module_has_its_place_in_the_contract():
    layers = {name.strip() for layer in _contract_layers() for name in layer.split("|")}
    package = ROOT / "src" / "simexplain"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert modules == layers
