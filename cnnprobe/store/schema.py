"""The store's SQLite schema and its migrations.

`PRAGMA user_version` holds the schema version. MIGRATIONS[v] takes a store from version
v to v + 1; a new store runs them all. Each migration runs inside one transaction, so a
store is never left half-migrated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

# 'cnnp': marks a SQLite file as a cnnprobe store, so another program's database is refused.
APPLICATION_ID = 0x636E6E70

V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'train',
    parent_id TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    device TEXT NOT NULL DEFAULT '',
    device_name TEXT NOT NULL DEFAULT '',
    versions TEXT NOT NULL DEFAULT '{}',
    parameters INTEGER NOT NULL DEFAULT 0,
    wall_time_s REAL NOT NULL DEFAULT 0,
    samples_seen INTEGER NOT NULL DEFAULT 0,
    steps_done INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    best_val_mae REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    note TEXT NOT NULL DEFAULT '',
    resumed_at TEXT NOT NULL DEFAULT '[]',
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    pid_token TEXT NOT NULL DEFAULT '',
    heartbeat_at REAL
);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE TABLE tags (
    run_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
);
CREATE TABLE train_history (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    loss REAL,
    samples_per_s REAL,
    elapsed_s REAL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE val_history (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE sweeps (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    options TEXT NOT NULL,
    rows TEXT NOT NULL,
    PRIMARY KEY (run_id, kind)
);
CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    options TEXT NOT NULL,
    metrics TEXT NOT NULL
);
CREATE INDEX evaluations_by_run ON evaluations (run_id);
"""

# v2: each run's latest per-layer linear probe table (`cnnprobe inspect`).
V2 = """
CREATE TABLE probes (
    run_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    options TEXT NOT NULL,
    rows TEXT NOT NULL
);
"""

# v3: how each run's final metrics were made (measurement.measured: weights, BatchNorm
# statistics, input normalisation); '{}' for runs recorded before it.
V3 = """
ALTER TABLE runs ADD COLUMN measured TEXT NOT NULL DEFAULT '{}';
"""

# v4: which process trains which study trial (claims.py): a second `study run` of the same
# study skips what another holds, and takes over a claim whose owner is gone.
V4 = """
CREATE TABLE claims (
    study TEXT NOT NULL,
    trial TEXT NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_token TEXT NOT NULL DEFAULT '',
    claimed_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    PRIMARY KEY (study, trial)
) WITHOUT ROWID;
"""

# SQL text (statements split on ";") or a function of the connection, for data changes.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [V1, V2, V3, V4]


def latest_version() -> int:
    return len(MIGRATIONS)


def version_of(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    """(user_version, application_id, whether the file has any table)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    return version, app, has_tables


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the store to the latest schema in one transaction; returns the version found.

    The caller has checked the file is a cnnprobe store and not newer than this code.
    """
    conn.execute("BEGIN IMMEDIATE")  # another process may be creating the same store
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        for version in range(found, latest_version()):
            step = MIGRATIONS[version]
            if callable(step):
                step(conn)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
