"""Can each built-in model learn each task at all? R² against the mean-guess baseline.

For every model x task, several seeds train a fixed budget (`BUDGETS`, small images, the
CPU) through the same `train()` as every run, and the final metrics (last weights,
BatchNorm recalibrated, the model's default input normalisation) are set beside the
mean guess: always predicting the mean label of the training distribution (estimated on
4,096 fresh training samples), scored on the same validation set. A model "learns" the
task when its MAE is below the mean guess's in every seed.

    .venv/bin/python bench/learnability.py                      # all models, distance+count
    .venv/bin/python bench/learnability.py --models resnet18 --tasks distance --seeds 5
    .venv/bin/python bench/learnability.py --jobs 2 --json out.json --markdown

Results are appended to the JSON file as each trial ends (`--json`, default
bench/learnability.json), and trials already there are skipped, so an interrupted
measurement continues where it stopped. `tests/test_learnability.py` (marked slow, `make
learnability`) asserts the same on fewer seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("seednet", "coordmlp", "plaincnn", "coordconv", "resnet18", "resnet34",
          "mobilenet_v3_small")
TASKS = ("distance", "count")
SIZE = 32
# Steps per model at batch 64, Adam: enough for each to pass the mean guess clearly on a
# 2-core CPU in minutes (the conv backbones are the slow ones).
BUDGETS = {"seednet": 600, "coordmlp": 600, "plaincnn": 600, "coordconv": 600,
           "resnet18": 200, "resnet34": 200, "mobilenet_v3_small": 600}
LR = {"seednet": 1e-3, "coordmlp": 1e-3}  # everything else: DEFAULT_LR
DEFAULT_LR = 1e-3
DEFAULT_JSON = Path(__file__).with_name("learnability.json")


def trial_config(model: str, task: str, seed: int, *, size: int = SIZE,
                 steps: int | None = None):
    """The run config of one trial."""
    from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig

    n = steps or BUDGETS[model]
    return RunConfig(TaskConfig(name=task, height=size, width=size),
                     ModelConfig(name=model),
                     TrainConfig(batch_size=64, steps=n, eval_every=n, val_size=1024,
                                 lr=LR.get(model, DEFAULT_LR), seed=seed, device="cpu"))


def mean_guess(cfg, labels) -> dict[str, float]:
    """MAE and R² of always answering the training distribution's mean label."""
    import numpy as np

    from cnnprobe.engine.evaluate import compute_metrics
    from cnnprobe.tasks import make_generator, make_task

    task = make_task(cfg.task)
    train_labels = task.sample(4096, make_generator(cfg.train.seed, "cpu", "mean-guess")).targets
    guess = np.full(len(labels), float(train_labels.mean()))
    m = compute_metrics(guess, labels, cfg.task.name)
    return {"mae": m["mae"], "r2": m["r2"]}


def run_trial(model: str, task: str, seed: int, size: int = SIZE,
              steps: int | None = None) -> dict[str, Any]:
    """Train one trial and return its metrics beside the mean guess."""
    import torch

    from cnnprobe.engine.train import train
    from cnnprobe.models import validate_run

    torch.set_num_threads(1)
    cfg = validate_run(trial_config(model, task, seed, size=size, steps=steps))
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    if result.status != "finished":
        return {"model": model, "task": task, "seed": seed, "size": size,
                "steps": cfg.train.steps, "status": result.status, "reason": result.reason}
    ev = result.evaluation
    return {"model": model, "task": task, "seed": seed, "size": size, "steps": cfg.train.steps,
            "lr": cfg.train.lr, "status": "finished", "wall_s": wall,
            "mae": ev.metrics["mae"], "r2": ev.metrics["r2"],
            "accuracy": ev.metrics.get("accuracy"), "mean_guess": mean_guess(cfg, ev.labels),
            "measured": result.measured}


def _key(r: dict[str, Any]) -> tuple:
    return (r["model"], r["task"], r["seed"], r["size"], r["steps"])


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, task): R² and MAE mean ± std over seeds, the mean guess, verdict."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["model"], r["task"], r["size"], r["steps"]), []).append(r)
    rows = []
    for (model, task, size, steps), rs in sorted(groups.items(), key=lambda kv: (
            MODELS.index(kv[0][0]) if kv[0][0] in MODELS else 99, kv[0][1])):
        done = [r for r in rs if r["status"] == "finished"]
        r2 = [r["r2"] for r in done]
        mae = [r["mae"] for r in done]
        guess = [r["mean_guess"]["mae"] for r in done]

        def ms(xs: list[float]) -> tuple[float, float]:
            if not xs:
                return float("nan"), float("nan")
            return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0

        rows.append({"model": model, "task": task, "size": size, "steps": steps,
                     "seeds": len(done), "failed": len(rs) - len(done),
                     "r2": ms(r2), "mae": ms(mae), "mean_guess_mae": ms(guess),
                     "learns": bool(done) and all(r["mae"] < r["mean_guess"]["mae"]
                                                  for r in done),
                     "measured": done[0]["measured"] if done else {},
                     "wall_s": statistics.fmean([r["wall_s"] for r in done]) if done else 0})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | task | steps | seeds | R² (mean ± std) | MAE (mean ± std) | "
             "mean-guess MAE | learns | s/trial |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['task']} | {r['steps']} | {r['seeds']} | "
                     f"{r['r2'][0]:.3f} ± {r['r2'][1]:.3f} | "
                     f"{r['mae'][0]:.3g} ± {r['mae'][1]:.2g} | {r['mean_guess_mae'][0]:.3g} | "
                     f"{'yes' if r['learns'] else 'NO'} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def load(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--steps", type=int, help="one budget for every model (default: BUDGETS)")
    ap.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--markdown", action="store_true", help="print the table only")
    args = ap.parse_args()
    results = load(args.json)
    if not args.markdown:
        done = {_key(r) for r in results}
        todo = []
        for model in args.models.split(","):
            for task in args.tasks.split(","):
                for seed in range(args.seeds):
                    steps = args.steps or BUDGETS[model]
                    if (model, task, seed, args.size, steps) not in done:
                        todo.append((model, task, seed, args.size, steps))
        print(f"{len(todo)} trials to run ({len(results)} already in {args.json})", flush=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_trial, *t): t for t in todo}
            for fut in as_completed(futures):
                r = fut.result()
                results.append(r)
                args.json.write_text(json.dumps(results, indent=1))
                tail = (f"R² {r['r2']:.3f}, MAE {r['mae']:.3g} (mean guess "
                        f"{r['mean_guess']['mae']:.3g}), {r['wall_s']:.0f}s"
                        if r["status"] == "finished" else f"{r['status']}: {r['reason']}")
                print(f"{r['model']}/{r['task']} seed {r['seed']}: {tail}", flush=True)
    wanted = {(m, t) for m in args.models.split(",") for t in args.tasks.split(",")}
    print(markdown(summarise([r for r in results if (r["model"], r["task"]) in wanted
                              and r["size"] == args.size])))


if __name__ == "__main__":
    main()
