"""Tests of battgen.afm.io.read_stack: every supported format, every refusal, and fuzzing.

The files come from :mod:`tests.afm_files`; most are linear in (row, column, height), so the
expected output — including its orientation — can be computed in closed form.
"""

from __future__ import annotations

import contextlib
import io
import signal
import struct
import zipfile
from pathlib import Path
from typing import Iterator

import gwyfile
import numpy as np
import pytest
import tifffile
from gwyfile.objects import GwyContainer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from battgen.afm import io as afm_io
from battgen.afm.io import ReadResult, read_stack
from tests.afm_files import (
    DF_CHANNEL,
    FakeUpload,
    gwy_brick,
    gwy_bytes,
    gwy_channels,
    linear_stack,
    npy_bytes,
    npy_header_only,
    npz_bytes,
    sxm_series,
    tiff_bytes,
    write_3ds,
    write_sxm,
)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Turn a hang into a test failure (SIGALRM; the tests run in the main thread)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"read_stack took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def expected_linear(
    h: int, w: int, z: int, *, a: float = 1.0, b: float = 0.5, c: float = 10.0,
    target: tuple[int, int] = afm_io.TARGET_SHAPE, n: int = afm_io.N_HEIGHTS, reverse: bool = False,
) -> np.ndarray:
    """What read_stack must return for linear_stack(h, w, z): corners kept, min–max to [−1, 1]."""
    y = np.linspace(0, h - 1, target[0])
    x = np.linspace(0, w - 1, target[1])
    k = np.linspace(0, z - 1, n)
    if reverse:
        k = k[::-1]
    f = a * y[:, None, None] + b * x[None, :, None] + c * k[None, None, :]
    return 2 * (f - f.min()) / (f.max() - f.min()) - 1


def assert_valid(
    result: ReadResult, target: tuple[int, int] = afm_io.TARGET_SHAPE, n: int = afm_io.N_HEIGHTS
) -> None:
    assert isinstance(result, ReadResult)
    assert result.stack.shape == (*target, n)
    assert result.stack.dtype == np.float32
    assert np.isfinite(result.stack).all()
    assert result.stack.min() == -1.0 and result.stack.max() == 1.0
    assert result.operations and all(isinstance(op, str) for op in result.operations)


def message(excinfo: pytest.ExceptionInfo[ValueError]) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- .npy


def test_npy_hwz_reads_to_grid_with_heights_farthest_first() -> None:
    stack = linear_stack(40, 36, 17)
    result = read_stack(npy_bytes(stack.astype(np.float32)), name="stack.npy")
    assert_valid(result)
    assert result.format == "npy" and result.source_shape == (40, 36, 17) and result.name == "stack.npy"
    np.testing.assert_allclose(result.stack, expected_linear(40, 36, 17), atol=2e-6)
    assert "interpolated 17 heights → 10 (linear; heights assumed evenly spaced)" in result.operations
    th, tw = afm_io.TARGET_SHAPE
    assert f"resampled 40×36 → {th}×{tw} (bilinear)" in result.operations
    assert any("farthest" in op and "assumed" in op for op in result.operations)


def test_npy_zhw_is_transposed_to_hwz() -> None:
    stack = linear_stack(40, 36, 17)
    result = read_stack(npy_bytes(np.moveaxis(stack, 2, 0)), name="stack.npy")
    assert result.source_shape == (17, 40, 36)
    np.testing.assert_allclose(result.stack, expected_linear(40, 36, 17), atol=2e-6)
    assert any("Z×H×W → H×W×Z" in op for op in result.operations)


def test_closest_first_flag_reverses_heights() -> None:
    stack = linear_stack(32, 32, 6)
    result = read_stack(npy_bytes(stack), name="stack.npy", closest_first=True)
    np.testing.assert_allclose(result.stack, expected_linear(32, 32, 6, reverse=True), atol=2e-6)
    assert result.stack[0, 0, 0] > result.stack[0, 0, -1]
    assert any("reversed" in op for op in result.operations)


def test_target_shape_and_n_heights_are_honoured() -> None:
    stack = linear_stack(20, 30, 4)
    result = read_stack(npy_bytes(stack), name="s.npy", target_shape=(64, 48), n_heights=7)
    assert_valid(result, (64, 48), 7)
    np.testing.assert_allclose(result.stack, expected_linear(20, 30, 4, target=(64, 48), n=7), atol=2e-6)


def test_same_size_input_is_only_normalised() -> None:
    stack = linear_stack(96, 80, 10)
    result = read_stack(npy_bytes(stack), name="s.npy", target_shape=(96, 80))
    np.testing.assert_allclose(result.stack, expected_linear(96, 80, 10, target=(96, 80)), atol=2e-6)
    assert "maps already 96×80" in result.operations and "kept the 10 heights" in result.operations


def test_integer_and_big_endian_arrays_are_accepted() -> None:
    stack = linear_stack(16, 16, 5).astype(">i4")
    assert_valid(read_stack(npy_bytes(stack), name="s.npy"))
    assert_valid(read_stack(npy_bytes(linear_stack(16, 16, 5).astype(np.uint16)), name="s.npy"))


def test_ambiguous_axis_asks_for_axis_and_axis_resolves_it() -> None:
    stack = linear_stack(32, 32, 32)
    with pytest.raises(ValueError) as excinfo:
        read_stack(npy_bytes(stack), name="cube.npy")
    assert "pass axis=0" in message(excinfo) and "(32, 32, 32)" in message(excinfo)
    result = read_stack(npy_bytes(stack), name="cube.npy", axis=2)
    np.testing.assert_allclose(result.stack, expected_linear(32, 32, 32), atol=2e-6)
    result0 = read_stack(npy_bytes(np.moveaxis(stack, 2, 0)), name="cube.npy", axis=0)
    np.testing.assert_allclose(result0.stack, result.stack, atol=1e-6)


def test_two_equal_smallest_dims_are_ambiguous() -> None:
    with pytest.raises(ValueError, match="axis"):
        read_stack(npy_bytes(linear_stack(10, 64, 10)), name="s.npy")


def test_smallest_dim_in_the_middle_is_refused() -> None:
    with pytest.raises(ValueError) as excinfo:
        read_stack(npy_bytes(np.zeros((64, 5, 64))), name="s.npy")
    assert "middle" in message(excinfo)


@pytest.mark.parametrize("bad_axis", [1, 3, "2"])
def test_invalid_axis_value(bad_axis: object) -> None:
    with pytest.raises(ValueError, match="axis must be 0"):
        read_stack(npy_bytes(linear_stack(16, 16, 4)), name="s.npy", axis=bad_axis)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "fragments"),
    [
        ((64,), ["1-D data", "(64,)", "expected a 3-D stack"]),
        ((64, 64), ["single 2-D map", "(64, 64)", "expected a 3-D stack"]),
        ((2, 16, 16, 4), ["4-D data", "(2, 16, 16, 4)"]),
        ((), ["scalar"]),
        ((16, 0, 4), ["empty dimension"]),
        ((64, 64, 1), ["need at least 2 heights, got 1"]),
        ((64, 4, 64), ["middle"]),
        ((6, 5, 3), ["at least 8×8 pixels, got 6×5"]),
        ((5000, 64, 10), ["5000×64", "limit of 4096"]),
        ((600, 700, 800), ["600 heights", "limit of 512"]),
    ],
)
def test_bad_shapes_are_explained(shape: tuple[int, ...], fragments: list[str]) -> None:
    # The header declares the shape; the data is only as long as needed, so huge shapes are cheap.
    array = np.zeros(shape, dtype=np.float32) if np.prod(shape) < 10**7 else None
    data = npy_bytes(array) if array is not None else npy_header_only(shape, "<f4")
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name="s.npy")
    for fragment in fragments:
        assert fragment in message(excinfo)


def test_huge_declared_shape_is_refused_without_allocating() -> None:
    with time_limit(5):
        with pytest.raises(ValueError) as excinfo:
            read_stack(npy_header_only((4096, 4096, 512), "<f8"), name="huge.npy")
    assert "over the limit" in message(excinfo)


def test_truncated_npy() -> None:
    data = npy_bytes(linear_stack(32, 32, 8).astype(np.float32))
    with pytest.raises(ValueError) as excinfo:
        read_stack(data[:-100], name="s.npy")
    assert "truncated" in message(excinfo)
    with pytest.raises(ValueError, match="truncated"):
        read_stack(npy_header_only((32, 32, 8), "<f4"), name="s.npy")


def test_trailing_garbage_npy() -> None:
    data = npy_bytes(linear_stack(32, 32, 8).astype(np.float32))
    with pytest.raises(ValueError, match="unexpected bytes"):
        read_stack(data + b"junk", name="s.npy")


def test_png_renamed_npy_says_png() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)
    with pytest.raises(ValueError) as excinfo:
        read_stack(png, name="photo.npy")
    assert "not a NumPy .npy file" in message(excinfo) and "PNG" in message(excinfo)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values(value: float) -> None:
    stack = linear_stack(16, 16, 4)
    stack[3, 4, 1] = value
    with pytest.raises(ValueError) as excinfo:
        read_stack(npy_bytes(stack), name="s.npy")
    assert "NaN" in message(excinfo) and "finite" in message(excinfo)


def test_constant_stack() -> None:
    with pytest.raises(ValueError, match="stack is constant"):
        read_stack(npy_bytes(np.full((16, 16, 4), 2.5)), name="s.npy")


def test_extreme_magnitudes_do_not_overflow() -> None:
    stack = np.zeros((16, 16, 4))
    stack[..., 0] = -1.7e308
    stack[..., 3] = 1.7e308
    result = read_stack(npy_bytes(stack), name="s.npy")
    assert_valid(result)
    assert result.stack[0, 0, 0] == -1.0 and result.stack[0, 0, -1] == 1.0


_SIDE_EFFECTS: list[str] = []


def _record_unpickle() -> str:
    _SIDE_EFFECTS.append("unpickled")
    return "boom"


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_record_unpickle, ())


@pytest.mark.parametrize("ext", ["npy", "npz"])
def test_object_arrays_are_never_unpickled(ext: str) -> None:
    payload = np.empty((8, 8, 4), dtype=object)
    payload[...] = _Payload()
    # np.save pickles object arrays by default: this is the hostile upload the reader must refuse.
    data = npy_bytes(payload) if ext == "npy" else npz_bytes(stack=payload)
    _SIDE_EFFECTS.clear()
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name=f"evil.{ext}")
    assert "pickled" in message(excinfo)
    assert _SIDE_EFFECTS == []


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((16, 16, 4), dtype=np.complex64), "complex"),
        (np.zeros((16, 16, 4), dtype="U3"), "not numeric"),
        (np.zeros((16, 16, 4), dtype=bool), "not numeric"),
        (np.zeros((16, 16, 4), dtype=[("a", "<f4"), ("b", "<f4")]), "structured"),
    ],
)
def test_non_numeric_dtypes(array: np.ndarray, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        read_stack(npy_bytes(array), name="s.npy")


# --------------------------------------------------------------------------- .npz


def test_npz_single_array() -> None:
    result = read_stack(npz_bytes(anything=linear_stack(20, 20, 5)), name="s.npz")
    assert result.format == "npz" and result.array_key == "anything"
    np.testing.assert_allclose(result.stack, expected_linear(20, 20, 5), atol=2e-6)


def test_npz_picks_the_only_3d_array() -> None:
    data = npz_bytes(compressed=True, z=np.arange(5.0), df=linear_stack(20, 20, 5), topo=np.ones((20, 20)))
    result = read_stack(data, name="s.npz")
    assert result.array_key == "df"
    assert "read array 'df'" in result.operations


def test_npz_several_3d_arrays_lists_keys_and_array_key_picks() -> None:
    data = npz_bytes(first=linear_stack(20, 20, 5), second=-linear_stack(20, 20, 5))
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name="s.npz")
    assert "'first' (20, 20, 5)" in message(excinfo) and "'second'" in message(excinfo)
    assert "array_key" in message(excinfo)
    result = read_stack(data, name="s.npz", array_key="second")
    np.testing.assert_allclose(result.stack, -expected_linear(20, 20, 5), atol=2e-6)
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name="s.npz", array_key="third")
    assert "no array 'third'" in message(excinfo) and "'first'" in message(excinfo)


def test_npz_without_3d_arrays() -> None:
    data = npz_bytes(a=np.ones((4, 4)), b=np.ones(3))
    with pytest.raises(ValueError, match="no 3-D array"):
        read_stack(data, name="s.npz")


def test_npz_without_arrays() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="contains no arrays"):
        read_stack(buf.getvalue(), name="s.npz")


def test_npz_truncated() -> None:
    data = npz_bytes(stack=linear_stack(20, 20, 5))
    with pytest.raises(ValueError, match="npz"):
        read_stack(data[: len(data) // 2], name="s.npz")


def test_npz_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(afm_io, "MAX_DECODED_BYTES", 1024 * 1024)
    data = npz_bytes(compressed=True, stack=np.zeros((256, 256, 4)))  # 2 MiB inflated, ~2 kB stored
    assert len(data) < 50_000
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name="bomb.npz")
    assert "uncompressed" in message(excinfo) and "limit" in message(excinfo)


# --------------------------------------------------------------------------- inputs


def test_path_file_like_and_bytes_inputs(tmp_path: Path) -> None:
    data = npy_bytes(linear_stack(20, 20, 5))
    path = tmp_path / "stack.npy"
    path.write_bytes(data)
    by_str = read_stack(str(path))
    by_path = read_stack(path)
    upload = FakeUpload(data, "upload.npy")
    upload.read(10)  # a rerun may hand over a file that was already read
    by_upload = read_stack(upload)
    by_bytes = read_stack(bytearray(data), name="b.npy")
    for result in (by_path, by_upload, by_bytes):
        np.testing.assert_array_equal(result.stack, by_str.stack)
    assert by_str.name == "stack.npy" and by_upload.name == "upload.npy"
    with open(path, "rb") as fh:
        assert read_stack(fh).name == "stack.npy"


def test_name_overrides_file_name() -> None:
    upload = FakeUpload(npy_bytes(linear_stack(20, 20, 5)), "weird.bin")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_stack(upload)
    assert read_stack(FakeUpload(upload.getvalue(), "weird.bin"), name="weird.npy").name == "weird.npy"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        read_stack(tmp_path / "absent.npy")
    with pytest.raises(ValueError, match="no such file"):
        read_stack(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.tif is empty"):
        read_stack(tmp_path / "empty.tif")
    with pytest.raises(ValueError, match="is empty"):
        read_stack(FakeUpload(b"", "x.gwy"))


def test_raw_bytes_need_a_name() -> None:
    with pytest.raises(ValueError, match="pass name="):
        read_stack(npy_bytes(linear_stack(20, 20, 5)))


@pytest.mark.parametrize("name", ["stack.png", "stack", "stack.npy.txt", "stack.h5"])
def test_unsupported_extensions(name: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        read_stack(b"whatever", name=name)
    assert "unsupported file type" in message(excinfo) and ".npy" in message(excinfo)


def test_upload_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(afm_io, "MAX_UPLOAD_BYTES", 1000)
    data = npy_bytes(linear_stack(20, 20, 5))
    for source in (data, FakeUpload(data, "u.npy")):
        with pytest.raises(ValueError, match="over the upload limit"):
            read_stack(source, name="u.npy")
    (tmp_path / "big.npy").write_bytes(data)
    with pytest.raises(ValueError, match="over the upload limit"):
        read_stack(tmp_path / "big.npy")


def test_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        read_stack(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary mode"):
        read_stack(io.StringIO("text"), name="x.npy")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"target_shape": (1, 64)}, "target_shape"),
        ({"target_shape": (64,)}, "target_shape"),
        ({"n_heights": 1}, "n_heights"),
        ({"n_heights": 2.5}, "n_heights"),
        ({"closest_first": "yes"}, "closest_first"),
    ],
)
def test_invalid_settings(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        read_stack(npy_bytes(linear_stack(20, 20, 5)), name="s.npy", **kwargs)  # type: ignore[arg-type]


def test_several_files_only_for_sxm() -> None:
    data = npy_bytes(linear_stack(20, 20, 5))
    with pytest.raises(ValueError, match=".sxm series"):
        read_stack([FakeUpload(data, "a.npy"), FakeUpload(data, "b.npy")])
    with pytest.raises(ValueError, match="no files"):
        read_stack([])


# --------------------------------------------------------------------------- TIFF


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


# --------------------------------------------------------------------------- Nanonis .3ds


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
    assert read_stack(data, name="g.3ds", array_key="Amplitude (m)").array_key == "Amplitude (m)"
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


# --------------------------------------------------------------------------- Nanonis .sxm


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


# --------------------------------------------------------------------------- Gwyddion .gwy


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


# --------------------------------------------------------------------------- fuzzing

_EXTENSIONS = ["npy", "npz", "tif", "3ds", "sxm", "gwy"]
_MAGICS = {
    "npy": b"\x93NUMPY",
    "npz": b"PK\x03\x04",
    "tif": b"II*\x00",
    "3ds": b'Grid dim="8 x 8"\r\n',
    "sxm": b":NANONIS_VERSION:\n2\n:SCANIT_END:\n",
    "gwy": b"GWYP",
}


def _valid_files() -> dict[str, bytes]:
    stack = linear_stack(12, 10, 4)
    return {
        "npy": npy_bytes(stack),
        "npz": npz_bytes(compressed=True, stack=stack, extra=np.ones(3)),
        "tif": tiff_bytes(np.moveaxis(stack, 2, 0).astype(np.float32)),
        "3ds": write_3ds(stack, z_start=1e-9, z_end=0.0),
        "sxm": write_sxm({"OC_M1_Freq._Shift": stack[:, :, 0]}, z=1e-10),
        "gwy": gwy_channels([stack[:, :, k] for k in range(4)]),
    }


VALID_FILES = _valid_files()


def read_or_refuse(data: bytes, name: str) -> ReadResult | None:
    """read_stack must either succeed with a valid stack or raise ValueError — nothing else."""
    with time_limit(20):
        try:
            result = read_stack(data, name=name, target_shape=(16, 16), n_heights=4)
        except ValueError:
            return None
    assert_valid(result, (16, 16), 4)
    return result


@pytest.mark.parametrize("ext", _EXTENSIONS)
def test_valid_fuzz_bases_read(ext: str) -> None:
    if ext == "sxm":  # one scan is one height: a series of two is the smallest valid upload
        other = write_sxm({"OC_M1_Freq._Shift": linear_stack(12, 10, 4)[:, :, 1]}, z=2e-10)
        result = read_stack([VALID_FILES["sxm"], other], name="s.sxm", target_shape=(16, 16), n_heights=4)
        assert_valid(result, (16, 16), 4)
    else:
        assert read_or_refuse(VALID_FILES[ext], f"f.{ext}") is not None


@pytest.mark.parametrize("ext", _EXTENSIONS)
@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_only_raise_value_error(ext: str, data: bytes) -> None:
    read_or_refuse(data, f"random.{ext}")


@pytest.mark.parametrize("ext", _EXTENSIONS)
@FUZZ
@given(tail=st.binary(max_size=4096))
def test_random_bytes_behind_the_right_magic(ext: str, tail: bytes) -> None:
    read_or_refuse(_MAGICS[ext] + tail, f"magic.{ext}")


@pytest.mark.parametrize("ext", _EXTENSIONS)
@FUZZ
@given(
    cut=st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8),
)
def test_corrupted_valid_files(ext: str, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID_FILES[ext])
    for position, value in flips:
        data[position % len(data)] = value
    data = data[: len(data) - cut % len(data)] if cut % 3 else data  # truncate two times in three
    read_or_refuse(bytes(data), f"corrupt.{ext}")


_dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.int16, np.uint8, np.int64])
_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12)


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(_dtypes))
    shape = draw(st.one_of(_shapes, st.tuples(st.integers(8, 12), st.integers(8, 12), st.integers(2, 5))))
    elements = None
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=True, allow_infinity=True)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@FUZZ
@given(array=_arrays(), as_npz=st.booleans(), axis=st.sampled_from([None, None, 0, 2]))
def test_random_arrays_read_or_raise_value_error(array: np.ndarray, as_npz: bool, axis: int | None) -> None:
    data = npz_bytes(stack=array) if as_npz else npy_bytes(array)
    name = "a.npz" if as_npz else "a.npy"
    with time_limit(20):
        try:
            result = read_stack(data, name=name, axis=axis, target_shape=(16, 16), n_heights=4)
        except ValueError as exc:
            event("refused")
            if "constant" in str(exc):
                # Heights between the interpolation points can carry all the contrast.
                return
            bad = (
                array.ndim != 3 or 0 in array.shape
                or (array.dtype.kind == "f" and not np.isfinite(array).all())
                or array.min() == array.max()
            )
            if not bad and axis is not None:
                h, w = (s for i, s in enumerate(array.shape) if i != axis)
                bad = min(h, w) < afm_io.MIN_SIDE or array.shape[axis] < afm_io.MIN_HEIGHTS
            if not bad and axis is None:
                return  # axis detection may legitimately refuse (ties, middle axis)
            assert bad, f"valid-looking array {array.shape} {array.dtype} was refused"
            return
    event("read")
    assert_valid(result, (16, 16), 4)
    assert result.source_shape == array.shape
