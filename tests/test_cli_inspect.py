"""`cnnprobe inspect`: the files it writes, the sample it picks, the probe table it keeps
with the run (and `show` and `export` showing it), and every bad input as one line that
changes nothing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import TRAIN, run, run_json, store_files
from PIL import Image

from cnnprobe.cli import main
from cnnprobe.store import RunStore

FAST = ["--n-train", "64", "--n-test", "32", "--device", "cpu"]
SEEDNET = ["input", "preconv1", "features", *(f"fc{i}" for i in range(1, 9))]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A store with a seednet run ("base") and a small plaincnn run ("plain", min size 8)."""
    root = tmp_path_factory.mktemp("template")
    assert main(["--store", str(root), *TRAIN, "--name", "base"]) == 0
    assert main(["--store", str(root), *TRAIN, "--name", "plain", "--model", "plaincnn",
                 "--model-depth", "3", "--model-width", "8"]) == 0
    return root


@pytest.fixture
def root(template, tmp_path, monkeypatch):
    dest = tmp_path / "store"
    shutil.copytree(template, dest)
    monkeypatch.chdir(tmp_path)  # default exports/ lands here
    return dest


def _id(root, name="base"):
    return next(r.id for r in RunStore(root).list_runs() if r.name == name)


def snapshot(root):
    """The runs, their stored probe tables and every file of the store."""
    store = RunStore(root)
    runs = [(r.id, r.name, r.status, r.steps_done, r.metrics) for r in store.list_runs()]
    probes = [(store.probes_info(r[0]), None if store.probes(r[0]) is None
               else store.probes(r[0]).to_dict(orient="records")) for r in runs]
    files = store_files(root)
    store.close()
    return runs, probes, files


def test_writes_a_png_per_layer_the_tensors_and_the_probe_table(root, capsys, tmp_path):
    out = tmp_path / "look"
    data = run_json(capsys, root, "inspect", "base", *FAST, "--out", str(out))
    names = [layer["name"] for layer in data["layers"]]
    assert names == SEEDNET
    assert data["out"] == str(out) and sorted(data["files"]) == sorted(
        str(p) for p in out.iterdir())
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:02d}-{n}.png" for i, n in enumerate(names)]
    for path in pngs:
        with Image.open(path) as image:
            assert image.mode == "RGB" and min(image.size) >= 32
    with np.load(out / "activations.npz") as npz:
        assert list(npz["layer_names"]) == names
        assert npz["input"].shape == (1, 3, 32, 32) and npz["preconv1"].shape == (1, 2, 32, 32)
        assert npz["fc8"].shape == (1, 1)
        assert npz["fc8"][0, 0] == pytest.approx(data["prediction"], abs=1e-5)
    table = pd.read_csv(out / "probes.csv")
    assert list(table["layer"]) == names and list(table["depth"]) == list(range(len(names)))
    assert table["r2"].tolist() == pytest.approx([r["r2"] for r in data["probes"]])
    assert (out / "probes.md").read_text().startswith("# Linear probes")
    assert data["saved"] and data["probe_options"]["n_train"] == 64


def test_sample_n_is_the_runs_validation_sample_n(root, capsys):
    rid = _id(root)
    predictions, labels = RunStore(root).predictions(rid)  # of the last checkpoint
    assert labels[5] != labels[37]
    for n in (5, 37):
        data = run_json(capsys, root, "inspect", rid, "--sample", str(n), "--which", "last",
                        "--no-probes", "--no-export", "--device", "cpu")
        assert data["sample"] == n and data["seed"] is None
        assert data["label"] == pytest.approx(float(labels[n]))
        assert data["prediction"] == pytest.approx(float(predictions[n]), abs=1e-4)
    fresh = run_json(capsys, root, "inspect", rid, "--seed", "4", "--no-probes", "--no-export")
    assert fresh["sample"] is None and fresh["seed"] == 4


def test_layers_restrict_the_maps_files_and_probes(root, capsys, tmp_path):
    out = tmp_path / "some"
    data = run_json(capsys, root, "inspect", "base", *FAST, "--layers", "fc1,fc8",
                    "--out", str(out))
    assert [layer["name"] for layer in data["layers"]] == ["input", "fc1", "fc8"]
    assert sorted(p.name for p in out.glob("*.png")) == ["00-input.png", "01-fc1.png",
                                                         "02-fc8.png"]
    table = pd.read_csv(out / "probes.csv")
    assert list(table["layer"]) == ["input", "fc1", "fc8"]
    assert list(table["depth"]) == [0, 3, 10]  # depth in the whole network, for the plot
    listed = run_json(capsys, root, "inspect", "base", "--list-layers")
    assert [r["name"] for r in listed] == SEEDNET and listed[1]["shape"] == [2, 32, 32]
    assert not Path("exports").exists()  # --list-layers writes nothing


def test_default_folder_is_numbered_never_overwritten(root, capsys):
    rid = _id(root)
    args = ["inspect", rid, "--no-probes", "--device", "cpu"]
    first = run_json(capsys, root, *args)["out"]
    second = run_json(capsys, root, *args)["out"]
    assert first == f"exports/{rid[:8]}-inspect" and second == f"{first}-2"
    (Path(first) / "00-input.png").write_bytes(b"old")
    again = run_json(capsys, root, *args, "--overwrite")["out"]
    assert again == first and Image.open(Path(first) / "00-input.png").size[0] >= 32


def test_terminal_output_probe_table_and_heatmaps_on_request(root, capsys):
    code, out, err = run(capsys, root, "inspect", "base", *FAST, "--sample", "2",
                         "--no-export")
    assert code == 0, err
    assert "validation sample 2 of 64 at 32x32: label" in out
    assert "linear probes" in out and "fc8" in out and "features" in out
    assert "probes saved with run" in out
    assert "preconv1  Conv2d  2×32×32" not in out  # stdout is not a terminal: no heatmaps
    code, out, err = run(capsys, root, "inspect", "base", "--no-probes", "--no-export",
                         "--show", "--channels", "1", "--layers", "preconv1,fc1")
    assert code == 0, err
    assert "preconv1  Conv2d  2×32×32" in out and "channels 0-0 of 2" in out
    assert "fc1  Linear  128" in out and "█" in out  # the vector's bars
    assert "linear probes" not in out


def test_probes_are_kept_with_the_run_for_show_and_export(root, capsys, tmp_path):
    rid = _id(root)
    assert run_json(capsys, root, "show", rid)["probes"] is None
    data = run_json(capsys, root, "inspect", rid, *FAST, "--no-export")
    assert data["saved"] and data["files"] == [] and data["out"] is None
    layers = [r["layer"] for r in data["probes"]]

    shown = run_json(capsys, root, "show", rid)["probes"]
    assert [r["layer"] for r in shown["table"]] == layers
    assert shown["options"]["which"] == "last" and shown["options"]["n_test"] == 32
    assert shown["options"]["measured"]["weights"] == "last"
    code, out, _ = run(capsys, root, "show", rid)
    assert code == 0 and "linear probes: last @ step" in out and "fc8" in out
    assert "measured with: last weights (step" in out

    [md] = run_json(capsys, root, "export", rid, "--out", str(tmp_path / "run.md"))["files"]
    text = Path(md).read_text()
    section = text[text.index("## Linear probes"):]
    assert "linear probe R² by layer depth" in section and "\x1b" not in section
    assert all(f"| {name} |" in section for name in layers)
    [js] = run_json(capsys, root, "export", rid, "--format", "json",
                    "--out", str(tmp_path / "run.json"))["files"]
    exported = json.loads(Path(js).read_text())["probes"]
    assert [r["r2"] for r in exported["table"]] == pytest.approx([r["r2"] for r in
                                                                  data["probes"]])
    csvs = run_json(capsys, root, "export", rid, "--format", "csv",
                    "--out", f"{tmp_path}/csv/")["files"]
    [probes_csv] = [p for p in csvs if p.endswith("-probes.csv")]
    assert list(pd.read_csv(probes_csv)["layer"]) == layers

    # --no-save, and a narrower look, leave the stored table as it was.
    before = snapshot(root)
    run_json(capsys, root, "inspect", rid, *FAST, "--layers", "fc1", "--no-save",
             "--no-export")
    assert snapshot(root) == before


def _taken(tmp):
    (tmp / "taken").mkdir()
    (tmp / "taken" / "mine.txt").write_text("keep")


ERRORS = [
    # (name, prepare(tmp_path), args ({tmp} for tmp_path), exit code, words)
    ("unknown layer", None, ["inspect", "base", "--layers", "fc1,nope"], 2,
     "layers='nope' is not allowed: a layer of this model: preconv1, features, fc1"),
    ("below the model's minimum", None, ["inspect", "plain", "--resolution", "6"], 2,
     "resolution='6x6' is not allowed: at least 8 for this model"),
    ("unknown run", None, ["inspect", "nosuch"], 1, "no run 'nosuch'"),
    ("folder with files", _taken, ["inspect", "base", "--out", "{tmp}/taken"], 1,
     "taken is not empty (1 entries, e.g. mine.txt): pass --overwrite"),
    ("unwritable path", lambda t: (t / "afile").write_text(""),
     ["inspect", "base", "--out", "{tmp}/afile/look"], 1, "afile is a file, not a folder"),
    ("sample out of range", None, ["inspect", "base", "--sample", "64"], 2,
     "an index from 0 to 63"),
    ("too few probe samples", None, ["inspect", "base", "--n-train", "4"], 2, "n_train=4"),
    ("no channels", None, ["inspect", "base", "--channels", "0"], 2, "channels=0"),
]


@pytest.mark.parametrize("name,prepare,args,code,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_is_one_line_and_changes_nothing(root, capsys, tmp_path, name, prepare, args,
                                                   code, words):
    run_json(capsys, root, "inspect", "base", *FAST, "--no-export")  # a stored table to keep
    if prepare:
        prepare(tmp_path)
    before = snapshot(root)
    listing = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(tmp=tmp_path) for a in args]
    got, out, err = run(capsys, root, args[0], *FAST, *args[1:])  # the case's flags win
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnprobe: error: "), err
    assert words in lines[0]
    assert out == "" and "Traceback" not in err
    assert snapshot(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no exports/, no folder


def test_sample_and_seed_together_is_a_usage_error(root, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--store", str(root), "inspect", "base", "--sample", "1", "--seed", "2"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not allowed with argument --sample" in err
