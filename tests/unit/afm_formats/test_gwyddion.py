"""Tests of battgen.afm.formats.gwyddion: .gwy image channels and volumes, and hostile files."""

from __future__ import annotations

import io
import struct

import gwyfile
import numpy as np
import pytest
from gwyfile.objects import GwyContainer

from battgen.afm.formats import read_stack
from tests.afm_files import FakeUpload, gwy_brick, gwy_bytes, gwy_channels, linear_stack
from tests.unit.afm_formats.expectations import expected_linear, message, time_limit


def test_gwy_channels_are_heights() -> None:
    stack = linear_stack(20, 18, 6)
    data = gwy_channels([stack[:, :, k] for k in range(6)])
    assert gwyfile.load(io.BytesIO(data))["/0/data"].data.shape == (20, 18)  # the writer is sound
    result = read_stack(FakeUpload(data, "maps.gwy"))
    assert result.format == "gwyddion" and result.source_shape == (6, 20, 18)
    np.testing.assert_allclose(result.stack, expected_linear(20, 18, 6), atol=2e-6)


def test_gwy_brick_is_a_stack() -> None:
    stack = linear_stack(20, 18, 6)
    result = read_stack(gwy_brick(np.moveaxis(stack, 2, 0)), name="vol.gwy")
    assert result.array_key == "/brick/0" and result.source_shape == (6, 20, 18)
    np.testing.assert_allclose(result.stack, expected_linear(20, 18, 6), atol=2e-6)


def test_gwy_brick_without_calibration_says_direction_unknown() -> None:
    stack = linear_stack(16, 16, 5)
    result = read_stack(gwy_brick(np.moveaxis(stack, 2, 0)), name="vol.gwy")
    assert any("evenly spaced over 3e-10 to 1.3e-09" in op for op in result.operations)
    assert any("assumed" in op for op in result.operations)  # order as uploaded, flagged


def test_gwy_brick_z_calibration_gives_the_heights() -> None:
    # Levels recorded closest first and unevenly: 0.1, 0.2, 0.4, 0.8 nm.
    zs = [1e-10, 2e-10, 4e-10, 8e-10]
    cube = np.stack([np.full((16, 16), z * 1e10) + np.linspace(0, 0.01, 16) for z in zs])
    result = read_stack(gwy_brick(cube, calibration=zs), name="vol.gwy", n_heights=8)
    assert any("reversed" in op and "z calibration in the file" in op for op in result.operations)
    assert any("linear in the recorded Z" in op for op in result.operations)
    # value = Z in Å, so farthest first means falling from 8 to 1, evenly in Z after resampling
    means = result.stack.mean(axis=(0, 1))
    assert np.all(np.diff(means) < 0)
    np.testing.assert_allclose(np.diff(means), np.diff(means)[0], rtol=1e-3)


@pytest.mark.parametrize("calibration, unit, why", [
    ([1e-10, 1e-10, 2e-10, 3e-10], "m", "distinct finite"),
    ([1e-10, 2e-10, 3e-10], "m", "distinct finite"),
    ([1e-10, np.nan, 2e-10, 3e-10], "m", "distinct finite"),
    ([0.1, 0.2, 0.3, 0.4], "V", "not a length"),
])
def test_gwy_brick_unusable_calibration_is_ignored(calibration, unit, why) -> None:
    cube = np.moveaxis(linear_stack(16, 16, 4), 2, 0)
    result = read_stack(gwy_brick(cube, calibration=calibration, calibration_unit=unit), name="vol.gwy")
    assert any(why in op for op in result.operations)
    plain = read_stack(gwy_brick(cube), name="vol.gwy")
    np.testing.assert_array_equal(result.stack, plain.stack)  # read as if there were no calibration


def test_gwy_several_bricks_need_array_key() -> None:
    stack = np.moveaxis(linear_stack(16, 16, 4), 2, 0)
    data = gwy_brick(stack, extra={"/brick/1": -stack})
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name="v.gwy")
    assert "/brick/0" in message(excinfo) and "/brick/1" in message(excinfo)
    result = read_stack(data, name="v.gwy", array_key="/brick/1")
    np.testing.assert_allclose(result.stack, -expected_linear(16, 16, 4), atol=2e-6)


def test_gwy_channels_of_different_sizes() -> None:
    data = gwy_channels([np.ones((16, 16)), np.ones((20, 16))])
    with pytest.raises(ValueError, match="same size"):
        read_stack(data, name="m.gwy")


def test_gwy_single_channel_and_empty_container() -> None:
    with pytest.raises(ValueError, match="need at least 2 heights, got 1"):
        read_stack(gwy_channels([np.arange(256.0).reshape(16, 16)]), name="m.gwy")
    with pytest.raises(ValueError, match="no image channels"):
        read_stack(gwy_bytes(GwyContainer()), name="m.gwy")


def test_gwy_truncated() -> None:
    data = gwy_channels([np.ones((16, 16)), np.zeros((16, 16))])
    with pytest.raises(ValueError, match="corrupted Gwyddion"):
        read_stack(data[:-10], name="m.gwy")


def test_gwy_unterminated_string_does_not_hang() -> None:
    # gwyfile 0.3.0 loops forever on this input; the reader must refuse it at once.
    body = b"x\x00sabc"
    data = b"GWYP" + b"GwyContainer\x00" + struct.pack("<I", len(body)) + body
    with time_limit(5):
        with pytest.raises(ValueError, match="unterminated"):
            read_stack(data, name="m.gwy")


def test_gwy_forged_array_count() -> None:
    body = b"data\x00D" + struct.pack("<I", 2**31) + b"\x00" * 16
    data = b"GWYP" + b"GwyContainer\x00" + struct.pack("<I", len(body)) + body
    with time_limit(5):
        with pytest.raises(ValueError, match="declares"):
            read_stack(data, name="m.gwy")


def test_gwy_deep_nesting() -> None:
    obj = b"GwyContainer\x00" + struct.pack("<I", 0)
    for _ in range(200):
        body = b"o\x00o" + obj
        obj = b"GwyContainer\x00" + struct.pack("<I", len(body)) + body
    with pytest.raises(ValueError, match="nested"):
        read_stack(b"GWYP" + obj, name="deep.gwy")


@pytest.mark.parametrize("name", ["old.gwy", "old.npy"])
def test_gwyddion_1x_files_are_named_as_unsupported(name: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        read_stack(b"GWYO" + b"GwyContainer\x00" + bytes(64), name=name)
    assert "Gwyddion 1.x" in message(excinfo) and "not supported" in message(excinfo)
