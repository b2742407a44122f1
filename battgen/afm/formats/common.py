"""What every AFM upload reader shares: limits, the upload and result types, and the checks.

Uploads are untrusted: every size a header declares is checked here (:func:`check_stack_shape`)
against the limits below before anything is allocated, and every message is meant for the user.
The format modules read the limits through this module (``common.MAX_DECODED_BYTES``), so a
limit changed here holds for every format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence, Union

import numpy as np

from battgen.afm.formats.channels import Channel

# Streamlit's uploader refuses files above its own server.maxUploadSize; this is the reader's
# own bound so a path or a bytes blob from elsewhere cannot make it read a multi-GB file.
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# Bound on the decoded stack (compressed .npz members and TIFF pages can expand far past the
# upload size); 512 MiB of source data still leaves headroom for resampling on a 24 GiB machine.
MAX_DECODED_BYTES = 512 * 1024 * 1024
MAX_SIDE = 4096
MAX_HEIGHTS = 512
# Below 8×8 a "map" is a handful of point spectra; upsampling it to the network grid would
# invent the whole image.
MIN_SIDE = 8
MIN_HEIGHTS = 2
# The grid of the shipped translator (battgen.models.translator, sample_size=64); a page serving a
# model trained on another grid passes that model's grid as target_shape.
TARGET_SHAPE: tuple[int, int] = (64, 64)
N_HEIGHTS = 10

FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

# First bytes of formats people commonly upload by mistake, so a wrong-magic error can say what
# the file actually is instead of just "not a .npy file".
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"PK\x03\x04", "a ZIP archive (e.g. .npz)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"II+\x00", "a BigTIFF image"),
    (b"MM\x00+", "a BigTIFF image"),
    (b"GWYP", "a Gwyddion .gwy file"),
    (b"GWYO", "a Gwyddion 1.x file (an old format that is not supported)"),
    (b":NANONIS_VERSION:", "a Nanonis .sxm scan"),
    (b"Grid dim=", "a Nanonis .3ds grid"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x03", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)


@dataclass
class ReadResult:
    """A stack ready for the network, and how it was obtained from the upload."""

    stack: np.ndarray
    """``float32`` array of shape ``(H, W, n_heights)`` in [−1, 1]; index 0 of the last axis is the
    map farthest from the sample."""
    source_shape: tuple[int, ...]
    """Shape of the data as stored in the file (before any reorientation or resampling)."""
    operations: list[str]
    """Human-readable account of every step, in order, for display next to the result."""
    format: str
    """One of ``npy``, ``npz``, ``tiff``, ``nanonis-3ds``, ``nanonis-sxm``, ``gwyddion``."""
    array_key: str | None
    """The ``.npz`` member, Nanonis channel or Gwyddion volume key that was read, if any."""
    name: str
    """File name of the upload (several names for an ``.sxm`` series)."""
    channels: list[Channel] = field(default_factory=list)
    """What the file says of the channels read (title, unit, quantity, size, range), where it says it."""


@dataclass
class Upload:
    name: str
    data: bytes

    @property
    def ext(self) -> str:
        return Path(self.name).suffix.lower()


@dataclass
class Decoded:
    """Raw stack from a format decoder, before the shared orientation and resampling."""

    array: np.ndarray
    fmt: str
    height_axis: int
    notes: list[str] = field(default_factory=list)
    array_key: str | None = None
    # Tip height (Z, larger = farther from the sample) of each map in source order, when the
    # file records it; it then decides the height order and the interpolation positions.
    heights: np.ndarray | None = None
    order_source: str = ""
    channels: list[Channel] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs & settings


def check_settings(
    target_shape: object, n_heights: object, axis: object, closest_first: object
) -> tuple[tuple[int, int], int]:
    if not (
        isinstance(target_shape, (tuple, list))
        and len(target_shape) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in target_shape)
    ):
        raise ValueError(f"target_shape must be two integers (H, W), got {target_shape!r}")
    h, w = (int(v) for v in target_shape)
    if not (2 <= h <= MAX_SIDE and 2 <= w <= MAX_SIDE):
        raise ValueError(f"target_shape sides must be between 2 and {MAX_SIDE}, got {h}×{w}")
    if isinstance(n_heights, bool) or not isinstance(n_heights, (int, np.integer)):
        raise ValueError(f"n_heights must be an integer, got {n_heights!r}")
    if not MIN_HEIGHTS <= int(n_heights) <= MAX_HEIGHTS:
        raise ValueError(f"n_heights must be between {MIN_HEIGHTS} and {MAX_HEIGHTS}, got {n_heights}")
    if axis is not None and (isinstance(axis, bool) or axis not in (0, 2, -1)):
        raise ValueError(f"axis must be 0 (Z×H×W) or 2 (H×W×Z), got {axis!r}")
    if closest_first is not None and not isinstance(closest_first, (bool, np.bool_)):
        raise ValueError(f"closest_first must be True, False or None, got {closest_first!r}")
    return (h, w), int(n_heights)


def read_uploads(path_or_file: FileInput | Sequence[FileInput], name: str | None) -> list[Upload]:
    """One upload, or the files of a series, read within the upload limit."""
    if not isinstance(path_or_file, (list, tuple)):
        return [_read_input(path_or_file, name, fallback_name=None)]
    if not path_or_file:
        raise ValueError("no files given")
    if len(path_or_file) > MAX_HEIGHTS:
        raise ValueError(f"{len(path_or_file)} files given; at most {MAX_HEIGHTS} heights are accepted")
    uploads = [_read_input(item, None, fallback_name=name) for item in path_or_file]
    total = sum(len(u.data) for u in uploads)
    if total > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"the files add up to {mb(total)}, over the upload limit of {mb(MAX_UPLOAD_BYTES)}"
        )
    return uploads


def _read_input(src: object, name: str | None, *, fallback_name: str | None) -> Upload:
    """Bytes and a file name for one input, reading it once and never past the upload limit."""
    if isinstance(src, (str, os.PathLike)):
        path = Path(os.fspath(src))
        label = name or path.name
        try:
            if not path.is_file():
                raise ValueError(f"{label}: no such file")
            size = path.stat().st_size
            if size > MAX_UPLOAD_BYTES:
                raise ValueError(_too_large(label, size))
            with path.open("rb") as fh:
                data = fh.read(MAX_UPLOAD_BYTES + 1)
        except OSError as exc:
            raise ValueError(f"{label}: cannot be read ({exc.strerror or exc})") from exc
    elif isinstance(src, (bytes, bytearray, memoryview)):
        label = name or fallback_name
        if not label:
            raise ValueError(
                "cannot tell the format of raw bytes: pass name= with the file name, e.g. name='stack.npy'"
            )
        data = bytes(src)
    elif hasattr(src, "read"):
        own = getattr(src, "name", None)
        label = name or (os.path.basename(own) if isinstance(own, str) and own else None) or fallback_name
        if not label:
            raise ValueError(
                "the uploaded file has no name: pass name= with the file name, e.g. name='stack.npy'"
            )
        size = getattr(src, "size", None)
        if isinstance(size, int) and size > MAX_UPLOAD_BYTES:
            raise ValueError(_too_large(label, size))
        try:
            # Streamlit reruns may hand over an UploadedFile that an earlier widget already read.
            if getattr(src, "seekable", lambda: False)():
                src.seek(0)  # type: ignore[attr-defined]
            data = src.read(MAX_UPLOAD_BYTES + 1)  # type: ignore[attr-defined]
        except OSError as exc:
            raise ValueError(f"{label}: cannot be read ({exc})") from exc
        if isinstance(data, str):
            raise TypeError(f"{label} was opened in text mode; open it in binary mode ('rb')")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{label}: .read() returned {type(data).__name__}, expected bytes")
        data = bytes(data)
    else:
        raise TypeError(
            f"expected a path, bytes or a binary file-like object, got {type(src).__name__}"
        )
    if not data:
        raise ValueError(f"{label} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(_too_large(label, len(data)))
    return Upload(label, data)


def display_name(uploads: Sequence[Upload]) -> str:
    if len(uploads) == 1:
        return uploads[0].name
    if len(uploads) <= 3:
        return ", ".join(u.name for u in uploads)
    return f"{uploads[0].name} … {uploads[-1].name} ({len(uploads)} files)"


def mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _too_large(label: str, size: int) -> str:
    return f"{label} is {mb(size)}, over the upload limit of {mb(MAX_UPLOAD_BYTES)}"


def not_format(upload: Upload, expected: str) -> ValueError:
    """Error for content that does not match the extension, naming what it looks like instead."""
    head = upload.data[:16]
    for magic, what in SIGNATURES:
        if head.startswith(magic):
            return ValueError(f"{upload.name} is not {expected}: its content is {what}")
    shown = upload.data[:8].hex(" ")
    return ValueError(f"{upload.name} is not {expected}: it starts with bytes {shown}")


# --------------------------------------------------------------------------- shape & value checks


def _choose_height_axis(shape: tuple[int, ...], axis: int | None, label: str) -> int:
    if axis is not None:
        return 2 if axis in (2, -1) else 0
    smallest = min(shape)
    where = [i for i, s in enumerate(shape) if s == smallest]
    if len(where) > 1:
        raise ValueError(
            f"{label}: cannot tell which axis holds the heights in shape {shape} (the smallest "
            f"dimension, {smallest}, occurs more than once); pass axis=0 for Z×H×W or axis=2 for H×W×Z"
        )
    if where[0] == 1:
        raise ValueError(
            f"{label}: the smallest dimension of shape {shape} is the middle one; heights must be the "
            "first or last axis (Z×H×W or H×W×Z): pass axis=0 or axis=2, or transpose the array"
        )
    return where[0]


def check_stack_shape(shape: tuple[int, ...], itemsize: int, height_axis: int | None, label: str) -> int:
    """Validate a stack's declared shape before its data is loaded; returns the height axis."""
    if len(shape) != 3:
        kind = {0: "a scalar", 1: "1-D data", 2: "a single 2-D map"}.get(len(shape), f"{len(shape)}-D data")
        raise ValueError(
            f"{label}: found {kind} of shape {tuple(shape)}; expected a 3-D stack of maps at several "
            "heights (H×W×Z or Z×H×W)"
        )
    if any(s < 0 for s in shape):
        raise ValueError(f"{label}: shape {tuple(shape)} has a negative dimension (corrupted header)")
    if 0 in shape:
        raise ValueError(f"{label}: shape {tuple(shape)} has an empty dimension; the stack holds no data")
    hax = _choose_height_axis(tuple(shape), height_axis, label)
    n_heights = shape[hax]
    h, w = (s for i, s in enumerate(shape) if i != hax)
    if n_heights < MIN_HEIGHTS:
        raise ValueError(f"{label}: need at least {MIN_HEIGHTS} heights, got {n_heights}")
    if n_heights > MAX_HEIGHTS:
        raise ValueError(f"{label}: {n_heights} heights is more than the limit of {MAX_HEIGHTS}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise ValueError(f"{label}: maps of {h}×{w} pixels exceed the limit of {MAX_SIDE} pixels per side")
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"{label}: maps must be at least {MIN_SIDE}×{MIN_SIDE} pixels, got {h}×{w}")
    nbytes = h * w * n_heights * itemsize
    if nbytes > MAX_DECODED_BYTES:
        raise ValueError(
            f"{label}: a {h}×{w}×{n_heights} stack is {mb(nbytes)} decoded, over the limit of "
            f"{mb(MAX_DECODED_BYTES)}"
        )
    return hax


def check_dtype(dtype: np.dtype, label: str) -> None:
    if dtype.hasobject:
        raise ValueError(
            f"{label}: holds Python objects (pickled data), which are never loaded; save a numeric array"
        )
    if dtype.names is not None or dtype.subdtype is not None:
        raise ValueError(f"{label}: has a structured dtype ({dtype}); expected a plain numeric array")
    if dtype.kind == "c":
        raise ValueError(f"{label}: holds complex numbers ({dtype}); expected real Δf values")
    if dtype.kind not in "fiu":
        raise ValueError(f"{label}: dtype {dtype} is not numeric; expected float or integer values")


def check_values(a: np.ndarray, name: str) -> None:
    """Refuse a decoded stack with NaN or infinite values, or one with no contrast at all."""
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            n_nan = int(np.isnan(a).sum())
            n_inf = int(a.size - finite.sum()) - n_nan
            raise ValueError(
                f"{name}: the stack contains {n_nan} NaN and {n_inf} infinite values; AFM stacks must be "
                "finite (fill or crop missing pixels first)"
            )
    lo, hi = a.min(), a.max()
    if lo == hi:
        raise ValueError(f"{name}: stack is constant (every value is {lo}); there is nothing to normalise")
