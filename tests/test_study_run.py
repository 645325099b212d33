"""Running and reporting a study: the smoke pooling study end to end, resumed after a stop
without duplicates, statistics checked by hand, and bad plans refused before storing."""

from __future__ import annotations

import json
import math
import threading

import pytest

from cnnprobe.cli import main
from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan
from cnnprobe.studies.report import study_report, summarise
from cnnprobe.studies.runner import run_study, trial_records


def test_summary_by_hand():
    s = summarise([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, df=2)
    assert s.ci95 == pytest.approx((2 - half, 2 + half))
    assert summarise([]).n == 0 and summarise([5.0]).std == 0.0


def test_a_summary_interval_stays_in_the_metric_s_range():
    """Two seeds of R² near 1: the t interval (df 1) would pass 1; it is clipped there, and
    an error's interval never goes below 0."""
    r2 = summarise([0.9, 0.99], "r2")
    assert r2.ci95[1] == 1.0 and r2.ci95[0] < 0.9
    assert summarise([0.1, 1.5], "mae").ci95[0] == 0.0
    assert math.isnan(summarise([0.5], "r2").ci95[0])  # one seed: no interval at all


def test_smoke_pooling_study_runs_reports_and_does_not_repeat(tmp_path, capsys):
    root = str(tmp_path / "store")
    assert main(["--store", root, "study", "run", "pooling", "--scale", "smoke", "--seeds",
                 "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(first["trained"]) == 32 and first["kept"] == [] and first["failed"] == []
    assert main(["--store", root, "study", "show", "pooling", "--scale", "smoke", "--seeds",
                 "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["variants"]) == 16 and report["missing"] == 0
    for v in report["variants"].values():
        mae = v["metrics"]["mae"]
        assert mae["n"] == 2 and mae["std"] >= 0 and v["statuses"] == {"finished": 2}
    assert set(report["verdicts"]) == {"distance", "count"}
    # Each variant's "learned" judgement follows its seeds' validation R², and only the
    # variants that learned in every seed are ranked.
    for label, v in report["variants"].items():
        r2 = [RunStore(root).get(r).metrics["r2"] for r in v["runs"]]
        want = ("learned" if all(x >= 0.5 for x in r2) else
                "did not learn" if all(x < 0.5 for x in r2) else "unstable")
        assert v["learned"]["status"] == want, (label, r2)
        text = report["verdicts"][label.split(",")[0].split("=")[1]]
        ranked_part = text.split(". did not learn")[0].split(". learned in some")[0]
        assert (label in ranked_part) == (want == "learned"), (label, text)
    # Independent recomputation of one variant's mean from its stored runs.
    store = RunStore(root)
    label, v = next(iter(report["variants"].items()))
    maes = [store.get(r).metrics["mae"] for r in v["runs"]]
    assert v["metrics"]["mae"]["mean"] == pytest.approx(sum(maes) / 2)
    n_runs = len(store.list_runs())
    assert main(["--store", root, "study", "run", "pooling", "--scale", "smoke", "--seeds",
                 "2", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["trained"] == [] and len(again["kept"]) == 32
    assert len(store.list_runs()) == n_runs


def test_a_stopped_study_continues_without_duplicates(tmp_path):
    store = RunStore(tmp_path)
    plan = builtin_plan("distractors", "smoke", seeds=2)  # 4 trials, sweeps included
    cancel = threading.Event()
    seen = []

    def on_trial(trial, what, rec):
        seen.append(what)
        if what == "finished" and seen.count("finished") == 2:
            cancel.set()  # as Ctrl-C after the second trial

    first = run_study(store, plan, cancel=cancel, on_trial=on_trial)
    assert first.cancelled and len(first.trained) == 2
    second = run_study(store, plan)
    assert len(second.kept) == 2 and len(second.trained) == 2
    records = trial_records(store, "distractors")
    assert len(records) == 4 == len(store.list_runs(tag="study:distractors"))
    assert {r.status for r in records.values()} == {"finished"}
    assert all(store.sweep(r.id, "distractors") is not None for r in records.values())
    report = study_report(store, plan)
    assert report.missing == 0 and all(ms["mae"].n == 2 for ms in report.variants.values())


@pytest.mark.parametrize("argv,words", [
    (["study", "run", "pooing"], "study='pooing'"),
    (["study", "run", "pooling", "--scale", "smoke", "--seeds", "0"], "seeds"),
    (["study", "run", "missing.toml"], "plan='missing.toml'"),
])
def test_a_bad_study_is_one_line_and_stores_nothing(tmp_path, capsys, argv, words):
    root = tmp_path / "store"
    code = main(["--store", str(root), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert RunStore(root).list_runs() == []


def test_a_bad_plan_file_is_one_line(tmp_path, capsys):
    plan = tmp_path / "p.toml"
    plan.write_text('name = "x"\n[[axis]]\nfield = "model.pool"\nvalues = []\n')
    code = main(["--store", str(tmp_path / "s"), "study", "run", str(plan)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "axis 1 (model.pool): values" in err[0]


def test_each_trial_line_gives_the_study_s_metric_or_nothing(tmp_path, capsys):
    """position's metric, heldout_mae, comes from a held-out evaluation the trial stores
    after training: each trial's line gives it (it said `(heldout_mae -)` for every trial,
    as `resolution_ratio -` before); a number the trial cannot have is left out."""
    root = str(tmp_path / "store")
    assert main(["--store", root, "study", "run", "position", "--scale", "smoke", "--seeds",
                 "1"]) == 0
    out = capsys.readouterr().out
    assert "study position: 6 variants × 1 seed = 6 trials" in out  # not "1 seeds"
    lines = [line for line in out.splitlines() if " seed 0: " in line]
    assert len(lines) == 6 and all(" -)" not in line for line in lines)
    assert all(line.startswith(f"[{i}/6]") and "finished (heldout_mae " in line
               for i, line in enumerate(lines, 1)), lines


def test_study_list_and_rm(tmp_path, capsys):
    root = str(tmp_path / "store")
    store = RunStore(root)
    run_study(store, builtin_plan("distractors", "smoke", seeds=1))
    unrelated = len(store.list_runs())
    assert main(["--store", root, "study", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"study": "distractors", "trials": {"finished": 2}, "scales": {"smoke": 2}}]
    assert main(["--store", root, "study", "list"]) == 0  # which --scale shows it
    assert "│ distractors │ smoke │" in capsys.readouterr().out
    assert main(["--store", root, "study", "rm", "distractors"]) == 1  # no terminal, no --yes
    assert "pass --yes" in capsys.readouterr().err
    assert len(store.list_runs()) == unrelated
    assert main(["--store", root, "study", "rm", "distractors", "--yes"]) == 0
    assert store.list_runs() == []
    assert main(["--store", root, "study", "rm", "distractors", "--yes"]) == 1
    assert "no study 'distractors'" in capsys.readouterr().err
