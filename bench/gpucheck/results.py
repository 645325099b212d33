"""What gpu_check finds: one Result per check or measure, the comparisons that judge a check,
and the report (printed lines, JSON written after every result, a Markdown table)."""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Result:
    """One check (passed True/False) or measure (passed None) on one device."""

    half: str  # "cpu" or "cuda": which half of the script made it
    kind: str  # "check", "measure" or "skip"
    name: str
    passed: bool | None
    value: float | None = None  # the figure (a difference, samples/s, seconds)
    unit: str = ""
    limit: float | None = None  # a check passes when value <= limit
    detail: str = ""
    seconds: float = 0.0  # how long it took to find out
    data: dict[str, Any] = field(default_factory=dict)  # every number behind the figure

    @property
    def verdict(self) -> str:
        if self.kind == "skip":
            return "skipped"
        if self.passed is None:
            return "measured"
        return "pass" if self.passed else "FAIL"


def relative_difference(reference: Iterable[float], other: Iterable[float]) -> float:
    """||other - reference|| / ||reference|| (L2); inf when either holds a non-finite value,
    so a run that blew up never passes."""
    ref = np.asarray(list(reference) if not isinstance(reference, np.ndarray) else reference,
                     dtype=np.float64).ravel()
    oth = np.asarray(list(other) if not isinstance(other, np.ndarray) else other,
                     dtype=np.float64).ravel()
    if ref.shape != oth.shape:
        raise ValueError(f"cannot compare {ref.shape} with {oth.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(oth).all()):
        return math.inf
    scale = float(np.linalg.norm(ref))
    diff = float(np.linalg.norm(oth - ref))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


def within(value: float, limit: float) -> bool:
    """A check's test: value <= limit, never for NaN."""
    return bool(value <= limit)  # NaN compares False


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if math.isinf(v) or math.isnan(v):
        return str(v)
    if unit in ("samples/s", "s", "ms", "%"):
        return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
    if v == 0:
        return "0"
    return f"{v:.2e}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.4g}"


class Report:
    """Collects results, prints one line each as they come, rewrites the JSON after each
    (so a run cut short still leaves what it found)."""

    def __init__(self, info: dict[str, Any], json_path: Path | None = None,
                 echo: Callable[[str], None] = print):
        self.info = info
        self.results: list[Result] = []
        self.json_path = json_path
        self.echo = echo

    def add(self, result: Result) -> Result:
        self.results.append(result)
        figure = _fmt(result.value, result.unit)
        limit = f" (limit {_fmt(result.limit, result.unit)})" if result.limit is not None else ""
        unit = f" {result.unit}" if figure and result.unit else ""
        detail = f"  {result.detail}" if result.detail else ""
        self.echo(f"[{result.half}] {result.verdict:<8} {result.name}: {figure}{unit}{limit}"
                  f"{detail} ({result.seconds:.1f} s)")
        self.write_json()
        return result

    def run(self, half: str, name: str, fn: Callable[[], Result | list[Result]]
            ) -> list[Result]:
        """Run one check or measure; an exception becomes a failed result naming it, and the
        script goes on (a GPU lent for minutes should not be lost to one broken part)."""
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - reported, and the rest still runs
            tb = traceback.format_exc(limit=6)
            out = Result(half, "check", name, False, detail=f"raised {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}",
                         data={"traceback": tb})
        results = out if isinstance(out, list) else [out]
        spent = time.perf_counter() - t0
        for r in results:
            if not r.seconds:
                r.seconds = spent / len(results)
            self.add(r)
        return results

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.passed is False]

    def as_dict(self) -> dict[str, Any]:
        checks = [r for r in self.results if r.kind == "check"]
        return {"info": self.info, "passed": not self.failed,
                "checks": {"total": len(checks), "passed": sum(bool(r.passed) for r in checks),
                           "failed": len(self.failed)},
                "results": [asdict(r) for r in self.results]}

    def write_json(self) -> None:
        if self.json_path is not None:
            tmp = self.json_path.with_suffix(self.json_path.suffix + ".tmp")
            tmp.write_text(json.dumps(self.as_dict(), indent=2, default=str))
            tmp.replace(self.json_path)

    def markdown(self) -> str:
        """The table for docs/benchmarks.md: every result, with the machine it ran on."""
        info = self.info
        lines = [f"`{info.get('command', 'bench/gpu_check.py')}`, {info.get('date', '')}: "
                 f"torch {info.get('torch')}, CPU {info.get('cpu')} ({info.get('threads')} "
                 f"threads), GPU {info.get('gpu') or 'none'}.", "",
                 "| half | what | result | figure | limit | s |", "|---|---|---|---:|---:|---:|"]
        for r in self.results:
            figure = _fmt(r.value, r.unit)
            if figure and r.unit:
                figure = f"{figure} {r.unit}"
            limit = _fmt(r.limit, r.unit) if r.limit is not None else ""
            what = r.name + (f" ({r.detail})" if r.detail else "")
            lines.append(f"| {r.half} | {what.replace('|', '/')} | {r.verdict} | {figure} | "
                         f"{limit} | {r.seconds:.1f} |")
        return "\n".join(lines) + "\n"
