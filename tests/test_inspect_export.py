import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnprobe.config import ModelConfig, TaskConfig
from cnnprobe.engine.inspect import capture, sample_input
from cnnprobe.models import build_model
from cnnprobe.report.files import ExportError
from cnnprobe.report.inspection import export_inspection, map_grid_image


@pytest.fixture(scope="module")
def acts():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="plaincnn", input_norm="none"), 3)
    batch = sample_input(TaskConfig(name="distance", height=32, width=32), seed=1)
    return capture(model, batch.images)


def _table() -> pd.DataFrame:
    return pd.DataFrame({"layer": ["input", "blocks.0"], "depth": [0, 1],
                         "kind": ["map", "map"], "features": [6, 64], "r2": [0.0, 0.25],
                         "mae": [6.5, 5.25]})


def test_pngs_npz_and_probe_tables(acts, tmp_path):
    out = tmp_path / "inspect"
    files = export_inspection(out, acts, _table())
    names = [a.name for a in acts]
    assert [p.name for p in files[:3]] == ["00-input.png", "01-blocks_0.png", "02-blocks_2.png"]
    assert len(files) == len(acts) + 3
    sizes = {p.name: Image.open(p).size for p in files if p.suffix == ".png"}
    assert sizes["00-input.png"] == (3 * 32 + 2 * 2, 32)  # 3 channels side by side, 2 px gaps
    assert sizes["01-blocks_0.png"] == (8 * 32 + 7 * 2, 4 * 32 + 3 * 2)  # 32 channels, 8 a row
    last_map = f"{names.index('blocks.15'):02d}-blocks_15.png"
    assert sizes[last_map] == (8 * 32 + 7 * 2, 4 * 32 + 3 * 2)  # 2x2 maps grown 16x, 32 of 256
    fc = f"{names.index('head.mlp.0'):02d}-head_mlp_0.png"
    assert sizes[fc] == (128 * 2, 64)  # 128 bars, 2 px each
    with np.load(out / "activations.npz") as npz:
        assert list(npz["layer_names"]) == names
        assert set(npz.files) == {"layer_names", *(n.replace(".", "_") for n in names)}
        assert np.array_equal(npz["blocks_0"], acts[1].tensor)
    csv = pd.read_csv(out / "probes.csv")
    assert list(csv["layer"]) == ["input", "blocks.0"] and list(csv["r2"]) == [0.0, 0.25]
    md = (out / "probes.md").read_text().splitlines()
    assert md[2] == "| layer | depth | kind | features | r2 | mae |"
    assert md[4] == "| input | 0 | map | 6 | 0 | 6.5 |" and len(md) == 6


def test_grid_pixels_follow_the_normalisation():
    maps = np.array([[[0.0, 1.0]], [[0.0, 2.0]]])  # (2, 1, 2): grown 16x to 16x32 tiles
    per_channel = np.asarray(map_grid_image(maps, cmap="gray"))
    per_layer = np.asarray(map_grid_image(maps, cmap="gray", normalize="layer"))
    assert per_channel.shape == (16, 32 + 2 + 32, 3)
    right0, right1 = (0, 31), (0, 34 + 31)
    assert per_channel[right0][0] == 255 and per_channel[right1][0] == 255
    assert per_layer[right0][0] == 128 and per_layer[right1][0] == 255
    assert tuple(per_channel[0, 32]) == (24, 24, 24)  # the gap


def test_refuses_a_folder_with_files_unless_overwrite(acts, tmp_path):
    out = tmp_path / "inspect"
    export_inspection(out, acts)
    (out / "99-stale.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty.*--overwrite"):
        export_inspection(out, acts[:2])
    files = export_inspection(out, acts[:2], overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in files] + ["notes.txt"])
    assert not (out / "probes.csv").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_inspection(blocker, acts)
