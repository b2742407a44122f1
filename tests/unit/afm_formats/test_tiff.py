"""Tests of battgen.afm.formats.tiff: multi-page TIFF stacks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from battgen.afm.formats import read_stack
from tests.afm_files import linear_stack, npy_bytes, tiff_bytes
from tests.unit.afm_formats.expectations import expected_linear, message


def test_tiff_pages_are_heights() -> None:
    stack = linear_stack(30, 26, 12)
    data = tiff_bytes(np.moveaxis(stack, 2, 0).astype(np.float32))
    result = read_stack(data, name="stack.tif")
    assert result.format == "tiff" and result.source_shape == (12, 30, 26)
    np.testing.assert_allclose(result.stack, expected_linear(30, 26, 12), atol=2e-6)
    flipped = read_stack(data, name="stack.tiff", closest_first=True)
    np.testing.assert_allclose(flipped.stack, expected_linear(30, 26, 12, reverse=True), atol=2e-6)


def test_tiff_uint16_compressed_pages() -> None:
    stack = np.moveaxis(linear_stack(30, 26, 4, a=2.0, b=1.0), 2, 0).astype(np.uint16)
    result = read_stack(tiff_bytes(stack, compression="zlib"), name="stack.tif")
    np.testing.assert_allclose(result.stack, expected_linear(30, 26, 4, a=2.0, b=1.0), atol=2e-6)


def test_tiff_single_page_has_too_few_heights() -> None:
    with pytest.raises(ValueError, match="need at least 2 heights, got 1"):
        read_stack(tiff_bytes(np.ones((32, 32), np.float32)), name="one.tif")


def test_tiff_rgb_is_refused() -> None:
    rgb = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError) as excinfo:
        read_stack(tiff_bytes(rgb, photometric="rgb"), name="rgb.tif")
    assert "3 samples per pixel" in message(excinfo) and "grayscale" in message(excinfo)


def test_tiff_pages_of_different_sizes() -> None:
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as writer:
        writer.write(np.ones((32, 32), np.float32), photometric="minisblack")
        writer.write(np.ones((16, 32), np.float32), photometric="minisblack")
    with pytest.raises(ValueError, match="same size"):
        read_stack(buf.getvalue(), name="mixed.tif")


@pytest.mark.parametrize("keep", [200, -100])
def test_tiff_truncated(keep: int) -> None:
    data = tiff_bytes(np.moveaxis(linear_stack(32, 32, 4), 2, 0).astype(np.float32))
    with pytest.raises(ValueError, match="truncated"):
        read_stack(data[:keep], name="cut.tif")


def test_npy_renamed_tiff() -> None:
    with pytest.raises(ValueError) as excinfo:
        read_stack(npy_bytes(linear_stack(16, 16, 4)), name="x.tif")
    assert "not a TIFF image" in message(excinfo) and "NumPy" in message(excinfo)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_tiff_cut_between_pages_is_truncated_not_a_shorter_stack(fraction: float) -> None:
    # tifffile stops at the first directory past the end and returns the pages before it.
    data = tiff_bytes(np.moveaxis(linear_stack(24, 20, 6), 2, 0).astype(np.float32))
    with pytest.raises(ValueError, match="is truncated: image directory"):
        read_stack(data[: int(len(data) * fraction)], name="cut.tif")
