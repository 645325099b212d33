"""Study verdicts (cnnprobe/studies/verdict.py): the learned-at-all gate, paired and
Holm-adjusted comparisons over every variant, ties, too few seeds, and a resolution metric
that a model which learned nothing cannot win."""

from __future__ import annotations

import math

import pytest

from cnnprobe.store import RunStore
from cnnprobe.studies.plan import plan_from_dict
from cnnprobe.studies.report import _shared_min_r2, study_report
from cnnprobe.studies.runner import run_study
from cnnprobe.studies.verdict import (
    LEARNED_R2,
    compare_all,
    holm,
    learned_status,
    paired,
    t_critical,
    t_two_sided_p,
    verdict_text,
)


@pytest.mark.parametrize("t,df,p", [(12.706, 1, 0.05), (4.303, 2, 0.05), (2.776, 4, 0.05),
                                    (2.045, 29, 0.05), (9.925, 2, 0.01), (0.0, 3, 1.0)])
def test_t_distribution_matches_the_tables(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=2e-4)
    if 0 < p < 1:
        assert t_critical(df, p) == pytest.approx(t, rel=2e-3)


def test_holm_adjusts_step_down():
    cs = [paired("a", "b", {0: 1.0}, {0: 1.0}) for _ in range(3)]
    for c, p, d in zip(cs, (0.01, 0.04, 0.03), (-1, -1, -1), strict=True):
        c.p, c.diff = p, d
    holm(cs, higher=False)
    assert [c.p_holm for c in cs] == pytest.approx([0.03, 0.06, 0.06])
    assert [c.better for c in cs] == ["a", None, None]


def test_learned_gate_per_seed():
    assert learned_status({0: 0.9, 1: 0.95}).status == "learned"
    assert learned_status({0: 0.1, 1: math.nan}).status == "did not learn"
    assert learned_status({0: 0.9, 1: 0.2}).status == "unstable"
    assert learned_status({}).status == "no trials"
    assert learned_status({0: LEARNED_R2}).status == "learned"


def _gate(**status):
    r2 = {"learned": {0: 0.9, 1: 0.9, 2: 0.9}, "failed": {0: 0.0, 1: 0.1, 2: -0.2}}
    return {label: learned_status(r2[s]) for label, s in status.items()}


def test_a_consistent_gap_is_clearly_better_and_noise_is_not():
    values = {"good": {0: 1.0, 1: 1.1, 2: 0.9}, "bad": {0: 3.0, 1: 3.2, 2: 2.9},
              "noisy": {0: 0.5, 1: 3.5, 2: 1.2}}
    text, cs = verdict_text("mae", values, _gate(good="learned", bad="learned",
                                                 noisy="learned"))
    assert "1. good" in text and "clearly better than bad" in text
    assert "Holm-adjusted over 3 comparisons" in text
    good_vs_noisy = next(c for c in cs if {c.a, c.b} == {"good", "noisy"})
    assert good_vs_noisy.better is None and good_vs_noisy.p_holm >= 0.05


def test_higher_is_better_for_r2_metrics():
    values = {"a": {0: 0.6, 1: 0.61, 2: 0.59}, "b": {0: 0.9, 1: 0.92, 2: 0.91}}
    text, _ = verdict_text("heldout_r2", values, _gate(a="learned", b="learned"))
    assert text.index("1. b") < text.index("2. a") and "b 0.91" in text
    assert "(higher is better)" in text and "clearly better than a" in text


def test_an_exact_tie_names_no_winner():
    values = {"a": {0: 1.0, 1: 2.0}, "b": {0: 1.0, 1: 2.0}}
    text, cs = verdict_text("mae", values, _gate(a="learned", b="learned"))
    assert cs[0].better is None and cs[0].p == 1.0
    assert "no clear difference between any two of them" in text
    assert "clearly" not in text.replace("no clear difference", "")


def test_one_seed_is_too_few_to_compare():
    values = {"a": {0: 1.0}, "b": {0: 5.0}}
    gate = {"a": learned_status({0: 0.9}), "b": learned_status({0: 0.9})}
    text, cs = verdict_text("mae", values, gate)
    assert math.isnan(cs[0].p) and cs[0].better is None
    assert "too few paired seeds" in text and "clearly" not in text


def test_no_winner_when_nothing_learned():
    values = {"a": {0: 5.0, 1: 5.1, 2: 5.0}, "b": {0: 9.0, 1: 9.1, 2: 9.2}}
    text, cs = verdict_text("mae", values, _gate(a="failed", b="failed"))
    assert text.startswith("no variant learned: nothing to rank") and cs == []
    assert "a (R² 0.00, 0.10, -0.20)" in text


def test_a_flat_non_learner_does_not_win_the_resolution_question():
    """A model that learned nothing has the same error at every size: its worst/at-size MAE
    ratio is ~1, the best there can be, while a learner that degrades off its size has a
    larger one. The study's metric is the lowest R² over the sizes (R² at a size = error
    relative to the mean guess there): the learner wins it, and the gate keeps the
    non-learner out of the ranking even so."""
    flat = {s: {"mae": 6.0, "r2": 0.0} for s in (8, 16, 32)}
    degrades = {8: {"mae": 2.0, "r2": 0.7}, 16: {"mae": 0.5, "r2": 0.98},
                32: {"mae": 3.0, "r2": 0.55}}
    ratio = {"flat": max(p["mae"] for p in flat.values()) / flat[16]["mae"],
             "learner": max(p["mae"] for p in degrades.values()) / degrades[16]["mae"]}
    assert ratio["flat"] < ratio["learner"]  # the old metric rewarded failing
    sweeps = {"flat": {s: {"resolution": flat} for s in range(3)},
              "learner": {s: {"resolution": degrades} for s in range(3)}}
    min_r2, shared, extra = _shared_min_r2(sweeps, ["flat", "learner"])
    assert shared == [8, 16, 32] and extra == {}
    assert min_r2["learner"] == {0: 0.55, 1: 0.55, 2: 0.55}
    assert min_r2["flat"] == {0: 0.0, 1: 0.0, 2: 0.0}
    text, _ = verdict_text("resolution_min_r2", min_r2,
                           _gate(flat="failed", learner="learned"))
    assert text.startswith("learner is the only variant that learned")
    assert "did not learn" in text and "flat" in text.split("did not learn")[1]


def test_sweeps_over_other_sizes_compare_only_the_shared_ones():
    a = {8: {"r2": 0.1}, 16: {"r2": 0.9}, 32: {"r2": 0.8}}
    b = {16: {"r2": 0.95}, 32: {"r2": 0.6}}  # a model that cannot take 8 px
    min_r2, shared, extra = _shared_min_r2({"a": {0: {"resolution": a}},
                                            "b": {0: {"resolution": b}}}, ["a", "b"])
    assert shared == [16, 32] and extra == {"a": [8]}
    assert min_r2 == {"a": {0: 0.8}, "b": {0: 0.6}}


def test_compare_all_pairs_every_variant():
    values = {k: {0: float(i), 1: float(i) + 0.1} for i, k in enumerate("abcd")}
    assert len(compare_all("mae", values)) == 6


def test_a_variant_that_cannot_learn_is_reported_and_not_ranked(tmp_path):
    """lr 1e-9 leaves seednet at its initial guess: reported "did not learn", not ranked."""
    plan = plan_from_dict({
        "name": "gate", "seeds": 2,
        "base": {"task.height": 16, "task.width": 16, "train.steps": 60,
                 "train.batch_size": 32, "train.val_size": 64, "train.bn_samples": 64,
                 "model.name": "seednet"},
        "variant": [{"label": "adam", "set": {"train.lr": 3e-3}},
                    {"label": "frozen", "set": {"train.lr": 1e-9}}]})
    store = RunStore(tmp_path)
    assert not run_study(store, plan).failed
    report = study_report(store, plan)
    assert report.learned["frozen"].status == "did not learn"
    assert report.learned["adam"].status == "learned", report.learned["adam"]
    text = report.verdicts[""]
    assert text.startswith("adam is the only variant that learned"), text
    assert "did not learn" in text and "frozen" in text.split("did not learn")[1]
    data = report.as_dict()
    assert data["variants"]["frozen"]["learned"]["status"] == "did not learn"
    assert data["variants"]["frozen"]["learned"]["threshold_r2"] == LEARNED_R2
