"""The run store: an embedded SQLite index (WAL) plus weight files under one folder.

    <root>/cnnprobe.db            runs, tags, metric history, sweeps, re-evaluations,
                                  linear probe tables, claims on study trials
    <root>/<run-id>/last.pt       latest checkpoint (model, optimizer, data stream, config)
    <root>/<run-id>/best.pt       checkpoint with the lowest validation MAE
    <root>/<run-id>/predictions.npz, sweep-<kind>.npz   per-sample arrays

Layers of the package, each importing only those before it: records.py (RunRecord,
Checkpoint, StoreError; torch-free) < schema.py < database.py (connections, transactions)
< files.py (atomic writes, arrays) < checkpoints.py (torch, loaded only when a checkpoint
is read or written) < artifacts.py (what a run records as it goes and keeps: history,
checkpoints, predictions, sweeps, probes, re-evaluations), claims.py (which study driver
trains which trial) < RunStore here (runs: create,
find, list, delete, liveness) < recorder.py (the trainer callback), bundle.py (one run
with its rows and files as a picklable dict: export_run, import_run). Listing runs imports
no torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnprobe.config import RunConfig
from cnnprobe.store import schema
from cnnprobe.store.artifacts import RunArtifacts
from cnnprobe.store.claims import TrialClaims
from cnnprobe.store.provenance import hostname, process_alive, process_token, run_provenance
from cnnprobe.store.records import RunRecord, StoredRunRecord, StoreError, default_name

DEFAULT_ROOT = Path("checkpoints")
SCHEMA_VERSION = schema.latest_version()
# A run on another host whose heartbeat is older than this is taken for dead. Generous:
# a long validation or sweep sends no heartbeat.
STALE_AFTER_S = 30 * 60
# The shortest id prefix a reference may use, as git: shorter hex words (a run named `b1`
# or `42`) are names only, or every such name would clash with some id in a large store.
MIN_PREFIX = 4
DEFAULT_LOCK_TIMEOUT_S = 30.0
MAX_LOCK_TIMEOUT_S = 24 * 3600  # SQLite's busy timeout is a C int of milliseconds


def lock_timeout() -> float:
    """$CNNPROBE_LOCK_TIMEOUT: the seconds a write waits for another writer (default 30);
    StoreError unless it is a number from 0 to MAX_LOCK_TIMEOUT_S."""
    text = os.environ.get("CNNPROBE_LOCK_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_LOCK_TIMEOUT_S:  # NaN fails this too
        raise StoreError(f"CNNPROBE_LOCK_TIMEOUT={text!r} is not allowed: the seconds a write "
                         f"waits for another writer, a number from 0 to {MAX_LOCK_TIMEOUT_S} "
                         f"(default {DEFAULT_LOCK_TIMEOUT_S:g}); set one or unset it")
    return value


def default_root() -> Path:
    """$CNNPROBE_STORE, else ./checkpoints."""
    return Path(os.environ.get("CNNPROBE_STORE") or DEFAULT_ROOT)


@dataclass(frozen=True)
class RunRef:
    """A run as a reference named it: its id, its name, and how it was found ("id",
    "name", "latest" or "id prefix")."""

    id: str
    name: str
    how: str


def _record(row: sqlite3.Row) -> RunRecord:
    tags = sorted(row["tag_list"].split("\x1f")) if row["tag_list"] else []
    plain = {k: row[k] for k in (
        "id", "name", "status", "reason", "seed", "created_at", "finished_at", "device",
        "device_name", "wall_time_s", "samples_seen", "steps_done", "note", "parent_id", "kind",
        "total_steps", "parameters", "best_val_mae", "host", "pid", "heartbeat_at")}
    plain["tags"] = tags
    raw = {k: row[k] for k in StoredRunRecord.LAZY}
    return StoredRunRecord.from_columns(plain, raw, (row["task"], row["model"], row["height"],
                                                     row["width"]))


_SELECT = ("SELECT runs.*, (SELECT group_concat(tag, char(31)) FROM tags "
           "WHERE tags.run_id = runs.id) AS tag_list FROM runs")


class RunStore(RunArtifacts, TrialClaims):
    """Open (creating if needed) the store under `root`. Raises StoreError if it can't."""

    def __init__(self, root: str | Path | None = None, *, timeout: float | None = None):
        if timeout is None:  # how long a write waits for another writer before giving up
            timeout = lock_timeout()
        super().__init__(default_root() if root is None else root, timeout=timeout)
        self.mark_interrupted()

    # -- runs
    def create_run(self, config: RunConfig, *, name: str | None = None,
                   tags: list[str] | None = None, note: str = "", parent_id: str | None = None,
                   kind: str = "train") -> str:
        """Record a new run as running in this process; returns its id."""
        if kind not in ("train", "finetune"):
            raise StoreError(f"run kind {kind!r}: train or finetune")
        run_id = uuid.uuid4().hex
        now, pid = time.time(), os.getpid()
        t = config.task
        with self._write() as c:
            c.execute("INSERT INTO runs (id, name, kind, parent_id, status, config, task, model,"
                      " height, width, seed, created_at, versions, total_steps, note, host, pid,"
                      " pid_token, heartbeat_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?,"
                      " ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (run_id, name or default_name(config, run_id), kind, parent_id,
                       json.dumps(config.to_dict()), t.name, config.model.name, t.height,
                       t.width, config.train.seed, now, json.dumps(run_provenance()),
                       config.train.total_steps, note, hostname(), pid, process_token(pid), now))
            c.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)",
                          [(run_id, tag) for tag in _clean_tags(tags or [])])
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def resolve(self, ref: str) -> str:
        """The full id of the run `ref` names (see `lookup`); StoreError if none or several."""
        return self.lookup(ref).id

    def lookup(self, ref: str) -> RunRef:
        """The run `ref` names, by one rule: an exact id (any case) wins; otherwise every run
        it could mean, by exact name, by "latest" (the newest run) or by id prefix (hex, any
        case), must be one and the same run. Several candidates are an error listing each
        (id and name): a run named `cafe` or `latest` never silently stands for another run
        whose id starts `cafe`, or for the newest one. An id prefix has at least MIN_PREFIX
        characters."""
        text = ref.strip()
        key = text.lower()
        if not key:
            raise StoreError("empty run id: give a run id, a unique prefix of one, or a name")
        rows = self._read("SELECT id, name FROM runs WHERE id IN (?, ?)", (text, key))
        if rows:
            return RunRef(rows[0]["id"], rows[0]["name"], "id")
        found: dict[str, RunRef] = {}
        for r in self._read("SELECT id, name FROM runs WHERE name = ? "
                            "ORDER BY created_at DESC, id DESC", (text,)):
            found.setdefault(r["id"], RunRef(r["id"], r["name"], "name"))
        if key == "latest":
            for r in self._read("SELECT id, name FROM runs ORDER BY created_at DESC, id DESC "
                                "LIMIT 1"):
                found.setdefault(r["id"], RunRef(r["id"], r["name"], "latest"))
        hex_word = all(ch in "0123456789abcdef" for ch in key)
        if hex_word and len(key) >= MIN_PREFIX:
            for r in self._read("SELECT id, name FROM runs WHERE substr(id, 1, ?) = ? "
                                "ORDER BY created_at DESC, id DESC", (len(key), key)):
                found.setdefault(r["id"], RunRef(r["id"], r["name"], "id prefix"))
        if not found:
            if key == "latest":
                raise StoreError(f"no runs in {self.path} yet")
            short = (f" (an id prefix needs at least {MIN_PREFIX} characters)"
                     if hex_word and len(key) < MIN_PREFIX else "")
            raise StoreError(f"no run {text!r} in {self.path}{short}: `cnnprobe runs` "
                             "lists them")
        if len(found) > 1:
            refs = list(found.values())
            listed = "; ".join(f"{r.id} ({r.name!r}, by {r.how})" for r in refs[:6])
            more = f"; and {len(refs) - 6} more" if len(refs) > 6 else ""
            raise StoreError(f"run {text!r} is ambiguous, it could mean {len(refs)} "
                             f"runs: {listed}{more}; give the full id")
        return next(iter(found.values()))

    def get(self, run_id: str) -> RunRecord:
        self.mark_interrupted()
        rows = self._read(f"{_SELECT} WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}: `cnnprobe runs` lists them")
        return _record(rows[0])

    @staticmethod
    def _filters(task: str | None, model: str | None, status: str | None, tag: str | None,
                 parent_id: str | None) -> tuple[str, tuple]:
        where, args = [], []
        for column, value in (("task", task), ("model", model), ("status", status),
                              ("parent_id", parent_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM tags WHERE tags.run_id = runs.id AND tag = ?)")
            args.append(tag)
        return (f" WHERE {' AND '.join(where)}" if where else ""), tuple(args)

    def list_runs(self, *, task: str | None = None, model: str | None = None,
                  status: str | None = None, tag: str | None = None,
                  parent_id: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Newest first."""
        self.mark_interrupted()
        where, args = self._filters(task, model, status, tag, parent_id)
        sql = _SELECT + where + " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_record(r) for r in self._read(sql, args)]

    def signature(self) -> tuple:
        """A cheap fingerprint of what a run list shows: it changes when a run is added,
        deleted, renamed, noted, tagged, or changes status or final metrics, and not when a
        running run only records progress. The TUI polls this and lists the runs again
        only when it changed (one aggregate query instead of parsing every run)."""
        row = self._read(
            "SELECT count(*), total(created_at), group_concat(status, ''), "
            "total(coalesce(finished_at, 0)), total(length(name) + length(note)), "
            "total(length(metrics)), (SELECT count(*) || ':' || total(length(tag)) FROM tags) "
            "FROM runs")[0]
        return tuple(row)

    def count_runs(self, *, task: str | None = None, model: str | None = None,
                   status: str | None = None, tag: str | None = None,
                   parent_id: str | None = None) -> int:
        """How many runs list_runs would give with the same filters and no limit."""
        where, args = self._filters(task, model, status, tag, parent_id)
        return int(self._read("SELECT count(*) FROM runs" + where, args)[0][0])

    def delete(self, run_id: str, *, force: bool = False) -> None:
        """Remove a run's records and files. A run still training is refused unless `force`."""
        rec = self.get(run_id)
        if rec.status == "running" and not force:
            raise StoreError(f"run {rec.short_id} is still running (pid {rec.pid} on "
                             f"{rec.host}): stop it first")
        with self._write() as c:
            for table in ("tags", "train_history", "val_history", "sweeps", "evaluations",
                          "probes"):
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        folder = self.run_dir(run_id)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)

    def set_tags(self, run_id: str, tags: list[str]) -> None:
        self.get(run_id)
        with self._write() as c:
            c.execute("DELETE FROM tags WHERE run_id = ?", (run_id,))
            c.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)",
                          [(run_id, t) for t in _clean_tags(tags)])

    def set_note(self, run_id: str, note: str) -> None:
        self._update(run_id, note=note)

    def rename(self, run_id: str, name: str) -> None:
        if not name.strip():
            raise StoreError("a run name cannot be empty")
        self._update(run_id, name=name.strip())

    def _update(self, run_id: str, **columns: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in columns)
        with self._write() as c:
            n = c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*columns.values(), run_id))
            if n.rowcount == 0:
                raise StoreError(f"no run {run_id!r} in {self.path}")

    # -- liveness
    def mark_interrupted(self) -> list[str]:
        """Runs recorded as running whose process is gone become "interrupted"; their ids."""
        rows = self._read("SELECT id, host, pid, pid_token, heartbeat_at FROM runs "
                          "WHERE status = 'running'")
        here, now, dead = hostname(), time.time(), []
        for r in rows:
            if r["host"] == here:
                if process_alive(r["pid"] or 0, r["pid_token"]):
                    continue
                why = f"process {r['pid']} on {here} stopped without finishing (killed or crashed)"
            else:
                silent = now - (r["heartbeat_at"] or 0)
                if silent < STALE_AFTER_S:
                    continue
                why = f"no heartbeat from {r['host']} for {silent / 60:.0f} min"
            dead.append((why, r["heartbeat_at"], r["id"], r["pid"], r["host"]))
        if not dead:
            return []
        conn = self._conn()
        # Best effort and quick: a listing must not wait long on a busy store for this.
        conn.execute(f"PRAGMA busy_timeout = {int(min(self.timeout, 1.0) * 1000)}")
        try:
            with self._write() as c:
                # pid and host in the WHERE: a resume that took the run over meanwhile wins.
                c.executemany("UPDATE runs SET status = 'interrupted', reason = ?, "
                              "finished_at = ? WHERE id = ? AND status = 'running' "
                              "AND pid IS ? AND host = ?", dead)
        except StoreError:
            return []  # a busy store is checked again on the next listing
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return [d[2] for d in dead]


def _clean_tags(tags: list[str]) -> list[str]:
    out = []
    for tag in tags:
        tag = tag.strip()
        if not tag or any(ch.isspace() for ch in tag):
            raise StoreError(f"tag {tag!r}: a tag is one word, without spaces")
        out.append(tag)
    return out
