"""Which stored runs a query means, and in what order: the runs table's filter and sort in
the TUI and `cnnprobe runs --filter`. Plain Python over `RunRecord`s, torch-free.

A query is words, all of which must match (AND), case-insensitive:

- a plain word matches as a substring of the run's name, task, model, status, size
  (`64x64`), any tag, or its study (`distance seednet` or `ft64`);
- `field:value` matches that field only, as a substring: `name:`, `task:`, `model:`,
  `status:`, `tag:`, `study:` (a study's trials carry the tag `study:NAME`), `res:`
  (`res:128`), `id:` (a prefix of the run id);
- `!word` or `!field:value` must not match (`!status:failed`);
- quotes keep spaces: `name:"my run"`. A word whose field is not one of these (a tag
  such as `variant:wide`) is a plain word.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cnnprobe.store.records import RunRecord

STUDY_PREFIX = "study:"  # studies.trial.study_tag: the tag every trial of a study carries
FIELDS = ("name", "task", "model", "status", "tag", "study", "res", "id")


@dataclass(frozen=True)
class Term:
    """One word of a query: `field` None matches any searchable field."""

    value: str
    field: str | None = None
    negate: bool = False


def parse_query(text: str) -> list[Term]:
    """The terms of a query (see the module docstring); unbalanced quotes are kept as text."""
    try:
        words = shlex.split(text)
    except ValueError:  # an open quote while the user is still typing
        words = text.split()
    terms = []
    for word in words:
        negate = word.startswith("!") and len(word) > 1
        if negate:
            word = word[1:]
        field, sep, value = word.partition(":")
        field = field.lower()
        if sep and field in FIELDS:
            if value:  # "status:" alone (still typing) matches everything
                terms.append(Term(value.lower(), field, negate))
        elif word:
            terms.append(Term(word.lower(), None, negate))
    return terms


def studies(record: RunRecord) -> list[str]:
    """The studies a run is a trial of (from its `study:NAME` tags)."""
    return [t[len(STUDY_PREFIX):] for t in record.tags if t.startswith(STUDY_PREFIX)]


def searchable(record: RunRecord) -> dict[str, tuple[str, ...]]:
    """Each field's values, lower-cased, as the query matches them; under "*" every value
    but the id in one string, one per line (what a plain word is looked for in)."""
    tags = tuple(t.lower() for t in record.tags)
    values = {"name": (record.name.lower(),), "task": (record.task.lower(),),
              "model": (record.model.lower(),), "status": (record.status.lower(),),
              "res": (record.resolution,), "tag": tags,
              "study": tuple(s.lower() for s in studies(record))}
    values["*"] = ("\n".join(v for vs in values.values() for v in vs),)
    values["id"] = (record.id.lower(),)
    return values


def _term_matches(term: Term, values: dict[str, tuple[str, ...]]) -> bool:
    if term.field == "id":
        hit = values["id"][0].startswith(term.value)
    elif term.field is not None:
        hit = any(term.value in v for v in values[term.field])
    else:  # a plain word: anything but the id (hex ids would match most numbers); a
        # word has no line break, so it cannot match across two values
        hit = term.value in values["*"][0]
    return hit != term.negate


def matches(record: RunRecord, query: str | Sequence[Term]) -> bool:
    """Whether the run matches every term of the query."""
    terms = parse_query(query) if isinstance(query, str) else query
    if not terms:
        return True
    values = searchable(record)
    return all(_term_matches(t, values) for t in terms)


def filter_runs(records: Iterable[RunRecord], query: str,
                values: Callable[[RunRecord], dict[str, tuple[str, ...]]] = searchable
                ) -> list[RunRecord]:
    """The runs matching `query`, in their order. `values` may be a cache of `searchable`
    (the TUI keeps one per record while the user types)."""
    terms = parse_query(query)
    if not terms:
        return list(records)
    return [r for r in records if all(_term_matches(t, values(r)) for t in terms)]


def final_mae(record: RunRecord) -> float | None:
    """The MAE the runs table shows and sorts by: the final metrics' (none while running)."""
    mae = record.metrics.get("mae")
    return None if mae is None or mae != mae else float(mae)  # NaN sorts as missing


def _size(r: RunRecord) -> tuple[int, int]:
    return (r.config.task.height * r.config.task.width, r.config.task.height)


# Column -> the value it sorts by, and whether it sorts descending by default (newest,
# not oldest, first; every other column smallest or A first).
SORT_KEYS: dict[str, tuple[Callable[[RunRecord], Any], bool]] = {
    "status": (lambda r: r.status, False),
    "name": (lambda r: r.name.lower(), False),
    "task": (lambda r: r.task, False),
    "model": (lambda r: r.model, False),
    "res": (_size, False),
    "mae": (final_mae, False),
    "when": (lambda r: r.created_at, True),
    "id": (lambda r: r.id, False),
}
DEFAULT_SORT = ("when", True)  # newest first, as the store lists them


def sort_runs(records: Iterable[RunRecord], column: str, descending: bool | None = None
              ) -> list[RunRecord]:
    """The runs ordered by a column (`SORT_KEYS`), in its default direction unless
    `descending` says. Runs without a value (no MAE yet) come last either way; ties keep
    the order given (the store's: newest first)."""
    if column not in SORT_KEYS:
        raise ValueError(f"cannot sort runs by {column!r}: one of {', '.join(SORT_KEYS)}")
    key, default = SORT_KEYS[column]
    descending = default if descending is None else descending
    keyed = [(key(r), r) for r in records]
    have = [(k, r) for k, r in keyed if k is not None]
    missing = [r for k, r in keyed if k is None]
    have.sort(key=lambda kr: kr[0], reverse=descending)
    return [r for _, r in have] + missing
