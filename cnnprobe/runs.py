"""Stored runs as one verb each: train, evaluate, sweep, resume, fine-tune, inspect.

The CLI and the TUI both call these. Weights always come from the run's own checkpoint,
so a stored run built on ImageNet weights evaluates and continues without the download
cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch

from cnnprobe.admission import Admission, admit, without_download
from cnnprobe.config import (
    REGIONS,
    ConfigError,
    RunConfig,
    TaskConfig,
    require_int,
    validate_task,
)
from cnnprobe.engine.device import resolve_device
from cnnprobe.engine.evaluate import (
    DEFAULT_RESOLUTIONS,
    distractor_sweep,
    evaluation_state,
    predict,
    resolution_sweep,
)
from cnnprobe.engine.inspect import (
    INPUT,
    capture,
    check_size,
    layers_of_interest,
    run_sample,
)
from cnnprobe.engine.linear_probe import probe_layers
from cnnprobe.engine.train import CancelFlag, ResumeState, RunResult, train
from cnnprobe.errors import first_line
from cnnprobe.events import Callback
from cnnprobe.measurement import DEFAULT_WEIGHTS
from cnnprobe.metrics import mean_guess_mae
from cnnprobe.models import build_model
from cnnprobe.options import EvaluateOptions, SweepOptions, finetune_plan, resume_steps
from cnnprobe.results import Activation, Evaluation, Sweep
from cnnprobe.store import SWEEP_KINDS, Checkpoint, RunStore, StoreError
from cnnprobe.store.checkpoints import DamagedCheckpoint
from cnnprobe.store.recorder import RunRecorder
from cnnprobe.tasks import Batch


def load_model(store: RunStore, run_id: str, which: str = DEFAULT_WEIGHTS,
               device: torch.device | str = "cpu", *, hint: bool = True
               ) -> tuple[torch.nn.Module, Checkpoint]:
    """A stored run's model in eval mode on `device`, and the checkpoint it came from.

    StoreError when the checkpoint is missing, unreadable or no longer builds a model; a
    damaged one points at the other checkpoint (--which) unless `hint` is off, for a
    caller that has no --which (resume) and says what to do itself.
    """
    try:
        ckpt = store.load_checkpoint(run_id, which)
    except DamagedCheckpoint as exc:
        other = "best" if which == "last" else "last"
        if hint and store.checkpoint_path(run_id, other).is_file():
            raise StoreError(f"{exc}; its {other} checkpoint may be whole: --which {other}") \
                from exc
        raise
    try:
        model = build_model(without_download(ckpt.config).model, ckpt.config.task.in_channels)
        model.load_state_dict(ckpt.model_state)
    except (ConfigError, RuntimeError, KeyError, TypeError) as exc:
        raise StoreError(f"checkpoint {ckpt.path} no longer builds a model "
                         f"({first_line(exc, 200)}); "
                         "this cnnprobe's models differ from the one that trained it") from exc
    return model.to(device).eval(), ckpt


def _train_recorded(store: RunStore, run_id: str, config: RunConfig, callbacks: list[Callback],
                    cancel: CancelFlag | None, *, new_run: bool, **kw: Any) -> RunResult:
    try:
        return train(config, callbacks, cancel, **kw)
    except ConfigError as exc:
        # The config was validated before the record was made, so this is the model failing
        # to build (pretrained weights neither cached nor downloadable): a failed run.
        if new_run:
            store.set_status(run_id, "failed", str(exc))
        else:
            store.set_status(run_id, "failed", "could not start: see the error it printed")
        raise
    except BaseException as exc:  # Ctrl-C twice, or the store itself failing
        reason = ("stopped by Ctrl-C" if isinstance(exc, KeyboardInterrupt)
                  else first_line(exc))
        try:
            store.set_status(run_id, "interrupted", reason)
        except StoreError:
            pass  # the store is what failed; the run shows as interrupted once its pid is gone
        raise


def train_run(store: RunStore, config: RunConfig | Admission, callbacks: Iterable[Callback] = (),
              cancel: CancelFlag | None = None, *, name: str | None = None,
              tags: Sequence[str] = (), note: str = "", parent_id: str | None = None,
              kind: str = "train", init_model_state: dict[str, Any] | None = None,
              on_created: Callable[[str], None] | None = None,
              allow_slow: bool = False) -> tuple[str, RunResult]:
    """Create a run record, train with the store's recorder listening, return (id, result).

    Admission first (`admission.admit`: the config, the fit, the device, the step time),
    so a refusal raises ConfigError before anything is recorded; an `Admission` the caller
    already has is completed, not redone. `on_created` hears the new run's id before
    training starts. A config whose every step would take minutes on the CPU is refused
    (check_step_time) unless `allow_slow`.
    """
    cfg = admit(config, allow_slow=allow_slow).config
    if cfg.model.weights_path and init_model_state is None:
        # The file read and fitted to the model now (a file that is no state dict, or one
        # of another model, is a WeightsError): a refused file leaves no run behind.
        with torch.random.fork_rng(devices=[]):
            build_model(cfg.model, cfg.task.in_channels)
    run_id = store.create_run(cfg, name=name, tags=list(tags), note=note, parent_id=parent_id,
                              kind=kind)
    if on_created is not None:
        on_created(run_id)
    # The recorder first: when another listener hears Finished, the store already says so.
    listeners = [RunRecorder(store, run_id, config=cfg), *callbacks]
    return run_id, _train_recorded(store, run_id, cfg, listeners, cancel, new_run=True,
                                   init_model_state=init_model_state)


def evaluate_run(store: RunStore, run_id: str, *, height: int | None = None,
                 width: int | None = None, distractors: int | None = None,
                 region: str = EvaluateOptions.region, n: int = EvaluateOptions.n,
                 which: str = DEFAULT_WEIGHTS, device: str = EvaluateOptions.device,
                 save: bool = True,
                 precise_bn: bool | None = None, quadrant: str | None = None) -> Evaluation:
    """Evaluate a stored run's weights again, on other task options; nothing is retrained.

    Unchanged options with n = val_size and which="last" reproduce the run's final
    validation. With `save`, the metrics are kept with the run (`store.evaluations`), and
    such a reproduction also rewrites the run's predictions.npz.
    `precise_bn` None: as the run's config says (see evaluate.evaluation_state).
    `quadrant` (e.g. "bottom-right") evaluates region "heldout" as that quadrant, also for a
    run trained on the uniform split: the score a quadrant-split run is held to.
    """
    require_int("n", n, 1)
    if region not in REGIONS:
        raise ConfigError("region", region, f"one of {', '.join(REGIONS)}")
    dev = resolve_device(device)
    model, ckpt = load_model(store, run_id, which, dev)
    cfg = ckpt.config
    # None is "not given"; any number given (0 included) is checked like any other.
    task = replace(cfg.task, height=cfg.task.height if height is None else height,
                   width=cfg.task.width if width is None else width)
    if distractors is not None:
        task = replace(task, eval_distractors=distractors)
    if quadrant is not None:
        task = replace(task, split="quadrant", heldout_quadrant=quadrant)
    validate_task(task)
    # The best checkpoint was chosen on the validation samples: scored on them again it
    # looks better than it is. It is scored on a test stream drawn apart from them.
    stream = "heldout" if region == "heldout" else "test" if which == "best" else "val"
    with evaluation_state(model, cfg, dev, weights=which, step=ckpt.step,
                          precise_bn=precise_bn) as how:
        ev = predict(model, task, n, seed=cfg.train.seed,
                     stream=stream, device=dev,
                     batch_size=min(cfg.train.batch_size, 512), amp=cfg.train.amp,
                     distractors=task.eval_distractor_count, region=region)
    ev.measured = how
    if region == "heldout":
        # The held-out labels' own baseline: the training distribution's mean label (the
        # run's stored validation labels) guessed everywhere, as a model that learned
        # nothing would; absent when the run has no stored predictions.
        try:
            stored = store.predictions(run_id)
        except StoreError:  # a damaged predictions file: no baseline, said by the reports
            stored = None
        if stored is not None and len(stored[1]):
            ev.metrics["mean_guess_mae"] = mean_guess_mae(ev.labels, stored[1])
    if save and which == "last" and region == "train" and quadrant is None and \
            precise_bn is None and task == cfg.task and n == cfg.train.val_size:
        # The run's own final validation again: its predictions.npz is rewritten (the way
        # to repair a damaged one, which reports name with this command).
        store.save_predictions(run_id, ev.predictions, ev.labels)
    if save:
        store.save_evaluation(run_id, {"which": which, "step": ckpt.step, "height": task.height,
                                       "width": task.width,
                                       "distractors": task.eval_distractor_count,
                                       "region": region, "n": n, "measured": how,
                                       "samples": stream,
                                       **({"quadrant": quadrant} if quadrant else {})},
                              ev.metrics)
    return ev


def sweep_run(store: RunStore, run_id: str, kind: str = SweepOptions.kind, *,
              resolutions: Sequence[int] | None = None,
              max_distractors: int = SweepOptions.max_distractors, n: int = SweepOptions.n,
              which: str = DEFAULT_WEIGHTS, device: str = SweepOptions.device,
              cancel: CancelFlag | None = None,
              on_row: Callable[[dict], None] | None = None,
              precise_bn: bool | None = None) -> Sweep:
    """Resolution or distractor sweep of a stored run; the result is saved with the run.

    `on_row` hears each value's metrics as it is done; a cancelled sweep returns the rows
    so far (`Sweep.cancelled`) and is not saved. BatchNorm statistics (precise BN) are
    recalibrated once on the run's training distribution, at its training size: a sweep
    measures how the trained model transfers, not how it adapts to the new images.
    """
    if kind not in SWEEP_KINDS:
        raise ConfigError("kind", kind, f"one of {', '.join(SWEEP_KINDS)}")
    require_int("n", n, 1)
    dev = resolve_device(device)
    model, ckpt = load_model(store, run_id, which, dev)
    cfg = ckpt.config
    kw = {"n": n, "seed": cfg.train.seed, "device": dev, "amp": cfg.train.amp,
          "batch_size": min(cfg.train.batch_size, 512), "cancel": cancel, "on_row": on_row}
    options: dict[str, Any] = {"which": which, "step": ckpt.step, "n": n}
    with evaluation_state(model, cfg, dev, weights=which, step=ckpt.step,
                          precise_bn=precise_bn) as how:
        if kind == "resolution":
            values = [int(r) for r in (resolutions or DEFAULT_RESOLUTIONS)]
            sweep = resolution_sweep(model, cfg.task, values, **kw)
            options["resolutions"] = values
        else:
            sweep = distractor_sweep(model, cfg.task, max_distractors, **kw)
            options["max_distractors"] = max_distractors
    sweep.measured = options["measured"] = how
    if not sweep.cancelled:
        store.save_sweep(run_id, kind, sweep.table, sweep.samples, options)
    return sweep


def resume_run(store: RunStore, run_id: str, extra_steps: int | None = None,
               callbacks: Iterable[Callback] = (), cancel: CancelFlag | None = None, *,
               device: str | None = None, allow_slow: bool = False) -> tuple[str, RunResult]:
    """Continue a run from its last checkpoint (optimizer included) for more steps.

    The same record goes on: its history continues from the checkpoint's step, and
    `RunRecord.resumed_at` notes where each continuation began. `extra_steps` None: the
    rest of its planned steps (`options.resume_steps`).
    """
    record = store.get(run_id)
    if extra_steps is None:
        extra_steps = resume_steps(record.config, record.steps_done, record.status)
    require_int("steps", extra_steps, 1)
    try:  # refuses a checkpoint that is damaged or no longer builds
        _, ckpt = load_model(store, run_id, "last", hint=False)
    except DamagedCheckpoint as exc:
        if not store.checkpoint_path(run_id, "best").is_file():
            raise
        raise StoreError(f"{exc}; resume needs the last checkpoint: continue from the best "
                         "one as a new run instead, cnnprobe finetune "
                         f"{run_id[:8]} --which best --steps N") from exc
    cfg = ckpt.config
    cfg = replace(cfg, train=replace(cfg.train, steps=ckpt.step + extra_steps,
                                     device=device or cfg.train.device))
    admitted = admit(without_download(cfg), allow_slow=allow_slow)
    was, now = torch.device(record.device or "cpu").type, torch.device(admitted.device).type
    if was != now:
        raise StoreError(f"run {record.short_id} trained on {was}; its data stream cannot move "
                         f"to {now}: resume it with --device {was}, or fine-tune it instead")
    store.begin_segment(run_id, cfg, step=ckpt.step, samples_seen=ckpt.samples_seen)
    state = ResumeState(ckpt.model_state, ckpt.optimizer_state, ckpt.generator_state,
                        ckpt.step, ckpt.samples_seen, ckpt.best_val_mae,
                        val_history=store.val_history(run_id))  # up to ckpt.step
    listeners = [RunRecorder(store, run_id, config=cfg), *callbacks]
    return run_id, _train_recorded(store, run_id, without_download(cfg), listeners, cancel,
                                   new_run=False, resume=state)


def finetune_run(store: RunStore, run_id: str, *, height: int | None = None,
                 width: int | None = None, steps: int | None = None,
                 lr: float | None = None, callbacks: Iterable[Callback] = (),
                 cancel: CancelFlag | None = None, which: str = DEFAULT_WEIGHTS,
                 name: str | None = None, tags: Sequence[str] = (),
                 device: str | None = None, on_created: Callable[[str], None] | None = None,
                 allow_slow: bool = False) -> tuple[str, RunResult]:
    """A new run, parent recorded, starting from a stored run's weights at another size.

    The optimizer starts fresh (and at `lr` when given), as the notebook's fine-tune did.
    A size or step count not given is `options.finetune_plan`'s default.
    """
    parent = store.get(run_id)
    _, ckpt = load_model(store, run_id, which)
    cfg = without_download(ckpt.config)
    height, width, steps = finetune_plan(cfg, height=height, width=width, steps=steps)
    tr = replace(cfg.train, steps=steps, lr=cfg.train.lr if lr is None else lr,
                 device=device or cfg.train.device)
    cfg = replace(cfg, task=replace(cfg.task, height=height, width=width), train=tr)
    size = str(height) if height == width else f"{height}x{width}"
    return train_run(store, cfg, callbacks, cancel, name=name or f"{parent.name}-ft{size}",
                     tags=tags, parent_id=run_id, kind="finetune",
                     init_model_state=ckpt.model_state, on_created=on_created,
                     allow_slow=allow_slow)


@dataclass
class Inspection:
    """One look inside a stored run: a sample, each layer's output for it, and the per-layer
    linear probe table (None when probes were off or cancelled)."""

    run_id: str
    which: str  # "best" or "last" checkpoint
    step: int  # the checkpoint's training step
    task_cfg: TaskConfig  # the run's task at the inspected size
    batch: Batch  # the sample: a batch of one, on the CPU
    sample: int | None  # its index in the run's validation set, or None for a fresh draw
    seed: int  # the fresh draw's seed
    prediction: float  # the model's output for the sample
    activations: list[Activation]  # "input" first, then each layer in forward order
    probe_table: pd.DataFrame | None
    options: dict[str, Any] = field(default_factory=dict)  # how the probes were made
    cancelled: bool = False
    saved: bool = False  # the probe table is stored with the run

    @property
    def label(self) -> float:
        return float(self.batch.targets[0])


def _check_layers(model: torch.nn.Module, layers: Sequence[str], known: list[str]) -> None:
    """ConfigError for a name that is neither a module of the model nor a layer of interest,
    listing the layers of interest (the outermost ones when there are many)."""
    valid = {n for n, _ in model.named_modules() if n} | set(known) | {INPUT}
    for name in layers:
        if name not in valid:
            shown = known if len(known) <= 16 else [
                n for n in known if not any(n.startswith(o + ".") for o in known)]
            more = f" and {len(known) - len(shown)} inside them" if len(shown) < len(known) else ""
            raise ConfigError("layers", name, f"a layer of this model: {', '.join(shown)}{more} "
                              "(`cnnprobe inspect RUN --list-layers` shows them all)")


def inspect_run(store: RunStore, run_id: str, *, sample: int | None = None, seed: int = 0,
                layers: Sequence[str] | None = None, outer: bool = False,
                height: int | None = None, width: int | None = None,
                which: str = DEFAULT_WEIGHTS, probes: bool = True, n_train: int = 512,
                n_test: int = 256, device: str = "auto", save: bool = True,
                cancel: CancelFlag | None = None,
                progress: Callable[[int, int], None] | None = None,
                precise_bn: bool | None = None) -> Inspection:
    """Look inside a stored run's model: sample `sample` of its validation set (else a fresh
    draw seeded by `seed`) through every layer of interest (or `layers`; `outer`: only the
    outermost), and a linear probe per layer (n_train fit, n_test scored, the run's seed).

    With `save`, the probe table replaces the run's stored one. A cancelled probe leaves
    `probe_table` None and nothing saved. ConfigError (unknown layer, a size the model
    cannot take, a bad index) comes before anything is stored.
    """
    if probes:
        require_int("n_train", n_train, 8)
        require_int("n_test", n_test, 2)
    rec = store.get(run_id)
    dev = resolve_device(device)
    model, ckpt = load_model(store, run_id, which, dev)
    cfg = ckpt.config
    h = cfg.task.height if height is None else height
    w = cfg.task.width if width is None else width
    validate_task(replace(cfg.task, height=h, width=w))
    check_size(model, h, w)
    # An index names a sample of the validation set the run drew on its own device; a fresh
    # draw is made on the CPU, so a seed shows the same image on every machine.
    draw_on = (rec.device or "cpu") if sample is not None else "cpu"
    task_cfg, batch = run_sample(cfg, index=sample, seed=seed, height=h, width=w,
                                 device=draw_on)
    batch = Batch(*(t.cpu() for t in (batch.images, batch.targets, batch.boxes, batch.valid)))
    known = layers_of_interest(model, example=batch.images)
    chosen: list[str] | None = None
    if layers is not None:
        _check_layers(model, layers, known)
        chosen = [n for n in dict.fromkeys(layers) if n != INPUT]
    elif outer:
        chosen = layers_of_interest(model, nested=False, example=batch.images)
    table = None
    # The maps, the prediction and the probes all see the statistics of these weights.
    with evaluation_state(model, cfg, dev, weights=which, step=ckpt.step,
                          precise_bn=precise_bn) as how:
        activations = capture(model, batch.images, chosen)
        if chosen is not None:  # in forward order, as the maps are
            chosen = [a.name for a in activations if a.name != INPUT]
        with torch.no_grad():
            prediction = float(model(batch.images.to(dev)).float().flatten()[0])
        if probes:
            table = probe_layers(model, task_cfg, n_train, n_test, seed=cfg.train.seed,
                                 layers=chosen, device=dev, progress=progress, cancel=cancel)
    options: dict[str, Any] = {
        "which": which, "step": ckpt.step, "height": h, "width": w, "n_train": n_train,
        "n_test": n_test, "seed": cfg.train.seed, "device": dev.type,
        "layers": chosen if layers is not None else "outer" if outer else "all",
        "measured": how}
    if table is not None:
        depth = {n: i for i, n in enumerate([INPUT, *known])}
        if chosen is not None and all(n in depth for n in table["layer"]):
            table["depth"] = [depth[n] for n in table["layer"]]  # depth in the whole network
    insp = Inspection(run_id, which, ckpt.step, task_cfg, batch, sample, seed, prediction,
                      activations, None if table is None or table.empty else table, options,
                      cancelled=table is not None and table.empty)
    if save:
        save_inspection(store, insp)
    return insp


def save_inspection(store: RunStore, inspection: Inspection) -> bool:
    """Keep an inspection's probe table with its run (replacing the previous one); whether
    there was one to keep."""
    if inspection.probe_table is None:
        return False
    store.save_probes(inspection.run_id, inspection.probe_table, inspection.options)
    inspection.saved = True
    return True
