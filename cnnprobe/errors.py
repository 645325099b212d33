"""Exceptions as the one line a user reads. The bottom of the engine: imports nothing."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """'Type: first line of the message' (cut to `limit` characters), or the type alone:
    torch's errors run to paragraphs whose first line is the useful one."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if limit is not None and len(first) > limit:
        first = first[: limit - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
