"""Formatting shared by every report, the CLI and the TUI: numbers, times, config
flattening, strict JSON. The bottom of the report package; no torch, no store."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

EIGHTHS = " ▏▎▍▌▋▊▉"


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """{"task": {"height": 32}} -> {"task.height": 32}."""
    return {f"{section}.{k}": v for section, values in config.items() for k, v in values.items()}


def finite(value: Any) -> Any:
    """Non-finite floats to None, everywhere in a structure (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return finite(value.item())
    return value


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(finite(data), indent=2, allow_nan=False) + "\n"


def slug(text: str) -> str:
    """A file-name-safe version of a run name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def when(ts: float | None) -> str:
    """A unix time as local 'YYYY-MM-DD HH:MM:SS', or '' for none."""
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def counted(n: int, word: str) -> str:
    """'1 seed', '3 seeds': a count with its noun in the right number."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def num(value: Any, digits: int = 4) -> str:
    """A number for a terminal table: integers whole, others to `digits` significant."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e12 else \
            f"{value:.{digits}g}"
    return str(value)


def ago(ts: float | None, short: bool = False) -> str:
    """'2026-05-01 14:03' for a unix time ('05-01 14:03' when short)."""
    if ts is None:
        return ""
    return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M", time.localtime(ts))


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes}m{s:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def r2_bar(r2: Any, width: int = 10) -> str:
    """R² in [0, 1] as a bar of `width` cells in eighths; below 0 an empty bar."""
    if r2 is None or not isinstance(r2, (int, float)) or not math.isfinite(r2):
        return " " * width
    filled = max(0.0, min(1.0, float(r2))) * width
    whole = int(filled)
    rest = int((filled - whole) * 8)
    return ("█" * whole + (EIGHTHS[rest] if whole < width and rest else "")).ljust(width)
