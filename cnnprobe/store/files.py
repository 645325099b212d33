"""Files beside the store's index, written atomically: any file (`atomic_write`) and
per-sample arrays (.npz; numpy is imported when one is read or written); torch checkpoints
are in checkpoints.py.

Every file is written to a temporary name in the same folder, flushed to disk and renamed
over the old one, so a process killed mid-write leaves the previous complete file in place.
Only regular files are written: a device, FIFO, socket or folder at the path is refused
before anything is created (a rename would put a file in its place: `/dev/null` as root),
and a symlink is followed on purpose: the file it points to is replaced, the link stays. A
dangling or looping link is refused (`write_target`).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import stat
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cnnprobe.errors import first_line
from cnnprobe.store.records import StoreError, UnreadableFile

if TYPE_CHECKING:
    import numpy as np


class NotRegularFile(OSError):
    """A write was refused because its path is not (and cannot become) a regular file: a
    device, a FIFO, a socket, a folder, or a link to nothing. The message is the one line."""


def kind_of(mode: int) -> str | None:
    """What a file of this st_mode is in words when it is not a regular file ("a character
    device", "a FIFO"...), else None: the check behind `write_target`, on a stat result."""
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return None if stat.S_ISREG(mode) else "not a regular file"


def write_target(path: Path) -> Path:
    """The file a write to `path` replaces: `path`, or the regular file its symlinks lead
    to. NotRegularFile naming `path` when that is a device, FIFO, socket or folder, or when
    `path` is a dangling or looping symlink; nothing is opened or created to find out."""
    path = Path(path)
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return path  # a new file
    target = path
    if stat.S_ISLNK(link.st_mode):
        target = Path(os.path.realpath(path))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotRegularFile(f"{path} is a symlink to {target}, which does not exist: "
                                 "cnnprobe never follows one to create a file (remove the "
                                 "link to write there)") from None
        except OSError as exc:
            raise NotRegularFile(f"{path} is a symlink that cannot be followed "
                                 f"({exc.strerror}; remove the link to write there)") from None
    else:
        st = link
    kind = kind_of(st.st_mode)
    if kind is not None:
        via = f" (a symlink to {target})" if target != path else ""
        raise NotRegularFile(f"{path}{via} is {kind}, not a regular file: cnnprobe never "
                             "writes to or replaces one")
    return target


# The disk, or the user's quota, is full.
FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class DiskFull(OSError):
    """A write ran out of disk space (ENOSPC, EDQUOT); the message is the one line, naming
    the file. torch.save reports this as `RuntimeError: ... unexpected pos`, so the cause
    is taken from the file's own write (`_Watched`)."""


class _Watched:
    """A file as a writer sees it, keeping the first OSError its writes raised: a writer
    such as torch.save replaces it with its own error that no longer says why."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:  # tell, seek, fileno... as the file's
        return getattr(self._f, name)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(file)` so that it either appears whole or not at all.
    Only a regular file (new, or where a symlink leads) is written: see `write_target`."""
    path = write_target(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    watched = None
    try:
        with open(tmp, "wb") as f:
            watched = _Watched(f)
            write(watched)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = exc if isinstance(exc, OSError) else getattr(watched, "error", None)
        if cause is not None and cause.errno in FULL:
            raise DiskFull(f"no space left on the disk of {path} ({errno.errorcode[cause.errno]}"
                           f"): it was not written (an earlier version of it is kept whole); "
                           "free some space, then run the command again") from exc
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
    """The arrays of an .npz file, or None when there is none; UnreadableFile (the file and
    why, no hint: the caller knows which command rewrites it) if it cannot be read."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, OSError, ValueError...
        raise UnreadableFile(f"{path} is unreadable ({damage(exc)})", path) from exc


def damage(exc: BaseException) -> str:
    """What is wrong with a file that failed to load, in a few words. numpy's advice for
    object arrays (load them with allow_pickle) is not passed on: a pickle in a store file
    is never loaded, since loading it would run code from the file."""
    text = str(exc)
    if "pickle" in text.lower():
        return "not an .npz archive: truncated, overwritten, or a pickle, which cnnprobe " \
            "never loads"
    if isinstance(exc, (zipfile.BadZipFile, EOFError)) or "zip" in text.lower():
        return f"truncated or not an .npz archive: {first_line(exc, 80)}"
    return first_line(exc, 80)


# The pickle of a checkpoint holds its structure, not its tensors (those are other
# entries): 9 KB for a seednet run, 58 KB for resnet34 with Adam's state (measured). A
# bigger one is refused unread, so a small crafted file cannot make `show` allocate much.
MAX_PICKLE = 4 << 20


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
            size = archive.getinfo(name).file_size
            if size > MAX_PICKLE:  # a compressed entry could unpack to gigabytes
                raise StoreError(f"checkpoint {path} is not a cnnprobe checkpoint: its "
                                 f"data.pkl claims {size:,} bytes, a real one is under "
                                 f"{MAX_PICKLE // 2**20} MiB; it was not read")
            with archive.open(name) as f:
                raw = f.read(MAX_PICKLE + 1)  # never more, whatever the header said
            if len(raw) > MAX_PICKLE:
                raise StoreError(f"checkpoint {path} is not a cnnprobe checkpoint: its "
                                 f"data.pkl is over {MAX_PICKLE // 2**20} MiB; it was not read")
            data = _PeekUnpickler(io.BytesIO(raw)).load()
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle raises many types
        raise StoreError(f"checkpoint {path} is unreadable ({first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise StoreError(f"checkpoint {path} is not a cnnprobe checkpoint")
    return data
