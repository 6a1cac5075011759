"""Method variants of an evaluation: the paper's 17 rows, user lists with settings, the run's --set."""

import pytest

from simexplain import SimexplainError
from simexplain.methods import get
from simexplain.studies.variants import PAPER_VARIANTS, Variant, parse_variants

PAPER_TABLE = [  # (title, method, params) in the order of the paper's Tables I–IV
    ("Conditional Occlusion", "conditional-occlusion", {}),
    ("Pairwise Occlusion", "pairwise-occlusion", {}),
    ("Deep Similarity", "deep-similarity", {}),
    ("Pair Grad-CAM", "pair-grad-cam", {}),
    ("Int-CAM mean", "interaction-cam", {"reduction": "mean", "gradient_interaction": False}),
    ("Int-CAM mean GI", "interaction-cam", {"reduction": "mean", "gradient_interaction": True}),
    ("Int-CAM max", "interaction-cam", {"reduction": "max", "gradient_interaction": False}),
    ("Int-CAM max GI", "interaction-cam", {"reduction": "max", "gradient_interaction": True}),
    ("Int-CAM attn", "interaction-cam", {"reduction": "attn", "gradient_interaction": False}),
    ("Int-CAM attn GI", "interaction-cam", {"reduction": "attn", "gradient_interaction": True}),
    ("Input×Gradient", "input-x-gradient", {}),
    ("Input×Gradient (G)", "input-x-gradient", {"guided": True}),
    ("Smooth-Grad", "smooth-grad", {}),
    ("Smooth-Grad (G)", "smooth-grad", {"guided": True}),
    ("Avg. Transforms", "averaged-transforms", {}),
    ("Avg. Transforms (G)", "averaged-transforms", {"guided": True}),
    ("Avg. Transforms (N)", "averaged-transforms", {"noise": True}),
]


def one_line_error(text, settings=None, *words):
    with pytest.raises(SimexplainError) as info:
        parse_variants(text, settings)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_all_is_the_papers_17_rows_in_order_with_their_settings():
    variants = parse_variants("all")
    assert variants == list(PAPER_VARIANTS)
    assert [(v.title, v.method, v.params) for v in variants] == PAPER_TABLE
    assert len({v.label for v in variants}) == 17
    assert variants[7].label == "interaction-cam[reduction=max;gradient_interaction=true]"
    assert [v.label for v in variants[:4]] == [
        "conditional-occlusion",
        "pairwise-occlusion",
        "deep-similarity",
        "pair-grad-cam",
    ]
    assert variants[16].label == "averaged-transforms[noise=true]"


def test_labels_read_back_as_the_same_variants():
    for variant in PAPER_VARIANTS:
        assert parse_variants(variant.label) == [variant]


def test_all_returns_copies_that_callers_can_change():
    parse_variants("all")[11].params["guided"] = False
    assert PAPER_VARIANTS[11].params == {"guided": True}


def test_brackets_tuples_and_text_values_are_parsed_checked_and_labelled_canonically():
    variants = parse_variants(
        " pairwise-occlusion[scale=(0.1, 0.2);ratio=(1,2);samples=8.0] , smooth-grad[guided=yes;sigma=0.5],"
        "averaged-transforms[transform=blur]"
    )
    assert variants == [
        Variant(
            "pairwise-occlusion[scale=(0.1,0.2);ratio=(1.0,2.0);samples=8]",
            "pairwise-occlusion",
            {"scale": (0.1, 0.2), "ratio": (1.0, 2.0), "samples": 8},
            "pairwise-occlusion[scale=(0.1,0.2);ratio=(1.0,2.0);samples=8]",
        ),
        Variant(
            "smooth-grad[guided=true;sigma=0.5]",
            "smooth-grad",
            {"guided": True, "sigma": 0.5},
            "smooth-grad[guided=true;sigma=0.5]",
        ),
        Variant(
            "averaged-transforms[transform=blur]",
            "averaged-transforms",
            {"transform": "blur"},
            "averaged-transforms[transform=blur]",
        ),
    ]
    assert parse_variants(variants[0].label) == variants[:1]


def test_a_user_variant_equal_to_a_paper_row_gets_its_label_and_title():
    variants = parse_variants(
        "interaction-cam[gradient_interaction=1;reduction=max],input-x-gradient[guided=no]"
    )
    assert [v.title for v in variants] == ["Int-CAM max GI", "Input×Gradient"]
    assert variants[0].label == "interaction-cam[reduction=max;gradient_interaction=true]"
    assert variants[1].label == "input-x-gradient"
    assert parse_variants("interaction-cam[reduction=max]")[0].title == "Int-CAM max"


def test_run_settings_apply_to_every_variant_of_the_method_and_brackets_win():
    settings = {
        "interaction-cam.layer": "features.3",
        "interaction-cam.reduction": "attn",
        "smooth-grad.samples": "4",
    }
    variants = parse_variants(
        "interaction-cam[reduction=max],interaction-cam,smooth-grad[samples=2]", settings
    )
    assert [v.params for v in variants] == [
        {"layer": "features.3", "reduction": "max"},
        {"layer": "features.3", "reduction": "attn"},
        {"samples": 2},
    ]
    assert [v.label for v in variants] == [
        "interaction-cam[reduction=max;gradient_interaction=false]",  # the paper's row, whoever wrote it
        "interaction-cam[reduction=mean;gradient_interaction=false]",
        "smooth-grad[samples=2]",
    ]
    assert variants[0].title == "Int-CAM max"  # --set settings change neither label nor title


def test_run_settings_reach_all_17():
    variants = parse_variants("all", {"smooth-grad.samples": 3, "interaction-cam.reduction": "mean"})
    assert [v.params.get("samples") for v in variants[12:14]] == [3, 3]
    assert [v.params["reduction"] for v in variants[4:10]] == ["mean", "mean", "max", "max", "attn", "attn"]
    assert [v.label for v in variants] == [v.label for v in PAPER_VARIANTS]


def test_params_are_what_the_registry_checks():
    for variant in parse_variants("all", {"averaged-transforms.steps": "3"}):
        assert get(variant.method).check(variant.params) == variant.params


@pytest.mark.parametrize(
    "text, settings, words",
    [
        ("", None, ["no method"]),
        (" , ", None, ["no method"]),
        ("nope", None, ["'nope'", "unknown method"]),
        ("smooth-grad[nope=1]", None, ["smooth-grad[nope=1]", "no parameter 'nope'"]),
        ("smooth-grad[samples=0]", None, ["samples", "positive"]),
        ("smooth-grad[guided=maybe]", None, ["guided", "true or false"]),
        ("interaction-cam[reduction=median]", None, ["reduction", "median"]),
        ("smooth-grad[samples]", None, ["KEY=VALUE"]),
        ("smooth-grad[samples=2;samples=3]", None, ["samples is set twice"]),
        ("smooth-grad[samples=2", None, ["unbalanced"]),
        ("smooth-grad)", None, ["unbalanced"]),
        ("smooth-grad[samples=2]x", None, ["brackets at the end"]),
        ("[samples=2]", None, ["no method name"]),
        ("smooth-grad,smooth-grad", None, ["smooth-grad", "chosen twice"]),
        ("input-x-gradient,input-x-gradient[guided=false]", None, ["input-x-gradient is chosen twice"]),
        ("all,smooth-grad", None, ["chosen twice"]),
        ("smooth-grad", {"metrics.step": 16}, ["metrics.step", "no metrics are asked for"]),
        ("smooth-grad", {"interaction-cam.reduction": "max"}, ["'interaction-cam'", "not among"]),
        ("smooth-grad", {"smooth-grad.nope": 1}, ["smooth-grad.nope", "no parameter"]),
        ("smooth-grad", {"smooth-grad.samples": "-2"}, ["smooth-grad.samples", "positive"]),
        ("smooth-grad", {"smooth-grad.": 1}, ["METHOD.KEY"]),
        (3, None, ["methods must be text"]),
    ],
)
def test_bad_requests_are_refused_in_one_line(text, settings, words):
    one_line_error(text, settings, *words)


def test_a_bare_key_goes_to_every_chosen_method_that_has_it_and_a_method_key_wins():
    from simexplain import service
    from simexplain.studies.variants import methods_of, with_settings

    variants = parse_variants("smooth-grad,pairwise-occlusion[samples=7],input-x-gradient", ["samples=3"])
    assert [v.params for v in variants] == [{"samples": 3}, {"samples": 7}, {}]
    chosen = parse_variants("smooth-grad,input-x-gradient")
    routed = service.route_settings(
        {"smooth-grad.guided": "no", "guided": "yes", "metrics.step": 32}, methods_of(chosen), metrics=True
    )
    assert [v.params for v in with_settings(chosen, routed)] == [{"guided": False}, {"guided": True}]
    assert routed.metrics == {"step": 32}


def test_all_may_be_combined_with_other_variants():
    variants = parse_variants("all,smooth-grad[samples=5]")
    assert len(variants) == 18 and variants[-1].label == "smooth-grad[samples=5]"
