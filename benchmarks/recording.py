"""What the benchmark scripts share: running one of them on another source tree, and writing a result.

A script imports it as a sibling (``python benchmarks/NAME.py`` puts ``benchmarks/`` first on the path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_in_tree(
    script: str, src: str, args: Sequence[str] = (), *, env: dict | None = None, cwd: Path | None = None
) -> dict:
    """Run ``script --child ARGS`` in a fresh process whose ``PYTHONPATH`` puts the tree ``src`` first (plus
    ``env``); its last stdout line is the JSON it reports."""
    environment = {**os.environ, "PYTHONPATH": os.path.abspath(src), **(env or {})}
    command = [sys.executable, script, "--child", *args]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True, cwd=cwd)
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_result(stem: str, result: dict, markdown: Callable[[dict], str]) -> None:
    """``results/STEM.json`` and ``results/STEM.md`` (made by ``markdown``), and the Markdown printed."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
