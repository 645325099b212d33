import numpy as np
import pytest
from rich.console import Console
from rich.style import Style

from cnnprobe.config import ConfigError
from cnnprobe.report.heatmap import (
    NAN_RGB,
    apply_cmap,
    layer_header,
    render_activation,
    render_grid,
    render_map,
    render_vector,
    truecolor_available,
)
from cnnprobe.results import Activation


def grey(v: float) -> tuple[int, int, int]:
    g = round(255 * v)
    return (g, g, g)


def cells(text):
    """[(char, fg, bg)] per cell of each line: colours as RGB tuples or None."""
    rows = []
    for line in text.split("\n"):
        row = []
        for i, ch in enumerate(line.plain):
            styles = [s.style for s in line.spans if s.start <= i < s.end]
            style = styles[-1] if styles else None
            style = Style.parse(style) if isinstance(style, str) else style
            fg = style.color.triplet if style is not None and style.color else None
            bg = style.bgcolor.triplet if style is not None and style.bgcolor else None
            row.append((ch, tuple(fg) if fg else None, tuple(bg) if bg else None))
        rows.append(row)
    return rows


def test_two_by_two_is_one_row_of_two_half_block_cells():
    text = render_map(np.array([[0.0, 1.0], [2.0, 3.0]]), 2, 1, cmap="gray")
    assert cells(text) == [[("▀", grey(0), grey(2 / 3)), ("▀", grey(1 / 3), grey(1))]]


def test_four_rows_make_two_cell_rows_top_pixel_in_front():
    a = np.array([[0, 1], [2, 3], [4, 5], [6, 7]], float)
    text = render_map(a, 2, 2, cmap="gray")
    assert cells(text) == [
        [("▀", grey(0), grey(2 / 7)), ("▀", grey(1 / 7), grey(3 / 7))],
        [("▀", grey(4 / 7), grey(6 / 7)), ("▀", grey(5 / 7), grey(1))],
    ]


def test_odd_row_count_leaves_the_last_bottom_half_empty():
    text = render_map(np.array([[0.0], [1.0], [0.5]]), 1, 2, cmap="gray")
    assert cells(text) == [[("▀", grey(0), grey(1))], [("▀", grey(0.5), None)]]


def test_large_maps_are_area_averaged_small_ones_grow_by_whole_factors():
    a = np.arange(16, dtype=float).reshape(4, 4)  # 2x2 blocks average 2.5, 4.5, 10.5, 12.5
    text = render_map(a, 2, 1, cmap="gray", vmin=0, vmax=15)
    assert cells(text) == [[("▀", grey(2.5 / 15), grey(10.5 / 15)),
                            ("▀", grey(4.5 / 15), grey(12.5 / 15))]]
    big = render_map(np.array([[0.0, 1.0], [1.0, 0.0]]), 5, 2, cmap="gray")
    assert [line.plain for line in big.split("\n")] == ["▀▀▀▀", "▀▀▀▀"]  # factor 2, not 2.5
    assert cells(big)[0][:2] == [("▀", grey(0), grey(0)), ("▀", grey(0), grey(0))]
    assert cells(big)[0][2] == ("▀", grey(1), grey(1))


def test_peak_resampling_keeps_a_single_marked_pixel():
    a = np.zeros((4, 4))
    a[1, 1] = 1.0
    area = render_map(a, 2, 1, cmap="gray", vmin=0, vmax=1)
    peak = render_map(a, 2, 1, cmap="gray", vmin=0, vmax=1, resample="peak")
    assert cells(area)[0][0][1] == grey(0.25)
    assert cells(peak)[0][0][1] == grey(1)
    with pytest.raises(ConfigError, match="resample"):
        render_map(a, 2, 1, resample="bicubic")


def test_viridis_ends_and_nan():
    rgb = apply_cmap(np.array([0.0, 1.0, np.nan, 7.0]))
    assert [tuple(int(x) for x in c) for c in rgb] == [(0x44, 0x01, 0x54), (0xfd, 0xe7, 0x25),
                                                      NAN_RGB, (0xfd, 0xe7, 0x25)]
    with pytest.raises(ConfigError, match="cmap"):
        apply_cmap(np.zeros(2), "jet")


def test_fallback_shades_by_the_mean_of_each_cell_pair_without_colour():
    a = np.array([[0, 0.25, 0.5, 1.0], [0, 0.25, 0.5, 1.0]])
    text = render_map(a, 4, 1, truecolor=False)
    assert text.plain == " ░▒█"
    assert not text.spans
    nan = render_map(np.array([[np.nan, 1.0], [0.0, 0.0]]), 2, 1, truecolor=False)
    assert nan.plain == "?▒"


def test_vector_bars_rise_in_eighths():
    assert render_vector([0, 1, 2, 4], 4, height=1).plain == " ▂▄█\n0 1 2 4"
    two = render_vector([0, 1, 2, 4], 4, height=2, truecolor=False)
    assert two.plain.split("\n")[:2] == ["   █", " ▄██"]
    assert not any(line.spans for line in two.split("\n")[:2])
    # Negative values: bars rise from the minimum; more elements than columns are averaged.
    assert render_vector([-1.0, 1.0], 2, height=1).plain.split("\n")[0] == " █"
    wide = render_vector(np.repeat([0.0, 1.0], 8), 2, height=1)
    assert wide.plain == " █"  # 16 values: no value line


def test_grid_caps_channels_and_titles_each():
    maps = np.random.default_rng(0).random((40, 4, 4))
    text = render_grid(maps, max_channels=32, columns=8, cell_size=(4, 2))
    lines = text.plain.split("\n")
    titles = [line for line in lines if line[:1].isdigit()]
    assert len(titles) == 4  # 32 channels, 8 to a row
    assert titles[0].split()[0] == "0" and titles[-1].split()[-2] == "31"
    assert lines[-1] == "channels 0-31 of 40"
    assert all(len(line) == 8 * 4 + 7 for line in lines[:3])
    page = render_grid(maps, max_channels=8, columns=8, cell_size=(4, 2), offset=32)
    assert page.plain.split("\n")[0].split()[0] == "32"
    assert page.plain.split("\n")[-1] == "channels 32-39 of 40"


def test_channel_against_layer_normalisation():
    maps = np.array([[[0.0, 1.0]], [[0.0, 2.0]]])  # channel 1 spans twice channel 0's range
    per_channel = cells(render_grid(maps, columns=2, cell_size=(2, 1), cmap="gray"))
    per_layer = cells(render_grid(maps, columns=2, cell_size=(2, 1), cmap="gray",
                                  normalize="layer"))
    # row 0 is the titles; tile 0's right pixel is column 1, tile 1's is column 4
    assert per_channel[1][1][1] == grey(1) and per_channel[1][4][1] == grey(1)
    assert per_layer[1][1][1] == grey(0.5) and per_layer[1][4][1] == grey(1)
    with pytest.raises(ConfigError, match="normalize"):
        render_grid(maps, normalize="global")


def test_header_and_whole_activation():
    act = Activation("conv", "map", "Conv2d", np.linspace(-1, 2.5, 24, dtype=np.float32)
                     .reshape(1, 2, 3, 4))
    assert layer_header(act) == "conv  Conv2d  2×3×4  -1..2.5"
    lines = render_activation(act, 40).plain.split("\n")
    assert lines[0] == "conv  Conv2d  2×3×4  -1..2.5"
    assert lines[1].startswith("0 ")
    vec = Activation("fc", "vector", "Linear", np.array([[1.0, 3.0]], np.float32))
    assert render_activation(vec, 40, bar_height=1).plain == "fc  Linear  2  1..3\n▃█\n1 3"


def test_truecolor_detection():
    assert truecolor_available(Console(color_system="truecolor", force_terminal=True))
    assert not truecolor_available(Console(color_system="standard", force_terminal=True))
    assert not truecolor_available(Console(color_system=None))
