"""Read uploaded AFM force-map stacks into the fixed grid the translation network expects.

An AFM "stack" is a set of frequency-shift (Δf) maps recorded at several tip heights above the
sample. Scientists upload them in whatever format their microscope or analysis tool wrote; the
network only understands one layout, so :func:`read_stack` turns every supported upload into a
``float32`` array of shape ``(H, W, n_heights)`` (default 64×64×10) normalised exactly like the
training data, and lists every change it made in :attr:`ReadResult.operations` so the page can
show the user what happened to their data.

Conventions (the network was trained on them, so uploads are brought to them):

* **Height order**: index 0 along the last axis is the map **farthest from the sample**; the last
  index is the closest. Formats that record the tip height (Nanonis ``.3ds`` Z sweeps, the
  ``Z-Controller>Z (m)`` entry of ``.sxm`` headers, where a larger Z is a more retracted tip) are
  ordered from that metadata. Everything else is assumed to be farthest-first already; pass
  ``closest_first=True`` when index 0 of the upload is the closest map (an explicit flag always
  wins over metadata).
* **Heights are resampled to ``n_heights`` by linear interpolation** along the height axis. The
  heights are assumed evenly spaced from the first to the last map unless the file records
  uneven tip heights (``.sxm`` series), in which case the interpolation is linear in Z.
* **Maps are resampled to ``target_shape`` by bilinear interpolation** with the corner pixels
  kept on the corners (``align_corners`` semantics): the first and last rows and columns of the
  upload land exactly on the first and last rows and columns of the output.
* **Normalisation**: per-stack min–max to [−1, 1], applied last, as in training. A constant stack
  carries no information and is refused.
* **In-plane orientation**: rows and columns are kept as stored, except in ``.sxm`` scans, whose
  rows are stored in acquisition order: upward scans are flipped so that row 0 is the top edge in
  every scan, as Gwyddion shows them (a series mixing up and down scans would otherwise stack
  mirrored maps). Note that the simulated training stacks put row 0 at the lowest y and are
  shown with ``origin="lower"``; show an upload and its translation with the same origin.

Supported inputs (chosen by file extension, then verified by content):

* ``.npy`` / ``.npz`` — an ``H×W×Z`` or ``Z×H×W`` array; the height axis is the smallest
  dimension unless ``axis`` is given. Always loaded with ``allow_pickle=False``.
* ``.tif`` / ``.tiff`` — a multi-page grayscale TIFF, one page per height (``tifffile``).
* ``.3ds`` — a Nanonis grid-spectroscopy file sweeping Z; the frequency-shift channel is used.
* ``.sxm`` — Nanonis scans, one file per height: pass a list of files.
* ``.gwy`` — a Gwyddion file: its single volume (``GwyBrick``) if it has one, otherwise all of its
  image channels, one per height.

Every malformed upload raises :class:`ValueError` with a message meant for the user. Uploads are
untrusted, so nothing here unpickles, every size a header declares is checked against the bytes
actually present before anything is allocated, and the limits below bound memory and time.
The Nanonis and Gwyddion formats are parsed here rather than with ``nanonispy2`` / ``gwyfile``:
``nanonispy2`` zero-pads truncated grids and allocates whatever size a header declares, and
``gwyfile`` loops forever on a string component without its terminating NUL byte.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence, Union

import numpy as np
import tifffile

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
# Nanonis headers are a few kB; a megabyte without an end tag means this is not a header.
MAX_HEADER_BYTES = 1024 * 1024
# Gwyddion objects nest a few levels (container → data field → unit); deeper is hostile input.
MAX_GWY_DEPTH = 32
MAX_NPZ_MEMBERS = 1000
MAX_TIFF_PAGES = 2 * MAX_HEIGHTS

SUPPORTED_EXTENSIONS: tuple[str, ...] = ("npy", "npz", "tif", "tiff", "3ds", "sxm", "gwy")

FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

_FORMAT_BY_EXT = {
    ".npy": "npy",
    ".npz": "npz",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".3ds": "nanonis-3ds",
    ".sxm": "nanonis-sxm",
    ".gwy": "gwyddion",
}

# First bytes of formats people commonly upload by mistake, so a wrong-magic error can say what
# the file actually is instead of just "not a .npy file".
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
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
    (b":NANONIS_VERSION:", "a Nanonis .sxm scan"),
    (b"Grid dim=", "a Nanonis .3ds grid"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x03", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


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


@dataclass
class _Upload:
    name: str
    data: bytes

    @property
    def ext(self) -> str:
        return Path(self.name).suffix.lower()


@dataclass
class _Decoded:
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


def read_stack(
    path_or_file: FileInput | Sequence[FileInput],
    *,
    name: str | None = None,
    array_key: str | None = None,
    axis: int | None = None,
    target_shape: tuple[int, int] = TARGET_SHAPE,
    n_heights: int = N_HEIGHTS,
    closest_first: bool | None = None,
) -> ReadResult:
    """Read an AFM Δf stack upload into the network grid.

    ``path_or_file`` is a path, raw ``bytes``, or a binary file-like object with ``.read()`` (and
    usually ``.name``, like Streamlit's ``UploadedFile``); a list of those is accepted for Nanonis
    ``.sxm`` series, one scan per height. ``name`` supplies the file name (hence the format) for
    raw bytes and overrides the name of a single file. ``array_key`` picks the ``.npz`` member,
    the Nanonis channel (default: the frequency-shift channel) or the Gwyddion volume key.
    ``axis`` (0 or 2) says which axis of an ``.npy``/``.npz`` array holds the heights (ignored by
    formats whose layout is fixed). ``closest_first`` states the height order of the upload and
    overrides file metadata; by default it comes from the file where recorded, else the upload
    is assumed to be farthest-first. The returned stack is always farthest-first.

    Raises ``ValueError`` for anything wrong with the upload or with these settings, and
    ``TypeError`` when ``path_or_file`` is not one of the accepted kinds of object.
    """
    target, n_out = _check_settings(target_shape, n_heights, axis, closest_first)

    if isinstance(path_or_file, (list, tuple)):
        if not path_or_file:
            raise ValueError("no files given")
        if len(path_or_file) > MAX_HEIGHTS:
            raise ValueError(f"{len(path_or_file)} files given; at most {MAX_HEIGHTS} heights are accepted")
        uploads = [_read_input(item, None, fallback_name=name) for item in path_or_file]
        total = sum(len(u.data) for u in uploads)
        if total > MAX_UPLOAD_BYTES:
            raise ValueError(
                f"the files add up to {_mb(total)}, over the upload limit of {_mb(MAX_UPLOAD_BYTES)}"
            )
    else:
        uploads = [_read_input(path_or_file, name, fallback_name=None)]

    fmts = {_format_of(u) for u in uploads}
    if len(uploads) > 1 and fmts != {"nanonis-sxm"}:
        listed = ", ".join(sorted(u.name for u in uploads))
        raise ValueError(
            f"several files are only accepted as a Nanonis .sxm series (one scan per height); got {listed}"
        )
    fmt = fmts.pop()

    try:
        if fmt == "npy":
            decoded = _decode_npy(uploads[0], axis)
        elif fmt == "npz":
            decoded = _decode_npz(uploads[0], array_key, axis)
        elif fmt == "tiff":
            decoded = _decode_tiff(uploads[0])
        elif fmt == "nanonis-3ds":
            decoded = _decode_3ds(uploads[0], array_key)
        elif fmt == "nanonis-sxm":
            decoded = _decode_sxm(uploads, array_key)
        else:
            decoded = _decode_gwy(uploads[0], array_key)
        display = _display_name(uploads)
        return _to_network_grid(decoded, target, n_out, closest_first, display)
    except MemoryError as exc:
        raise ValueError(f"{_display_name(uploads)} is too large to decode in the available memory") from exc


# --------------------------------------------------------------------------- inputs & settings


def _check_settings(
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


def _read_input(src: object, name: str | None, *, fallback_name: str | None) -> _Upload:
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
    return _Upload(label, data)


def _format_of(upload: _Upload) -> str:
    fmt = _FORMAT_BY_EXT.get(upload.ext)
    if fmt is None:
        shown = upload.ext or "no extension"
        accepted = ", ".join("." + e for e in SUPPORTED_EXTENSIONS)
        raise ValueError(f"{upload.name}: unsupported file type ({shown}); accepted: {accepted}")
    return fmt


def _display_name(uploads: Sequence[_Upload]) -> str:
    if len(uploads) == 1:
        return uploads[0].name
    if len(uploads) <= 3:
        return ", ".join(u.name for u in uploads)
    return f"{uploads[0].name} … {uploads[-1].name} ({len(uploads)} files)"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _too_large(label: str, size: int) -> str:
    return f"{label} is {_mb(size)}, over the upload limit of {_mb(MAX_UPLOAD_BYTES)}"


def _not_format(upload: _Upload, expected: str) -> ValueError:
    """Error for content that does not match the extension, naming what it looks like instead."""
    head = upload.data[:16]
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return ValueError(f"{upload.name} is not {expected}: its content is {what}")
    shown = upload.data[:8].hex(" ")
    return ValueError(f"{upload.name} is not {expected}: it starts with bytes {shown}")


# --------------------------------------------------------------------------- shape checks


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


def _check_stack_shape(shape: tuple[int, ...], itemsize: int, height_axis: int | None, label: str) -> int:
    """Validate a stack's declared shape before its data is loaded; returns the height axis."""
    if len(shape) != 3:
        kind = {0: "a scalar", 1: "1-D data", 2: "a single 2-D map"}.get(len(shape), f"{len(shape)}-D data")
        raise ValueError(
            f"{label}: found {kind} of shape {tuple(shape)}; expected a 3-D stack of maps at several "
            "heights (H×W×Z or Z×H×W)"
        )
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
            f"{label}: a {h}×{w}×{n_heights} stack is {_mb(nbytes)} decoded, over the limit of "
            f"{_mb(MAX_DECODED_BYTES)}"
        )
    return hax


def _check_dtype(dtype: np.dtype, label: str) -> None:
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


# --------------------------------------------------------------------------- .npy / .npz


def _npy_header(fp: BinaryIO, label: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset from an .npy header, without reading the data."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except Exception as exc:  # numpy raises several types for a garbled header
        raise ValueError(f"{label}: the .npy header is malformed ({exc})") from exc
    return tuple(int(s) for s in shape), np.dtype(dtype), fp.tell()


def _decode_npy(upload: _Upload, axis: int | None) -> _Decoded:
    if not upload.data.startswith(b"\x93NUMPY"):
        raise _not_format(upload, "a NumPy .npy file")
    shape, dtype, offset = _npy_header(io.BytesIO(upload.data), upload.name)
    _check_dtype(dtype, upload.name)
    hax = _check_stack_shape(shape, dtype.itemsize, axis, upload.name)
    expected = offset + math.prod(shape) * dtype.itemsize
    if len(upload.data) < expected:
        raise ValueError(
            f"{upload.name} is truncated: its header declares {expected} bytes, "
            f"the file has {len(upload.data)}"
        )
    if len(upload.data) > expected:
        raise ValueError(
            f"{upload.name} has {len(upload.data) - expected} unexpected bytes after the array data "
            "(corrupted file?)"
        )
    try:
        array = np.load(io.BytesIO(upload.data), allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{upload.name}: cannot be loaded as .npy ({exc})") from exc
    return _Decoded(array, "npy", hax, notes=[_axis_note(shape, hax, axis)])


def _decode_npz(upload: _Upload, array_key: str | None, axis: int | None) -> _Decoded:
    if not upload.data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise _not_format(upload, "a NumPy .npz archive")
    # (key, shape, dtype) per .npy member, learned from headers only: members are decompressed
    # on demand, so an archive can declare gigabytes in a few kilobytes.
    members: list[tuple[str, tuple[int, ...], np.dtype]] = []
    others: list[str] = []
    try:
        with zipfile.ZipFile(io.BytesIO(upload.data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise ValueError(
                    f"{upload.name} holds {len(infos)} entries; at most {MAX_NPZ_MEMBERS} are accepted"
                )
            for info in infos:
                if info.is_dir():
                    continue
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if info.file_size > MAX_DECODED_BYTES:
                    raise ValueError(
                        f"{upload.name}: member '{key}' is {_mb(info.file_size)} uncompressed, over the "
                        f"limit of {_mb(MAX_DECODED_BYTES)}"
                    )
                with zf.open(info) as fp:
                    if fp.read(6) != b"\x93NUMPY":
                        others.append(key)
                        continue
                    fp.seek(0)
                    shape, dtype, offset = _npy_header(fp, f"{upload.name}['{key}']")
                needed = offset + math.prod(shape) * dtype.itemsize
                # Object arrays are pickled, so their size says nothing; they are refused by dtype.
                if not dtype.hasobject and info.file_size != needed:
                    raise ValueError(
                        f"{upload.name}: member '{key}' declares {needed} bytes in its header but holds "
                        f"{info.file_size} (truncated or corrupted archive)"
                    )
                members.append((key, shape, dtype))
    except ValueError:
        raise
    except Exception as exc:  # zipfile raises BadZipFile, NotImplementedError, RuntimeError, EOFError…
        raise ValueError(f"{upload.name}: not a readable .npz archive ({exc})") from exc

    listing = ", ".join(f"'{k}' {s}" for k, s, _ in members)
    if not members:
        extra = f" (it holds {', '.join(repr(o) for o in others)})" if others else ""
        raise ValueError(f"{upload.name} contains no arrays{extra}")
    if array_key is not None:
        wanted = array_key[:-4] if array_key.endswith(".npy") else array_key
        chosen = [m for m in members if m[0] == wanted]
        if not chosen:
            raise ValueError(f"{upload.name} has no array '{array_key}'; its arrays are: {listing}")
    elif len(members) == 1:
        chosen = members
    else:
        chosen = [m for m in members if len(m[1]) == 3]
        if len(chosen) != 1:
            why = "several 3-D arrays" if chosen else "no 3-D array"
            raise ValueError(
                f"{upload.name} holds {why} among {len(members)} arrays: {listing}; choose one with array_key"
            )
    key, shape, dtype = chosen[0]
    label = f"{upload.name}['{key}']"
    _check_dtype(dtype, label)
    hax = _check_stack_shape(shape, dtype.itemsize, axis, label)
    try:
        with np.load(io.BytesIO(upload.data), allow_pickle=False) as npz:
            array = npz[key]
    except Exception as exc:
        raise ValueError(f"{label}: cannot be loaded ({exc})") from exc
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise ValueError(f"{label}: the stored array does not match its header (corrupted archive)")
    notes = [f"read array '{key}'", _axis_note(shape, hax, axis)]
    return _Decoded(array, "npz", hax, notes=notes, array_key=key)


def _axis_note(shape: tuple[int, ...], hax: int, axis: int | None) -> str:
    why = "as given by axis=" + str(axis) if axis is not None else "the smallest dimension"
    layout = "Z×H×W" if hax == 0 else "H×W×Z"
    return f"height axis {hax} of shape {shape} ({why}): layout {layout}"


# --------------------------------------------------------------------------- TIFF


def _unreadable_tiff(label: str, exc: Exception) -> ValueError:
    return ValueError(f"{label}: not a readable TIFF, truncated or corrupted ({type(exc).__name__}: {exc})")


def _decode_tiff(upload: _Upload) -> _Decoded:
    label = upload.name
    if not upload.data.startswith(_TIFF_MAGICS):
        raise _not_format(upload, "a TIFF image")
    # tifffile raises many exception types on corrupt input; only its calls are wrapped, so the
    # reader's own messages reach the user unchanged.
    try:
        tif = tifffile.TiffFile(io.BytesIO(upload.data))
    except Exception as exc:
        raise _unreadable_tiff(label, exc) from exc
    with tif:
        pages = []
        too_many = False
        try:
            for i, page in enumerate(tif.pages):
                if i >= MAX_TIFF_PAGES:
                    too_many = True
                    break
                # Reduced-resolution pages are thumbnails or pyramid levels, not heights.
                if not page.is_reduced:
                    pages.append(page)
        except Exception as exc:
            raise _unreadable_tiff(label, exc) from exc
        if too_many:
            raise ValueError(f"{label} has more than {MAX_TIFF_PAGES} pages")
        if not pages:
            raise ValueError(f"{label} has no image pages")
        first = pages[0]
        for i, page in enumerate(pages):
            if page.samplesperpixel != 1 or page.imagedepth != 1 or len(page.shape) != 2:
                raise ValueError(
                    f"{label}: page {i} has shape {page.shape} ({page.samplesperpixel} samples per pixel); "
                    "expected one single-channel (grayscale) page per height — colour or volumetric "
                    "pages are not force maps"
                )
            if page.shape != first.shape:
                raise ValueError(
                    f"{label}: page {i} is {page.shape[0]}×{page.shape[1]} but page 0 is "
                    f"{first.shape[0]}×{first.shape[1]}; every height must have the same size"
                )
            if page.dtype is None:
                raise ValueError(f"{label}: page {i} has an unsupported sample format")
            _check_dtype(np.dtype(page.dtype), f"{label} page {i}")
        # tifffile zero-fills or skips data past the end of the file; a cut upload must fail.
        for i, page in enumerate(pages):
            for offset, count in zip(page.dataoffsets, page.databytecounts):
                if offset + count > len(upload.data):
                    raise ValueError(
                        f"{label} is truncated: page {i} stores data up to byte {offset + count}, "
                        f"the file has {len(upload.data)}"
                    )
        itemsize = max(np.dtype(p.dtype).itemsize for p in pages)
        _check_stack_shape((len(pages), *first.shape), itemsize, 0, label)
        try:
            maps = [page.asarray() for page in pages]
        except MemoryError:
            raise
        except Exception as exc:
            raise ValueError(f"{label}: a page cannot be decoded ({type(exc).__name__}: {exc})") from exc
    if any(m.shape != first.shape for m in maps):
        raise ValueError(f"{label}: a page decoded to an unexpected shape (corrupted file?)")
    array = np.stack(maps, axis=0)
    _check_dtype(array.dtype, label)
    return _Decoded(array, "tiff", 0, notes=[f"read {len(pages)} TIFF pages, one per height"])


# --------------------------------------------------------------------------- Nanonis


def _channel_is_df(name: str) -> bool:
    n = re.sub(r"[\s_]+", " ", name.lower()).strip()
    return ("freq" in n and "shift" in n) or n in {"df", "delta f", "δf", "df (hz)"}


def _pick_channel(channels: Sequence[str], array_key: str | None, label: str) -> str:
    """The frequency-shift channel (forward direction), or the one named by ``array_key``."""
    listing = ", ".join(repr(c) for c in channels)
    if array_key is not None:
        if array_key not in channels:
            raise ValueError(f"{label} has no channel '{array_key}'; its channels are: {listing}")
        return array_key
    candidates = [c for c in channels if _channel_is_df(c) and "[bwd]" not in c.lower()]
    if len(candidates) > 1:
        # Nanonis tags derived channels ("[AVG]", "[00002]"); the untagged one is the measurement.
        untagged = [c for c in candidates if "[" not in c]
        if len(untagged) == 1:
            candidates = untagged
    if not candidates:
        raise ValueError(
            f"{label} has no frequency-shift (Δf) channel; its channels are: {listing}. "
            "Choose one with array_key"
        )
    if len(candidates) > 1:
        raise ValueError(
            f"{label} has several frequency-shift channels: {', '.join(map(repr, candidates))}; "
            "choose one with array_key"
        )
    return candidates[0]


def _split_nanonis_header(upload: _Upload, end_tag: bytes, what: str) -> tuple[str, int]:
    """Header text and the offset just past the end-tag line."""
    window = upload.data[:MAX_HEADER_BYTES]
    pos = window.find(end_tag)
    tag = end_tag.decode()
    if pos < 0:
        if len(upload.data) < MAX_HEADER_BYTES:
            raise ValueError(f"{upload.name}: no {tag} line — not {what}, or its header is truncated")
        raise ValueError(f"{upload.name}: no {tag} line in the first {_mb(MAX_HEADER_BYTES)} — not {what}")
    header = window[:pos]
    if b"\x00" in header:
        raise _not_format(upload, what)
    return header.decode("latin-1"), pos + len(end_tag)


def _decode_3ds(upload: _Upload, array_key: str | None) -> _Decoded:
    label = upload.name
    if upload.data.startswith(tuple(m for m, _ in _SIGNATURES if m != b"Grid dim=")):
        raise _not_format(upload, "a Nanonis .3ds grid file")
    text, end = _split_nanonis_header(upload, b":HEADER_END:", "a Nanonis .3ds grid file")
    data_start = end
    for terminator in (b"\r\n", b"\n"):
        if upload.data.startswith(terminator, data_start):
            data_start += len(terminator)
            break
    header: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "=" not in line:
            raise ValueError(
                f"{label}: header line {number} is not 'key=value': {line[:60]!r} "
                "— not a Nanonis .3ds file?"
            )
        key, value = line.split("=", 1)
        header[key.strip()] = value.strip().strip('"')

    def need(key: str) -> str:
        if key not in header:
            raise ValueError(
                f"{label}: the header has no '{key}' entry (truncated or not a Nanonis .3ds grid)"
            )
        return header[key]

    def integer(key: str, low: int, high: int) -> int:
        raw = need(key)
        try:
            value = int(raw)
        except ValueError as exc:
            raise ValueError(f"{label}: header entry '{key}' is {raw!r}, not an integer") from exc
        if not low <= value <= high:
            raise ValueError(f"{label}: header entry '{key}' = {value} is outside {low}…{high}")
        return value

    dims = re.fullmatch(r"\s*(\d{1,9})\s*x\s*(\d{1,9})\s*", need("Grid dim"))
    if dims is None:
        raise ValueError(f"{label}: 'Grid dim' is {header['Grid dim']!r}; expected 'NX x NY'")
    nx, ny = int(dims.group(1)), int(dims.group(2))
    points = integer("Points", 1, 10**9)
    n_params = integer("# Parameters (4 byte)", 0, 4096)
    channels = [c.strip() for c in need("Channels").split(";") if c.strip()]
    if not channels:
        raise ValueError(f"{label}: the header lists no channels")
    if len(channels) > 1024:
        raise ValueError(f"{label}: the header lists {len(channels)} channels; at most 1024 are accepted")
    sweep = need("Sweep Signal").strip()
    if not re.match(r"z\b", sweep, re.IGNORECASE):
        raise ValueError(
            f"{label}: the grid sweeps '{sweep}', not Z; a force-map stack needs a Z (height) sweep"
        )
    # Shape limits first: a header can declare any size, the data must not be touched before this.
    _check_stack_shape((ny, nx, points), 4, 2, label)
    if "Experiment size (bytes)" in header:
        declared = integer("Experiment size (bytes)", 0, 2**62)
        if declared != points * len(channels) * 4:
            raise ValueError(
                f"{label}: header is inconsistent: 'Experiment size (bytes)' = {declared} but "
                f"{points} points × {len(channels)} channels × 4 bytes = {points * len(channels) * 4}"
            )
    channel = _pick_channel(channels, array_key, label)

    per_pixel = n_params + points * len(channels)
    expected = nx * ny * per_pixel * 4
    actual = len(upload.data) - data_start
    if actual < expected:
        raise ValueError(
            f"{label} is truncated: the header declares {nx}×{ny} pixels × {per_pixel} values = {expected} "
            f"bytes of data, the file has {actual} (an aborted grid?)"
        )
    if actual > expected:
        raise ValueError(f"{label} has {actual - expected} unexpected bytes after the declared grid data")
    grid = np.frombuffer(upload.data, dtype=">f4", count=nx * ny * per_pixel, offset=data_start)
    grid = grid.reshape(ny, nx, per_pixel)
    first = n_params + channels.index(channel) * points
    cube = grid[:, :, first : first + points]

    notes = [f"read channel '{channel}': {ny}×{nx} grid, {points} Z points per pixel"]
    decoded = _Decoded(cube, "nanonis-3ds", 2, notes=notes, array_key=channel)
    fixed = [p.strip() for p in header.get("Fixed parameters", "").split(";")]
    if "Sweep Start" in fixed and "Sweep End" in fixed:
        i_start, i_end = fixed.index("Sweep Start"), fixed.index("Sweep End")
        if max(i_start, i_end) >= n_params:
            raise ValueError(f"{label}: 'Fixed parameters' lists more entries than '# Parameters (4 byte)'")
        with np.errstate(invalid="ignore"):  # signalling NaNs in corrupt files are reported below
            starts = grid[:, :, i_start].astype(np.float64)
            ends = grid[:, :, i_end].astype(np.float64)
        if not (np.isfinite(starts).all() and np.isfinite(ends).all()):
            raise ValueError(f"{label}: the Sweep Start/End parameters contain NaN or infinite values")
        if not ((ends > starts).all() or (ends < starts).all()):
            raise ValueError(
                f"{label}: the Z sweep runs in different directions (or not at all) at different pixels"
            )
        # The sweep is linear from Sweep Start to Sweep End; pixel 0 gives the positions, and only
        # their order and spacing matter here.
        decoded.heights = np.linspace(starts.flat[0], ends.flat[0], points)
        decoded.order_source = (
            f"Z sweep from {starts.flat[0]:.4g} m to {ends.flat[0]:.4g} m in the file; larger Z = farther"
        )
    else:
        notes.append("the file records no Sweep Start/End, so the Z direction is unknown")
    if header.get("Filetype", "").strip().upper() == "MLS":
        notes.append("multi-segment (MLS) Z sweep: points treated as evenly spaced")
    return decoded


@dataclass
class _SxmScan:
    upload: _Upload
    nx: int
    ny: int
    dtype: str
    direction: str
    channels: list[tuple[str, int]]  # (name, number of stored frames: 1 or 2)
    channel_dirs: list[str]
    data_start: int
    z: float | None


def _parse_sxm(upload: _Upload) -> _SxmScan:
    label = upload.name
    if not upload.data.startswith(b":"):
        raise _not_format(upload, "a Nanonis .sxm scan")
    text, end = _split_nanonis_header(upload, b":SCANIT_END:", "a Nanonis .sxm scan")
    # The binary block starts after the 0x1A 0x04 marker that follows the end tag and its newlines.
    marker = upload.data.find(b"\x1a\x04", end, end + 16)
    if marker < 0:
        if len(upload.data) < end + 16:
            raise ValueError(f"{label} is truncated right after its header (no data block)")
        raise ValueError(f"{label}: no data-start marker (1A 04) after :SCANIT_END: — corrupted .sxm?")
    data_start = marker + 2

    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        tag = line.strip()
        if len(tag) >= 2 and tag.startswith(":") and tag.endswith(":"):
            current = sections.setdefault(tag[1:-1], [])
        elif current is not None:
            current.append(line)
        elif tag:
            raise ValueError(
                f"{label}: header text before the first :SECTION: tag — not a Nanonis .sxm scan"
            )

    def first_value(key: str) -> str:
        values = [v.strip() for v in sections.get(key, []) if v.strip()]
        if not values:
            raise ValueError(
                f"{label}: the header has no :{key}: entry (truncated or not a Nanonis .sxm scan)"
            )
        return values[0]

    pixels = first_value("SCAN_PIXELS").split()
    if len(pixels) != 2 or not all(p.isdigit() and len(p) < 10 for p in pixels):
        raise ValueError(f"{label}: :SCAN_PIXELS: is {' '.join(pixels)!r}; expected two integers")
    nx, ny = int(pixels[0]), int(pixels[1])
    kind = first_value("SCANIT_TYPE").split()
    if len(kind) != 2 or kind[0].upper() != "FLOAT" or kind[1].upper() not in ("MSBFIRST", "LSBFIRST"):
        raise ValueError(
            f"{label}: unsupported data type {' '.join(kind)!r}; expected FLOAT MSBFIRST or LSBFIRST"
        )
    dtype = ">f4" if kind[1].upper() == "MSBFIRST" else "<f4"
    scan_dir = [v.strip().lower() for v in sections.get("SCAN_DIR", []) if v.strip()]
    # Nanonis always writes :SCAN_DIR:; "down" (top row first) is the storage order otherwise.
    direction = scan_dir[0] if scan_dir else "down"
    if direction not in ("up", "down"):
        raise ValueError(f"{label}: :SCAN_DIR: is {direction!r}; expected 'up' or 'down'")

    rows = [r.strip().split("\t") for r in sections.get("DATA_INFO", []) if r.strip()]
    if len(rows) < 2:
        raise ValueError(f"{label}: the :DATA_INFO: table lists no channels")
    columns = [c.strip() for c in rows[0]]
    if "Name" not in columns or "Direction" not in columns:
        raise ValueError(f"{label}: the :DATA_INFO: table has no Name/Direction columns")
    i_name, i_dir = columns.index("Name"), columns.index("Direction")
    channels: list[tuple[str, int]] = []
    dirs: list[str] = []
    for row in rows[1:]:
        if len(row) <= max(i_name, i_dir):
            raise ValueError(f"{label}: malformed :DATA_INFO: row {row!r}")
        d = row[i_dir].strip().lower()
        if d not in ("both", "forward", "backward", "fwd", "bwd"):
            raise ValueError(f"{label}: channel '{row[i_name]}' has unknown direction {row[i_dir]!r}")
        channels.append((row[i_name].strip(), 2 if d == "both" else 1))
        dirs.append(d)
    if len(channels) > 1024:
        raise ValueError(f"{label}: {len(channels)} channels listed; at most 1024 are accepted")

    z: float | None = None
    z_lines = [v.strip() for v in sections.get("Z-Controller>Z (m)", []) if v.strip()]
    if z_lines:
        try:
            z = float(z_lines[0])
        except ValueError:
            z = None
        if z is not None and not np.isfinite(z):
            z = None
    return _SxmScan(upload, nx, ny, dtype, direction, channels, dirs, data_start, z)


def _sxm_map(scan: _SxmScan, channel: str) -> tuple[np.ndarray, list[str]]:
    """One channel of one scan as a (rows, cols) map with row 0 at the top and x increasing."""
    label = scan.upload.name
    frames = sum(n for _, n in scan.channels)
    frame_values = scan.nx * scan.ny
    expected = frames * frame_values * 4
    actual = len(scan.upload.data) - scan.data_start
    if actual < expected:
        raise ValueError(
            f"{label} is truncated: the header declares {frames} frames of {scan.nx}×{scan.ny} pixels "
            f"({expected} bytes), the file has {actual} (an aborted scan?)"
        )
    if actual > expected:
        raise ValueError(f"{label} has {actual - expected} unexpected bytes after the declared scan data")
    index = [n for n, _ in scan.channels].index(channel)
    frame = sum(n for _, n in scan.channels[:index])
    offset = scan.data_start + frame * frame_values * 4
    values = np.frombuffer(scan.upload.data, dtype=scan.dtype, count=frame_values, offset=offset)
    values = values.reshape(scan.ny, scan.nx)
    notes = []
    if scan.direction == "up":
        # Rows are stored in acquisition order, and an upward scan starts at the bottom edge.
        values = values[::-1]
        notes.append(f"{label}: scanned upwards, rows flipped so row 0 is the top edge")
    if scan.channel_dirs[index] in ("backward", "bwd"):
        # Backward lines are recorded right to left.
        values = values[:, ::-1]
        notes.append(f"{label}: only the backward scan is stored, columns mirrored")
    return values, notes


def _decode_sxm(uploads: Sequence[_Upload], array_key: str | None) -> _Decoded:
    scans = [_parse_sxm(u) for u in uploads]
    first = scans[0]
    channel = _pick_channel([n for n, _ in first.channels], array_key, first.upload.name)
    for scan in scans:
        if channel not in [n for n, _ in scan.channels]:
            raise ValueError(f"{scan.upload.name} has no channel '{channel}' (found in {first.upload.name})")
        if (scan.nx, scan.ny) != (first.nx, first.ny):
            raise ValueError(
                f"{scan.upload.name} is {scan.ny}×{scan.nx} pixels but {first.upload.name} is "
                f"{first.ny}×{first.nx}; every height must have the same size"
            )
    _check_stack_shape((len(scans), first.ny, first.nx), 4, 0, _display_name(uploads))
    notes = [f"read channel '{channel}' from {len(scans)} scans, one per height"]
    maps = []
    for scan in scans:
        values, scan_notes = _sxm_map(scan, channel)
        maps.append(values)
        notes.extend(scan_notes)
    decoded = _Decoded(np.stack(maps, axis=0), "nanonis-sxm", 0, notes=notes, array_key=channel)
    zs = [s.z for s in scans]
    if all(z is not None for z in zs) and len(set(zs)) == len(zs):
        decoded.heights = np.array(zs, dtype=np.float64)
        decoded.order_source = "Z-Controller>Z (m) in each header; larger Z = farther"
    else:
        notes.append("Z-Controller>Z is missing or repeated in the headers, so the tip heights are unknown")
    return decoded


# --------------------------------------------------------------------------- Gwyddion


@dataclass
class _GwyObject:
    name: str
    items: dict[str, object]


class _GwyReader:
    """Strict reader for the Gwyddion serialisation (gwyddion.net, "GWY file format").

    An object is a NUL-terminated type name, a little-endian uint32 byte size and that many bytes
    of components; a component is a NUL-terminated name, a one-character type code and its data.
    Every length is checked against the bytes that remain, so hostile input fails in linear time.
    """

    _SCALARS = {"b": ("<B", 1), "c": ("<B", 1), "i": ("<i", 4), "q": ("<q", 8), "d": ("<d", 8)}
    _ARRAYS = {"C": "u1", "I": "<i4", "Q": "<i8", "D": "<f8"}

    def __init__(self, data: bytes, label: str) -> None:
        self.data = data
        self.label = label

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.label}: corrupted Gwyddion file ({what})")

    def cstring(self, pos: int, end: int) -> tuple[str, int]:
        stop = self.data.find(b"\x00", pos, end)
        if stop < 0:
            raise self.fail("unterminated name or string")
        try:
            return self.data[pos:stop].decode("utf-8"), stop + 1
        except UnicodeDecodeError as exc:
            raise self.fail("a name is not UTF-8") from exc

    def uint32(self, pos: int, end: int) -> int:
        if pos + 4 > end:
            raise self.fail("data ends inside a size field")
        return struct.unpack_from("<I", self.data, pos)[0]

    def obj(self, pos: int, end: int, depth: int) -> tuple[_GwyObject, int]:
        if depth > MAX_GWY_DEPTH:
            raise self.fail(f"objects nested more than {MAX_GWY_DEPTH} deep")
        name, pos = self.cstring(pos, end)
        if not name:
            raise self.fail("object without a type name")
        size = self.uint32(pos, end)
        body, body_end = pos + 4, pos + 4 + size
        if body_end > end:
            raise self.fail(f"object '{name}' declares {size} bytes, only {end - body} remain")
        items: dict[str, object] = {}
        pos = body
        while pos < body_end:
            key, value, pos = self.component(pos, body_end, depth)
            items[key] = value
        return _GwyObject(name, items), body_end

    def component(self, pos: int, end: int, depth: int) -> tuple[str, object, int]:
        key, pos = self.cstring(pos, end)
        if pos >= end:
            raise self.fail(f"component '{key}' has no type code")
        code = chr(self.data[pos])
        pos += 1
        if code in self._SCALARS:
            fmt, size = self._SCALARS[code]
            if pos + size > end:
                raise self.fail(f"component '{key}' is cut short")
            return key, struct.unpack_from(fmt, self.data, pos)[0], pos + size
        if code == "s":
            text, pos = self.cstring(pos, end)
            return key, text, pos
        if code == "o":
            value, pos = self.obj(pos, end, depth + 1)
            return key, value, pos
        if code in self._ARRAYS or code in "SO":
            count = self.uint32(pos, end)
            pos += 4
            if code in self._ARRAYS:
                dtype = np.dtype(self._ARRAYS[code])
                if count * dtype.itemsize > end - pos:
                    raise self.fail(f"array '{key}' declares {count} items, the data is shorter")
                array = np.frombuffer(self.data, dtype=dtype, count=count, offset=pos)
                return key, array, pos + count * dtype.itemsize
            # Each string takes at least its NUL byte, each object at least 6 bytes: checking the
            # count first keeps a forged count from driving a long loop.
            if count * (1 if code == "S" else 6) > end - pos:
                raise self.fail(f"array '{key}' declares {count} items, the data is shorter")
            values: list[object] = []
            for _ in range(count):
                if code == "S":
                    text, pos = self.cstring(pos, end)
                    values.append(text)
                else:
                    child, pos = self.obj(pos, end, depth + 1)
                    values.append(child)
            return key, values, pos
        raise self.fail(f"unknown component type {code!r} in '{key}'")


def _gwy_int(obj: _GwyObject, key: str, label: str) -> int:
    value = obj.items.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{label}: {obj.name} has no valid '{key}'")
    return value


def _gwy_values(obj: _GwyObject, count: int, label: str) -> np.ndarray:
    data = obj.items.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.dtype("<f8"):
        raise ValueError(f"{label}: {obj.name} has no floating-point 'data' array")
    if data.size != count:
        raise ValueError(f"{label}: {obj.name} declares {count} values but stores {data.size}")
    return data


def _decode_gwy(upload: _Upload, array_key: str | None) -> _Decoded:
    label = upload.name
    if not upload.data.startswith(b"GWYP"):
        raise _not_format(upload, "a Gwyddion .gwy file")
    reader = _GwyReader(upload.data, label)
    try:
        root, end = reader.obj(4, len(upload.data), 0)
    except RecursionError as exc:
        raise reader.fail("objects nested too deeply") from exc
    if root.name != "GwyContainer":
        raise ValueError(f"{label}: the top-level object is '{root.name}', expected a GwyContainer")
    if end != len(upload.data):
        raise reader.fail(f"{len(upload.data) - end} bytes after the container")

    bricks = {
        k: v for k, v in root.items.items()
        if re.fullmatch(r"/brick/\d+", k) and isinstance(v, _GwyObject) and v.name == "GwyBrick"
    }
    fields = {
        int(m.group(1)): v for k, v in root.items.items()
        if (m := re.fullmatch(r"/(\d+)/data", k)) and isinstance(v, _GwyObject) and v.name == "GwyDataField"
    }
    if array_key is not None:
        if array_key not in bricks:
            shown = ", ".join(sorted(bricks)) or "none"
            raise ValueError(f"{label} has no volume '{array_key}'; its volumes (GwyBrick) are: {shown}")
        bricks = {array_key: bricks[array_key]}
    if len(bricks) > 1:
        raise ValueError(
            f"{label} holds several volumes: {', '.join(sorted(bricks))}; choose one with array_key"
        )
    if bricks:
        key, brick = next(iter(bricks.items()))
        xres, yres, zres = (_gwy_int(brick, k, label) for k in ("xres", "yres", "zres"))
        _check_stack_shape((zres, yres, xres), 8, 0, label)
        # GwyBrick stores x fastest, then y, then z.
        values = _gwy_values(brick, xres * yres * zres, label).reshape(zres, yres, xres)
        title = root.items.get(f"{key}/title")
        shown = f" ('{title}')" if isinstance(title, str) else ""
        notes = [f"read volume {key}{shown}: z levels = heights"]
        return _Decoded(values, "gwyddion", 0, notes=notes, array_key=key)

    if not fields:
        raise ValueError(f"{label} holds no image channels or volumes")
    numbers = sorted(fields)
    first = fields[numbers[0]]
    xres, yres = _gwy_int(first, "xres", label), _gwy_int(first, "yres", label)
    _check_stack_shape((len(numbers), yres, xres), 8, 0, label)
    maps = []
    for n in numbers:
        f = fields[n]
        fx, fy = _gwy_int(f, "xres", label), _gwy_int(f, "yres", label)
        if (fx, fy) != (xres, yres):
            raise ValueError(
                f"{label}: channel {n} is {fy}×{fx} pixels but channel {numbers[0]} is {yres}×{xres}; "
                "every height must have the same size"
            )
        maps.append(_gwy_values(f, xres * yres, label).reshape(yres, xres))
    stack = np.stack(maps, axis=0)
    return _Decoded(
        stack, "gwyddion", 0,
        notes=[f"read {len(numbers)} image channels ({', '.join(map(str, numbers))}) as heights, in order"],
    )


# --------------------------------------------------------------------------- orientation & grid


def _resample_axis(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` at fractional source indices ``coords``."""
    n = a.shape[axis]
    i0 = np.clip(np.floor(coords).astype(np.intp), 0, n - 2)
    frac = coords - i0
    shape = [1] * a.ndim
    shape[axis] = len(coords)
    frac = frac.reshape(shape)
    lower = np.take(a, i0, axis=axis).astype(np.float64)
    upper = np.take(a, i0 + 1, axis=axis).astype(np.float64)
    # Weighted sum rather than lower + (upper - lower) * frac: the difference can overflow.
    return lower * (1.0 - frac) + upper * frac


_FARTHEST_FIRST = "index 0 is the farthest from the sample"


def _to_network_grid(
    d: _Decoded, target: tuple[int, int], n_heights: int, closest_first: bool | None, name: str
) -> ReadResult:
    source_shape = tuple(int(s) for s in d.array.shape)
    ops = list(d.notes)
    a = d.array
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            n_nan = int(np.isnan(a).sum())
            n_inf = int(a.size - finite.sum()) - n_nan
            raise ValueError(
                f"{name}: the stack contains {n_nan} NaN and {n_inf} infinite values; AFM stacks must be "
                "finite (fill or crop missing pixels first)"
            )
        del finite
    lo, hi = a.min(), a.max()
    if lo == hi:
        raise ValueError(f"{name}: stack is constant (every value is {lo}); there is nothing to normalise")

    if d.height_axis == 0:
        a = np.moveaxis(a, 0, -1)
        ops.append("moved heights to the last axis (Z×H×W → H×W×Z)")
    h, w, z = a.shape
    heights = d.heights

    if closest_first is not None:
        if heights is not None:
            ops.append(f"closest_first={bool(closest_first)} given: the tip heights in the file are not used")
            heights = None
        if closest_first:
            a = a[:, :, ::-1]
            ops.append(f"reversed the height order so {_FARTHEST_FIRST} (closest_first=True)")
        else:
            ops.append(f"height order kept: {_FARTHEST_FIRST} (closest_first=False)")
    elif heights is not None:
        order = np.argsort(-heights, kind="stable")
        if np.array_equal(order, np.arange(z)):
            ops.append(f"height order kept: {_FARTHEST_FIRST} ({d.order_source})")
        elif np.array_equal(order, np.arange(z)[::-1]):
            a = a[:, :, ::-1]  # a view: no copy of a large source
            ops.append(f"reversed the height order so {_FARTHEST_FIRST} ({d.order_source})")
        else:
            a = np.take(a, order, axis=2)
            ops.append(f"sorted the heights so {_FARTHEST_FIRST} ({d.order_source})")
        heights = heights[order]
    else:
        ops.append(
            f"height order kept: {_FARTHEST_FIRST} (assumed; the file does not record it — pass "
            "closest_first=True if index 0 is the closest map)"
        )

    steps: list[tuple[int, np.ndarray]] = []
    if heights is not None and _uneven(heights):
        # Positions measured in the file: interpolate linearly in Z between the recorded heights.
        # heights is now strictly decreasing; np.interp needs increasing sample points.
        targets = np.linspace(heights[0], heights[-1], n_heights)
        steps.append((2, np.interp(-targets, -heights, np.arange(z, dtype=np.float64))))
        ops.append(f"interpolated {z} heights → {n_heights} (linear in the recorded Z, evenly spaced)")
    elif z != n_heights:
        steps.append((2, np.linspace(0.0, z - 1.0, n_heights)))
        ops.append(f"interpolated {z} heights → {n_heights} (linear; heights assumed evenly spaced)")
    else:
        ops.append(f"kept the {z} heights")
    th, tw = target
    if (h, w) != (th, tw):
        steps.append((0, np.linspace(0.0, h - 1.0, th)))
        steps.append((1, np.linspace(0.0, w - 1.0, tw)))
        ops.append(f"resampled {h}×{w} → {th}×{tw} (bilinear)")
    else:
        ops.append(f"maps already {th}×{tw}")
    # Linear interpolation along different axes commutes, so shrinking axes go first to keep
    # the intermediate arrays (float64) as small as possible.
    steps.sort(key=lambda s: len(s[1]) / a.shape[s[0]])
    for ax, coords in steps:
        a = _resample_axis(a, coords, ax)
    out = np.asarray(a, dtype=np.float64)

    lo, hi = float(out.min()), float(out.max())
    if lo == hi:
        raise ValueError(f"{name}: stack is constant after resampling (every value is {lo})")
    span = hi - lo
    if np.isfinite(span):
        unit = (out - lo) / span
    else:  # values near the float64 limits: halve before subtracting
        unit = (out / 2 - lo / 2) / (hi / 2 - lo / 2)
    stack = np.clip(unit * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)
    ops.append(f"normalised to [−1, 1] by per-stack min–max (min {lo:.6g}, max {hi:.6g})")
    return ReadResult(
        stack=np.ascontiguousarray(stack),
        source_shape=source_shape,
        operations=ops,
        format=d.fmt,
        array_key=d.array_key,
        name=name,
    )


def _uneven(heights: np.ndarray) -> bool:
    steps = np.diff(heights)
    return bool(np.ptp(steps) > 1e-3 * np.abs(steps).max())
