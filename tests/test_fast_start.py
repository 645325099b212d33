"""Fast start (issue 12): what only reads the store never imports torch, the TUI's module
path included, and the pieces that made that possible (a torch-free checkpoint peek, an
n log n short-id rule, a runs table that does not measure every cell)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnprobe.config import RunConfig, TaskConfig, TrainConfig
from cnnprobe.runs import train_run
from cnnprobe.store import RunStore, StoreError
from cnnprobe.store.files import peek_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from fabricate import fabricate  # noqa: E402

HEAVY = ("torch", "torchvision")


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> tuple[Path, str, str]:
    """A store with a trained run (real checkpoints) and a few fabricated ones."""
    root = tmp_path_factory.mktemp("fast") / "store"
    cfg = RunConfig(task=TaskConfig(height=16, width=16),
                    train=TrainConfig(batch_size=8, steps=4, eval_every=2, val_size=16,
                                      device="cpu"))
    with RunStore(root) as store:
        trained, result = train_run(store, cfg)
    assert result.status == "finished"
    other = fabricate(root, 3)[0]
    return root, trained, other


def loaded_after(code: str) -> tuple[list[str], str]:
    """Run `code` in a fresh interpreter; which heavy modules it loaded, and its output."""
    probe = (f"{code}\nimport sys\n"
             f"print('LOADED', *[m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    return last.split()[1:], done.stdout


def cli(root: Path, *args: str) -> str:
    return ("import contextlib, io\nfrom cnnprobe.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            f"    code = main({['--store', str(root), *args]!r})\n"
            "assert code == 0, code\n")


@pytest.mark.parametrize("args", [
    ["runs"], ["runs", "--json"], ["show", "{run}"], ["compare", "{run}", "{other}"],
    ["export", "{run}", "--out", "{out}"], ["tag", "{run}", "seen"], ["note", "{run}", "hi"],
    ["rm", "{other}", "--yes"], ["models"], ["tasks"], ["study", "list"],
], ids=lambda a: " ".join(a[:2]))
def test_commands_that_only_read_the_store_never_import_torch(store_root, tmp_path, args):
    root, run, other = store_root
    if args[0] == "rm":  # a run of its own to delete, so the others stay for the rest
        other = fabricate(root, 1)[0]
    args = [a.format(run=run, other=other, out=tmp_path / "out") for a in args]
    loaded, _ = loaded_after(cli(root, *args))
    assert loaded == [], f"cnnprobe {' '.join(args)} imported {loaded}"


def test_help_never_imports_torch():
    loaded, _ = loaded_after("from cnnprobe.cli import main\n"
                             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert loaded == []


def test_the_tui_module_path_imports_no_torch():
    loaded, _ = loaded_after("import tui.app, tui.lab, tui.screens.studies, "
                             "tui.screens.activations")
    assert loaded == []


def test_show_reads_checkpoint_steps_without_torch(store_root):
    root, run, _ = store_root
    with RunStore(root) as store:
        for which in ("last", "best"):
            assert store.checkpoint_step(run, which) == store.load_checkpoint(run, which).step
        path = store.checkpoint_path(run, "last")
    peeked = peek_checkpoint(path)
    assert peeked["run_id"] == run and peeked["step"] == 4 and peeked["samples_seen"] == 32
    assert peeked["config"]["task"]["height"] == 16


@pytest.mark.parametrize("content", [b"", b"not a zip at all", "cut"])
def test_a_damaged_checkpoint_peek_names_the_file(store_root, tmp_path, content):
    root, run, _ = store_root
    if content == "cut":
        content = (root / run / "last.pt").read_bytes()[:300]
    bad = tmp_path / "last.pt"
    bad.write_bytes(content)
    with pytest.raises(StoreError, match=f"checkpoint {bad} is unreadable"):
        peek_checkpoint(bad)


def test_a_peek_runs_nothing_from_the_file(tmp_path):
    """A pickle that would run code if its classes were real: peeked, nothing runs."""
    import pickle
    import zipfile

    class Boom:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"step": 3, "x": Boom()}))
    assert peek_checkpoint(path)["step"] == 3
    assert not (tmp_path / "ran").exists()


def test_short_ids_tell_every_run_apart():
    from dataclasses import dataclass

    from cnnprobe.cli.tables import short_ids

    @dataclass
    class Rec:
        id: str

    ids = ["abcdef0123", "abcdef0124", "abcdef9999", "0000000000", "abcdeg0000"]
    out = short_ids([Rec(i) for i in ids])
    assert out["0000000000"] == "00000000" and out["abcdef0123"] == "abcdef0123"
    assert out["abcdef9999"] == "abcdef99" and out["abcdeg0000"] == "abcdeg00"
    assert all(not o.startswith(out[i]) for i in ids for o in ids if o != i)
    import random
    import uuid

    rng = random.Random(1)
    many = [uuid.UUID(int=rng.getrandbits(128)).hex[:rng.choice((9, 32))] for _ in range(800)]
    many = list(dict.fromkeys(many))
    out = short_ids([Rec(i) for i in many])
    for i in many:  # the old rule, pairwise: the shortest prefix (>= 8) no other id shares
        n = 8
        while n < len(i) and any(o != i and o.startswith(i[:n]) for o in many):
            n += 1
        assert out[i] == i[:n]


def test_runs_table_shows_the_newest_hundred_and_says_how_to_see_all(tmp_path, capsys):
    from cnnprobe.cli import main

    root = tmp_path / "many"
    fabricate(root, 103)
    assert main(["--store", str(root), "runs"]) == 0
    out = capsys.readouterr().out
    assert "fake-0102" in out and "fake-0003" in out and "fake-0002" not in out
    assert "the newest 100 of 103 runs; --limit N for more, --limit 0 for all" in out
    assert "103 runs in " in out  # the count is said in the title
    assert main(["--store", str(root), "runs", "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "fake-0000" in out and "newest" not in out.splitlines()[-1]
    assert main(["--store", str(root), "runs", "--filter", "fake-0001"]) == 0
    assert "1 run matching in " in capsys.readouterr().out  # said below 100 too
    assert main(["--store", str(root), "runs", "--limit", "-1"]) == 2
    assert "--limit=-1 is not allowed" in capsys.readouterr().err


def test_the_store_signature_moves_with_what_a_run_list_shows(tmp_path):
    """The TUI lists the runs again only when this changes: progress of a running run must
    not move it; a new run, an end, a tag, a note, a rename or a deletion must."""
    from cnnprobe.config import RunConfig

    with RunStore(tmp_path / "s") as store:
        seen = [store.signature()]

        def moved() -> bool:
            now = store.signature()
            changed = now != seen[-1]
            seen.append(now)
            return changed

        run = store.create_run(RunConfig())
        assert moved()
        store.record_progress(run, [{"step": 1, "loss": 1.0}], [{"step": 1, "mae": 2.0}],
                              steps_done=1, samples_seen=8, wall_time_s=0.1, best_val_mae=2.0)
        assert not moved()
        store.record_end(run, "finished", steps_done=1, samples_seen=8, wall_time_s=0.1,
                         metrics={"mae": 2.0})
        assert moved()
        store.set_tags(run, ["a"])
        assert moved()
        store.set_note(run, "why")
        assert moved()
        store.rename(run, "other")
        assert moved()
        store.delete(run)
        assert moved()


def test_runs_filter_is_the_tui_query(tmp_path, capsys):
    from cnnprobe.cli import main

    root = tmp_path / "f"
    fabricate(root, 20)  # fake-0008 and fake-0018 are failed (every 10th from the 9th)
    assert main(["--store", str(root), "runs", "--filter", "status:failed", "--json"]) == 0
    import json

    names = sorted(r["name"] for r in json.loads(capsys.readouterr().out))
    assert names == ["fake-0008", "fake-0018"]
    assert main(["--store", str(root), "runs", "--filter", "fake-001 !status:failed"]) == 0
    out = capsys.readouterr().out
    assert "fake-0017" in out and "fake-0018" not in out and "fake-0007" not in out
    assert main(["--store", str(root), "runs", "--filter", "nothing-like-this"]) == 0
    assert "match" in capsys.readouterr().out


def test_the_lab_module_paints_before_numpy_and_pandas_load():
    """The lab's first frame (layout, runs, status) needs neither: numpy loads with the
    first run's plots, pandas with a describe() table (bench/bench_startup.py)."""
    probe = ("import tui.app, sys\n"
             "print('LOADED', *[m for m in ('numpy', 'pandas') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["LOADED"]
