"""Tests of what every reader shares (battgen.afm.formats.common): reading inputs, settings,
shape, dtype and value checks, and the contract of read_stack for every format under fuzzing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from battgen.afm.formats import ReadResult, common, read_stack
from tests.afm_files import (
    FakeUpload,
    gwy_channels,
    linear_stack,
    npy_bytes,
    npy_header_only,
    npz_bytes,
    tiff_bytes,
    write_3ds,
    write_sxm,
)
from tests.unit.afm_formats.expectations import FUZZ, assert_valid, expected_linear, message, time_limit


# --------------------------------------------------------------------------- height axis and shape


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


# --------------------------------------------------------------------------- content and values


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
    monkeypatch.setattr(common, "MAX_UPLOAD_BYTES", 1000)
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


# --------------------------------------------------------------------------- fuzzing: every format


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
