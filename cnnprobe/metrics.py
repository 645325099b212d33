"""Metrics of predictions against labels (numpy and pandas only, torch-free): what the
evaluation stores and what the TUI's error-by-label plot draws from stored predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def compute_metrics(predictions: np.ndarray, labels: np.ndarray, task: str) -> dict[str, float]:
    """MAE, RMSE, max error, R²; for count also exact-count accuracy after rounding."""
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    err = p - y
    var = float(np.sum((y - y.mean()) ** 2))
    metrics = {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "max_error": float(np.max(np.abs(err))),
        # R² is undefined when every label is the same; report NaN rather than a made-up 0.
        "r2": float(1 - np.sum(err**2) / var) if var > 0 else float("nan"),
        "n": float(len(y)),
    }
    if task == "count":
        metrics["accuracy"] = float(np.mean(np.round(p) == y))
    return metrics


def mean_guess_mae(labels: np.ndarray, reference: np.ndarray | None = None) -> float:
    """The MAE of always answering the mean of `reference` (the labels a model was trained
    on; by default `labels` themselves): the baseline a MAE on `labels` is read against.
    For a held-out region the reference is the training distribution's labels, since a
    model that learned nothing answers their mean there too."""
    y = np.asarray(labels, dtype=np.float64)
    ref = y if reference is None else np.asarray(reference, dtype=np.float64)
    return float(np.mean(np.abs(y - ref.mean())))


# Time to learn: the first validation step at which R² reached each threshold.
R2_THRESHOLDS = {"steps_to_r2_90": 0.9, "steps_to_r2_99": 0.99}


def steps_to_r2(history: list[dict[str, float]]) -> dict[str, int | None]:
    """`steps_to_r2_90` and `steps_to_r2_99`: the first step of `history` (validation rows of
    step and r2, in step order) whose R² is at least 0.9 / 0.99; None when none reached it.
    Its resolution is the run's validation interval (train.eval_every)."""
    out: dict[str, int | None] = {}
    for name, threshold in R2_THRESHOLDS.items():
        out[name] = next((int(row["step"]) for row in history
                          if isinstance(row.get("r2"), (int, float))
                          and row["r2"] >= threshold), None)
    return out


def error_by_label(labels: np.ndarray, errors: np.ndarray, bins: int = 20) -> pd.DataFrame:
    """Absolute error binned by label: the notebook's loss-vs-label scatter, summarised."""
    import pandas as pd  # here: the TUI imports this module before its first paint

    labels = np.asarray(labels, dtype=np.float64)
    lo, hi = float(labels.min()), float(labels.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    which = np.clip(np.digitize(labels, edges[1:-1]), 0, bins - 1)
    df = pd.DataFrame({"bin": which, "error": errors})
    g = df.groupby("bin")["error"]
    out = pd.DataFrame({"label_lo": edges[:-1], "label_hi": edges[1:]})
    out["label_mid"] = (out.label_lo + out.label_hi) / 2
    out["count"] = g.size().reindex(range(bins), fill_value=0).to_numpy()
    out["mae"] = g.mean().reindex(range(bins)).to_numpy()
    out["max_error"] = g.max().reindex(range(bins)).to_numpy()
    return out
