"""The run store: an SQLite index (WAL) plus weight and array files under one folder.

`RunStore` is the public face; the package's layers are described in index.py. Importing
it loads neither torch nor the trainer: reading and listing runs stays fast.
"""

from __future__ import annotations

from cnnprobe.store.database import DB_NAME
from cnnprobe.store.index import DEFAULT_ROOT, SCHEMA_VERSION, RunStore, default_root
from cnnprobe.store.records import (
    CHECKPOINTS,
    STATUSES,
    SWEEP_KINDS,
    Checkpoint,
    RunRecord,
    StoredSweep,
    StoreError,
    default_name,
)

__all__ = ["CHECKPOINTS", "DB_NAME", "DEFAULT_ROOT", "SCHEMA_VERSION", "STATUSES",
           "SWEEP_KINDS", "Checkpoint", "RunRecord", "RunStore", "StoreError", "StoredSweep",
           "default_name", "default_root"]
