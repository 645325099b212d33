"""bench/gpu_check.py: its CPU half through the real entry point (what CI runs), its GPU half's
code on the CPU at tiny sizes, and the comparisons and sync counting that judge the checks,
each shown able to fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402
from gpucheck import checks, measures, syncs  # noqa: E402
from gpucheck.results import Report, relative_difference, within  # noqa: E402
from gpucheck.training import Copy, Trace, differences  # noqa: E402

from cnnprobe.engine.step import TrainStep  # noqa: E402

CPU = torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only behaviour")
def test_the_cpu_half_runs_says_cuda_is_missing_once_and_exits_0(tmp_path):
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--json",
                           str(out_json), "--markdown", str(out_md)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines.count(gpu_check.NO_CUDA) == 1 and lines[0] == gpu_check.NO_CUDA
    assert sum("CUDA" in line and "not available" in line for line in lines) == 1
    report = json.loads(out_json.read_text())
    assert report["passed"] and report["info"]["cuda_available"] is False
    results = report["results"]
    assert {r["half"] for r in results} == {"cpu"}
    checks_ = [r for r in results if r["kind"] == "check"]
    assert len(checks_) >= 10 and all(r["passed"] is True for r in checks_)
    assert all(np.isfinite(r["value"]) and r["value"] <= r["limit"] for r in checks_)
    names = " ".join(r["name"] for r in results)
    for part in ("generator", "cpu bf16 vs cpu fp32", "train() twice", "host syncs",
                 "sync sensor", "trains like eager", "train() at", "study distractors"):
        assert part in names, part
    rates = [r["value"] for r in results if r["unit"] == "samples/s"]
    assert rates and all(v > 0 for v in rates)
    table = out_md.read_text()
    assert table.count("\n| cpu |") == len(results) and "GPU none." in table
    assert f"{report['checks']['passed']}/{report['checks']['total']} checks passed" in \
        proc.stdout


def test_an_unknown_group_is_refused():
    with pytest.raises(SystemExit) as exit_:
        gpu_check.parse(["--skip", "grid,bogus"])
    assert exit_.value.code == 2


def test_the_gpu_half_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    """Every check and measure of the GPU half, on the CPU against itself: the code a GPU
    will run, short of the CUDA-only calls (sync debug mode, events, pinning, graphs)."""
    plan = gpu_check.Plan(
        agree=[("seednet", 16, 16, 3, "fp32,bf16")], repeat=[("seednet", 16, 16, 4)],
        sync=[("seednet", "distance", 16, 16)], compile=[("seednet", 16, 16)],
        compile_modes=("default", "reduce-overhead"), compile_backend="aot_eager",
        compiled_train=[("seednet", 16, 16, "default")], compile_steps=4, compile_warm=1,
        sync_log_every=3, grid=[("seednet", 16, 16, "on")], grid_steps=6, grid_log_every=2,
        studies=["distractors"], study_scale="smoke", study_steps=4)
    lines: list[str] = []
    report = Report({}, tmp_path / "r.json", echo=lines.append)
    gpu_check.run_half(report, "cuda", CPU, plan, reference=CPU)
    assert not report.failed, "\n".join(lines)
    names = [r.name for r in report.results]
    assert any("generator cpu vs cpu: same seed, same distribution" in n for n in names)
    # 2 checks, 2 measures, train(), and the compiled train()'s host syncs
    assert sum("compile=" in n for n in names) == 6
    assert any("(compile=default, aot_eager): host syncs" in n for n in names)
    assert json.loads((tmp_path / "r.json").read_text())["checks"]["failed"] == 0


def test_parts_past_the_budget_are_recorded_as_skipped(tmp_path):
    """--budget-s: a GPU is lent for minutes; what would start after the budget is said
    to be skipped, not run, and is not a failure."""
    plan = gpu_check.Plan(
        agree=[("seednet", 16, 16, 2, "fp32")], repeat=[("seednet", 16, 16, 2)],
        sync=[("seednet", "distance", 16, 16)], compile=[], compile_modes=(), compiled_train=[],
        grid=[("seednet", 16, 16, "on")], studies=[], study_scale="smoke")
    import time

    report = Report({}, tmp_path / "r.json", echo=lambda line: None)
    gpu_check.run_half(report, "cpu", CPU, plan, deadline=time.perf_counter() - 1)
    assert report.results and all(r.verdict == "skipped" for r in report.results)
    assert "over --budget-s" in report.results[0].detail and not report.failed
    assert gpu_check.parse([]).budget_s == 300


def test_a_trial_time_counts_the_held_out_evaluation_once():
    """A quadrant split's trial validates every eval_every steps on its training region and
    once more, at the end, on the held-out quadrant: the estimate takes the first from the
    short run's last validation alone (last loss read -> EvaluationEvent) and adds the
    second once (EvaluationEvent -> Finished), instead of timing both as one validation."""
    from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig

    cfg = RunConfig(TaskConfig(name="distance", height=16, width=16, split="quadrant"),
                    ModelConfig(name="seednet"),
                    TrainConfig(batch_size=8, steps=100, eval_every=25, val_size=16,
                                device="cpu"))
    ticks = iter([10.0, 10.5, 12.0])  # the last loss read, its validation, the end
    data = measures.trial_seconds(cfg, CPU, steps=4, log_every=2, clock=lambda: next(ticks))
    assert (data["eval_s"], data["final_s"], data["evaluations"]) == (0.5, 1.5, 4)
    assert data["trial_s"] == pytest.approx(data["setup_s"] + 100 * data["step_s"]
                                            + 4 * 0.5 + 1.5)


def test_relative_difference_fails_a_perturbed_or_broken_run():
    ref = np.array([3.0, 4.0])
    assert relative_difference(ref, ref) == 0.0
    assert relative_difference(ref, ref * 1.01) == pytest.approx(0.01)
    assert within(relative_difference(ref, ref * (1 + 5e-4)), checks.FP32_LIMIT)
    assert not within(relative_difference(ref, ref * (1 + 2e-3)), checks.FP32_LIMIT)
    assert relative_difference(ref, [3.0, np.nan]) == np.inf
    assert not within(float("nan"), 1.0)
    with pytest.raises(ValueError):
        relative_difference(ref, [1.0])


def test_predictions_are_compared_on_the_labels_scale():
    labels = np.array([10.0, 20.0, 30.0])
    a = Trace(np.ones(3), np.zeros(3), labels)
    b = Trace(np.ones(3), np.array([0.0, 0.0, 0.5]), labels)
    d_loss, d_pred = differences(a, b)
    assert d_loss == 0 and d_pred == pytest.approx(0.5 / np.linalg.norm(labels))
    assert differences(a, Trace(np.ones(3), np.array([np.inf, 0, 0]), labels))[1] == np.inf


def test_agreement_fails_when_the_copies_really_differ():
    # A conv net under bf16 autocast is ~1e-3 from fp32 after a few steps: past the fp32 limit.
    same, bf16 = checks.agreement("cpu", "plaincnn", 16, 8, 3, Copy(CPU),
                                  [(Copy(CPU), 0.0), (Copy(CPU, bf16=True), checks.FP32_LIMIT)])
    assert same.passed is True and same.value == 0.0
    assert bf16.passed is False and bf16.value > checks.FP32_LIMIT


def test_another_distribution_on_the_second_device_fails(monkeypatch):
    real = checks.make_task

    class Shifted:  # the second device's draws: every distance one pixel longer
        def __init__(self, cfg):
            self.task, self.calls = real(cfg), 0

        def sample(self, n, g):
            batch = self.task.sample(n, g)
            self.calls += 1
            if self.calls == 2:
                batch.targets += 1.0
            return batch

    same, _ = checks.generator_across("cpu", CPU, CPU, size=32, n=1024)
    monkeypatch.setattr(checks, "make_task", Shifted)
    shifted, _ = checks.generator_across("cpu", CPU, CPU, size=32, n=1024)
    assert same.passed and same.value == 0.0
    assert shifted.passed is False and shifted.value > checks.SAME_DISTRIBUTION_Z


def test_the_sync_judge():
    ok, info = syncs.judge([("start", 0, 0), ("read", 10, 3), ("read", 20, 4), ("eval", 20, 9),
                            ("read", 30, 10)], per_read=1)
    assert ok and info == {"per_read": 1, "steady": [1, 1], "evaluations": [5], "warmup": 3}
    assert not syncs.judge([("start", 0, 0), ("read", 10, 1), ("read", 20, 3)], 1)[0]
    assert not syncs.judge([("start", 0, 0), ("read", 10, 1)], 1)[0]  # nothing steady
    assert not syncs.judge([("start", 0, 0), ("read", 10, 0), ("read", 20, 0)], 0)[0]


def test_a_host_read_in_the_step_is_caught_in_train(monkeypatch):
    clean = syncs.loop_syncs("cpu", CPU, "seednet", "distance", 16, 8, log_every=3, reads=3)
    assert clean.passed and clean.data["steady"] == [1, 1]
    step = TrainStep.__call__

    def leaky(self, x, y):
        loss = step(self, x, y)
        loss.item()  # what the check is there to catch
        return loss

    monkeypatch.setattr(TrainStep, "__call__", leaky)
    leak = syncs.loop_syncs("cpu", CPU, "seednet", "distance", 16, 8, log_every=3, reads=3)
    assert leak.passed is False and leak.data["steady"] == [4, 4]


def test_the_tui_measure_reads_bench_tui_json(tmp_path):
    fake = tmp_path / "bench_tui.py"
    fake.write_text(
        "import json, sys\n"
        "out = sys.argv[sys.argv.index('--json') + 1]\n"
        "json.dump({'headless_samples_per_s': [1000.0, 900.0], 'ratio_watching': 0.97,\n"
        "           'ratio_keys': 0.9, 'ui_thread_cpu_share_watching': [0.05],\n"
        "           'key_latency_ms_median': 12.0}, open(out, 'w'))\n")
    got = measures.tui_overhead("cuda", CPU, script=fake)
    assert [r.value for r in got] == [1000.0, pytest.approx(97.0), pytest.approx(90.0)]
    fake.write_text("import sys; sys.exit('no display')\n")
    (failed,) = measures.tui_overhead("cuda", CPU, script=fake)
    assert failed.passed is False and "no display" in failed.detail
