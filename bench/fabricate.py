"""A store of many runs made without training (torch-free): what bench_startup.py and the
fast-start tests open. Each run gets the rows a real run records (a config, a loss history,
validation rows, final metrics, how they were measured), so the lab draws its stored plots
as it would for a trained one; the numbers are synthetic and say so in the run's note.

    python bench/fabricate.py STORE_DIR [--runs 3000]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from cnnprobe.store import RunStore  # noqa: E402

TASKS = ("distance", "area", "locate", "count")
MODELS = ("seednet", "plaincnn", "coordconv", "resnet18")
STATUSES = ("finished",) * 8 + ("failed", "cancelled")


def fabricate(root: str | Path, runs: int = 3000, *, steps: int = 40, seed: int = 0) -> list[str]:
    """`runs` stored runs in `root` (newest last), named fake-0000...; returns their ids."""
    rng = random.Random(seed)
    ids = []
    with RunStore(root) as store:
        for i in range(runs):
            task, model = TASKS[i % len(TASKS)], MODELS[(i // 4) % len(MODELS)]
            size = (32, 64, 128)[i % 3]
            cfg = RunConfig(task=TaskConfig(name=task, height=size, width=size),
                            model=ModelConfig(name=model),
                            train=TrainConfig(steps=steps, batch_size=32, device="cpu",
                                              seed=i))
            run_id = store.create_run(cfg, name=f"fake-{i:04d}", tags=[f"group{i % 7}"],
                                      note="fabricated by bench/fabricate.py (not trained)")
            store.record_start(run_id, device="cpu", device_name="fabricated",
                               parameters=1000, total_steps=steps)
            scale = rng.uniform(0.5, 2.0)
            train = [{"step": s, "loss": scale * math.exp(-s / 15) + 0.05,
                      "samples_per_s": 1000.0, "elapsed_s": s * 0.01}
                     for s in range(1, steps + 1)]
            mae = scale * 0.2
            val = [{"step": steps // 2, "mae": 2 * mae}, {"step": steps, "mae": mae}]
            store.record_progress(run_id, train, val, steps_done=steps,
                                  samples_seen=steps * 32, wall_time_s=steps * 0.01,
                                  best_val_mae=mae)
            status = STATUSES[i % len(STATUSES)]
            store.record_end(run_id, status, "" if status == "finished" else "fabricated",
                             steps_done=steps, samples_seen=steps * 32,
                             wall_time_s=steps * 0.01,
                             metrics={"mae": mae, "rmse": mae * 1.3, "r2": 0.9, "n": 64.0},
                             best_val_mae=mae)
            ids.append(run_id)
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--runs", type=int, default=3000)
    args = parser.parse_args()
    fabricate(args.store, args.runs)
    print(f"{args.runs} runs in {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
