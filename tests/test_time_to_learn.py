"""Time to learn: every run's final metrics say at which validation step R² first reached
0.9 and 0.99 (`steps_to_r2_90`, `steps_to_r2_99`; None when never)."""

import math
from dataclasses import replace

import pytest

from cnnprobe import metrics
from cnnprobe.engine.train import ResumeState, train
from cnnprobe.metrics import steps_to_r2
from cnnprobe.runs import resume_run, train_run
from cnnprobe.store import RunStore

NAN = math.nan
HISTORIES = [  # (validation rows as (step, r2), steps_to_r2_90, steps_to_r2_99)
    ([], None, None),
    ([(10, 0.5), (20, 0.8)], None, None),
    ([(10, 0.5), (20, 0.9), (30, 0.95)], 20, None),  # reaching the threshold counts
    ([(10, 0.91), (20, 0.995), (30, 0.2)], 10, 20),  # the first step, not the last
    ([(10, 0.99), (20, 0.999)], 10, 10),
    ([(10, NAN), (20, 0.93)], 20, None),  # R² undefined (constant labels) is not reached
    ([(10, None), (20, 0.999)], 20, 20),  # an older row without R²
]


@pytest.mark.parametrize("rows,at90,at99", HISTORIES)
def test_steps_to_r2_is_the_first_validation_at_the_threshold(rows, at90, at99):
    history = [{"step": s, "mae": 1.0, **({} if r2 is None else {"r2": r2})} for s, r2 in rows]
    assert steps_to_r2(history) == {"steps_to_r2_90": at90, "steps_to_r2_99": at99}


def test_a_run_records_time_to_learn_from_its_validation_history(tiny, monkeypatch):
    # A threshold every validation reaches, and one none does: the first eval step, and None.
    monkeypatch.setitem(metrics.R2_THRESHOLDS, "steps_to_r2_90", -math.inf)
    monkeypatch.setitem(metrics.R2_THRESHOLDS, "steps_to_r2_99", math.inf)
    result = train(tiny)
    assert [r["step"] for r in result.val_history] == [10, 20]
    assert result.final_metrics["steps_to_r2_90"] == 10
    assert result.final_metrics["steps_to_r2_99"] is None


def test_default_thresholds_match_the_runs_own_history(tiny):
    result = train(tiny)
    want = {name: next((r["step"] for r in result.val_history if r["r2"] >= t), None)
            for name, t in (("steps_to_r2_90", 0.9), ("steps_to_r2_99", 0.99))}
    assert {k: result.final_metrics[k] for k in want} == want


def test_a_resumed_run_counts_from_its_first_step(tiny, monkeypatch):
    half = train(replace(tiny, train=replace(tiny.train, steps=10)))
    state = ResumeState(half.model.state_dict(), half.optimizer.state_dict(),
                        half.generator.get_state(), half.steps_done, half.samples_seen,
                        half.best_val_mae, val_history=[{"step": 10, "r2": 0.95}])
    rest = train(tiny, resume=state)
    assert rest.final_metrics["steps_to_r2_90"] == 10  # reached before the resume


def test_resume_run_reads_the_stored_history(tmp_path, tiny, monkeypatch):
    monkeypatch.setitem(metrics.R2_THRESHOLDS, "steps_to_r2_90", -math.inf)
    store = RunStore(tmp_path)
    run_id, first = train_run(store, tiny)
    assert first.final_metrics["steps_to_r2_90"] == 10
    _, result = resume_run(store, run_id, 10)
    assert result.final_metrics["steps_to_r2_90"] == 10  # not 30, the resume's first
    assert store.get(run_id).metrics["steps_to_r2_90"] == 10


def test_never_reached_is_stored_as_null(tmp_path, tiny, monkeypatch):
    monkeypatch.setitem(metrics.R2_THRESHOLDS, "steps_to_r2_99", math.inf)
    store = RunStore(tmp_path)
    run_id, _ = train_run(store, tiny)
    rec = store.get(run_id)
    assert "steps_to_r2_99" in rec.metrics and rec.metrics["steps_to_r2_99"] is None


def test_a_cancelled_runs_final_evaluation_counts(tiny, monkeypatch):
    monkeypatch.setitem(metrics.R2_THRESHOLDS, "steps_to_r2_90", -math.inf)

    class StopAt:
        def __init__(self) -> None:
            self.calls = 0

        def is_set(self) -> bool:
            self.calls += 1
            return self.calls > 5  # after 5 steps, before the first validation (step 10)

    result = train(tiny, cancel=StopAt())
    assert result.status == "cancelled" and result.val_history == []
    assert result.final_metrics["steps_to_r2_90"] == 5


def test_quadrant_runs_report_heldout_r2_beside_heldout_mae(tiny):
    cfg = replace(tiny, task=replace(tiny.task, split="quadrant"),
                  train=replace(tiny.train, steps=2, eval_every=2))
    m = train(cfg).final_metrics
    assert {"heldout_mae", "heldout_r2", "heldout_mean_guess_mae"} <= set(m)
