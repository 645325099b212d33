"""What produced a reported number: which weights, which BatchNorm statistics, which input
normalisation. Torch-free, so the store, `show` and exports can say it without torch.

Every metric the lab reports (final metrics, re-evaluations, sweeps, linear probes) is
stored beside a `measured` dict made by `measured()`; `describe()` turns it into the
line printed next to the numbers.
"""

from __future__ import annotations

from typing import Any

WEIGHTS = ("last", "best")
# One default everywhere (CLI eval/sweep/inspect/finetune, TUI, exports): the final
# metrics are those of the last weights, so a sweep of "the run" uses them too.
DEFAULT_WEIGHTS = "last"
# Which weights a command on a stored run uses, in words (the TUI's dialogs say it).
WEIGHT_WORDS = {"last": "its last weights (those of its final metrics)",
                "best": "its best checkpoint (lowest validation MAE)"}
BATCHNORM = ("recalibrated", "running", "none")
INPUT_NORMS = ("none", "task", "imagenet")


def measured(weights: str, step: int, batchnorm: str, bn_samples: int = 0,
             input_norm: str = "none") -> dict[str, Any]:
    """The record of how one set of numbers was made (see the module docstring).

    weights: "last", "best" (a stored checkpoint) or "current" (mid-training);
    batchnorm: "recalibrated" on `bn_samples` fresh training samples, "running" (the
    statistics training left) or "none" (the model has no BatchNorm);
    input_norm: the model's input normalisation (models.InputNorm).
    """
    return {"weights": weights, "step": int(step), "batchnorm": batchnorm,
            "bn_samples": int(bn_samples) if batchnorm == "recalibrated" else 0,
            "input_norm": input_norm}


def describe(info: dict[str, Any] | None) -> str:
    """One line for humans, e.g. 'last weights (step 600) · BatchNorm recalibrated on 1,024
    training samples · input standardised with the task's statistics'."""
    if not info:
        return "weights, BatchNorm and input normalisation not recorded (an older run)"
    weights = info.get("weights", "?")
    parts = [f"{weights} weights (step {info.get('step', '?')})"]
    bn = info.get("batchnorm")
    if bn == "recalibrated":
        parts.append(f"BatchNorm recalibrated on {int(info.get('bn_samples', 0)):,} training "
                     "samples")
    elif bn == "running":
        parts.append("BatchNorm running statistics from training (not recalibrated)")
    elif bn == "none":
        parts.append("no BatchNorm")
    norm = info.get("input_norm")
    parts.append({"none": "raw input (no normalisation)",
                  "task": "input standardised with the task's statistics",
                  "imagenet": "input normalised with ImageNet's statistics"}.get(
                      norm, f"input normalisation {norm}"))
    return " · ".join(parts)


def describe_short(info: dict[str, Any] | None) -> str:
    """A few words for a narrow pane, e.g. 'last @ 600 · BN recalibrated · norm task'."""
    if not info:
        return "weights not recorded"
    bn = {"recalibrated": "BN recalibrated", "running": "BN running stats",
          "none": "no BN"}.get(info.get("batchnorm"), "BN ?")
    return f"{info.get('weights')} @ {info.get('step')} · {bn} · norm {info.get('input_norm')}"


def best_of(val_history: list[dict[str, float]]) -> dict[str, float] | None:
    """The validation row with the lowest MAE (the one `best` weights were saved at)."""
    rows = [r for r in val_history if r.get("mae") is not None]
    return min(rows, key=lambda r: (r["mae"], r["step"])) if rows else None
