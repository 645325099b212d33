"""Study throughput: the same study of small trials with N worker processes against one
(in this process), and with `--ray` on a local Ray instance, trials per minute, in the
same run and into fresh stores.

The study: 8 trials (plaincnn on 32 px distance, 4 pooling variants x 2 seeds, 300 steps
at batch 64), no evaluations. The single-worker side trains in this process with torch's
default threads; the N-worker side spawns N processes with cores/N threads each, so the
ratio includes the workers' start-up (a spawned Python importing torch). Usage:

    python bench/bench_study_workers.py [--workers 2] [--trials 8] [--steps 300] [--ray]
                                        [--json F]

With --ray the Ray backend runs the same trials as tasks of one CPU each on a local Ray
instance with --workers CPUs (its start-up is timed apart: a cluster pays it once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnnprobe.store import RunStore  # noqa: E402
from cnnprobe.studies import plan_from_dict  # noqa: E402
from cnnprobe.studies.runner import run_study  # noqa: E402

POOLS = ["max", "avg", "stride", "none"]


def make_plan(trials: int, steps: int):
    seeds = max(1, trials // len(POOLS))
    return plan_from_dict({
        "name": "bench", "seeds": seeds,
        "base": {"model.name": "plaincnn", "task.height": 32, "task.width": 32,
                 "train.steps": steps, "train.batch_size": 64, "train.val_size": 256,
                 "train.device": "cpu", "train.bn_samples": 256},
        "axis": [{"field": "model.pool", "values": POOLS[:max(1, trials // seeds)]}]},
        source="bench")


def timed(plan, workers: int, **backend) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp, RunStore(tmp) as store:
        t0 = time.perf_counter()
        progress = run_study(store, plan, workers=workers, **backend)
        took = time.perf_counter() - t0
    assert not progress.failed, progress.failed
    return took, len(progress.trained)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--ray", action="store_true", help="also time the Ray backend")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    plan = make_plan(args.trials, args.steps)
    one_s, n1 = timed(plan, 1)
    many_s, n2 = timed(plan, args.workers)
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "trials": n1, "steps": args.steps, "workers": args.workers,
           "one_worker_s": round(one_s, 1), "one_worker_trials_per_min": round(n1 / one_s * 60, 2),
           "workers_s": round(many_s, 1),
           "workers_trials_per_min": round(n2 / many_s * 60, 2),
           "ratio": round(one_s / many_s, 2)}
    print(f"{n1} trials of {args.steps} steps: 1 worker {one_s:.1f}s "
          f"({out['one_worker_trials_per_min']} trials/min); {args.workers} workers "
          f"{many_s:.1f}s ({out['workers_trials_per_min']} trials/min); "
          f"x{out['ratio']} against one")
    if args.ray:
        import logging

        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, num_gpus=0, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR)
        start_s = time.perf_counter() - t0
        ray_s, n3 = timed(plan, 1, backend="ray")
        ray.shutdown()
        out.update({"ray_start_s": round(start_s, 1), "ray_s": round(ray_s, 1),
                    "ray_trials_per_min": round(n3 / ray_s * 60, 2),
                    "ray_vs_workers": round(many_s / ray_s, 2),
                    "ray_overhead_per_trial_s": round((ray_s - many_s) / n3, 2)})
        print(f"Ray on {args.workers} CPUs: start {start_s:.1f}s, then {ray_s:.1f}s "
              f"({out['ray_trials_per_min']} trials/min); x{out['ray_vs_workers']} against "
              f"{args.workers} local workers, {out['ray_overhead_per_trial_s']:+.2f}s a trial")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
