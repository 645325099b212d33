"""What a run records and keeps: progress and status, metric history, checkpoints and
predictions, sweeps, re-evaluations and linear probe tables (`RunArtifacts`). The recorder
writes through these methods; the CLI, the TUI and the exports read through them. Torch
is imported only to read or write a checkpoint (checkpoints.py).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cnnprobe.config import RunConfig
from cnnprobe.store.database import StoreDatabase
from cnnprobe.store.files import damage, peek_checkpoint, read_arrays, write_arrays
from cnnprobe.store.provenance import hostname, process_alive, process_token
from cnnprobe.store.records import (
    CHECKPOINTS,
    SWEEP_KINDS,
    Checkpoint,
    StoredSweep,
    StoreError,
    UnreadableFile,
)


def _native(value: Any) -> Any:
    """numpy scalars to plain Python for json.dumps."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_native)


def _number(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _sweep_command(run_id: str, kind: str, options: str) -> str:
    """The `cnnprobe sweep` command that makes this stored sweep again (its options)."""
    try:
        o = json.loads(options)
        extra = [f"--which {o['which']}"] if o.get("which") else []
        extra += [f"--n {int(o['n'])}"] if o.get("n") else []
        if kind == "resolution" and o.get("resolutions"):
            extra.append("--resolutions " + ",".join(str(int(r)) for r in o["resolutions"]))
        if kind == "distractors" and o.get("max_distractors") is not None:
            extra.append(f"--max-distractors {int(o['max_distractors'])}")
    except (TypeError, ValueError, KeyError, AttributeError):
        extra = []
    return " ".join(["cnnprobe sweep", run_id[:8], "--kind", kind, *extra])


class RunArtifacts(StoreDatabase):
    """The store's per-run data; RunStore adds the runs themselves."""

    # -- written while a run trains
    def record_start(self, run_id: str, *, device: str, device_name: str, parameters: int,
                     total_steps: int) -> None:
        with self._write() as c:
            c.execute("UPDATE runs SET device = ?, device_name = ?, parameters = ?, "
                      "total_steps = ?, heartbeat_at = ? WHERE id = ?",
                      (device, device_name, parameters, total_steps, time.time(), run_id))

    def record_progress(self, run_id: str, train_rows: Iterable[dict[str, float]] = (),
                        val_rows: Iterable[dict[str, float]] = (), *, steps_done: int,
                        samples_seen: int, wall_time_s: float,
                        best_val_mae: float | None = None) -> None:
        """Append history rows and move the run's counters and heartbeat, in one transaction."""
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO train_history VALUES (?, ?, ?, ?, ?)",
                          [(run_id, int(r["step"]), r["loss"], r.get("samples_per_s"),
                            r.get("elapsed_s")) for r in train_rows])
            c.executemany("INSERT OR REPLACE INTO val_history VALUES (?, ?, ?)",
                          [(run_id, int(r["step"]),
                            _dumps({k: v for k, v in r.items() if k != "step"}))
                           for r in val_rows])
            c.execute("UPDATE runs SET steps_done = ?, samples_seen = ?, wall_time_s = ?, "
                      "heartbeat_at = ?, best_val_mae = coalesce(?, best_val_mae) WHERE id = ?",
                      (steps_done, samples_seen, wall_time_s, time.time(),
                       _number(best_val_mae), run_id))

    def record_end(self, run_id: str, status: str, reason: str = "", *, steps_done: int,
                   samples_seen: int, wall_time_s: float, metrics: dict[str, float],
                   best_val_mae: float | None = None,
                   measured: dict[str, Any] | None = None) -> None:
        """Final status and metrics; `measured` says how the metrics were made."""
        now = time.time()
        with self._write() as c:
            c.execute("UPDATE runs SET status = ?, reason = ?, finished_at = ?, steps_done = ?, "
                      "samples_seen = ?, wall_time_s = ?, metrics = ?, measured = ?, "
                      "heartbeat_at = ?, best_val_mae = coalesce(?, best_val_mae) WHERE id = ?",
                      (status, reason, now, steps_done, samples_seen, wall_time_s,
                       _dumps(metrics), _dumps(measured or {}), now, _number(best_val_mae),
                       run_id))

    def set_status(self, run_id: str, status: str, reason: str = "") -> None:
        """Mark a run stopped without a trainer result (Ctrl-C twice, a failed start)."""
        with self._write() as c:
            c.execute("UPDATE runs SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
                      (status, reason, time.time(), run_id))

    def begin_segment(self, run_id: str, config: RunConfig, *, step: int,
                      samples_seen: int) -> None:
        """Take a stopped run over in this process to train it on from `step` (a resume).

        History after `step` (recorded after the checkpoint, then lost with the process)
        is dropped so the continuation does not mix with it.
        """
        with self._write() as c:
            row = c.execute("SELECT status, host, pid, pid_token, resumed_at FROM runs "
                            "WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id!r} in {self.path}")
            if row["status"] == "running" and (row["host"] != hostname() or process_alive(
                    row["pid"] or 0, row["pid_token"])):
                raise StoreError(f"run {run_id[:8]} is still running (pid {row['pid']} on "
                                 f"{row['host']}): wait for it to stop first")
            c.execute("DELETE FROM train_history WHERE run_id = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM val_history WHERE run_id = ? AND step > ?", (run_id, step))
            resumed = [*json.loads(row["resumed_at"]), step]
            pid = os.getpid()
            c.execute("UPDATE runs SET status = 'running', reason = '', finished_at = NULL, "
                      "metrics = '{}', measured = '{}', config = ?, total_steps = ?, "
                      "resumed_at = ?, host = ?, pid = ?, pid_token = ?, heartbeat_at = ?, "
                      "steps_done = ?, samples_seen = ? WHERE id = ?",
                      (_dumps(config.to_dict()), config.train.total_steps, _dumps(resumed),
                       hostname(), pid, process_token(pid), time.time(), step, samples_seen,
                       run_id))

    # -- files of a run
    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def checkpoint_path(self, run_id: str, which: str = "last") -> Path:
        if which not in CHECKPOINTS:
            raise StoreError(f"which={which!r}: one of {', '.join(CHECKPOINTS)}")
        return self.run_dir(run_id) / f"{which}.pt"

    def load_checkpoint(self, run_id: str, which: str = "last") -> Checkpoint:
        """which: "last" or "best". StoreError naming the file if missing or unreadable."""
        from cnnprobe.store.checkpoints import read_checkpoint  # torch, only when needed

        path = self.checkpoint_path(run_id, which)
        if not path.is_file():
            if not self._read("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
                raise StoreError(f"no run {run_id!r} in {self.path}")
            other = "best" if which == "last" else "last"
            hint = (f"; its {other} checkpoint exists (--which {other})"
                    if self.checkpoint_path(run_id, other).is_file() else "")
            raise StoreError(f"run {run_id[:8]} has no {which} checkpoint ({path} is missing)"
                             f"{hint}")
        return read_checkpoint(path)

    def checkpoint_step(self, run_id: str, which: str = "last") -> int:
        """The step a checkpoint was written at, read without torch (files.peek_checkpoint);
        StoreError if the file is missing or unreadable."""
        step = peek_checkpoint(self.checkpoint_path(run_id, which)).get("step")
        if not isinstance(step, int):
            raise StoreError(f"checkpoint {self.checkpoint_path(run_id, which)} has no step")
        return step

    def save_predictions(self, run_id: str, predictions: Any, labels: Any) -> None:
        write_arrays(self.run_dir(run_id) / "predictions.npz", predictions=predictions,
                     labels=labels)

    def predictions(self, run_id: str):  # -> tuple[np.ndarray, np.ndarray] | None
        """(predictions, labels) of the run's final validation, or None. UnreadableFile,
        naming the file, the run and the command that rewrites it, if it is damaged."""
        path = self.run_dir(run_id) / "predictions.npz"
        try:
            arrays = read_arrays(path)
            if arrays is None:
                return None
            pairs = arrays["predictions"], arrays["labels"]
            if pairs[0].ndim == 0 or pairs[1].ndim == 0 or len(pairs[0]) != len(pairs[1]):
                raise ValueError(f"arrays of shapes {pairs[0].shape} (predictions) and "
                                 f"{pairs[1].shape} (labels) do not pair up")
            return pairs
        except (UnreadableFile, KeyError, ValueError, IndexError) as exc:
            why = str(exc) if isinstance(exc, UnreadableFile) else \
                f"{path} is unreadable ({damage(exc)})"
            try:
                config = json.loads(self._read("SELECT config FROM runs WHERE id = ?",
                                               (run_id,))[0]["config"])
                n = f" --n {int(config['train']['val_size'])}"
            except (IndexError, KeyError, TypeError, ValueError):
                n = ""
            raise UnreadableFile(f"run {run_id[:8]}: {why}; `cnnprobe eval {run_id[:8]}{n}` "
                                 "(its own settings) rewrites it", path, run_id) from exc

    # -- metric history
    def train_history(self, run_id: str) -> list[dict[str, float]]:
        """Rows of step, loss, samples_per_s, elapsed_s, oldest first."""
        rows = self._read("SELECT step, loss, samples_per_s, elapsed_s FROM train_history "
                          "WHERE run_id = ? ORDER BY step", (run_id,))
        return [dict(r) for r in rows]

    def val_history(self, run_id: str) -> list[dict[str, float]]:
        """Rows of step and the validation metrics (mae, rmse, max_error, r2, ...)."""
        rows = self._read("SELECT step, metrics FROM val_history WHERE run_id = ? ORDER BY step",
                          (run_id,))
        return [{"step": r["step"], **json.loads(r["metrics"])} for r in rows]

    # -- sweeps
    def save_sweep(self, run_id: str, kind: str, table, samples,
                   options: dict[str, Any] | None = None) -> None:
        """kind: "resolution" or "distractors"; table/samples as in evaluate.Sweep.

        Replaces the run's previous sweep of that kind.
        """
        if kind not in SWEEP_KINDS:
            raise StoreError(f"sweep kind {kind!r}: one of {', '.join(SWEEP_KINDS)}")
        write_arrays(self.root / run_id / f"sweep-{kind}.npz",
                     **{col: samples[col].to_numpy() for col in samples.columns})
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO sweeps VALUES (?, ?, ?, ?, ?)",
                      (run_id, kind, time.time(), _dumps(options or {}),
                       _dumps(table.to_dict(orient="records"))))

    def sweep_table(self, run_id: str, kind: str):  # -> pandas.DataFrame | None
        """The table of the run's stored sweep of this kind (one row per swept value), from
        the index alone: its samples file is not read. None if there is no such sweep."""
        import pandas as pd

        rows = self._read("SELECT rows FROM sweeps WHERE run_id = ? AND kind = ?",
                          (run_id, kind))
        return pd.DataFrame(json.loads(rows[0]["rows"])) if rows else None

    def sweep(self, run_id: str, kind: str) -> StoredSweep | None:
        """The run's stored sweep of this kind (samples empty if their file is gone), or None.
        UnreadableFile, naming the file, the run and the command that rewrites it, if the
        samples file is damaged."""
        import pandas as pd

        rows = self._read("SELECT rows, options FROM sweeps WHERE run_id = ? AND kind = ?",
                          (run_id, kind))
        if not rows:
            return None
        path = self.root / run_id / f"sweep-{kind}.npz"
        try:
            samples = pd.DataFrame(read_arrays(path) or {})
        except (UnreadableFile, ValueError) as exc:
            why = str(exc) if isinstance(exc, UnreadableFile) else \
                f"{path} is unreadable ({damage(exc)})"
            again = _sweep_command(run_id, kind, rows[0]["options"])
            raise UnreadableFile(f"run {run_id[:8]}: {why}; `{again}` rewrites it", path,
                                 run_id) from exc
        return StoredSweep(pd.DataFrame(json.loads(rows[0]["rows"])), samples)

    def sweeps(self, run_id: str) -> list[dict[str, Any]]:
        """kind, created_at and options of each stored sweep of the run."""
        rows = self._read("SELECT kind, created_at, options FROM sweeps WHERE run_id = ? "
                          "ORDER BY kind DESC", (run_id,))
        return [{"kind": r["kind"], "created_at": r["created_at"],
                 "options": json.loads(r["options"])} for r in rows]

    # -- linear probes
    def save_probes(self, run_id: str, table, options: dict[str, Any] | None = None) -> None:
        """Keep a per-layer linear probe table (linear_probe.probe_layers) with the run,
        replacing its previous one; `options` says how it was made (checkpoint, size...)."""
        rows = table.to_dict(orient="records")
        with self._write() as c:
            if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"no run {run_id!r} in {self.path}")
            c.execute("INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?)",
                      (run_id, time.time(), _dumps(options or {}), _dumps(rows)))

    def probes(self, run_id: str):  # -> pandas.DataFrame | None
        """The run's stored linear probe table (one row per layer), or None."""
        import pandas as pd

        rows = self._read("SELECT rows FROM probes WHERE run_id = ?", (run_id,))
        return pd.DataFrame(json.loads(rows[0]["rows"])) if rows else None

    def probes_info(self, run_id: str) -> dict[str, Any] | None:
        """created_at and options of the run's stored probe table, or None."""
        rows = self._read("SELECT created_at, options FROM probes WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        return {"created_at": rows[0]["created_at"], "options": json.loads(rows[0]["options"])}

    # -- re-evaluations
    def save_evaluation(self, run_id: str, options: dict[str, Any],
                        metrics: dict[str, float]) -> None:
        """Keep the metrics of a later evaluation of the run (other size, distractors...)."""
        with self._write() as c:
            c.execute("INSERT INTO evaluations (run_id, created_at, options, metrics) "
                      "VALUES (?, ?, ?, ?)", (run_id, time.time(), _dumps(options),
                                              _dumps(metrics)))

    def evaluations(self, run_id: str) -> list[dict[str, Any]]:
        """Re-evaluations of the run, oldest first: created_at, options, metrics."""
        rows = self._read("SELECT created_at, options, metrics FROM evaluations "
                          "WHERE run_id = ? ORDER BY id", (run_id,))
        return [{"created_at": r["created_at"], "options": json.loads(r["options"]),
                 "metrics": json.loads(r["metrics"])} for r in rows]
