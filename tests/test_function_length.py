"""No function in src/ is longer than 80 lines (from its ``def`` to its last line, docstring included): a
longer one usually hides two, a plan and its execution or two strategies behind an ``if``."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "simexplain"
LIMIT = 80
# Functions allowed to stay longer (none today). An entry that is no longer too long fails the test too, so
# the list cannot go stale.
ALLOWED: set[tuple[str, str]] = set()


def function_lengths(root: Path = SRC) -> list[tuple[int, str, str]]:
    """``(lines, file relative to root, function name)`` of every function, method and nested function,
    longest first."""
    rows = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                rows.append((node.end_lineno - node.lineno + 1, path.relative_to(root).as_posix(), node.name))
    return sorted(rows, reverse=True)


def test_no_function_is_longer_than_80_lines():
    rows = function_lengths()
    too_long = [f"{file}:{name} ({lines} lines)" for lines, file, name in rows if lines > LIMIT]
    assert [entry for entry in too_long if tuple(entry.split(" ")[0].split(":")) not in ALLOWED] == []
    stale = ALLOWED - {(file, name) for lines, file, name in rows if lines > LIMIT}
    assert not stale, f"no longer over {LIMIT} lines: remove {sorted(stale)} from ALLOWED"


def test_lengths_count_from_the_def_to_the_last_line_for_methods_and_nested_functions(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "@decorator\n"
        "def f(x):\n"
        '    """Doc."""\n'
        "\n"
        "    def inner():\n"
        "        return x\n"
        "    return inner\n"
        "\n"
        "\n"
        "class C:\n"
        "    async def g(self):\n"
        "        pass\n"
    )
    assert function_lengths(tmp_path) == [
        (6, "pkg/m.py", "f"),
        (2, "pkg/m.py", "inner"),
        (2, "pkg/m.py", "g"),
    ]
