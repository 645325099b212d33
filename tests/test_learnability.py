"""Every built-in model beats the mean guess on distance and count at 32 px within the
budget `bench/learnability.py` gives it (BUDGETS), on two seeds.

Slow (about half an hour on a 2-core CPU): excluded from the default run; `make
learnability` runs it. The figures with more seeds are in docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from learnability import MODELS, TASKS, run_trial  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", MODELS)
def test_model_beats_the_mean_guess(model, task):
    for seed in (0, 1):
        r = run_trial(model, task, seed)
        assert r["status"] == "finished", r.get("reason")
        assert r["measured"]["weights"] == "last"
        assert r["mae"] < r["mean_guess"]["mae"], r
        assert r["r2"] > 0.0, r
