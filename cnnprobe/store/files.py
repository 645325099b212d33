"""Files beside the store's index, written atomically: any file (`atomic_write`) and
per-sample arrays (.npz). numpy only; torch checkpoints are in checkpoints.py.

Every file is written to a temporary name in the same folder, flushed to disk and renamed
over the old one, so a process killed mid-write leaves the previous complete file in place.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from cnnprobe.errors import first_line
from cnnprobe.store.records import StoreError


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(file)` so that it either appears whole or not at all."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some file systems refuse to fsync a folder; the data is already on disk


def write_arrays(path: Path, **arrays: Any) -> None:
    """Compressed .npz of named arrays, written atomically."""
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file, or None when there is none; StoreError if unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, OSError, ValueError...
        raise StoreError(f"{path} is unreadable ({first_line(exc)}): it is truncated or "
                         "corrupt; evaluate the run again to rewrite it") from exc
