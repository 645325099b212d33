"""Writing report files: every file of an export or none, never over an existing one
unless asked, each appearing whole (store.files.atomic_write). Only regular files are
written: a device, FIFO, socket or dangling symlink at a target is refused, --force or not;
a symlink to a regular file counts as that file (replaced with --force, the link kept)."""

from __future__ import annotations

import os
from pathlib import Path

from cnnprobe.store.files import DiskFull, NotRegularFile, atomic_write, write_target

DEFAULT_DIR = Path("exports")


class ExportError(Exception):
    """An export could not be written; the message says which path and what to do."""


def targets(out: str | Path | None, stem: str, ext: str, parts: list[str] | None
             ) -> dict[str, Path]:
    """Where each part goes: a folder (default exports/) gets <stem>[-part].<ext>; a file
    path is used as is, or as the stem of several parts."""
    out_path = Path(out) if out is not None else DEFAULT_DIR
    as_folder = out is None or out_path.is_dir() or str(out).endswith(("/", "\\"))
    if as_folder:
        base = out_path / stem
    else:
        base = out_path.with_suffix("") if out_path.suffix == f".{ext}" else out_path
        if parts is None:
            return {"": out_path}
    if parts is None:
        return {"": base.with_name(f"{base.name}.{ext}")}
    return {p: base.with_name(f"{base.name}-{p}.{ext}") for p in parts}


def write_files(files: dict[Path, str], force: bool = False) -> list[Path]:
    """Write every file or none: all targets are checked before the first is written."""
    for path in files:
        try:
            write_target(path)
        except NotRegularFile as exc:
            raise ExportError(f"{exc}; pass --out another path") from exc
        except OSError:
            pass  # a folder in the way or no permission: said below, with the path
    if not force:
        taken = [p for p in files if os.path.lexists(p)]
        if taken:
            raise ExportError(f"{taken[0]} exists: pass --force to overwrite it, or --out "
                              "another path")
    for path in files:
        blocker = next((a for a in (path.parent, *path.parent.parents)
                        if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise ExportError(f"cannot write {path}: {blocker} is a file, not a folder; pass "
                              "--out a writable path")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot write to {path.parent} ({exc.strerror or exc}): pass "
                              "--out a writable path") from exc
        if path.is_dir():
            raise ExportError(f"{path} is a folder: pass --out a file name")
    for path, text in files.items():
        try:
            atomic_write(path, lambda f, t=text: f.write(t.encode()))
        except DiskFull as exc:
            raise ExportError(str(exc)) from exc
        except OSError as exc:
            raise ExportError(f"cannot write {path} ({exc.strerror or exc}): pass --out a "
                              "writable path") from exc
    return list(files)


