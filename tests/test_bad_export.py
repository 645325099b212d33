"""Issue 19, items 2, 6, 8 and 11 (in part): what an export writes over, a damaged run file
inside a report of many, the size of a study before it starts and the workers it spawns,
a full disk, a refused weights file and a crafted checkpoint. Every bad input is one row;
each is one clear line, and a refused one changes nothing."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run, store_files

import cnnprobe.cli.studying as studying_cli
import cnnprobe.store.files as store_files_mod
from cnnprobe.cli import main
from cnnprobe.report.files import ExportError
from cnnprobe.report.inspection import check_out_dir, export_inspection
from cnnprobe.store import RunStore
from cnnprobe.store.files import (
    MAX_PICKLE,
    DiskFull,
    NotRegularFile,
    atomic_write,
    kind_of,
    peek_checkpoint,
    write_target,
)
from cnnprobe.studies import capacity, load_plan
from cnnprobe.studies import runner as study_runner

PLAN = """
name = "tiny"
seeds = 1
evaluations = ["resolution"]

[base]
"task.height" = 16
"task.width" = 16
"model.name" = "plaincnn"
"model.depth" = 2
"model.width" = 4
"train.steps" = 4
"train.batch_size" = 8
"train.eval_every" = 2
"train.val_size" = 16
"train.device" = "cpu"

[[axis]]
field = "train.lr"
values = [0.001, 0.002, 0.003]
"""
SHOW = ["study", "show", "plan.toml", "--no-plots"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A store with the three trials of a tiny study, each with predictions.npz and a
    resolution sweep (sweep-resolution.npz)."""
    base = tmp_path_factory.mktemp("bad-export")
    (base / "plan.toml").write_text(PLAN)
    root = base / "store"
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert main(["--store", str(root), "study", "run", "plan.toml"]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def root(template, tmp_path, monkeypatch):
    dest = tmp_path / "store"
    shutil.copytree(template, dest)
    (tmp_path / "plan.toml").write_text(PLAN)
    monkeypatch.chdir(tmp_path)  # exports/ and plan.toml here
    return dest


def _ids(root) -> list[str]:
    with RunStore(root) as store:
        return sorted(r.id for r in store.list_runs())


@pytest.fixture
def never_on_devices(monkeypatch):
    """However the checks below might fail, no file under /dev is created or replaced: the
    rename and the temporary file's open refuse such paths (a test must not be able to
    break the machine)."""
    real_replace, real_open = os.replace, open

    def under_dev(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith("/dev/")

    def replace(src, dst, *a, **kw):
        if under_dev(dst) or under_dev(src):
            raise AssertionError(f"tried to replace {dst}")
        return real_replace(src, dst, *a, **kw)

    def guarded_open(path, *a, **kw):
        if under_dev(path):
            raise AssertionError(f"tried to open {path}")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(store_files_mod, "open", guarded_open, raising=False)


# -- item 2: export writes only regular files ---------------------------------------------
def _fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe.md")
    return d / "pipe.md"


def _socket(d: Path) -> Path:
    cwd = os.getcwd()
    os.chdir(d)  # a short relative name: AF_UNIX paths are limited to ~100 bytes
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind("sock.md")
        s.close()
    finally:
        os.chdir(cwd)
    return d / "sock.md"


def _dangling(d: Path) -> Path:
    (d / "gone.md").symlink_to(d / "nowhere" / "x.md")
    return d / "gone.md"


def _loop(d: Path) -> Path:
    (d / "a.md").symlink_to(d / "b.md")
    (d / "b.md").symlink_to(d / "a.md")
    return d / "a.md"


def _link_to_fifo(d: Path) -> Path:
    _fifo(d)
    (d / "link.md").symlink_to(d / "pipe.md")
    return d / "link.md"


BAD_OUT = [  # (case, makes the --out path in a folder, --force, words of the one line)
    ("FIFO", _fifo, False, "is a FIFO (named pipe), not a regular file"),
    ("FIFO, --force", _fifo, True, "is a FIFO (named pipe), not a regular file"),
    ("socket, --force", _socket, True, "is a socket, not a regular file"),
    ("dangling symlink", _dangling, False, "which does not exist: cnnprobe never follows"),
    ("dangling symlink, --force", _dangling, True, "which does not exist"),
    ("symlink loop, --force", _loop, True, "is a symlink that cannot be followed"),
    ("symlink to a FIFO, --force", _link_to_fifo, True, "(a symlink to"),
    ("/dev/null, --force", lambda d: Path("/dev/null"), True,
     "/dev/null is a character device, not a regular file"),
]


@pytest.mark.parametrize("case,make,force,words", BAD_OUT, ids=[c[0] for c in BAD_OUT])
@pytest.mark.usefixtures("never_on_devices")
def test_export_never_writes_over_what_is_not_a_regular_file(root, capsys, tmp_path, case,
                                                             make, force, words):
    folder = tmp_path / "out"
    folder.mkdir()
    out = make(folder)
    kind = os.lstat(out).st_mode
    before, listed = store_files(root), sorted(os.listdir(folder))
    code, stdout, err = run(capsys, root, "export", _ids(root)[0], "--out", str(out),
                            *(["--force"] if force else []))
    assert code == 1 and err.count("\n") == 1 and words in err, err
    assert err.startswith(f"cnnprobe: error: {out}") and "pass --out another path" in err
    assert os.lstat(out).st_mode == kind  # still what it was: nothing replaced it
    assert sorted(os.listdir(folder)) == listed  # no temporary file left either
    assert store_files(root) == before


def test_the_check_works_on_stat_results_alone():
    # A device is only ever stat-ed: kind_of reads st_mode, write_target lstat/stat.
    assert kind_of(os.stat("/dev/null").st_mode) == "a character device"
    assert kind_of(stat.S_IFBLK) == "a block device" and kind_of(stat.S_IFSOCK) == "a socket"
    assert kind_of(stat.S_IFIFO) == "a FIFO (named pipe)" and kind_of(stat.S_IFDIR) == "a folder"
    assert kind_of(stat.S_IFREG | 0o644) is None
    with pytest.raises(NotRegularFile, match="/dev/null is a character device"):
        write_target(Path("/dev/null"))


@pytest.mark.usefixtures("never_on_devices")
def test_atomic_write_refuses_before_creating_anything(tmp_path):
    fifo = _fifo(tmp_path)
    called = []
    for path in (fifo, Path("/dev/null"), _dangling(tmp_path)):
        with pytest.raises(NotRegularFile):
            atomic_write(path, called.append)
    assert called == []  # the writer never ran: no temporary file was opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone.md", "pipe.md"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symlink_to_a_regular_file_is_written_through(root, capsys, tmp_path):
    """The rule: a link to a regular file counts as that file. Without --force it exists;
    with --force the file it points to gets the export and the link stays a link."""
    target, link = tmp_path / "real.md", tmp_path / "link.md"
    target.write_text("mine")
    link.symlink_to(target)
    run_id = _ids(root)[0]
    code, _, err = run(capsys, root, "export", run_id, "--out", str(link))
    assert code == 1 and "exists: pass --force" in err and target.read_text() == "mine"
    code, out, _ = run(capsys, root, "export", run_id, "--out", str(link), "--force")
    assert code == 0 and f"wrote {link}" in out
    assert link.is_symlink() and target.read_text().startswith("# ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.md", "plan.toml", "real.md",
                                                          "store"]


def test_inspection_overwrite_never_opens_a_fifo_or_follows_a_dangling_link(tmp_path):
    out = tmp_path / "look"
    out.mkdir()
    os.mkfifo(out / "activations.npz")
    with pytest.raises(ExportError, match="activations.npz is a FIFO .*--overwrite never"):
        check_out_dir(out, overwrite=True)
    (out / "activations.npz").unlink()
    (out / "00-input.png").symlink_to(tmp_path / "elsewhere.png")
    (out / "activations.npz").symlink_to(tmp_path / "elsewhere.npz")
    export_inspection(out, [], overwrite=True)  # no layers: writes activations.npz only
    assert not (tmp_path / "elsewhere.npz").exists() and not (out / "00-input.png").exists()
    assert (out / "activations.npz").is_file() and not (out / "activations.npz").is_symlink()


# -- item 6: one damaged run file does not block a report of many --------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(b"not an npz at all\n")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _object_array(path: Path) -> None:  # numpy's answer to this one is "allow_pickle"
    np.savez(path.with_suffix(""), predictions=np.array([{"a": 1}], dtype=object),
             labels=np.zeros(1), resolution=np.zeros(1))


def _no_labels(path: Path) -> None:
    np.savez(path.with_suffix(""), predictions=np.zeros(3))


DAMAGED = [  # (case, file, damage, command, what the output still has)
    ("study show, garbage predictions", "predictions.npz", _garbage, SHOW, "verdict"),
    ("study show, object-array predictions", "predictions.npz", _object_array, SHOW,
     "verdict"),
    ("study export, truncated predictions", "predictions.npz", _truncated,
     ["study", "export", "plan.toml", "--out", "rep.md"], "wrote rep.md"),
    ("study export json, predictions without labels", "predictions.npz", _no_labels,
     ["study", "export", "plan.toml", "--format", "json", "--out", "rep.json"],
     "wrote rep.json"),
    ("export of every run, garbage predictions", "predictions.npz", _garbage,
     ["export", "{all}", "--out", "ex/"], "wrote ex/"),
    ("export of every run, truncated sweep", "sweep-resolution.npz", _truncated,
     ["export", "{all}", "--out", "ex/"], "wrote ex/"),
    ("csv export of every run, object-array sweep", "sweep-resolution.npz", _object_array,
     ["export", "{all}", "--format", "csv", "--out", "ex/"], "-history.csv"),
]


@pytest.mark.parametrize("case,name,damage,args,still", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_a_damaged_run_file_is_named_and_the_rest_renders(root, capsys, case, name, damage,
                                                          args, still):
    ids = _ids(root)
    bad = root / ids[1] / name
    damage(bad)
    args = [a for arg in args for a in (ids if arg == "{all}" else [arg])]
    code, out, err = run(capsys, root, *args)
    assert code == 0, err
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("cnnprobe: warning: run "), err
    assert f"run {ids[1][:8]}" in err and str(bad) in err and "rewrites it" in err
    assert "allow_pickle" not in out + err and "unsafely" not in out + err
    assert still in out
    if args[0] == "export":  # every run's file was written
        assert out.count("wrote ") >= len(ids)


def test_show_and_compare_do_not_read_sweep_samples(root, capsys):
    ids = _ids(root)
    _garbage(root / ids[0] / "sweep-resolution.npz")
    for args in (["show", ids[0]], ["compare", *ids]):
        code, out, err = run(capsys, root, *args)
        assert code == 0 and err == "" and "resolution sweep" in out


def test_the_hints_rewrite_the_damaged_files(root, capsys):
    ids = _ids(root)
    with RunStore(root) as store:
        before = store.predictions(ids[1])
    _garbage(root / ids[1] / "predictions.npz")
    _truncated(root / ids[2] / "sweep-resolution.npz")
    code, _, err = run(capsys, root, "export", *ids, "--out", "ex/")
    hints = [line.split("`")[1] for line in err.splitlines()]
    assert code == 0 and len(hints) == 2, err
    assert hints[0] == f"cnnprobe eval {ids[1][:8]} --n 16"  # the run's own val_size
    assert hints[1].startswith(f"cnnprobe sweep {ids[2][:8]} --kind resolution")
    for hint in hints:
        assert run(capsys, root, *hint.split()[1:], "--device", "cpu")[0] == 0
    with RunStore(root) as store:
        after = store.predictions(ids[1])
        assert len(store.sweep(ids[2], "resolution").samples) > 0
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(after[1], before[1])
    code, out, err = run(capsys, root, "export", *ids, "--out", "ex2/")
    assert code == 0 and err == ""


def test_eval_on_other_settings_leaves_the_predictions_alone(root, capsys):
    run_id = _ids(root)[0]
    path = root / run_id / "predictions.npz"
    old = path.read_bytes()
    assert run(capsys, root, "eval", run_id, "--n", "8", "--device", "cpu")[0] == 0
    assert run(capsys, root, "eval", run_id, "--n", "16", "--resolution", "20",
               "--device", "cpu")[0] == 0
    assert path.read_bytes() == old


# -- item 8: a big grid is confirmed first; workers fit the machine -------------------------
def test_a_grid_over_the_threshold_needs_yes(root, capsys, monkeypatch):
    monkeypatch.setattr(studying_cli, "CONFIRM_TRIALS", 2)
    Path("more.toml").write_text(PLAN.replace('name = "tiny"', 'name = "more"'))
    before = store_files(root), _ids(root)
    code, out, err = run(capsys, root, "study", "run", "more.toml")
    assert code == 1 and err.count("\n") == 1
    assert "study more would train 3 trials (more than 2), about " in err
    assert "s a step, the median of 3 finished runs in this store" in err
    assert "pass --yes to start it" in err
    assert (store_files(root), _ids(root)) == before
    code, out, err = run(capsys, root, "study", "run", "more.toml", "--yes")
    assert code == 0 and "would train 3 trials" in out and "trained 3" in out


def test_an_empty_store_has_no_estimate_but_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(studying_cli, "CONFIRM_TRIALS", 2)
    (tmp_path / "plan.toml").write_text(PLAN)
    code, _, err = run(capsys, tmp_path / "store", "study", "run", str(tmp_path / "plan.toml"))
    assert code == 1 and "no time estimate yet: no finished run in this store" in err


GiB = 1 << 30
CAPS = [  # (requested, pending trials, CPUs, memory, workers, words of the line or "")
    (1000, 3, 64, 512 * GiB, 3, ""),  # never more than the trials
    (8, 100, 2, 512 * GiB, 2, "8 workers capped to 2: 2 CPUs usable"),
    (8, 100, 64, 3 * GiB, 2, "capped to 2: 3.0 GiB of memory available"),
    (8, 100, 4, GiB // 2, 1, "4 CPUs usable and 0.5 GiB of memory"),
    (4, 100, 4, None, 4, ""),  # memory unknown: CPUs only
]


@pytest.mark.parametrize("requested,pending,cpus,memory,workers,words", CAPS)
def test_worker_cap(requested, pending, cpus, memory, workers, words, monkeypatch):
    monkeypatch.setattr(capacity, "available_memory", lambda: memory)
    n, why = capacity.worker_cap(requested, pending, cpus=cpus)
    assert n == workers and (words in why if words else why == "")


def test_run_study_spawns_no_more_workers_than_fit(root, monkeypatch):
    seen, notes = [], []
    monkeypatch.setattr(capacity, "usable_cpus", lambda: 2)
    monkeypatch.setattr(capacity, "available_memory", lambda: 512 * GiB)
    monkeypatch.setattr(study_runner, "_run_parallel",
                        lambda store, plan, todo, slots, *a: seen.append((len(todo), slots)))
    Path("more.toml").write_text(PLAN.replace('name = "tiny"', 'name = "more"'))
    with RunStore(root) as store:
        study_runner.run_study(store, load_plan("more.toml"), workers=1000,
                               on_note=notes.append)
        study_runner.run_study(store, load_plan("more.toml"), workers=2, on_note=notes.append)
    assert seen == [(3, ["cpu", "cpu"]), (3, ["cpu", "cpu"])]
    assert len(notes) == 1 and notes[0].startswith("1000 workers capped to 2: 2 CPUs usable")


def test_never_more_workers_than_trials(monkeypatch):
    monkeypatch.setattr(capacity, "usable_cpus", lambda: 64)
    monkeypatch.setattr(capacity, "available_memory", lambda: 512 * GiB)
    notes = []
    assert capacity.fit_slots(["cpu"] * 1000, 3, notes.append) == ["cpu"] * 3 and notes == []


# -- item 11: a full disk, a refused weights file, a crafted checkpoint ----------------------
class _FullDisk:
    """A file on a disk that fills up after its first 4 KB (torch.save then reports only
    `RuntimeError: ... unexpected pos`)."""

    def __init__(self, f):
        self._f, self._room = f, 4096

    def write(self, data):
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _disk_full(monkeypatch):
    def full_open(path, mode="r", *a, **kw):
        f = open(path, mode, *a, **kw)
        return _FullDisk(f) if "w" in mode else f

    monkeypatch.setattr(store_files_mod, "open", full_open, raising=False)


def test_disk_full_in_torch_save_is_named_and_keeps_the_old_file(tmp_path, monkeypatch):
    import torch

    target = tmp_path / "last.pt"
    target.write_bytes(b"the earlier checkpoint")
    _disk_full(monkeypatch)
    with pytest.raises(DiskFull) as err:  # torch.save itself says "unexpected pos"
        atomic_write(target, lambda f: torch.save({"w": torch.zeros(4096)}, f))
    text = str(err.value)
    assert f"no space left on the disk of {target} (ENOSPC)" in text and "\n" not in text
    assert target.read_bytes() == b"the earlier checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_disk_full_during_training_is_one_clear_line(root, capsys, monkeypatch):
    before = store_files(root)
    _disk_full(monkeypatch)
    code, out, err = run(capsys, root, "train", "--resolution", "16", "--steps", "4",
                         "--eval-every", "2", "--val-size", "16", "--batch-size", "8",
                         "--device", "cpu", "--quiet", "--json")
    reason = json.loads(out)["reason"]
    assert code == 1 and json.loads(out)["status"] == "failed"
    assert reason.startswith("DiskFull: no space left on the disk of ") and "\n" not in reason
    assert reason.split(" of ")[1].startswith(f"{root}/") and "last.pt (ENOSPC)" in reason
    assert store_files(root) == before  # the other runs' files untouched


def _torch_file_with(tmp_path: Path, state: dict) -> Path:
    import torch

    path = tmp_path / "weights.pt"
    torch.save(state, path)
    return path


WEIGHTS = [  # (case, makes the file, words)
    ("a state dict of another model",
     lambda d: _torch_file_with(d, {"x": __import__("torch").zeros(1)}),
     "does not fit resnet18"),
    ("a zip that is no torch file",
     lambda d: (zipfile.ZipFile(d / "w.pt", "w").close(), d / "w.pt")[1],
     "not a readable torch state dict"),
]


@pytest.mark.parametrize("case,make,words", WEIGHTS, ids=[w[0] for w in WEIGHTS])
def test_a_refused_weights_file_leaves_no_run(root, capsys, tmp_path, case, make, words):
    path = make(tmp_path)
    before = store_files(root), _ids(root)
    code, _, err = run(capsys, root, "train", "--model", "resnet18", "--resolution", "32",
                       "--steps", "2", "--weights-path", str(path), "--quiet")
    assert code == 2 and err.count("\n") == 1 and words in err and "model.weights_path" in err
    assert (store_files(root), _ids(root)) == before


def _bomb(path: Path, size: int) -> Path:
    """A small zip whose data.pkl unpacks to `size` bytes of a pickled bytes object."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data.pkl", "w") as f:
            f.write(b"\x80\x04\x8e" + struct.pack("<Q", size))
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
            f.write(b".")
    return path


def test_a_crafted_checkpoint_is_refused_unread(tmp_path):
    path = _bomb(tmp_path / "last.pt", 8 * MAX_PICKLE)
    assert path.stat().st_size < MAX_PICKLE // 64
    tracemalloc.start()
    try:
        with pytest.raises(Exception, match="data.pkl claims 33,554,444 bytes"):
            peek_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_PICKLE // 4


def test_show_of_a_crafted_checkpoint(root, capsys):
    run_id = _ids(root)[0]
    _bomb(root / run_id / "last.pt", 8 * MAX_PICKLE)
    code, out, _ = run(capsys, root, "show", run_id)
    assert code == 0 and "last (step unreadable)" in out


async def test_the_tui_starts_a_big_grid_on_a_second_press(tmp_path, monkeypatch):
    from textual.widgets import Input, Static

    import tui.screens.studies as studies_screen
    from tui.app import CnnprobeApp

    monkeypatch.setattr(studies_screen, "CONFIRM_TRIALS", 2)
    (tmp_path / "plan.toml").write_text(PLAN)
    app = CnnprobeApp(tmp_path / "store", watch_store=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("escape", "u")
        screen = app.screen
        screen.query_one("#study-plan", Input).value = str(tmp_path / "plan.toml")
        await pilot.press("ctrl+r")
        said = str(screen.query_one("#study-error", Static).render())
        assert "has 3 trials (more than 2): ctrl+r again starts it" in said
        assert app.lab.study is None  # nothing started
        await pilot.press("ctrl+r")
        assert app.lab.study is not None
        app.lab.study_cancel.set()
        await app.workers.wait_for_complete()


def test_disk_full_during_an_export_is_one_line(root, capsys, monkeypatch, tmp_path):
    out = tmp_path / "x.md"
    out.write_text("an earlier export")
    _disk_full(monkeypatch)
    code, _, err = run(capsys, root, "export", _ids(root)[0], "--out", str(out), "--force")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"cnnprobe: error: no space left on the disk of {out} (ENOSPC)")
    assert out.read_text() == "an earlier export"


@pytest.mark.parametrize("answer,code,trained", [("n", 1, 0), ("y", 0, 3)])
def test_on_a_terminal_a_big_grid_is_asked_about(root, capsys, monkeypatch, answer, code,
                                                 trained):
    from rich.console import Console

    monkeypatch.setattr(studying_cli, "CONFIRM_TRIALS", 2)
    monkeypatch.setattr(studying_cli.sys.stdin, "isatty", lambda: True, raising=False)
    asked = []
    monkeypatch.setattr(Console, "input", lambda self, prompt="", **kw: (asked.append(prompt),
                                                                         answer)[1])
    Path("more.toml").write_text(PLAN.replace('name = "tiny"', 'name = "more"'))
    got, out, _ = run(capsys, root, "study", "run", "more.toml")
    assert got == code and len(asked) == 1 and "would train 3 trials" in asked[0]
    assert len(_ids(root)) == 3 + trained
