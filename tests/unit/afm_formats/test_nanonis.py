"""Tests of battgen.afm.formats.nanonis: .3ds grids and .sxm scan series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from battgen.afm.formats import read_stack
from battgen.afm.formats.channels import NotAForceMapStack
from tests.afm_files import DF_CHANNEL, FakeUpload, linear_stack, sxm_series, write_3ds, write_sxm
from tests.unit.afm_formats.expectations import assert_valid, expected_linear, message, time_limit


# --------------------------------------------------------------------------- .3ds


@pytest.mark.parametrize(("z_start", "z_end"), [(-2e-10, 5e-10), (5e-10, -2e-10)])
def test_3ds_z_sweep_is_ordered_farthest_first(z_start: float, z_end: float) -> None:
    ny, nx, points = 20, 24, 15
    y, x, k = np.meshgrid(np.arange(ny), np.arange(nx), np.arange(points), indexing="ij")
    cube = y + 0.5 * x + 10.0 * k  # value grows with the sweep index
    result = read_stack(write_3ds(cube, z_start=z_start, z_end=z_end), name="grid.3ds")
    assert_valid(result)
    assert result.format == "nanonis-3ds" and result.array_key == DF_CHANNEL
    assert result.source_shape == (ny, nx, points)
    rising = z_end > z_start  # sweep index 0 is then the lowest Z, i.e. the closest map
    np.testing.assert_allclose(result.stack, expected_linear(ny, nx, points, reverse=rising), atol=2e-6)
    assert any(("reversed" if rising else "kept") in op and "Z sweep" in op for op in result.operations)


def test_3ds_closest_first_flag_overrides_metadata() -> None:
    cube = linear_stack(16, 16, 5)
    result = read_stack(write_3ds(cube, z_start=0.0, z_end=1e-9), name="g.3ds", closest_first=False)
    np.testing.assert_allclose(result.stack, expected_linear(16, 16, 5), atol=2e-6)
    assert any("not used" in op for op in result.operations)


def test_3ds_array_key_picks_another_channel_and_lists_channels() -> None:
    cube = linear_stack(16, 16, 5)
    data = write_3ds(cube, z_start=1e-9, z_end=0.0, channels=("Current (A)", "Amplitude (m)"))
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name="g.3ds")
    assert "no frequency-shift" in message(excinfo) and "'Current (A)'" in message(excinfo)
    # A channel of another quantity is refused even when chosen: it is not what the translator reads.
    with pytest.raises(NotAForceMapStack, match="holds amplitude \\(m\\), not frequency shift"):
        read_stack(data, name="g.3ds", array_key="Amplitude (m)")
    with pytest.raises(ValueError, match="no channel 'nope'"):
        read_stack(data, name="g.3ds", array_key="nope")


def test_3ds_prefers_forward_channel() -> None:
    cube = linear_stack(16, 16, 5)
    channels = (DF_CHANNEL, "OC M1 Freq. Shift [bwd] (Hz)")
    data = write_3ds(cube, z_start=1e-9, z_end=0.0, channels=channels, df_index=0)
    result = read_stack(data, name="g.3ds")
    assert result.array_key == DF_CHANNEL
    np.testing.assert_allclose(result.stack, expected_linear(16, 16, 5), atol=2e-6)


def test_3ds_truncated() -> None:
    data = write_3ds(linear_stack(16, 16, 5), z_start=1e-9, z_end=0.0)
    with pytest.raises(ValueError) as excinfo:
        read_stack(data[:-7], name="g.3ds")
    assert "truncated" in message(excinfo) and "16×16 pixels" in message(excinfo)
    with pytest.raises(ValueError, match="HEADER_END"):
        read_stack(data[:300], name="g.3ds")


def test_3ds_huge_declared_grid_is_checked_before_reading() -> None:
    small = write_3ds(linear_stack(8, 8, 4), z_start=1e-9, z_end=0.0)
    forged = small.replace(b'Grid dim="8 x 8"', b'Grid dim="4000 x 4000"').replace(b"Points=4", b"Points=500")
    with time_limit(5):
        with pytest.raises(ValueError) as excinfo:
            read_stack(forged, name="forged.3ds")
    assert "over the limit" in message(excinfo) or "truncated" in message(excinfo)
    forged = small.replace(b'Grid dim="8 x 8"', b'Grid dim="400 x 400"')
    with pytest.raises(ValueError, match="truncated"):
        read_stack(forged, name="forged.3ds")


def test_3ds_bias_sweep_is_not_a_height_stack() -> None:
    data = write_3ds(linear_stack(8, 8, 4), z_start=-1.0, z_end=1.0, sweep="Bias (V)")
    with pytest.raises(ValueError, match="not Z"):
        read_stack(data, name="sts.3ds")


def test_3ds_inconsistent_header() -> None:
    data = write_3ds(linear_stack(8, 8, 4), z_start=1e-9, z_end=0.0, experiment_size=12)
    with pytest.raises(ValueError, match="inconsistent"):
        read_stack(data, name="g.3ds")


def test_3ds_garbage_header_line() -> None:
    bad_line = "this line has no equals\r\n"
    data = write_3ds(linear_stack(8, 8, 4), z_start=1e-9, z_end=0.0, extra_header=bad_line)
    with pytest.raises(ValueError, match="key=value"):
        read_stack(data, name="g.3ds")


def test_3ds_single_point_grid_is_not_a_map() -> None:
    data = write_3ds(linear_stack(1, 1, 40), z_start=1e-9, z_end=0.0)
    with pytest.raises(ValueError, match="at least 8×8 pixels, got 1×1"):
        read_stack(data, name="point.3ds")


# --------------------------------------------------------------------------- .sxm


def test_sxm_series_sorted_by_z_farthest_first() -> None:
    zs = [1e-10, 4e-10, 2e-10, 3e-10]  # uploaded out of order, evenly spaced once sorted
    series = sxm_series(zs)
    result = read_stack([FakeUpload(data, name) for name, data, _ in series])
    assert_valid(result)
    assert result.format == "nanonis-sxm" and result.array_key == "OC_M1_Freq._Shift"
    assert result.source_shape == (4, 24, 20)
    # Value grows with Z, so farthest-first means decreasing along heights.
    np.testing.assert_allclose(result.stack, expected_linear(24, 20, 4, c=-1.0, reverse=False), atol=2e-5)
    assert any("sorted the heights" in op for op in result.operations)
    assert "…" in result.name or "," in result.name


def test_sxm_uneven_z_is_interpolated_in_z() -> None:
    zs = [0.0, 1e-10, 2e-10, 6e-10]
    series = sxm_series(zs, h=16, w=16)
    result = read_stack([data for _, data, _ in series], name="scan.sxm", n_heights=7)
    assert any("linear in the recorded Z" in op for op in result.operations)
    # Δf is linear in Z, so interpolation in Z gives evenly spaced values from far (6e-10) to near (0).
    column = result.stack[0, 0, :]
    np.testing.assert_allclose(np.diff(column), np.full(6, np.diff(column)[0]), atol=1e-5)
    assert column[0] > column[-1]


def test_sxm_without_z_keeps_upload_order(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        df = np.full((16, 16), float(i), np.float32) + np.arange(16, dtype=np.float32)
        path = tmp_path / f"s{i}.sxm"
        path.write_bytes(write_sxm({"OC_M1_Freq._Shift": df}))
        paths.append(path)
    result = read_stack(paths)
    assert result.stack[0, 0, 0] < result.stack[0, 0, -1]
    assert any("upload order" in op or "assumed" in op for op in result.operations)
    reversed_result = read_stack(paths, closest_first=True)
    np.testing.assert_allclose(reversed_result.stack, result.stack[:, :, ::-1], atol=1e-6)


def test_sxm_scan_up_is_flipped_to_top_first() -> None:
    series = sxm_series([1e-10, 2e-10], h=16, w=16, scan_dir="up")
    up = read_stack([data for _, data, _ in series], name="s.sxm")
    down = read_stack([data for _, data, _ in sxm_series([1e-10, 2e-10], h=16, w=16)], name="s.sxm")
    np.testing.assert_allclose(up.stack, down.stack[::-1], atol=1e-6)
    assert any("rows flipped" in op for op in up.operations)


def test_sxm_backward_only_channel_is_mirrored() -> None:
    y, x = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    files = []
    for z in (1e-10, 2e-10):
        df = (y + 0.5 * x + 1e10 * z).astype(np.float32)
        files.append(write_sxm({"OC_M1_Freq._Shift": df}, z=z, directions={"OC_M1_Freq._Shift": "backward"}))
    result = read_stack(files, name="b.sxm")
    np.testing.assert_allclose(result.stack, expected_linear(16, 16, 2, c=-1.0), atol=2e-5)


def test_single_sxm_has_too_few_heights() -> None:
    name, data, _ = sxm_series([1e-10])[0]
    with pytest.raises(ValueError, match="need at least 2 heights, got 1"):
        read_stack(data, name=name)


def test_sxm_size_mismatch_and_truncation() -> None:
    a = sxm_series([1e-10], h=16, w=16)[0][1]
    b = sxm_series([2e-10], h=24, w=16)[0][1]
    with pytest.raises(ValueError, match="same size"):
        read_stack([a, b], name="s.sxm")
    with pytest.raises(ValueError, match="truncated"):
        read_stack([a, a[:-4]], name="s.sxm")
    with pytest.raises(ValueError, match="truncated|SCANIT_END"):
        read_stack([a, a[:100]], name="s.sxm")


def test_sxm_without_df_channel() -> None:
    data = write_sxm({"Z": np.ones((16, 16)), "Current": np.ones((16, 16))}, z=1e-10)
    with pytest.raises(ValueError) as excinfo:
        read_stack([data, data], name="s.sxm")
    assert "no frequency-shift" in message(excinfo) and "'Current'" in message(excinfo)
