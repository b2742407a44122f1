"""Tests of battgen.afm.formats.numpy_files: .npy arrays and .npz archives."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from battgen.afm.formats import common, read_stack
from tests.afm_files import linear_stack, npy_bytes, npy_header_only, npz_bytes
from tests.unit.afm_formats.expectations import FUZZ, assert_valid, expected_linear, message, time_limit


# --------------------------------------------------------------------------- .npy


def test_npy_hwz_reads_to_grid_with_heights_farthest_first() -> None:
    stack = linear_stack(40, 36, 17)
    result = read_stack(npy_bytes(stack.astype(np.float32)), name="stack.npy")
    assert_valid(result)
    assert result.format == "npy" and result.source_shape == (40, 36, 17) and result.name == "stack.npy"
    np.testing.assert_allclose(result.stack, expected_linear(40, 36, 17), atol=2e-6)
    assert "interpolated 17 heights → 10 (linear; heights assumed evenly spaced)" in result.operations
    th, tw = common.TARGET_SHAPE
    assert f"resampled 40×36 → {th}×{tw} (bilinear)" in result.operations
    assert any("farthest" in op and "assumed" in op for op in result.operations)


def test_npy_zhw_is_transposed_to_hwz() -> None:
    stack = linear_stack(40, 36, 17)
    result = read_stack(npy_bytes(np.moveaxis(stack, 2, 0)), name="stack.npy")
    assert result.source_shape == (17, 40, 36)
    np.testing.assert_allclose(result.stack, expected_linear(40, 36, 17), atol=2e-6)
    assert any("Z×H×W → H×W×Z" in op for op in result.operations)


def test_integer_and_big_endian_arrays_are_accepted() -> None:
    stack = linear_stack(16, 16, 5).astype(">i4")
    assert_valid(read_stack(npy_bytes(stack), name="s.npy"))
    assert_valid(read_stack(npy_bytes(linear_stack(16, 16, 5).astype(np.uint16)), name="s.npy"))


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
    monkeypatch.setattr(common, "MAX_DECODED_BYTES", 1024 * 1024)
    data = npz_bytes(compressed=True, stack=np.zeros((256, 256, 4)))  # 2 MiB inflated, ~2 kB stored
    assert len(data) < 50_000
    with pytest.raises(ValueError) as excinfo:
        read_stack(data, name="bomb.npz")
    assert "uncompressed" in message(excinfo) and "limit" in message(excinfo)


# --------------------------------------------------------------------------- fuzzing


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
                bad = min(h, w) < common.MIN_SIDE or array.shape[axis] < common.MIN_HEIGHTS
            if not bad and axis is None:
                return  # axis detection may legitimately refuse (ties, middle axis)
            assert bad, f"valid-looking array {array.shape} {array.dtype} was refused"
            return
    event("read")
    assert_valid(result, (16, 16), 4)
    assert result.source_shape == array.shape


def test_negative_dimension_in_a_forged_header() -> None:
    with pytest.raises(ValueError, match="negative dimension"):
        read_stack(npy_header_only((-1, 64, 10), "<f4"), name="neg.npy")
