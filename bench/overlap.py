"""How many validation samples are identical to a training draw?

The validation stream is separate from the training stream, but both draw from the same
finite set of images: at small sizes many validation images were also seen in training.
This script draws a run's training samples exactly as the trainer does (`task.stream` on
the run's seed) and its validation set exactly as `predict` does, and counts validation
images whose signal channel equals a training image's. For `distance` it also prints the
expectation for independent uniform draws: 1 - (1 - 1/M)^N, with M the number of possible
images (ordered pairs of distinct pixels) and N the training samples.

    .venv/bin/python bench/overlap.py --task distance --sizes 8,16,32,64 --steps 600 \
        --batch-size 64 --val-size 1024
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cnnprobe.config import TaskConfig  # noqa: E402
from cnnprobe.engine.evaluate import DRAW_CHUNK  # noqa: E402
from cnnprobe.tasks import make_generator, make_task  # noqa: E402


def _digests(images: torch.Tensor) -> list[bytes]:
    signal = images[:, 0].contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in signal]


def seen_fraction(task_cfg: TaskConfig, *, steps: int, batch_size: int, val_size: int,
                  seed: int = 0) -> float:
    """Share of the run's validation samples whose image equals one of its training draws."""
    task = make_task(task_cfg)
    seen: set[bytes] = set()
    stream = task.stream(batch_size, make_generator(seed, "cpu", "train"))
    for _ in range(steps):
        seen.update(_digests(next(stream).images))
    g = make_generator(seed, "cpu", "val")
    hits = done = 0
    while done < val_size:
        batch = task.sample(min(DRAW_CHUNK, val_size - done), g)
        hits += sum(d in seen for d in _digests(batch.images))
        done += len(batch)
    return hits / val_size


def expected_distance(height: int, width: int, n_train: int, coincident: bool) -> float:
    """1 - (1 - 1/M)^N for the distance task's M possible images."""
    p = height * width
    m = p * p if coincident else p * (p - 1)
    return 1 - math.exp(n_train * math.log1p(-1 / m))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="distance")
    ap.add_argument("--sizes", default="8,16,32,64")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--val-size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = args.steps * args.batch_size
    print(f"{args.task}: {n:,} training samples ({args.steps} steps x {args.batch_size}), "
          f"{args.val_size} validation samples, seed {args.seed}")
    print("| size | validation samples seen in training | expected (uniform draws) |")
    print("|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        cfg = TaskConfig(name=args.task, height=size, width=size)
        frac = seen_fraction(cfg, steps=args.steps, batch_size=args.batch_size,
                             val_size=args.val_size, seed=args.seed)
        exp = (f"{expected_distance(size, size, n, cfg.allow_coincident):.1%}"
               if args.task == "distance" else "")
        print(f"| {size} | {frac:.1%} | {exp} |")


if __name__ == "__main__":
    main()
