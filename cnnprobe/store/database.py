"""One SQLite file shared by threads and processes: connections, transactions, errors.

Each thread gets its own connection (the TUI calls the store from worker threads and the
UI thread); writes are short BEGIN IMMEDIATE transactions that wait up to `timeout`
seconds for another writer instead of failing. Every sqlite3 error leaves as a one-line
StoreError that says what to do.

A store in a folder this process cannot write (a read-only mount, another user's folder)
is opened read-only: listing and showing runs work, and a write is refused with one line
that says so (and offers chmod only where it can work).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from cnnprobe.store import schema
from cnnprobe.store.records import StoreError

DB_NAME = "cnnprobe.db"
_Self = TypeVar("_Self", bound="StoreDatabase")


def read_only_mount(path: Path) -> bool:
    """Whether `path` is on a file system mounted read-only (no chmod can help there)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def writable(path: Path) -> bool:
    """Whether this process may create files in the folder `path` (root too: os.access
    says no for root only on a read-only mount, which the mount flag says as well)."""
    return os.access(path, os.W_OK) and not read_only_mount(path)


def can_chmod(path: Path) -> bool:
    """Whether `chmod u+w path` can work: ours, on a writable file system."""
    try:
        return os.stat(path).st_uid == os.geteuid() and not read_only_mount(path)
    except (OSError, AttributeError):
        return False


class StoreDatabase:
    """The store's SQLite index under `root`, created or migrated to the latest schema."""

    def __init__(self, root: str | Path, *, timeout: float = 30.0):
        self.root = Path(root)
        self.path = self.root / DB_NAME
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store {self.root} is a file, not a folder: pass --store DIR")
        # A store that exists in a folder we cannot write is read, never changed.
        self.read_only = self.path.is_file() and not writable(self.root)
        if not self.read_only:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store folder {self.root} "
                                 f"({exc.strerror}): pass --store DIR") from exc
        self._refuse_a_lost_index()
        if not self.read_only:
            self._mend_sidecars()
        with self._sql():
            self._open_schema()

    def _sidecars(self) -> list[Path]:
        return [self.path.with_name(DB_NAME + suffix) for suffix in ("-wal", "-shm")]

    def _mend_sidecars(self) -> None:
        """SQLite creates -wal and -shm with the index's mode: opened while cnnprobe.db was
        read-only, they stay read-only after the user fixes cnnprobe.db, and the store with
        them. Ours and the index writable again: give them the index's mode back."""
        if not self.path.is_file() or not os.access(self.path, os.W_OK):
            return
        mode = self.path.stat().st_mode & 0o777
        for side in self._sidecars():
            if side.is_file() and not os.access(side, os.W_OK):
                try:
                    side.chmod(mode)
                except OSError:
                    pass  # not ours: the error on writing names the file and the fix

    def _not_writable(self) -> str:
        """Which part of the store cannot be written, and how to fix it ("" if none)."""
        if not writable(self.root):
            return self._read_only_error()
        for path in (self.path, *self._sidecars()):
            if path.is_file() and not os.access(path, os.W_OK):
                fix = f"chmod u+w {path}, or " if can_chmod(path) else ""
                return f"{path} is read-only: {fix}pass --store DIR"
        return ""

    def _read_only_error(self) -> str:
        """Why this store cannot be changed, and what can be done instead."""
        if read_only_mount(self.root):
            what, fix = f"{self.root} is on a read-only file system", ""
        else:
            what = (f"the store folder {self.root} is read-only for this user (SQLite keeps "
                    f"{DB_NAME}-wal and -shm beside the index)")
            fix = f"chmod u+w {self.root}, or " if can_chmod(self.root) else ""
        if not self.path.is_file():
            return f"cannot make a store here: {what}; {fix}pass --store DIR"
        return (f"{what}: its runs can be listed and shown, not changed; {fix}copy the "
                "folder somewhere writable and pass --store DIR")

    def _refuse_a_lost_index(self) -> None:
        """An index cut to zero bytes beside run folders would silently become a new empty
        store that hides them: refuse, say what is there, and change nothing."""
        wal = self.path.with_name(DB_NAME + "-wal")
        if not self.path.is_file() or self.path.stat().st_size or (
                wal.is_file() and wal.stat().st_size):
            return
        runs = [p.name for p in self.root.iterdir() if p.is_dir() and len(p.name) == 32
                and all(ch in "0123456789abcdef" for ch in p.name)]
        if runs:
            raise StoreError(
                f"{self.path} is empty (0 bytes) but {len(runs)} run folder(s) are beside it: "
                "the index was lost, and opening it would hide them. Nothing was changed. "
                f"Restore {DB_NAME} from a backup, or to start a new store here move the run "
                f"folders out of it first: mkdir {self.root}.lost && mv {self.root}/"
                f"{'?' * 32} {self.root}.lost/")
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            target: str | Path = self.path
            if self.read_only:  # never creates -wal or -shm, never writes
                target = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
                wal = self._sidecars()[0]
                if not (wal.is_file() and wal.stat().st_size):
                    # Nothing unmerged to read, and no -shm can be made here: the file
                    # is taken as it is (immutable), which needs no shared memory.
                    target += "&immutable=1"
            conn = sqlite3.connect(target, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False, uri=self.read_only)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")  # a finished run stays finished
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        low = text.lower()
        if "not a database" in low or "encrypted" in low or "no such table" in low:
            return StoreError(f"{self.path} is not a cnnprobe store ({text}): move it away or "
                              "pass --store DIR")
        if "locked" in low or "busy" in low:
            return StoreError(f"{self.path} is locked by another process (waited "
                              f"{self.timeout:g}s): try again when it is done, or pass --store DIR")
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            which = self._not_writable()
            if which:
                return StoreError(which)
        if "readonly" in low or "read-only" in low:
            return StoreError(f"{self.path} is read-only: fix its permissions or pass --store DIR")
        if "unable to open" in low:
            return StoreError(f"cannot open {self.path} ({text}): check the folder's "
                              "permissions or pass --store DIR")
        if "malformed" in low or "i/o error" in low:
            return StoreError(f"{self.path} is damaged ({text}): restore it from a backup "
                              "or pass --store DIR")
        return StoreError(f"store {self.path}: {text}")

    @contextmanager
    def _sql(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; another writer makes it wait, not fail."""
        if self.read_only:
            raise StoreError(self._read_only_error())
        with self._sql():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._sql():
            return self._conn().execute(sql, args).fetchall()

    def _open_schema(self) -> None:
        conn = self._conn()
        version, app, has_tables = schema.version_of(conn)
        if app not in (0, schema.APPLICATION_ID) or (has_tables and app == 0):
            raise StoreError(f"{self.path} is not a cnnprobe store (another program's "
                             "database): move it away or pass --store DIR")
        if version > schema.latest_version():
            raise StoreError(f"{self.path} was written by a newer cnnprobe (schema {version}, "
                             f"this one reads up to {schema.latest_version()}): upgrade "
                             "cnnprobe or pass --store DIR")
        if self.read_only:
            if version < schema.latest_version():
                raise StoreError(f"{self.path} needs an upgrade to schema "
                                 f"{schema.latest_version()} (it has {version}), which cannot "
                                 f"be written here: {self._read_only_error()}")
            return
        conn.execute("PRAGMA journal_mode = WAL")
        if version < schema.latest_version():
            if version > 0:  # keep the old file until the migration is known good
                backup = sqlite3.connect(self.root / f"{DB_NAME}.v{version}.bak")
                with backup:
                    conn.backup(backup)
                backup.close()
            schema.migrate(conn)

    @property
    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]

