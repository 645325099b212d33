"""One run moved between stores as plain data (a "bundle"), torch-free.

`export_run` gathers the run's row, every row of every table with a `run_id` column and
every file under its folder into a picklable dict; `import_run` puts them into another
store, so that the run there looks exactly like one trained in it (a Ray worker trains
into a store of its own and sends the run to the driver this way).

    {"format": 1, "schema": <store schema version>,
     "rows": {"runs": [row], "<table>": [rows with its run_id], ...},
     "files": {"<path relative to the run's folder>": bytes}}

The tables are found from the SQLite schema, so a table added later travels without a
change here. The integer primary key of a child table (evaluations.id) is left out and
numbered afresh on import. A bundle is data from another machine: its run id and paths
are checked before anything is written, and a run still running is refused (its pid and
host say where it ran; a `running` row from elsewhere would be marked interrupted).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from cnnprobe.errors import first_line
from cnnprobe.store.files import atomic_write
from cnnprobe.store.index import SCHEMA_VERSION, RunStore
from cnnprobe.store.records import STATUSES, StoreError

FORMAT = 1  # bump when the bundle's layout changes
KEYS = ("format", "schema", "rows", "files")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # one plain path component (uuid4().hex)


# -- the schema, read from the database itself
def _tables(conn: sqlite3.Connection) -> dict[str, list[sqlite3.Row]]:
    """Every table of the store -> its columns (PRAGMA table_info rows)."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {n: conn.execute(f"PRAGMA table_info({_quote(n)})").fetchall() for n in names}


def _run_tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """"runs" and every table with a run_id column -> the columns a bundle carries (a child
    table's integer primary key, a rowid alias, is renumbered on import and left out)."""
    out = {}
    for name, cols in _tables(conn).items():
        names = [c["name"] for c in cols]
        if name == "runs":
            out[name] = names
        elif "run_id" in names:
            out[name] = [c["name"] for c in cols if not _rowid_alias(c, cols)]
    return out


def _rowid_alias(col: sqlite3.Row, cols: list[sqlite3.Row]) -> bool:
    return (col["pk"] == 1 and str(col["type"]).upper() == "INTEGER"
            and sum(1 for c in cols if c["pk"]) == 1)


def _order(conn: sqlite3.Connection, table: str) -> str:
    """ORDER BY the table's primary key (rows come back as they were written: evaluations
    by id), else by rowid."""
    cols = conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    pk = sorted((c for c in cols if c["pk"]), key=lambda c: c["pk"])
    return ", ".join(_quote(c["name"]) for c in pk) if pk else "rowid"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _snapshot(store: RunStore) -> Iterator[sqlite3.Connection]:
    """One read transaction: every table read at the same moment (WAL readers never wait)."""
    with store._sql():
        conn = store._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")


# -- export
def export_run(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run `run_id` of `store` with its rows and files, as a picklable dict."""
    with _snapshot(store) as conn:
        run = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if run is None:
            raise StoreError(f"no run {run_id!r} in {store.path}: `cnnprobe runs` lists them")
        rows: dict[str, list[dict[str, Any]]] = {"runs": [dict(run)]}
        for table, cols in _run_tables(conn).items():
            if table == "runs":
                continue
            found = conn.execute(f"SELECT {', '.join(map(_quote, cols))} FROM {_quote(table)} "
                                 f"WHERE run_id = ? ORDER BY {_order(conn, table)}",
                                 (run_id,)).fetchall()
            if found:
                rows[table] = [dict(r) for r in found]
    folder = store.run_dir(run_id)
    files = {}
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not _leftover_temp(path):
                files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return {"format": FORMAT, "schema": SCHEMA_VERSION, "rows": rows, "files": files}


def _leftover_temp(path: Path) -> bool:
    """A temporary file of files.atomic_write left by a killed write: not part of the run."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


# -- import
def import_run(store: RunStore, bundle: dict[str, Any], *, replace: bool = False) -> str:
    """Put a run exported by `export_run` (from any store) into `store`; returns its id.

    The rows go in one write transaction and the files appear together (written to a
    temporary folder, then renamed into place). A run id already in the store raises
    StoreError unless `replace`, which removes the old run's rows and files first.
    """
    run_id, rows, files = _checked(bundle)
    folder = store.run_dir(run_id)
    staging = store.root / f".import-{run_id}-{os.getpid()}-{threading.get_ident()}.tmp"
    trash = staging.with_name(staging.name[:-4] + ".old")
    moved_old = moved_new = False
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for rel, data in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f, data=data: f.write(data))
        with store._write() as c:
            tables = _run_tables(c)
            old = c.execute("SELECT status, pid, host FROM runs WHERE id = ?",
                            (run_id,)).fetchone()
            if old is not None:
                if not replace:
                    raise StoreError(f"run {run_id[:8]} is already in {store.path}: pass "
                                     "replace=True or delete it first")
                if old["status"] == "running":
                    raise StoreError(f"run {run_id[:8]} in {store.path} is still running "
                                     f"(pid {old['pid']} on {old['host']}): stop it first")
                for table in tables:
                    key = "id" if table == "runs" else "run_id"
                    c.execute(f"DELETE FROM {_quote(table)} WHERE {key} = ?", (run_id,))
            for table, table_rows in rows.items():
                _insert(c, store, tables, table, table_rows, run_id)
            # The folder changes inside the transaction: should it fail, nothing is kept.
            if folder.exists():  # the old run's, or one left without its row: replaced
                os.replace(folder, trash)
                moved_old = True
            os.replace(staging, folder)
            moved_new = True
    except BaseException as exc:
        if moved_new:
            shutil.rmtree(folder, ignore_errors=True)
        if moved_old:
            os.replace(trash, folder)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write run {run_id[:8]} into {store.root} "
                             f"({first_line(exc)}): check the folder's space and "
                             "permissions") from exc
        raise
    shutil.rmtree(trash, ignore_errors=True)
    return run_id


def _insert(c: sqlite3.Connection, store: RunStore, tables: dict[str, list[str]], table: str,
            table_rows: list[dict[str, Any]], run_id: str) -> None:
    if table not in tables:
        raise StoreError(f"bundle of run {run_id[:8]} has rows of table {table!r}, which "
                         f"{store.path} lacks: upgrade cnnprobe")
    known = set(tables[table])
    for row in table_rows:
        if table != "runs" and row.get("run_id") != run_id:
            raise StoreError(f"bundle of run {run_id[:8]} has a {table} row of another run "
                             f"({row.get('run_id')!r}): export it again")
        # A child table's integer key, should a bundle carry one, is numbered afresh.
        cols = [k for k in row if k in known]
        unknown = sorted(set(row) - known - _skipped(c, table))
        if unknown:
            raise StoreError(f"bundle of run {run_id[:8]} has column {table}.{unknown[0]}, "
                             f"which {store.path} lacks: upgrade cnnprobe")
        c.execute(f"INSERT INTO {_quote(table)} ({', '.join(map(_quote, cols))}) "
                  f"VALUES ({', '.join('?' * len(cols))})", [row[k] for k in cols])


def _skipped(c: sqlite3.Connection, table: str) -> set[str]:
    cols = c.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    return {col["name"] for col in cols if table != "runs" and _rowid_alias(col, cols)}


def _checked(bundle: Any) -> tuple[str, dict[str, list[dict[str, Any]]], dict[str, bytes]]:
    """(run id, rows, files) of a well-formed bundle; StoreError naming the first flaw."""
    if not isinstance(bundle, dict):
        raise StoreError(f"a run bundle is a dict from export_run, not {type(bundle).__name__}")
    missing = [k for k in KEYS if k not in bundle]
    if missing:
        raise StoreError(f"not a run bundle (no {missing[0]!r}): make it with export_run")
    if bundle["format"] != FORMAT:
        raise StoreError(f"run bundle format {bundle['format']!r}: this cnnprobe reads format "
                         f"{FORMAT}; export the run with the same cnnprobe version")
    schema = bundle["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise StoreError(f"run bundle schema {schema!r} is not a schema version: export it again")
    if schema > SCHEMA_VERSION:
        raise StoreError(f"run bundle was written by a newer cnnprobe (schema {schema}, this "
                         f"one reads up to {SCHEMA_VERSION}): upgrade cnnprobe")
    rows, files = bundle["rows"], bundle["files"]
    if not isinstance(rows, dict) or not all(
            isinstance(t, str) and isinstance(rs, list) and all(isinstance(r, dict) for r in rs)
            for t, rs in rows.items()):
        raise StoreError("run bundle rows are not {table: [row dicts]}: export it again")
    runs = rows.get("runs") or []
    if len(runs) != 1:
        raise StoreError(f"run bundle holds {len(runs)} runs rows, not 1: export it again")
    run = runs[0]
    run_id = run.get("id")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise StoreError(f"run bundle has run id {run_id!r}, not a plain name: export it again")
    status = run.get("status")
    if status == "running":
        raise StoreError(f"run {run_id[:8]} is still running (pid {run.get('pid')} on "
                         f"{run.get('host')}): only a run that ended can be imported")
    if status not in STATUSES:
        raise StoreError(f"run {run_id[:8]} has status {status!r}: one of "
                         f"{', '.join(STATUSES)}")
    if not isinstance(files, dict):
        raise StoreError("run bundle files are not {path: bytes}: export it again")
    for rel, data in files.items():
        _check_path(run_id, rel)
        if not isinstance(data, bytes):
            raise StoreError(f"run {run_id[:8]}: file {rel!r} is {type(data).__name__}, "
                             "not bytes: export it again")
    return run_id, rows, files


def _check_path(run_id: str, rel: Any) -> None:
    """A file path of a bundle: relative, inside the run's folder, no tricks."""
    ok = isinstance(rel, str) and rel and "\\" not in rel and "\0" not in rel
    if ok:
        posix, win = PurePosixPath(rel), PureWindowsPath(rel)
        ok = (not posix.is_absolute() and not win.is_absolute() and not win.drive
              and all(p not in ("", ".", "..") for p in rel.split("/")))
    if not ok:
        raise StoreError(f"run {run_id[:8]}: file path {rel!r} in the bundle is not a plain "
                         "relative path inside the run's folder (no '..', not absolute)")
