"""The run store: an SQLite index (WAL) plus weight and array files under one folder.

`RunStore` is the public face; `export_run`/`import_run` move one run between stores as
plain data. Layers, each importing only those before it: records < schema < database <
files < checkpoints < artifacts < index (RunStore) < recorder (the trainer callback),
bundle (a run as a picklable dict); index.py describes them. Importing the package loads
neither torch nor the trainer: reading and listing runs stays fast.
"""

from __future__ import annotations

from cnnprobe.store.bundle import export_run, import_run
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
    UnreadableFile,
    default_name,
)

__all__ = ["CHECKPOINTS", "DB_NAME", "DEFAULT_ROOT", "SCHEMA_VERSION", "STATUSES",
           "SWEEP_KINDS", "Checkpoint", "RunRecord", "RunStore", "StoreError", "StoredSweep",
           "UnreadableFile", "default_name", "default_root", "export_run", "import_run"]
