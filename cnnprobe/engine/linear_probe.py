"""Per-layer linear probes: where in the network the answer becomes linearly readable.

For each layer, every sample's activation is pooled over space (per channel the max and
the mean: (B, 2C); vectors are used as they are), and a ridge regression from those
features to the task's target is fitted on one batch of training-distribution samples
and scored (R², MAE) on another. A high R² at a layer means a straight read-out of that
layer already gives the distance, area or count; comparing a trained with a random (or
an ImageNet-pretrained) model shows what training put there.

The ridge penalty is chosen per layer by exact leave-one-out error on the training
samples (closed form from one SVD) over a grid from nearly none to one that predicts the
mean, so a layer with more features than samples cannot fit noise: a layer of pure noise
scores R² near 0, a layer holding the target near 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnprobe.config import TaskConfig, require_int
from cnnprobe.engine.inspect import (
    INPUT,
    check_layers,
    check_size,
    hooked_forward,
    layers_of_interest,
)
from cnnprobe.metrics import compute_metrics
from cnnprobe.tasks import make_generator, make_task

# Penalties relative to the summed squared features (n per standardised column, times d).
ALPHA_GRID = 10.0 ** np.arange(-8, 4.5, 0.5)
COLUMNS = ["layer", "depth", "module", "kind", "features", "r2", "mae", "alpha"]
STREAMS = ("probe-train", "probe-test")


def pooled_features(activation_batch: np.ndarray | torch.Tensor) -> np.ndarray:
    """(B, C, H, W) -> (B, 2C): per channel the spatial max, then the spatial mean;
    (B, F) vectors pass through as they are; (B,) becomes (B, 1). float64."""
    a = activation_batch
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        return a[:, None]
    if a.ndim == 4:
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        return np.concatenate([flat.max(2), flat.mean(2)], axis=1)
    return a.reshape(a.shape[0], -1)


def _standardise(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred, unit-variance columns; a constant column (up to rounding) becomes zeros."""
    mean = X.mean(0)
    std = X.std(0, correction=0)
    flat = std <= 1e-9 * mean.abs().clamp_min(1.0)
    std = torch.where(flat, torch.ones_like(std), std)
    Z = (X - mean) / std
    Z[:, flat] = 0.0
    return Z, mean, std


def _loo_alpha(U: torch.Tensor, s: torch.Tensor, yc: torch.Tensor,
               grid: Sequence[float]) -> float:
    """The grid penalty with the lowest exact leave-one-out squared error, from the SVD of
    the standardised features and the centred targets."""
    n = len(yc)
    Uy = U.T @ yc
    U2 = U**2
    scale = max(float((s**2).sum()), 1e-12)
    best, best_err = float(grid[-1]) * scale, math.inf
    for g in grid:
        alpha = float(g) * scale
        shrink = s**2 / (s**2 + alpha)
        fitted = U @ (shrink * Uy)
        lev = U2 @ shrink + 1.0 / n  # each sample's leverage; 1/n for the intercept
        err = float((((yc - fitted) / (1.0 - lev).clamp_min(1e-12)) ** 2).mean())
        if err < best_err:
            best, best_err = alpha, err
    return best


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float | None = None,
              grid: Sequence[float] = ALPHA_GRID) -> tuple[np.ndarray, float, float]:
    """Ridge regression y ≈ X @ w + b on standardised columns; returns (w, b, alpha) with w
    and b in X's own units.

    `alpha` penalises the standardised weights; None picks it from `grid` times the summed
    squared features by exact leave-one-out error. Constant columns get weight 0.
    """
    # torch, not numpy, does the algebra: it keeps to torch.set_num_threads, while numpy's
    # OpenBLAS threads made one SVD ~100x slower on two shared cores (measured).
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64))
    if Xt.dim() != 2 or len(Xt) != len(yt) or len(yt) < 2:
        raise ValueError(f"fit_ridge needs X (n, d) and y (n,) with n >= 2, got "
                         f"{tuple(Xt.shape)} and {tuple(yt.shape)}")
    Z, mean, std = _standardise(Xt)
    yc = yt - yt.mean()
    U, s, Vh = torch.linalg.svd(Z, full_matrices=False)
    if alpha is None:
        alpha = _loo_alpha(U, s, yc, grid)
    w = (Vh.T @ ((s / (s**2 + alpha)) * (U.T @ yc))) / std
    return w.numpy(), float(yt.mean() - mean @ w), float(alpha)


def predict_ridge(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """X @ w + b, computed by torch (see fit_ridge)."""
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    return (Xt @ torch.as_tensor(w) + b).numpy()


class _Cancelled(Exception):
    """Raised between batches when the caller's cancel flag is set."""


def _pooled_batches(model: nn.Module, task_cfg: TaskConfig, n: int, stream: str, seed: int,
                    layers: list[str], batch_size: int, device: torch.device,
                    tick: Callable[[], None]) -> tuple[dict[str, list], np.ndarray, dict]:
    """Pooled features of each layer and the targets for n samples of one stream."""
    task = make_task(task_cfg)
    g = make_generator(seed, device, stream)
    feats: dict[str, list[np.ndarray]] = {name: [] for name in [INPUT, *layers]}
    info: dict[str, tuple[str, str]] = {}
    targets = []
    modules = dict(model.named_modules())

    def keep(name: str, kind: str, module: str, t: torch.Tensor) -> None:
        if name in feats:
            feats[name].append(pooled_features(t))
            info[name] = (kind, module)

    done = 0
    while done < n:
        batch = task.sample(min(batch_size, n - done), g)
        hooked = {k: modules[k] for k in layers if k in modules}
        hooked_forward(model, batch.images, hooked, keep, dedupe=False, virtual=set(layers))
        targets.append(batch.targets.cpu().numpy().astype(np.float64))
        done += len(batch)
        tick()
    return feats, np.concatenate(targets), info


@torch.no_grad()
def probe_layers(model: nn.Module, task_cfg: TaskConfig, n_train: int = 512,
                 n_test: int = 256, seed: int = 0, layers: Sequence[str] | None = None,
                 batch_size: int = 64, device: torch.device | str = "cpu", *,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: Any = None) -> pd.DataFrame:
    """One row per layer (the input first, as depth 0): a ridge probe from its pooled
    activations to the target, fitted on n_train samples of the task's training
    distribution (training distractor count) and scored on n_test others (separate
    streams of `seed`). The model runs where it is; samples are drawn on `device`.

    Columns: layer, depth, module, kind, features, r2, mae, alpha. `progress(done, total)`
    hears each batch; `cancel` (anything with is_set()) stops between batches and returns
    an empty table.
    """
    for name, value, least in (("n_train", n_train, 8), ("n_test", n_test, 2),
                               ("batch_size", batch_size, 1)):
        require_int(name, value, least)
    device = torch.device(device)
    check_size(model, task_cfg.height, task_cfg.width)
    example = make_task(task_cfg).sample(1, make_generator(seed, device, "probe-layers")).images
    if layers is None:
        names = layers_of_interest(model, example=example)
    else:
        check_layers(model, layers)
        names = [n for n in dict.fromkeys(layers) if n != INPUT]
    total = -(-n_train // batch_size) - (-n_test // batch_size)
    done = 0

    def tick() -> None:
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        done += 1
        if progress is not None:
            progress(done, total)

    try:
        train, y_train, info = _pooled_batches(model, task_cfg, n_train, STREAMS[0], seed,
                                               names, batch_size, device, tick)
        test, y_test, _ = _pooled_batches(model, task_cfg, n_test, STREAMS[1], seed, names,
                                          batch_size, device, tick)
    except _Cancelled:
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for depth, name in enumerate([INPUT, *names]):
        if not train[name]:
            continue  # a chosen module that never ran in the forward pass
        X_train, X_test = np.concatenate(train[name]), np.concatenate(test[name])
        w, b, alpha = fit_ridge(X_train, y_train)
        m = compute_metrics(predict_ridge(X_test, w, b), y_test, task_cfg.name)
        kind, module = info[name]
        rows.append({"layer": name, "depth": depth, "module": module, "kind": kind,
                     "features": X_train.shape[1], "r2": m["r2"], "mae": m["mae"],
                     "alpha": alpha})
    return pd.DataFrame(rows, columns=COLUMNS)

