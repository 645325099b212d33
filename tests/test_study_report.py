"""A study's report beyond its final metrics: sweep points and re-evaluations summarised
over seeds (checked against the stored sweeps recomputed by hand), `study show` with its
sweep tables and error-bar plots, and `study export` as Markdown, JSON and CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import statistics

import pytest

from cnnprobe.cli import main
from cnnprobe.report.formatting import finite
from cnnprobe.report.study import metric_plot, plots, study_csv, sweep_plot
from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan
from cnnprobe.studies.report import study_report
from cnnprobe.studies.runner import run_study, trial_records

SHOW = ["study", "show", "resolution", "--scale", "smoke", "--seeds", "2"]
EXPORT = ["study", "export", "resolution", "--scale", "smoke", "--seeds", "2"]
EVAL_OPTIONS = {"which": "last", "step": 4, "height": 32, "width": 32, "distractors": 0,
                "region": "train", "n": 32}


def _plan():
    # The built-in smoke resolution study (6 variants × 2 seeds), with both sweeps only.
    return dataclasses.replace(builtin_plan("resolution", "smoke", seeds=2),
                               evaluations=("resolution", "distractors"))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A store with the smoke resolution study: sweeps, and a saved re-evaluation per
    trial whose mae is known."""
    root = tmp_path_factory.mktemp("study") / "store"
    store = RunStore(root)
    progress = run_study(store, _plan())
    assert len(progress.trained) == 12 and not progress.failed
    for i, rec in enumerate(sorted(trial_records(store, "resolution").values(),
                                   key=lambda r: r.id)):
        store.save_evaluation(rec.id, EVAL_OPTIONS, {"mae": 1.0 + i, "n": 32})
    return root


def test_sweep_points_are_summarised_over_the_seeds(study):
    store = RunStore(study)
    report = study_report(store, _plan())
    assert report.sweep_kinds() == ["resolution", "distractors"]
    for label, runs in report.runs.items():
        assert len(runs) == 2
        for kind in ("resolution", "distractors"):
            # Recomputed from the stored sweep tables, independently of the report.
            by_point: dict = {}
            for run_id in runs:
                for row in store.sweep(run_id, kind).table.to_dict(orient="records"):
                    by_point.setdefault(int(row[kind]), []).append(row)
            stats = report.sweeps[label][kind]
            assert sorted(stats) == sorted(by_point) and len(stats) >= 3
            for point, rows in by_point.items():
                assert len(rows) == 2
                for metric in ("mae", "rmse", "r2"):
                    s = stats[point][metric]
                    values = [r[metric] for r in rows]
                    assert s.n == 2
                    assert s.mean == pytest.approx(statistics.fmean(values))
                    assert s.std == pytest.approx(statistics.stdev(values))
                    assert s.ci95[0] <= s.mean <= s.ci95[1]
                assert "n" not in stats[point]  # the sample count is not a metric
    # The resolution sweep of every variant reaches its training size and beyond.
    assert all({16, 24, 32} <= set(k["resolution"]) for k in report.sweeps.values())


def test_saved_re_evaluations_are_summarised(study):
    store = RunStore(study)
    report = study_report(store, _plan())
    for label, runs in report.runs.items():
        maes = [store.evaluations(r)[-1]["metrics"]["mae"] for r in runs]
        s = report.evaluations[label]["32x32"]["mae"]
        assert (s.n, s.mean) == (2, pytest.approx(statistics.fmean(maes)))


def test_show_prints_sweep_tables_and_plots(study, capsys):
    assert main(["--store", str(study), *SHOW]) == 0
    out = capsys.readouterr().out
    for words in ("resolution sweep: mae", "distractors sweep: mae", "re-evaluations",
                  "verdict:", "resolution_min_r2 by variant", "±1 SD", "mae by resolution",
                  "mae by distractors"):
        assert words in out, words
    assert main(["--store", str(study), *SHOW, "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "resolution sweep: mae" in out and "by variant" not in out
    assert main(["--store", str(study), *SHOW, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    report = study_report(RunStore(study), _plan())
    v = data["variants"]["seednet-pixels"]
    points = v["sweeps"]["resolution"]
    assert [p["point"] for p in points] == sorted(report.sweeps["seednet-pixels"]["resolution"])
    s = report.sweeps["seednet-pixels"]["resolution"][points[0]["point"]]["mae"]
    assert points[0]["metrics"]["mae"]["mean"] == pytest.approx(s.mean)
    assert data["command"] == "cnnprobe study run resolution --scale smoke --seeds 2"
    assert data["sweep_metrics"] == {"resolution": "mae", "distractors": "mae"}


@pytest.mark.parametrize("columns", [80, 250])
def test_show_names_every_variant_whole_with_the_mean_guess(study, monkeypatch, capsys,
                                                            columns):
    """Labels cut to `seednet-p…` cannot be told apart: at 80 columns each variant gets a
    short key named once above the tables; mean_guess_mae (the README promises it) is a
    column."""
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["--store", str(study), *SHOW, "--no-plots"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for label in study_report(RunStore(study), _plan()).runs:
        whole = [line for line in lines if line.endswith(f"  {label}")] if columns == 80 \
            else [line for line in lines if line.startswith(f"│ {label} ")]
        assert whole, label
    assert not any("…" in line.split("│")[1] for line in lines if line.startswith("│"))
    assert ("variants:" in out) == (columns == 80)
    assert ("mean_guess_mae" if columns == 250 else "mean_gu") in out


def test_export_writes_md_json_and_csv(study, tmp_path, capsys):
    out = tmp_path / "out"
    report = study_report(RunStore(study), _plan(),
                          command="cnnprobe study run resolution --scale smoke --seeds 2")
    paths = {}
    for fmt in ("md", "json", "csv"):
        assert main(["--store", str(study), *EXPORT, "--format", fmt, "--out",
                     f"{out}/"]) == 0
        line = capsys.readouterr().out.strip()
        paths[fmt] = out / f"study-resolution-smoke.{fmt}"
        assert line == f"wrote {paths[fmt]}"
    # JSON: the report's data, strict.
    assert json.loads(paths["json"].read_text()) == finite(report.as_dict())
    # CSV: one row per variant × metric and per variant × sweep kind × point × metric.
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert list(rows[0]) == ["variant", "kind", "point", "metric", "mean", "std", "n",
                             "ci_low", "ci_high"]
    final = {(r["variant"], r["metric"]): r for r in rows if r["kind"] == "final"}
    for label, ms in report.variants.items():
        for metric, s in ms.items():
            r = final[(label, metric)]
            if s.n == 0:  # no seed has a value (steps_to_r2_90 of a run that never got there)
                assert (r["mean"], r["n"]) == ("", "0")
                continue
            assert float(r["mean"]) == pytest.approx(s.mean)
            assert float(r["std"]) == pytest.approx(s.std) and int(r["n"]) == s.n
            assert (float(r["ci_low"]), float(r["ci_high"])) == pytest.approx(s.ci95)
    sweep_rows = [r for r in rows if r["kind"] in ("resolution", "distractors")]
    assert len(sweep_rows) == sum(len(ms) for kinds in report.sweeps.values()
                                  for points in kinds.values() for ms in points.values())
    for r in sweep_rows:
        s = report.sweeps[r["variant"]][r["kind"]][int(r["point"])][r["metric"]]
        assert float(r["mean"]) == pytest.approx(s.mean) and int(r["n"]) == 2
    assert {r["point"] for r in rows if r["kind"] == "evaluation"} == {"32x32"}
    # Markdown: question, table, sweeps, verdict, how to reproduce, plots.
    md = paths["md"].read_text()
    for words in ("# Study resolution", report.question,
                  "| variant | trials | learned | parameters | resolution_min_r2: mean ± SD",
                  "## Resolution sweep: mae", "## Distractors sweep: mae", "## Verdict",
                  report.verdicts[""], "cnnprobe study run resolution --scale smoke --seeds 2",
                  "```text\nresolution_min_r2 by variant", "mae by resolution",
                  "mae by distractors"):
        assert words in md, words
    seed = report.variants["seednet-pixels"]["resolution_min_r2"]
    gate = report.learned["seednet-pixels"]
    cell = f"{ {'learned': 'yes', 'did not learn': 'no'}.get(gate.status, 'some')} " \
        f"({gate.learned}/2)"
    params = RunStore(study).get(report.runs["seednet-pixels"][0]).parameters
    assert f"| seednet-pixels | 2 finished | {cell} | {params:,} | {seed.mean:.4g} ± " \
        f"{seed.std:.2g} (2) |" in md
    assert f"**Design:** {report.controls}" in md and report.controls
    # Never over an existing file unless --force.
    assert main(["--store", str(study), *EXPORT, "--out", f"{out}/"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists: pass --force" in err[0]
    assert main(["--store", str(study), *EXPORT, "--out", f"{out}/", "--force",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"files": [str(paths["md"])]}


@pytest.mark.parametrize("argv,code,words", [
    (["study", "show", "pooing"], 2, "study='pooing'"),
    (["study", "export", "pooing"], 2, "study='pooing'"),
    (["study", "export", "pooling", "--scale", "smoke"], 1, "no trials in the store"),
])
def test_a_bad_study_export_is_one_line(tmp_path, monkeypatch, capsys, argv, code, words):
    monkeypatch.chdir(tmp_path)  # exports/ would be here
    assert main(["--store", str(tmp_path / "store"), *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("argv,code,words", [
    # No --scale: the only scale stored is shown, and said so.
    (["study", "show", "resolution", "--no-plots"], 0,
     "no trials at the default --scale cpu; showing its only stored scale, smoke (12"),
    # A scale asked for that the store does not hold: the one that it does, and the flag.
    (["study", "show", "resolution", "--scale", "cpu"], 1,
     "no trials at --scale cpu; the store holds it at smoke (12 trials): pass --scale smoke"),
    (["study", "export", "resolution", "--scale", "full"], 1,
     "no trials at --scale full; the store holds it at smoke (12 trials): pass --scale "
     "smoke"),
])
def test_study_show_names_the_scale_the_store_holds(study, tmp_path, monkeypatch, capsys,
                                                    argv, code, words):
    monkeypatch.chdir(tmp_path)
    assert main(["--store", str(study), *argv]) == code
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    if code == 0:
        assert "trials not run yet" not in captured.out and "none yet" not in captured.out


def test_a_bad_export_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["study", "export", "pooling", "--format", "pdf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "invalid choice: 'pdf'" in err[0]


def _data(variants: dict) -> dict:
    return {"name": "s", "metric": "mae", "sweep_metrics": {"resolution": "mae"},
            "variants": {label: {"metrics": ms, "sweeps": sw, "runs": ["x"], "statuses": {}}
                         for label, (ms, sw) in variants.items()}}


def _s(mean, std, n=2):
    return {"mean": mean, "std": std, "n": n, "ci95": [mean - 1, mean + 1]}


def test_error_bar_plot_places_the_mean_and_the_spread():
    data = _data({"a": ({"mae": _s(1.0, 0.0, 1)}, {}), "b": ({"mae": _s(3.0, 1.0)}, {}),
                  "c": ({}, {})})
    lines = metric_plot(data, width=60).splitlines()
    a, b, c = (next(line for line in lines if line.startswith(x + " ")) for x in "abc")
    bar = lambda line: line.split("│")[1]  # noqa: E731
    assert bar(a).index("●") == 0 and "├" not in bar(a)  # the axis starts at 3 - 1 = 1
    w = len(bar(b))
    assert bar(b).index("├") == round((2 - 1) / 3 * (w - 1))
    assert bar(b).index("●") == round((3 - 1) / 3 * (w - 1))
    assert bar(b).index("┤") == w - 1 and b.endswith("3 ± 1 (2)")
    assert bar(c).strip() == "" and c.endswith("-")
    assert metric_plot(_data({"a": ({}, {})})) is None


def test_sweep_plot_and_csv_from_plain_data():
    sweeps = {"resolution": [{"point": 16, "metrics": {"mae": _s(1.0, 0.2)}},
                             {"point": 32, "metrics": {"mae": _s(2.0, 0.5)}}]}
    data = _data({"a": ({"mae": _s(1.0, 0.1)}, sweeps)})
    plot = sweep_plot(data, "resolution")
    assert "mae by resolution" in plot and "● a" in plot and "\x1b" not in plot
    assert sweep_plot(_data({"a": ({}, {"resolution": sweeps["resolution"][:1]})}),
                      "resolution") is None
    rows = list(csv.DictReader(io.StringIO(study_csv(data))))
    assert [(r["kind"], r["point"], r["mean"]) for r in rows] == [
        ("final", "", "1.0"), ("resolution", "16", "1.0"), ("resolution", "32", "2.0")]


def test_a_study_over_two_tasks_gets_one_error_bar_plot_per_task():
    data = _data({"a": ({"mae": _s(1.0, 0.1)}, {}), "b": ({"mae": _s(30.0, 2.0)}, {})})
    data["variants"]["a"]["task"], data["variants"]["b"]["task"] = "distance", "count"
    drawn = plots(data)
    assert [p.splitlines()[0].split(":")[0] for p in drawn] == [
        "mae by variant (distance)", "mae by variant (count)"]
    assert "\nb " not in drawn[0] and "\na " not in drawn[1]
