"""Checkpoints: the weights, optimizer, data stream and config of a run, as torch files
written atomically (files.atomic_write) and read with weights_only."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cnnprobe.config import ConfigError, RunConfig
from cnnprobe.errors import first_line
from cnnprobe.store.files import atomic_write
from cnnprobe.store.records import Checkpoint, StoreError

FORMAT = 1  # bump when the checkpoint layout changes
KEYS = ("config", "model_state", "optimizer_state", "generator_state", "step", "samples_seen")


def write_checkpoint(path: Path, *, run_id: str, config: RunConfig, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, generator: torch.Generator, step: int,
                     samples_seen: int, best_val_mae: float) -> None:
    """Save what `load_checkpoint` needs to rebuild the model and continue training."""
    data = {"format": FORMAT, "run_id": run_id, "config": config.to_dict(),
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "generator_state": generator.get_state(), "step": int(step),
            "samples_seen": int(samples_seen), "best_val_mae": float(best_val_mae)}
    atomic_write(path, lambda f: torch.save(data, f))


class DamagedCheckpoint(StoreError):
    """A checkpoint file that cannot be read; the caller adds what the user can do instead,
    which depends on the command (eval has --which, resume only uses the last one)."""


def short_reason(exc: BaseException) -> str:
    """torch's reason for refusing a file, cut to its first sentence (its messages run to
    paragraphs of advice that does not apply here)."""
    text = first_line(exc, 160)
    head, dot, _ = text.partition(". ")
    return head + ("." if dot and not head.endswith(".") else "") if dot else text


def read_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint on the CPU; StoreError naming the file if missing, cut short or odd."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"checkpoint {path} is missing")
    try:
        # weights_only: a checkpoint is data; loading it must never run code from the file.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise DamagedCheckpoint(f"checkpoint {path} is unreadable ({short_reason(exc)}): it "
                                "is truncated or corrupt") from exc
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
                         f"({first_line(exc)})") from exc
    best = data.get("best_val_mae", math.inf)
    return Checkpoint(config, data["model_state"], data["optimizer_state"],
                      data["generator_state"], int(data["step"]), int(data["samples_seen"]),
                      float(best), run_id=str(data.get("run_id", "")), path=path)
