"""Studies in parallel worker processes, stopped and killed mid-way and continued; the
slots per GPU; trials that cannot be built here; the fine-tune and held-out evaluations."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import Counter

import pytest

from cnnprobe.config import ConfigError
from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan
from cnnprobe.studies.runner import (
    FINETUNE_FACTOR,
    run_study,
    stored_studies,
    trial_metrics,
    trial_records,
    trial_slots,
)


def test_slots_per_gpu_and_on_the_cpu():
    assert trial_slots(None, None, 0) == [None]  # in this process
    assert trial_slots(3, None, 0) == ["cpu"] * 3
    assert trial_slots(None, None, 2) == ["cuda:0", "cuda:1"]
    assert trial_slots(None, 0.25, 2) == ["cuda:0", "cuda:1"] * 4
    assert trial_slots(3, 0.5, 2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert trial_slots(2, None, 2, device="cpu") == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="--gpus-per-trial.*no CUDA device here"):
        trial_slots(None, 0.5, 0)
    with pytest.raises(ConfigError, match="--gpus-per-trial"):
        trial_slots(None, 2, 1)
    with pytest.raises(ConfigError, match="--workers"):
        trial_slots(0, None, 0)


def _assert_complete_without_duplicates(store: RunStore, plan) -> None:
    keys = Counter(t.split(":", 1)[1] for r in store.list_runs(tag=f"study:{plan.name}")
                   for t in r.tags if t.startswith("trial:"))
    assert set(keys) == {t.key for t in plan.trials()} and set(keys.values()) == {1}
    assert {r.status for r in trial_records(store, plan.name).values()} == {"finished"}


def test_two_workers_train_every_trial_once_with_its_evaluations(tmp_path):
    store = RunStore(tmp_path)
    plan = builtin_plan("distractors", "smoke", seeds=2)  # 4 trials with sweeps
    steps: dict[str, int] = {}
    outcomes = []
    progress = run_study(store, plan, workers=2,
                         on_step=lambda t, s, n: steps.__setitem__(t.key, s),
                         on_trial=lambda t, what, rec: outcomes.append(what))
    assert len(progress.trained) == 4 and not progress.cancelled
    assert outcomes.count("training") == 4 and outcomes.count("finished") == 4
    # The workers' step events reached the driver: every trial's last step.
    assert steps == {t.key: t.config.train.total_steps for t in plan.trials()}
    _assert_complete_without_duplicates(store, plan)
    for rec in trial_records(store, plan.name).values():
        assert store.sweep(rec.id, "distractors") is not None
        assert rec.pid != os.getpid()  # trained in a worker process
    again = run_study(store, plan, workers=2)
    assert again.trained == [] and len(again.kept) == 4


def test_stopping_parallel_trials_stores_them_cancelled_and_a_rerun_completes(tmp_path):
    store = RunStore(tmp_path)
    plan = builtin_plan("pooling", "smoke", seeds=1)  # 16 trials
    plan.base = plan.base.__class__.from_dict(
        {**plan.base.to_dict(), "train": {**plan.base.to_dict()["train"], "steps": 400}})
    plan.variants = plan.variants[:3]
    cancel = threading.Event()

    def on_step(trial, step, total):
        if step >= 20:
            cancel.set()  # as Ctrl-C while two trials train

    first = run_study(store, plan, workers=2, cancel=cancel, on_step=on_step)
    assert first.cancelled and first.trained == []
    statuses = Counter(r.status for r in trial_records(store, plan.name).values())
    assert statuses == {"cancelled": 2}  # the third never started
    second = run_study(store, plan, workers=2)
    assert len(second.trained) == 3
    _assert_complete_without_duplicates(store, plan)


def test_a_killed_worker_interrupts_its_trial_and_a_rerun_completes(tmp_path):
    store = RunStore(tmp_path)
    plan = builtin_plan("pooling", "smoke", seeds=1)
    plan.base = plan.base.__class__.from_dict(
        {**plan.base.to_dict(), "train": {**plan.base.to_dict()["train"], "steps": 400}})
    plan.variants = plan.variants[:3]
    killed = []

    def on_step(trial, step, total):
        if step >= 20 and not killed:
            victim = multiprocessing.active_children()[0]
            killed.append(victim.pid)
            os.kill(victim.pid, signal.SIGKILL)  # as the OOM killer would

    first = run_study(store, plan, workers=2, on_step=on_step)
    # The pool goes with its worker: the trial in flight there is interrupted, no new one
    # starts (one may have finished just before).
    assert killed and first.cancelled and len(first.trained) < 3
    records = trial_records(store, plan.name).values()
    assert "interrupted" in {r.status for r in records}
    assert all(r.status != "running" for r in records)
    second = run_study(store, plan, workers=2)
    assert len(second.trained) + len(second.kept) == 3
    _assert_complete_without_duplicates(store, plan)


def test_a_trial_whose_weights_are_offline_is_skipped_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    store = RunStore(tmp_path / "store")
    plan = builtin_plan("pretrained", "smoke", seeds=1)
    said = {}
    progress = run_study(store, plan, on_trial=lambda t, what, rec: said.__setitem__(
        t.variant, what))
    assert said["resnet18-imagenet"].startswith("skipped: ")
    assert said["resnet18-random"] == "finished" and said["seednet"] == "finished"
    (skipped,) = progress.skipped
    rec = trial_records(store, "pretrained")[skipped]
    assert rec.status == "skipped" and "pretrained" in rec.reason
    assert stored_studies(store)["pretrained"] == {"finished": 2, "skipped": 1}
    assert run_study(store, plan).trained == []  # kept: --retry-failed tries again
    assert len(run_study(store, plan, retry_failed=True).skipped) == 1


def test_resolution_trials_are_fine_tuned_at_the_notebooks_ratio(tmp_path):
    store = RunStore(tmp_path)
    plan = builtin_plan("resolution", "smoke", seeds=1)
    plan.variants = [v for v in plan.variants
                     if v.label in ("seednet-pixels", "coordmlp-normalized")]
    assert len(run_study(store, plan).trained) == 2
    size = round(plan.base.task.height * FINETUNE_FACTOR)
    for key, rec in trial_records(store, "resolution").items():
        (child,) = store.list_runs(tag=f"finetune:{key}")
        assert child.parent_id == rec.id and child.config.task.height == size
        assert child.status == "finished"
        metrics = trial_metrics(store, rec)
        assert metrics["finetune_mae"] == child.metrics["mae"]
        assert metrics["mae"] == rec.metrics["mae"]
        assert store.sweep(rec.id, "resolution") is not None
        labels = store.predictions(rec.id)[1].astype(float)
        assert metrics["mean_guess_mae"] == pytest.approx(abs(labels - labels.mean()).mean())
        table = store.sweep(rec.id, "resolution").table
        at = table.loc[table["resolution"] == rec.config.task.height, "mae"].item()
        assert metrics["resolution_ratio"] == pytest.approx(table["mae"].max() / at)
    # The fine-tunes are not trials.
    assert sum(stored_studies(store)["resolution"].values()) == 2
    # seednet's pixels and coordmlp's normalized units: MAE is compared within units
    # only, the unitless resolution_min_r2 (the study's metric) across them.
    from cnnprobe.studies.report import study_report

    report = study_report(store, plan)
    assert plan.metric == "resolution_min_r2"
    assert list(report.verdicts) == [""] and "did not learn" in report.verdicts[""]
    plan.metric = "mae"
    assert set(study_report(store, plan).verdicts) == {"distance, pixels units",
                                                       "distance, normalized units"}


def test_uniform_split_trials_are_scored_on_the_held_out_quadrant(tmp_path, capsys, monkeypatch):
    from cnnprobe.runs import evaluate_run

    store = RunStore(tmp_path)
    plan = builtin_plan("position", "smoke", seeds=1)
    plan.variants = [v for v in plan.variants
                     if v.label in ("plaincnn-uniform", "plaincnn-quadrant")]
    assert {v.label for v in plan.variants} == {"plaincnn-uniform", "plaincnn-quadrant"}
    run_study(store, plan)
    by_variant = {r.name.split("-s")[0]: r for r in trial_records(store, "position").values()}
    uniform = by_variant["position-plaincnn-uniform"]
    quadrant = by_variant["position-plaincnn-quadrant"]
    assert "heldout_mae" in trial_metrics(store, quadrant)
    held = trial_metrics(store, uniform)["heldout_mae"]
    # Recomputed independently: the same quadrant, the same samples.
    again = evaluate_run(store, uniform.id, region="heldout",
                         quadrant=uniform.config.task.heldout_quadrant,
                         n=uniform.config.train.val_size, device="cpu", save=False)
    assert held == pytest.approx(again.metrics["mae"])
    # Each held-out MAE has its own baseline: the training labels' mean (the run's stored
    # validation labels) guessed for every held-out sample, recomputed here by hand; and
    # its own R² beside it.
    for rec in (uniform, quadrant):
        ev = evaluate_run(store, rec.id, region="heldout",
                          quadrant=rec.config.task.heldout_quadrant,
                          n=rec.config.train.val_size, device="cpu", save=False)
        train_mean = store.predictions(rec.id)[1].astype(float).mean()
        want = abs(ev.labels.astype(float) - train_mean).mean()
        got = trial_metrics(store, rec)
        assert got["heldout_mean_guess_mae"] == pytest.approx(want, rel=1e-6)
        assert got["heldout_mean_guess_mae"] != pytest.approx(got["mean_guess_mae"])
        assert "heldout_r2" in got
    # `study show` has a column for each: the held-out R² beside the held-out MAE.
    from cnnprobe.cli import main

    monkeypatch.setenv("COLUMNS", "240")
    capsys.readouterr()
    assert main(["--store", str(tmp_path), "study", "show", "position", "--scale", "smoke",
                 "--seeds", "1", "--no-plots"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "variant" in line)
    assert "heldout_mae" in header and "heldout_r2" in header
