"""A trial's numbers do not depend on how the study ran it (issue 20, item 3): in this
process, in 2 worker processes or as Ray tasks, the same seeds give the same metrics, bit
for bit, and every run records the threads it computed with."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan
from cnnprobe.studies.runner import run_study, trial_records
from cnnprobe.studies.trial import TRIAL_THREADS


def _plan():
    # plaincnn's convolutions sum in an order set by the thread count (1 and 2 threads
    # differ in the 8th digit after 40 steps at 32 px, more later): a check that can fail.
    plan = builtin_plan("distractors", "smoke", seeds=2)
    return dataclasses.replace(plan, evaluations=())


def _metrics(store: RunStore, plan) -> dict[str, dict[str, float]]:
    recs = trial_records(store, plan.name)
    assert len(recs) == len(plan.trials()) and {r.status for r in recs.values()} == {
        "finished"}
    return {key: dict(rec.metrics) for key, rec in recs.items()}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The study in this process while torch has 2 threads (what an interactive session on
    a 2-core machine has): the trials must still compute with one."""
    plan = _plan()
    store = RunStore(tmp_path_factory.mktemp("one") / "store")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert not run_study(store, plan, workers=1).failed
        assert torch.get_num_threads() == 2  # put back after the trials
    finally:
        torch.set_num_threads(before)
    return store, _metrics(store, plan)


def test_workers_do_not_change_a_trial_s_numbers(in_process, tmp_path):
    plan = _plan()
    store, one = in_process
    two = RunStore(tmp_path / "two")
    assert not run_study(two, plan, workers=2).failed
    assert _metrics(two, plan) == one  # exactly: same seeds, same numbers
    for rec in trial_records(store, plan.name).values():
        assert rec.versions["threads"] == TRIAL_THREADS
        assert rec.versions["deterministic_algorithms"] in (True, False)
        assert rec.versions["torch"] == torch.__version__


def test_ray_does_not_change_a_trial_s_numbers(in_process, tmp_path, ray_instance):
    plan = _plan()
    _, one = in_process
    remote = RunStore(tmp_path / "ray")
    assert not run_study(remote, plan, backend="ray").failed
    assert _metrics(remote, plan) == one
    assert {r.versions["threads"] for r in trial_records(remote, plan.name).values()} == {
        TRIAL_THREADS}
