"""Files beside the store's index: checkpoints and per-sample arrays, written atomically.

Every file is written to a temporary name in the same folder, flushed to disk and renamed
over the old one, so a run killed mid-write leaves the previous complete file in place.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from cnnprobe.config import ConfigError, RunConfig
from cnnprobe.store import Checkpoint, StoreError

FORMAT = 1  # bump when the checkpoint layout changes
KEYS = ("config", "model_state", "optimizer_state", "generator_state", "step", "samples_seen")


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


def write_checkpoint(path: Path, *, run_id: str, config: RunConfig, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, generator: torch.Generator, step: int,
                     samples_seen: int, best_val_mae: float) -> None:
    """Save what `load_checkpoint` needs to rebuild the model and continue training."""
    data = {"format": FORMAT, "run_id": run_id, "config": config.to_dict(),
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "generator_state": generator.get_state(), "step": int(step),
            "samples_seen": int(samples_seen), "best_val_mae": float(best_val_mae)}
    atomic_write(path, lambda f: torch.save(data, f))


def read_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint on the CPU; StoreError naming the file if missing, cut short or odd."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"checkpoint {path} is missing")
    try:
        # weights_only: a checkpoint is data; loading it must never run code from the file.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise StoreError(f"checkpoint {path} is unreadable ({_first_line(exc)}): it is "
                         "truncated or corrupt; try the other one (--which best/last)") from exc
    missing = [k for k in KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise StoreError(f"checkpoint {path} is not a cnnprobe checkpoint (no {missing[0]})")
    if int(data.get("format", 0)) > FORMAT:
        raise StoreError(f"checkpoint {path} was written by a newer cnnprobe "
                         f"(format {data['format']}); upgrade cnnprobe to read it")
    try:
        config = RunConfig.from_dict(data["config"], stored=True)
    except (ConfigError, TypeError) as exc:
        raise StoreError(f"checkpoint {path} holds a config this cnnprobe cannot read "
                         f"({_first_line(exc)})") from exc
    best = data.get("best_val_mae", math.inf)
    return Checkpoint(config, data["model_state"], data["optimizer_state"],
                      data["generator_state"], int(data["step"]), int(data["samples_seen"]),
                      float(best), run_id=str(data.get("run_id", "")), path=path)


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
        raise StoreError(f"{path} is unreadable ({_first_line(exc)}): it is truncated or "
                         "corrupt; evaluate the run again to rewrite it") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
