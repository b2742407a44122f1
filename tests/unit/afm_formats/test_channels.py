"""Channel titles and units decide what a file is: a force-map stack, or the images of one scan (issue 16, item 5)."""

from __future__ import annotations

import io

import gwyfile
import numpy as np
import pytest

from battgen.afm.formats import read_stack
from battgen.afm.formats.channels import (AMPLITUDE, CURRENT, DEFLECTION, FORCE, FREQUENCY_SHIFT, PHASE, TOPOGRAPHY,
                                          UNKNOWN, NotAForceMapStack, quantity_of, unit_in_name, with_prefix)
from tests.afm_files import (TOPOGRAPHY_CHANNELS, gwy_brick, gwy_channels, gwy_topography_scan, linear_stack,
                             write_3ds, write_sxm)
from tests.unit.afm_formats.expectations import expected_linear


@pytest.mark.parametrize("name,unit,quantity", [
    ("HeightRetrace", "m", TOPOGRAPHY),
    ("AmplitudeRetrace", "m", AMPLITUDE),
    ("DeflectionRetrace", "m", DEFLECTION),
    ("PhaseRetrace", "deg", PHASE),
    ("OC M1 Freq. Shift", "Hz", FREQUENCY_SHIFT),
    ("OC M1 Freq. Shift (Hz)", None, FREQUENCY_SHIFT),
    ("Current", "A", CURRENT),
    ("Z", "m", TOPOGRAPHY),
    ("Z", None, TOPOGRAPHY),
    ("vertical force", "N", FORCE),
    ("df z3", "", FREQUENCY_SHIFT),
    ("channel 0", "", UNKNOWN),
])
def test_quantity_from_unit_then_title(name, unit, quantity):
    assert quantity_of(name, unit) == quantity


def test_units_in_names_and_prefixes():
    assert unit_in_name("OC M1 Freq. Shift (Hz)") == "Hz" and unit_in_name("Amplitude") == ""
    assert with_prefix(4.73e-9, "m") == "4.73 nm" and with_prefix(80.0, "deg") == "80 deg"


def test_a_topography_scan_is_refused_with_its_channels_listed():
    data = gwy_topography_scan()
    loaded = gwyfile.load(io.BytesIO(data))  # the independent writer's file has what a real one has
    assert loaded["/3/data/title"] == "PhaseRetrace" and loaded["/3/data"].data.shape == (256, 256)
    with pytest.raises(NotAForceMapStack) as excinfo:
        read_stack(data, name="scan.gwy")
    refusal = excinfo.value
    assert isinstance(refusal, ValueError)  # every caller that handles a bad upload handles this one
    assert refusal.kind == "a topography scan"
    text = str(refusal)
    assert "scan.gwy is a topography scan, not a constant-height force-map stack" in text
    assert "HeightRetrace [m]" in text and "PhaseRetrace [deg]" in text
    assert [(c.name, c.unit) for c in refusal.channels] == list(TOPOGRAPHY_CHANNELS)
    assert [c.quantity for c in refusal.channels] == [TOPOGRAPHY, AMPLITUDE, DEFLECTION, PHASE]
    height = refusal.channels[0]
    assert (height.rows, height.columns) == (256, 256) and height.scan_size == "5 µm × 5 µm"
    row = height.row()
    assert row["value range"].endswith("nm") and row["pixels"] == "256×256"
    assert 70 < refusal.channels[3].minimum < refusal.channels[3].maximum < 90  # degrees of phase


def test_frequency_shift_channels_are_a_stack_and_say_so():
    stack = linear_stack(20, 18, 6)
    result = read_stack(gwy_channels([stack[:, :, k] for k in range(6)]), name="df.gwy")
    assert [c.quantity for c in result.channels] == [FREQUENCY_SHIFT] * 6
    assert [c.name for c in result.channels] == [f"df z{k}" for k in range(6)]
    np.testing.assert_allclose(result.stack, expected_linear(20, 18, 6), atol=2e-6)


def test_frequency_shift_channels_beside_a_topography_image_are_read_without_it():
    stack = linear_stack(20, 18, 4)
    maps = [np.full((20, 18), 7e-9), *[stack[:, :, k] for k in range(4)]]
    data = gwy_channels(maps, titles=["Topography", *[f"df {k}" for k in range(4)]], units=["m", *["Hz"] * 4])
    result = read_stack(data, name="mixed.gwy")
    np.testing.assert_allclose(result.stack, expected_linear(20, 18, 4), atol=2e-6)
    left_out = "left out the channels that are not force maps: Topography (height (topography))"
    assert any(left_out in op for op in result.operations), result.operations


def test_one_frequency_shift_channel_among_images_is_not_a_stack():
    maps = [np.random.default_rng(k).normal(size=(16, 16)) for k in range(3)]
    data = gwy_channels(maps, titles=["Z", "Frequency shift", "Phase"], units=["m", "Hz", "deg"])
    with pytest.raises(NotAForceMapStack, match="different quantities"):
        read_stack(data, name="one.gwy")


def test_channels_that_say_nothing_are_still_read_as_before_with_a_note():
    stack = linear_stack(16, 16, 4)
    data = gwy_channels([stack[:, :, k] for k in range(4)], titles=[None] * 4, units=[""] * 4)
    result = read_stack(data, name="bare.gwy")
    assert [c.quantity for c in result.channels] == [UNKNOWN] * 4
    assert any("does not say what they hold" in op for op in result.operations)


def test_a_volume_over_bias_or_of_heights_is_refused():
    cube = np.moveaxis(linear_stack(16, 16, 5), 2, 0)
    with pytest.raises(ValueError, match="runs over V along z, not over tip height"):
        read_stack(gwy_brick(cube, units={"si_unit_z": "V", "si_unit_w": "A"}), name="iv.gwy")
    with pytest.raises(NotAForceMapStack, match="holds height"):
        read_stack(gwy_brick(cube, units={"si_unit_z": "m", "si_unit_w": "m"}), name="z.gwy")
    result = read_stack(gwy_brick(cube, units={"si_unit_z": "m", "si_unit_w": "Hz"}), name="df.gwy")
    assert result.channels[0].quantity == FREQUENCY_SHIFT


def test_nanonis_channel_units_decide_too():
    maps = {"Z": np.ones((16, 16)), "OC_M1_Freq._Shift": np.arange(256.0).reshape(16, 16)}
    scans = [write_sxm(maps, z=z, units={"Z": "m"}) for z in (1e-10, 2e-10, 3e-10)]
    result = read_stack(scans, name="s.sxm")
    assert result.channels[0].unit == "Hz" and result.channels[0].quantity == FREQUENCY_SHIFT
    with pytest.raises(NotAForceMapStack, match="channel 'Z' holds height"):
        read_stack(scans, name="s.sxm", array_key="Z")
    grid = write_3ds(linear_stack(16, 16, 5), z_start=1e-9, z_end=0.0)
    assert read_stack(grid, name="g.3ds").channels[0].unit == "Hz"


def test_tiff_page_descriptions_name_the_channels_where_present():
    import tifffile

    from tests.afm_files import tiff_bytes

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        for title in ("HeightRetrace", "PhaseRetrace"):
            tif.write(np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32), description=title,
                      photometric="minisblack", metadata=None)
    with pytest.raises(NotAForceMapStack, match="HeightRetrace, PhaseRetrace"):
        read_stack(buf.getvalue(), name="scan.tif")
    # tifffile's own JSON description says nothing of the pages: read as before.
    plain = read_stack(tiff_bytes(np.moveaxis(linear_stack(16, 16, 4), 2, 0)), name="stack.tif")
    assert plain.channels == []
