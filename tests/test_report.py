"""Reports of evaluation stores: stores written here with the Store API and known values (no driver, no
model), then pairs.csv, the tables, the figures and the downstream correlation checked against numpy."""

import csv
import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from simexplain import SimexplainError
from simexplain.studies.render import tex_escape
from simexplain.studies.report import parse_downstream, write_report
from simexplain.studies.store import Item, Pair, Store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL = ("SI", "SD", "CI", "CD", "SAD", "CAD")
IXG = "input-x-gradient"
OCC = "conditional-occlusion"
CAM = "interaction-cam[reduction=max;gradient_interaction=true]"
VARIANTS = [
    (OCC, "conditional-occlusion", {}, "Conditional Occlusion"),
    (CAM, "interaction-cam", {"reduction": "max", "gradient_interaction": True}, "Int-CAM max GI"),
    (IXG, "input-x-gradient", {}, "Input×Gradient"),
]
LABELS = [v[0] for v in VARIANTS]


def _values(seed, pairs, labels=LABELS, metrics=ALL):
    """Known metric values: (pair, label, metric) → value, drawn from a seeded generator."""
    rng = np.random.default_rng(seed)
    return {(p, v, m): float(rng.uniform(0.05, 0.95)) for p in pairs for v in labels for m in metrics}


def _store(path, model, values, *, metrics=ALL, variants=VARIANTS, seconds=None, errors=(), fingerprint="f1"):
    """A store of ``model`` holding ``values`` (plus an auxiliary CI_1 row per item that tables must not
    show), ``seconds[label]`` per explanation, and ``errors``: failed (pair, label) items."""
    pairs = sorted({p for p, _, _ in values} | {p for p, _ in errors})
    with Store(path) as store:
        store.check_run(
            {"model": model, "weights_sha256": None, "fingerprint": fingerprint},
            {"settings": {"variants": [v[0] for v in variants], "metrics": list(metrics), "seed": 0}},
        )
        store.set_variants(variants)
        done = sorted({(p, v) for p, v, _ in values})
        items = [Item(p, v, (seconds or {}).get(v, 0.5), {}, "cpu", 4) for p, v in done]
        items += [Item(p, v, None, {}, "cpu", 4, "image unreadable") for p, v in errors]
        rows = [(p, v, m, value) for (p, v, m), value in values.items()]
        rows += [(p, v, "CI_1", 0.5) for p, v in done]
        store.write([Pair(p, f"{p}.jpg", None, 1) for p in pairs], items, rows, [])
    return path


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _report(tmp_path, stores, **options):
    notes = []
    written = write_report(stores, tmp_path / "out", log=notes.append, **options)
    return tmp_path / "out", written, notes


def _cells(out, table, model=None):
    """tables.csv rows of one table as (label, metric) → row."""
    rows = _read_csv(out / "tables.csv")
    return {
        (r["method"], r["metric"]): r for r in rows if r["table"] == table and model in (None, r["model"])
    }


def test_pairs_csv_rows_exactly(tmp_path):
    a = _values(0, ["p2", "p1", "p10"], metrics=ALL + ("MS",))
    a["p1", IXG, "SAD"] = None  # undefined: an empty value
    b = _values(1, ["q1"], labels=[IXG], metrics=("SD",))
    _store(tmp_path / "a.sqlite", "model-a", a, metrics=ALL + ("MS",))
    _store(tmp_path / "b.sqlite", "model-b", b, metrics=("SD",), variants=VARIANTS[2:])
    out, written, _ = _report(tmp_path, [tmp_path / "a.sqlite", tmp_path / "b.sqlite"], bootstrap=10)

    order = ALL + ("MS",)
    expected = [
        ["model-a", p, v, m, "" if a[p, v, m] is None else repr(a[p, v, m])]
        for p in sorted(["p2", "p1", "p10"])
        for v in LABELS
        for m in order
    ] + [["model-b", "q1", IXG, "SD", repr(b["q1", IXG, "SD"])]]
    with open(out / "pairs.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["model", "pair", "method", "metric", "value"]
    assert rows[1:] == expected  # no CI_1 rows; values round-trip exactly
    assert {p.name for p in written} >= {"pairs.csv", "tables.md", "tables.csv", "tables.tex"}


def test_table_means_and_bootstrap_interval_match_numpy(tmp_path):
    pairs = [f"p{i:02d}" for i in range(12)]
    values = _values(2, pairs, metrics=ALL + ("MS",))
    values["p03", CAM, "SAD"] = None
    values["p07", CAM, "SAD"] = None
    _store(tmp_path / "a.sqlite", "m", values, metrics=ALL + ("MS",))
    resamples, seed = 300, 5
    out, _, _ = _report(tmp_path, [tmp_path / "a.sqlite"], bootstrap=resamples, seed=seed)

    index = np.random.default_rng(seed).integers(0, len(pairs), (resamples, len(pairs)))
    cells = {**_cells(out, "I-IV"), **_cells(out, "V")}
    assert set(cells) == {(v, m) for v in LABELS for m in ALL + ("MS",)}  # CI_1 is no column
    for (label, metric), row in cells.items():
        column = np.array(
            [np.nan if values[p, label, metric] is None else values[p, label, metric] for p in pairs]
        )
        boot = np.nanmean(column[index], axis=1)
        low, high = np.percentile(boot, [2.5, 97.5])
        assert float(row["mean"]) == pytest.approx(np.nanmean(column), abs=1e-12)
        assert float(row["low"]) == pytest.approx(low, abs=1e-12)
        assert float(row["high"]) == pytest.approx(high, abs=1e-12)
        assert int(row["n"]) == np.isfinite(column).sum()
    assert cells[CAM, "SAD"]["n"] == "10"
    md = (out / "tables.md").read_text()
    mean = np.mean([values[p, IXG, "SD"] for p in pairs])
    assert (
        f"{mean:.3f}" in md
        and "Int-CAM max GI: values undefined or missing, left out of the mean: SAD 2" in md
    )


def test_best_per_column_follows_each_metrics_direction(tmp_path):
    pairs = ["p1", "p2", "p3"]
    values = {(p, v, m): 0.5 for p in pairs for v in LABELS for m in ALL}
    for p in pairs:
        values[p, OCC, "SI"] = 0.9  # higher is better: occlusion wins SI
        values[p, CAM, "SI"] = 0.1
        values[p, OCC, "SD"] = 0.9  # lower is better: Int-CAM wins SD
        values[p, CAM, "SD"] = 0.1
    _store(tmp_path / "a.sqlite", "m", values)
    out, _, _ = _report(tmp_path, [tmp_path / "a.sqlite"], bootstrap=0)

    cells = _cells(out, "I-IV")
    best = {
        metric: sorted(label for (label, m), row in cells.items() if m == metric and row["best"] == "*")
        for metric in ALL
    }
    assert best["SI"] == [OCC] and best["SD"] == [CAM]
    assert best["CI"] == sorted(LABELS)  # ties: all marked
    assert cells[OCC, "SI"]["direction"] == "higher" and cells[OCC, "SD"]["direction"] == "lower"
    assert cells[OCC, "SI"]["low"] == ""  # no resamples, no interval
    md = (out / "tables.md").read_text()
    assert "| method | SI ↑ | SD ↓ | CI ↑ | CD ↓ | SAD ↓ | CAD ↓ |" in md
    assert "| Conditional Occlusion | **0.900** | 0.900 |" in md
    assert "| Int-CAM max GI | 0.100 | **0.100** |" in md
    tex = (out / "tables.tex").read_text()
    assert r"Conditional Occlusion & \textbf{0.900} & 0.900 &" in tex
    assert r"SI $\uparrow$ & SD $\downarrow$" in tex


def test_seconds_table_with_device_batch_size_and_failures(tmp_path):
    values = _values(3, ["p1", "p2", "p3"])
    for key in [k for k in values if k[0] == "p3" and k[1] == OCC]:
        del values[key]
    seconds = {OCC: 0.75, CAM: 0.0004, IXG: 0.125}
    _store(tmp_path / "a.sqlite", "m", values, seconds=seconds, errors=[("p3", OCC)])
    out, _, _ = _report(tmp_path, [tmp_path / "a.sqlite"], bootstrap=0)

    cells = _cells(out, "VI")
    assert {label: float(cells[label, "seconds"]["mean"]) for label in LABELS} == pytest.approx(
        seconds, rel=1e-12
    )
    assert [cells[label, "failed"]["mean"] for label in LABELS] == ["1.0", "0.0", "0.0"]
    assert cells[OCC, "seconds"]["n"] == "2" and cells[OCC, "failed"]["n"] == "3"
    assert cells[CAM, "seconds"]["best"] == "*"  # fastest
    md = (out / "tables.md").read_text()
    assert "### Table VI: mean seconds per explanation (device cpu; batch size 4)" in md
    assert "| Conditional Occlusion | 0.750 | 1 |" in md and "| Int-CAM max GI | **4.00e-04** | 0 |" in md
    assert "Conditional Occlusion: 1 of 3 explanations failed (first, pair p3: image unreadable)" in md
    assert "p3" not in {r["pair"] for r in _read_csv(out / "pairs.csv") if r["method"] == OCC}


def test_several_models_one_heatmap_and_group_scores(tmp_path):
    pairs = ["p1", "p2", "p3", "p4"]
    stores = []
    for k, model in enumerate(["simclr", "barlow", "dino"]):
        stores.append(_store(tmp_path / f"{model}.sqlite", model, _values(10 + k, pairs)))
    out, written, notes = _report(tmp_path, stores, bootstrap=50)

    assert (out / "summary.png").read_bytes()[:8] == PNG_SIGNATURE
    assert (out / "summary.svg").read_text().lstrip().startswith("<?xml")
    assert {out / "summary.png", out / "summary.svg"} <= set(written) and not notes
    rows = _read_csv(out / "tables.csv")
    assert [m for m in dict.fromkeys(r["model"] for r in rows)] == ["simclr", "barlow", "dino"]
    values = _values(11, pairs)  # barlow's values
    groups = _cells(out, "groups", "barlow")
    for label in LABELS:
        mean = {m: np.mean([values[p, label, m] for p in pairs]) for m in ALL}
        assert float(groups[label, "G1"]["mean"]) == pytest.approx((mean["SI"] + mean["CI"]) / 2, abs=1e-12)
        assert float(groups[label, "G2"]["mean"]) == pytest.approx(
            1 - (mean["SD"] + mean["CD"]) / 2, abs=1e-12
        )
        assert float(groups[label, "G3"]["mean"]) == pytest.approx(
            1 - (mean["SAD"] + mean["CAD"]) / 2, abs=1e-12
        )
    assert (out / "tables.md").read_text().count("### Tables I–IV") == 3


def test_shards_of_one_run_are_combined_and_other_runs_refused(tmp_path):
    values = _values(4, ["p1", "p2", "p3", "p4"])
    half = {k: v for k, v in values.items() if k[0] in ("p1", "p3")}
    rest = {k: v for k, v in values.items() if k[0] not in ("p1", "p3")}
    _store(tmp_path / "whole.sqlite", "m", values)
    _store(tmp_path / "results.rank0-of-2.sqlite", "m", half)
    _store(tmp_path / "results.rank1-of-2.sqlite", "m", rest)
    whole, _, _ = _report(tmp_path / "w", [tmp_path / "whole.sqlite"], bootstrap=100)
    shards, _, _ = _report(
        tmp_path / "s",
        [tmp_path / "results.rank0-of-2.sqlite", tmp_path / "results.rank1-of-2.sqlite"],
        bootstrap=100,
    )
    for name in ("pairs.csv", "tables.csv"):
        assert (whole / name).read_text() == (shards / name).read_text()

    _store(tmp_path / "other.sqlite", "m", rest, fingerprint="f2")
    with pytest.raises(
        SimexplainError, match=r"other\.sqlite: another run of model 'm'.*fingerprint"
    ) as error:
        write_report([tmp_path / "results.rank0-of-2.sqlite", tmp_path / "other.sqlite"], tmp_path / "x")
    assert "\n" not in str(error.value)


def test_downstream_correlation_matches_numpy(tmp_path):
    pairs = ["p1", "p2", "p3"]
    models = {"a": 0.61, "b": 0.70, "c": 0.66, "d": None}
    stores = [_store(tmp_path / f"{m}.sqlite", m, _values(20 + k, pairs)) for k, m in enumerate(models)]
    accuracy = {m: acc for m, acc in models.items() if acc is not None} | {"zzz": 0.5}
    out, written, notes = _report(tmp_path, stores, downstream=accuracy, bootstrap=0)

    assert (out / "correlation.png").read_bytes()[:8] == PNG_SIGNATURE and out / "correlation.svg" in written
    assert any("d has no downstream accuracy" in n for n in notes)
    assert any("zzz ignored" in n for n in notes)
    rows = {(r["family"], r["group"]): r for r in _read_csv(out / "correlation.csv")}
    families = {"saliency": IXG, "perturbation": OCC, "activation": CAM}
    assert list(dict.fromkeys(f for f, _ in rows)) == list(families)  # the paper's order
    for family, label in families.items():  # one variant per family: its group score
        scores = []
        for k, model in enumerate(["a", "b", "c"]):
            values = _values(20 + k, pairs)
            mean = {m: np.mean([values[p, label, m] for p in pairs]) for m in ("SAD", "CAD")}
            scores.append(1 - (mean["SAD"] + mean["CAD"]) / 2)
        expected = np.corrcoef(scores, [0.61, 0.70, 0.66])[0, 1]
        assert rows[family, "G3"]["models"] == "a;b;c"
        assert float(rows[family, "G3"]["r"]) == pytest.approx(expected, abs=1e-9)  # groups: 12 digits


def test_downstream_needs_two_models_before_writing_anything(tmp_path):
    stores = [_store(tmp_path / f"{m}.sqlite", m, _values(k, ["p1"])) for k, m in enumerate(["a", "b"])]
    with pytest.raises(SimexplainError, match=r"at least 2 reported models.*got 1 \(a;") as error:
        write_report(stores, tmp_path / "out", downstream={"a": 0.7}, log=lambda line: None)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
    written = write_report(
        stores, tmp_path / "out", downstream={}, bootstrap=0
    )  # the CLI without --downstream
    assert not any(p.name.startswith("correlation") for p in written)


def test_parse_downstream():
    assert parse_downstream(["simclr=0.693", "dino = 75.3", "x=1", "y=0"]) == {
        "simclr": 0.693,
        "dino": 0.753,
        "x": 1.0,
        "y": 0.0,
    }
    assert parse_downstream(["a=70", "a=0.7"]) == {"a": 0.7}
    for bad, message in [
        ("simclr", "MODEL=ACCURACY"),
        ("=0.5", "MODEL=ACCURACY"),
        ("a=high", "not a number"),
        ("a=nan", "neither a fraction"),
        ("a=101", "neither a fraction"),
        ("a=-0.1", "neither a fraction"),
    ]:
        with pytest.raises(SimexplainError, match=message) as error:
            parse_downstream([bad])
        assert "\n" not in str(error.value)
    with pytest.raises(SimexplainError, match="twice"):
        parse_downstream(["a=0.5", "a=0.6"])


def test_errors_are_one_line(tmp_path):
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database at all" * 100)
    whole = _store(tmp_path / "whole.sqlite", "m", _values(0, [f"p{i}" for i in range(300)])).read_bytes()
    (tmp_path / "truncated.sqlite").write_bytes(whole[: len(whole) // 2])
    with Store(tmp_path / "empty.sqlite"):
        pass
    cases = [
        ([], "no stores given"),
        ([tmp_path / "missing.sqlite"], "no such store"),
        ([tmp_path / "garbage.sqlite"], "not an evaluation store"),
        ([tmp_path / "empty.sqlite"], "empty store"),
        ([tmp_path / "truncated.sqlite"], "truncated.sqlite: (unreadable|not an evaluation) store"),
    ]
    for stores, message in cases:
        with pytest.raises(SimexplainError, match=message) as error:
            write_report(stores, tmp_path / "out")
        assert "\n" not in str(error.value)
    _store(tmp_path / "a.sqlite", "m", _values(0, ["p1"]))
    (tmp_path / "file").write_text("")
    with pytest.raises(SimexplainError, match="not a folder"):
        write_report([tmp_path / "a.sqlite"], tmp_path / "file")
    with pytest.raises(SimexplainError, match="bootstrap must be a non-negative integer"):
        write_report([tmp_path / "a.sqlite"], tmp_path / "out", bootstrap=-1)


def test_tex_escapes_special_characters_and_stays_a_valid_tabular(tmp_path):
    assert tex_escape("a_b 5% & #1 {x} ~ ^ \\ $") == (
        r"a\_b 5\% \& \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$"
    )
    variants = [("odd", "input-x-gradient", {}, "[my]_method 100% & co #1"), *VARIANTS[2:]]
    values = _values(5, ["p1", "p2"], labels=["odd", IXG])
    _store(tmp_path / "a.sqlite", "model_x", values, variants=variants)
    out, _, _ = _report(tmp_path, [tmp_path / "a.sqlite"], bootstrap=20)

    tex = (out / "tables.tex").read_text()
    assert r"{}[my]\_method 100\% \& co \#1 & " in tex  # a row opening with [ is not read as \\[...]
    assert r"Input$\times$Gradient & " in tex and r"\caption{model\_x: Tables I--IV" in tex
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == tex.count(r"\begin{table}") == 3
    for block in re.findall(r"\\begin\{tabular\}\{(l r*)\}(.*?)\\end\{tabular\}", tex, flags=re.S):
        spec, body = block
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert rows and all(len(re.findall(r"(?<!\\)&", row)) == len(spec) - 1 for row in rows)
        # every brace opened is closed, and no special character is left unescaped in a row
        for row in rows:
            assert row.count("{") - row.count(r"\{") == row.count("}") - row.count(r"\}")
            assert not re.search(r"(?<!\\)[%#_]", row)
    assert math.isfinite(float(_cells(out, "I-IV")["odd", "SI"]["mean"]))


def test_summary_groups_are_defined_under_their_table_and_in_the_figure(tmp_path):
    _store(tmp_path / "a.sqlite", "m", _values(6, ["p1", "p2", "p3"]))
    out, _, _ = _report(tmp_path, [tmp_path / "a.sqlite"], bootstrap=20)

    definitions = [
        "G1 = mean(SI, CI): SI = simultaneous insertion AUC; CI = conditional insertion AUC (mean of both "
        "directions)",
        "G2 = 1 − mean(SD, CD): SD = simultaneous deletion AUC; CD = conditional deletion AUC (mean of both "
        "directions)",
        "G3 = 1 − mean(SAD, CAD): SAD = simultaneous average drop; CAD = conditional average drop (mean of "
        "both directions)",
    ]
    md = (out / "tables.md").read_text()
    groups = md[md.index("### Summary groups") : md.index("### Table VI")]
    last_row = [line for line in groups.splitlines() if line.startswith("| ")][-1]
    assert groups.index(last_row) < groups.index("\n\n- G1")  # right under its rows
    for definition in definitions:
        assert f"\n- {definition}\n" in groups
    tex = (out / "tables.tex").read_text()
    assert "\nG2 = 1 $-$ mean(SD, CD): SD = simultaneous deletion AUC;" in tex  # printed, not a comment
    svg = (out / "summary.svg").read_text()
    texts = [text.strip() for text in re.findall(r"<!--(.*?)-->", svg, flags=re.S)]  # one per line of text
    assert set(definitions) <= set(texts)
    assert any(text.startswith("Each cell: a method's group score") for text in texts)


def test_group_intervals_contain_the_means_and_resample_the_pairs_of_the_other_tables(tmp_path):
    pairs = [f"p{i:02d}" for i in range(9)]
    values = _values(7, pairs)
    # undefined values: left out of each resample's mean
    values["p02", OCC, "SAD"] = values["p05", OCC, "SAD"] = None
    _store(tmp_path / "a.sqlite", "m", values)
    resamples, seed = 200, 11
    out, _, _ = _report(tmp_path, [tmp_path / "a.sqlite"], bootstrap=resamples, seed=seed)

    index = np.random.default_rng(seed).integers(0, len(pairs), (resamples, len(pairs)))
    groups = {"G1": (("SI", "CI"), 1), "G2": (("SD", "CD"), -1), "G3": (("SAD", "CAD"), -1)}
    cells = _cells(out, "groups")
    assert len(cells) == 9
    for (label, group), row in cells.items():
        members, sign = groups[group]
        columns = [
            np.array([np.nan if values[p, label, m] is None else values[p, label, m] for p in pairs])
            for m in members
        ]
        resampled = np.mean([np.nanmean(column[index], axis=1) for column in columns], axis=0)
        low, high = np.percentile(resampled if sign > 0 else 1 - resampled, [2.5, 97.5])
        mean, row_low, row_high = (float(row[key]) for key in ("mean", "low", "high"))
        assert row_low == pytest.approx(low, abs=1e-12) and row_high == pytest.approx(high, abs=1e-12)
        assert row_low <= mean <= row_high
    md = (out / "tables.md").read_text()
    assert re.search(r"\| Conditional Occlusion \| (\*\*)?\d\.\d{3}(\*\*)? \[\d\.\d{3}, \d\.\d{3}\] \|", md)


def test_tables_tex_compiles_with_the_latex_base_set(tmp_path):
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip(
            "pdflatex not found: install Debian's texlive-latex-base (.ci/run does) to compile tables.tex"
        )
    variants = [("odd", "input-x-gradient", {}, "[my]_method 100% & co #1 ≤ ~"), *VARIANTS]
    labels = ["odd", *LABELS]
    values = _values(8, ["p1", "p2", "p3"], labels=labels, metrics=ALL + ("MS",))
    values["p1", OCC, "SAD"] = None
    _store(
        tmp_path / "a.sqlite",
        "model_x",
        values,
        metrics=ALL + ("MS",),
        variants=variants,
        errors=[("p4", IXG)],
    )
    out, _, _ = _report(tmp_path, [tmp_path / "a.sqlite"], bootstrap=20)

    (out / "document.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n\\input{tables.tex}\n\\end{document}\n",
        encoding="utf-8",
    )
    command = [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "document.tex"]
    done = subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=300)
    log = (out / "document.log").read_text(encoding="utf-8", errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert (out / "document.pdf").read_bytes()[:5] == b"%PDF-"
    assert "Missing character" not in log  # every symbol of the tables has a glyph
    assert len(re.findall(r"\\begin\{table\}", (out / "tables.tex").read_text())) == 4  # I-IV, V, groups, VI
