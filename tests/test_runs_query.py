"""The runs filter and sort (cnnprobe/store/query.py): plain Python over run records, the
logic behind the TUI's `/` filter and sortable columns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.store import RunRecord
from cnnprobe.store.query import (
    Term,
    filter_runs,
    matches,
    parse_query,
    sort_runs,
    studies,
)
from cnnprobe.studies.trial import study_tag

ROOT = Path(__file__).resolve().parents[1]


def run(i: int, *, task="distance", model="seednet", size=64, status="finished",
        mae: float | None = 1.0, name: str | None = None, tags=(), created: float | None = None
        ) -> RunRecord:
    cfg = RunConfig(task=TaskConfig(name=task, height=size, width=size),
                    model=ModelConfig(name=model), train=TrainConfig(device="cpu"))
    return RunRecord(id=f"{i:04x}" + "ab" * 14, name=name or f"{task}-{model}-{size}",
                     status=status, reason="", config=cfg, seed=0,
                     created_at=1000.0 - i if created is None else created, finished_at=None,
                     device="cpu", device_name="cpu", versions={}, wall_time_s=1.0,
                     samples_seen=1, steps_done=1,
                     metrics={} if mae is None else {"mae": mae}, tags=list(tags))


@pytest.fixture
def runs() -> list[RunRecord]:
    return [run(1, name="baseline-wide", mae=2.0, tags=["keep"]),
            run(2, model="resnet18", size=128, status="failed", mae=None),
            run(3, task="count", model="plaincnn", mae=0.5,
                tags=[study_tag("pooling"), "variant:avg"]),
            run(4, task="area", model="resnet18", status="cancelled", mae=3.0,
                tags=[study_tag("res-shift")]),
            run(5, model="coordconv", size=32, status="running", mae=None, name="My Run")]


def ids(records) -> list[int]:
    return [int(r.id[:4], 16) for r in records]


def test_parse_words_fields_negation_and_quotes():
    assert parse_query("") == []
    assert parse_query("  Seed  STATUS:Failed ") == [Term("seed"), Term("failed", "status")]
    assert parse_query('!tag:x name:"my run"') == [Term("x", "tag", True), Term("my run", "name")]
    # a field still being typed matches everything; an unknown field is a plain word
    assert parse_query("status:") == []
    assert parse_query("variant:avg") == [Term("variant:avg")]
    # an open quote (still typing) is not an error
    assert parse_query('name:"my') == [Term('"my', "name")]
    assert parse_query("!") == [Term("!")]


def test_plain_words_match_any_field_case_insensitive_and_all_must_match(runs):
    assert ids(filter_runs(runs, "RESNET")) == [2, 4]
    assert ids(filter_runs(runs, "resnet area")) == [4]  # AND
    assert ids(filter_runs(runs, "128x128")) == [2]  # the size, as the table shows it
    assert ids(filter_runs(runs, "pooling")) == [3]  # a study's name
    assert ids(filter_runs(runs, "variant:avg")) == [3]  # a tag with a colon, as a word
    assert ids(filter_runs(runs, "my run")) == [5]  # name words
    assert ids(filter_runs(runs, "")) == [1, 2, 3, 4, 5]
    assert filter_runs(runs, "nothing-like-this") == []


def test_field_terms_match_only_their_field(runs):
    assert ids(filter_runs(runs, "status:failed")) == [2]
    assert ids(filter_runs(runs, "status:fin")) == [1, 3]  # a substring of the status
    assert ids(filter_runs(runs, "model:resnet18 status:cancelled")) == [4]
    assert ids(filter_runs(runs, "task:count")) == [3]
    assert ids(filter_runs(runs, "name:baseline")) == [1]
    assert ids(filter_runs(runs, "name:resnet")) == [2, 4]  # default names hold the model
    assert ids(filter_runs(runs, "tag:keep")) == [1]
    assert ids(filter_runs(runs, "tag:study:")) == [3, 4]
    assert ids(filter_runs(runs, "study:pool")) == [3]
    assert ids(filter_runs(runs, "study:res")) == [4]
    assert ids(filter_runs(runs, "res:32")) == [5]
    assert ids(filter_runs(runs, "model:area")) == []  # not another field's value
    assert ids(filter_runs(runs, "id:0003")) == [3]  # a prefix of the id
    assert ids(filter_runs(runs, "id:abab")) == []
    assert ids(filter_runs(runs, "abab")) == []  # plain words skip the hex id


def test_negated_terms_exclude(runs):
    assert ids(filter_runs(runs, "!status:failed !status:running")) == [1, 3, 4]
    assert ids(filter_runs(runs, "resnet !area")) == [2]


def test_matches_and_studies_read_the_trial_tags(runs):
    assert studies(runs[2]) == ["pooling"] and studies(runs[0]) == []
    assert matches(runs[2], "study:pooling task:count")
    assert matches(runs[2], [Term("pooling", "study")])
    assert not matches(runs[2], "study:pooling task:area")


def test_sort_by_a_column_missing_values_last_ties_in_store_order(runs):
    assert ids(sort_runs(runs, "mae")) == [3, 1, 4, 2, 5]  # best first; no MAE last
    assert ids(sort_runs(runs, "mae", descending=True)) == [4, 1, 3, 2, 5]  # still last
    assert ids(sort_runs(runs, "when")) == [1, 2, 3, 4, 5]  # newest first by default
    assert ids(sort_runs(runs, "when", descending=False)) == [5, 4, 3, 2, 1]
    assert ids(sort_runs(runs, "status")) == [4, 2, 1, 3, 5]  # A first, ties in given order
    assert ids(sort_runs(runs, "status", descending=True)) == [5, 1, 3, 2, 4]
    assert ids(sort_runs(runs, "res")) == [5, 1, 3, 4, 2]  # by pixel count, not as text
    assert ids(sort_runs(runs, "name")) == [4, 1, 3, 2, 5]  # case-insensitive ("My Run")
    assert ids(sort_runs(runs, "model")) == [5, 3, 2, 4, 1]
    with pytest.raises(ValueError, match="cannot sort runs by 'colour'"):
        sort_runs(runs, "colour")


def test_nan_mae_sorts_as_missing():
    records = [run(1, mae=float("nan")), run(2, mae=5.0), run(3, mae=1.0)]
    assert ids(sort_runs(records, "mae")) == [3, 2, 1]


def test_thousands_of_runs_filter_in_one_pass():
    many = [run(i, model=("seednet", "resnet18", "plaincnn")[i % 3], mae=i / 10,
                tags=[study_tag(f"s{i % 7}")] if i % 2 else []) for i in range(3000)]
    hit = filter_runs(many, "model:resnet study:s3")
    assert hit and all(r.model == "resnet18" and "study:s3" in r.tags for r in hit)
    assert len(hit) == len([i for i in range(3000) if i % 3 == 1 and i % 2 and i % 7 == 3])


def test_the_query_module_loads_without_torch_or_textual():
    code = ("import sys, cnnprobe.store.query; print(' '.join(m for m in ('torch', "
            "'textual', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == []
