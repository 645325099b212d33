"""Every number names its weights (issue 20, item 7): `eval --which best` scores the best
checkpoint on a test set drawn apart from the validation set that selected it; `runs`,
`compare` and study reports say which weights and statistics made their numbers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from cli_helpers import run

from cnnprobe.runs import evaluate_run, train_run
from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan
from cnnprobe.studies.report import study_report
from cnnprobe.studies.runner import run_study


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cnnprobe.config import RunConfig, TaskConfig, TrainConfig

    root = tmp_path_factory.mktemp("weights") / "store"
    cfg = RunConfig(task=TaskConfig(name="distance", height=16, width=16),
                    train=TrainConfig(batch_size=16, steps=12, eval_every=4, val_size=32,
                                      lr=1e-3, device="cpu"))
    with RunStore(root) as store:
        run_id, result = train_run(store, cfg)
        assert result.status == "finished"
    return root, run_id


def test_the_best_checkpoint_is_scored_on_samples_apart_from_validation(trained):
    root, run_id = trained
    with RunStore(root) as store:
        val_labels = store.predictions(run_id)[1]
        best = evaluate_run(store, run_id, which="best", n=len(val_labels), device="cpu")
        last = evaluate_run(store, run_id, which="last", n=len(val_labels), device="cpu",
                            save=False)
        saved = store.evaluations(run_id)[-1]["options"]
    assert np.array_equal(last.labels, val_labels)  # last: the run's own validation again
    assert not np.array_equal(best.labels, val_labels)  # best: other samples
    assert saved["which"] == "best" and saved["samples"] == "test"


def test_eval_best_says_where_its_samples_come_from(trained, capsys):
    root, run_id = trained
    code, out, err = run(capsys, root, "eval", run_id, "--which", "best", "--no-save")
    assert code == 0, err
    assert "a test set drawn apart from the validation set that selected" in out


def test_runs_and_compare_name_the_weights(trained, capsys):
    root, run_id = trained
    code, out, _ = run(capsys, root, "runs")
    assert code == 0 and "MAE: each run's final validation with the weights" in out
    code, out, _ = run(capsys, root, "compare", run_id, run_id[:8])
    assert "measured with" in out and "last @" in out
    assert "(selected on validation)" in out


def test_a_study_report_names_the_weights_of_its_numbers(tmp_path):
    plan = builtin_plan("distractors", "smoke", seeds=1)
    plan = dataclasses.replace(plan, evaluations=())
    store = RunStore(tmp_path)
    assert not run_study(store, plan).failed
    report = study_report(store, plan)
    lines = report.measured_lines()
    steps = plan.base.train.total_steps
    assert lines == [f"final metrics measured with: last weights (step {steps}) · BatchNorm "
                     "recalibrated on 64 training samples · input standardised with the "
                     "task's statistics"], lines
    data = json.loads(json.dumps(report.as_dict()))
    assert data["measured_with"] == lines
    assert all(v["measured"] for v in data["variants"].values())
    from cnnprobe.report.study import study_markdown

    assert "Final metrics measured with: last weights" in study_markdown(report.as_dict())
