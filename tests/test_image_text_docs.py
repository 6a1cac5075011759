"""The worked example of docs/image_text.md runs (in a subprocess) and its claims hold."""

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "image_text.md"

CHECK = """
assert e.map1.shape == (2, 32, 32) and e.token_scores.shape == (2, 5), (e.map1.shape, e.token_scores.shape)
assert e.words[0] == ["#0", "#1", "#2", "#3", "#4"] and (e.token_scores[1, 3:] == 0).all()
assert pairs.interaction.shape == (2, 8, 8, 5) and pairs.match(word=1).shape == (2, 32, 32)
assert len(pairs.match((10, 20))[1]) == 3
assert m.map.shape == (1, 32, 32) and torch.allclose(m.margin, m.score_better - m.score_worse)
assert sorted(r) == ["CAD", "CD", "CI", "WD", "WI", "base"], sorted(r)
"""


def test_the_worked_example_runs_and_says_what_it_shows():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (example,) = [b for b in blocks if "VOCAB" in b]
    result = subprocess.run(
        [sys.executable, "-c", example + CHECK], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
