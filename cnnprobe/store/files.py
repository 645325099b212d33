"""Files beside the store's index, written atomically: any file (`atomic_write`) and
per-sample arrays (.npz; numpy is imported when one is read or written); torch checkpoints
are in checkpoints.py.

Every file is written to a temporary name in the same folder, flushed to disk and renamed
over the old one, so a process killed mid-write leaves the previous complete file in place.
"""

from __future__ import annotations

import os
import pickle
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cnnprobe.errors import first_line
from cnnprobe.store.records import StoreError

if TYPE_CHECKING:
    import numpy as np


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
    import numpy as np  # here, not at the top: listing runs never needs it

    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file, or None when there is none; StoreError if unreadable."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, OSError, ValueError...
        raise StoreError(f"{path} is unreadable ({first_line(exc)}): it is truncated or "
                         "corrupt; evaluate the run again to rewrite it") from exc


class _Opaque:
    """Stands for every object a checkpoint's pickle names (tensors, storages, torch
    classes): it takes any arguments and any state and does nothing, so no code from the
    file runs and torch is not needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Opaque:
        return _Opaque()

    def __setstate__(self, state: Any) -> None:
        pass


class _Dict(dict):
    """An OrderedDict of the file (a state dict, which carries `_metadata` as an attribute)."""


class _PeekUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return _Dict
        return _Opaque()

    def persistent_load(self, pid: Any) -> Any:
        return _Opaque()


def peek_checkpoint(path: Path) -> dict[str, Any]:
    """The plain values (step, samples_seen, format, run_id, ...) of a torch checkpoint
    file, read without torch: the zip archive torch.save writes, its pickle unpickled with
    every class replaced by an inert stand-in (nothing from the file is run). Tensors come
    back as stand-ins. StoreError naming the file if it is missing, cut short or not a
    checkpoint. `cnnprobe show` and the TUI read checkpoint steps this way."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if name is None:
                raise StoreError(f"checkpoint {path} holds no data.pkl: not a torch file")
            with archive.open(name) as f:
                data = _PeekUnpickler(f).load()
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle raises many types
        raise StoreError(f"checkpoint {path} is unreadable ({first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise StoreError(f"checkpoint {path} is not a cnnprobe checkpoint")
    return data
