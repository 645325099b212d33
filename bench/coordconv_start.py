"""Why was the lab's coordconv slow to start? Each suspect changed alone, 3 seeds.

`distance` at 32 px, batch 32, Adam, L1, 300 steps (validation on 256 samples every 50),
through the same `train()` as every run; the model is changed after it is built (the
`build_model` the trainer calls is wrapped). Variants:

    before        coordconv as it was: PyTorch's default init, output bias 0
    before+once   ... with the coordinates added at the first layer only (zeros elsewhere)
    before+lr3e-3 ... at lr 3e-3
    before+bias   ... with the head's output bias at the labels' mean (16.8 px)
    before+affine ... with the output as 16.8 + 8.1 x head (the labels' mean and SD)
    before+he     ... with He init in every conv and head layer
    before+bn     ... with a BatchNorm after every conv
    coordconv     the lab's coordconv now: He init and the output bias at the labels' mean
    plaincnn      the reference conv net

At initialisation it prints, per variant and seed, the first outputs' mean and SD beside
the labels', and the pooled features' mean magnitude and their SD across images over that
magnitude (the image-dependent share); then the validation R² every 50 steps, the final
MAE and the mean guess's MAE on the same validation labels.

    PYTHONPATH=. .venv/bin/python bench/coordconv_start.py                 # all, ~15 min
    PYTHONPATH=. .venv/bin/python bench/coordconv_start.py before coordconv --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cnnprobe.engine.train as trainer  # noqa: E402
from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from cnnprobe.models.coordconv import AddCoords  # noqa: E402
from cnnprobe.tasks import make_generator  # noqa: E402

VARIANTS = ("before", "before+once", "before+lr3e-3", "before+bias", "before+affine",
            "before+he", "before+bn", "coordconv", "plaincnn")
LABEL_MEAN, LABEL_SD = 16.8, 8.1  # distance at 32 px, measured on 512 validation labels
BUILD = trainer.build_model


class NoCoords(AddCoords):
    """Zeros where the coordinates were: the conv keeps its shape, the coordinates are gone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return torch.cat([x, x.new_zeros(b, 2, h, w)], 1)


class Affine(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LABEL_MEAN + LABEL_SD * self.inner(x)


def changed(variant: str):
    def build(cfg: ModelConfig, in_channels: int) -> nn.Module:
        model = BUILD(cfg, in_channels)
        if not variant.startswith("before"):
            return model
        model.output_bias_from_labels = False  # the trainer leaves the output bias alone
        for m in model.modules():  # PyTorch's default init, as coordconv had
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
        if variant == "before+once":
            for i, layer in enumerate(x for x in model.layers if hasattr(x, "add_coords")):
                if i:
                    layer.add_coords = NoCoords()
        if variant == "before+bias":
            model.head.set_output_bias(LABEL_MEAN)
        if variant == "before+affine":
            model.head.mlp[-1] = Affine(model.head.mlp[-1])
        if variant == "before+he":
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        if variant == "before+bn":
            for layer in model.layers:
                if hasattr(layer, "conv"):
                    layer.conv = nn.Sequential(layer.conv, nn.BatchNorm2d(layer.conv.out_channels))
        return model
    return build


def config(variant: str, seed: int, steps: int) -> RunConfig:
    return RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                     model=ModelConfig(name="plaincnn" if variant == "plaincnn" else "coordconv"),
                     train=TrainConfig(batch_size=32, lr=3e-3 if variant == "before+lr3e-3" else
                                       1e-3, steps=steps, eval_every=50, val_size=256,
                                       seed=seed, device="cpu"))


def at_init(variant: str, seed: int) -> dict:
    """The untrained model on 512 validation images: outputs and pooled features."""
    cfg = trainer.validate_run(config(variant, seed, 1))
    task = trainer.make_task(cfg.task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(trainer.stream_seed(seed, "init"))
        model = trainer.build_model(cfg.model, task.in_channels)
    trainer.fit_input_norm(model, task, seed, torch.device("cpu"))
    trainer.fit_output_bias(model, task, seed, torch.device("cpu"))
    batch = task.sample(512, make_generator(seed, "cpu", "val"))
    seen = {}
    hook = model.head.register_forward_pre_hook(lambda m, a: seen.setdefault("f", a[0]))
    with torch.no_grad():
        out = model.train()(batch.images)
    hook.remove()
    f = seen["f"]
    return {"label_mean": float(batch.targets.mean()), "label_sd": float(batch.targets.std()),
            "out_mean": float(out.mean()), "out_sd": float(out.std()),
            "feature_size": float(f.abs().mean()),
            "image_share": float((f.std(0) / (f.abs().mean(0) + 1e-12)).median())}


def run(variant: str, seed: int, steps: int) -> dict:
    trainer.build_model = changed(variant)
    try:
        row = {"variant": variant, "seed": seed, **at_init(variant, seed)}
        r = trainer.train(config(variant, seed, steps))
    finally:
        trainer.build_model = BUILD
    labels = r.evaluation.labels
    return {**row, "status": r.status, "r2": [round(h["r2"], 3) for h in r.val_history],
            "mae": r.final_metrics["mae"],
            "mean_guess_mae": float(abs(labels - labels.mean()).mean()),
            "steps_to_r2_90": r.final_metrics["steps_to_r2_90"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            row = run(variant, seed, args.steps)
            rows.append(row)
            print(f"{variant:14s} seed {seed}: labels {row['label_mean']:.1f} ± "
                  f"{row['label_sd']:.1f}, first output {row['out_mean']:.3g} ± "
                  f"{row['out_sd']:.2g}, pooled |f| {row['feature_size']:.3g} (image share "
                  f"{row['image_share']:.2f}); R² by 50 steps {row['r2']}; MAE "
                  f"{row['mae']:.2f} (mean guess {row['mean_guess_mae']:.2f})", flush=True)
        final = [r["r2"][-1] for r in rows if r["variant"] == variant]
        print(f"{variant:14s} final R² {statistics.fmean(final):.2f} "
              f"({', '.join(f'{x:.2f}' for x in final)})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
