"""The docs' statement on validation/training overlap is measured by bench/overlap.py; its
count must agree with the probability for independent uniform draws."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnprobe.config import TaskConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from overlap import expected_distance, seen_fraction  # noqa: E402


def test_seen_fraction_matches_uniform_draws_on_a_small_image():
    # 8x8: 64*63 = 4,032 possible images; 2,560 training draws see ~47% of them.
    cfg = TaskConfig(name="distance", height=8, width=8)
    got = seen_fraction(cfg, steps=40, batch_size=64, val_size=512)
    want = expected_distance(8, 8, 40 * 64, coincident=False)
    assert 0.4 < want < 0.55
    assert abs(got - want) < 0.08, (got, want)


def test_no_training_means_nothing_seen():
    cfg = TaskConfig(name="distance", height=16, width=16)
    assert seen_fraction(cfg, steps=0, batch_size=64, val_size=64) == 0.0
