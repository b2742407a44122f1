"""NumPy uploads: an ``.npy`` array or one member of an ``.npz`` archive, ``H×W×Z`` or ``Z×H×W``.

The height axis is the smallest dimension unless ``axis`` is given. Arrays are always loaded
with ``allow_pickle=False``, and only after their header's shape, dtype and byte count are checked.
"""

from __future__ import annotations

import io
import math
import zipfile
from typing import BinaryIO

import numpy as np

from battgen.afm.formats import common

MAX_NPZ_MEMBERS = 1000


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


def decode_npy(upload: common.Upload, axis: int | None) -> common.Decoded:
    if not upload.data.startswith(b"\x93NUMPY"):
        raise common.not_format(upload, "a NumPy .npy file")
    shape, dtype, offset = _npy_header(io.BytesIO(upload.data), upload.name)
    common.check_dtype(dtype, upload.name)
    hax = common.check_stack_shape(shape, dtype.itemsize, axis, upload.name)
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
    return common.Decoded(array, "npy", hax, notes=[_axis_note(shape, hax, axis)])


def decode_npz(upload: common.Upload, array_key: str | None, axis: int | None) -> common.Decoded:
    if not upload.data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise common.not_format(upload, "a NumPy .npz archive")
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
                if info.file_size > common.MAX_DECODED_BYTES:
                    raise ValueError(
                        f"{upload.name}: member '{key}' is {common.mb(info.file_size)} uncompressed, over "
                        f"the limit of {common.mb(common.MAX_DECODED_BYTES)}"
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
    common.check_dtype(dtype, label)
    hax = common.check_stack_shape(shape, dtype.itemsize, axis, label)
    try:
        with np.load(io.BytesIO(upload.data), allow_pickle=False) as npz:
            array = npz[key]
    except Exception as exc:
        raise ValueError(f"{label}: cannot be loaded ({exc})") from exc
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise ValueError(f"{label}: the stored array does not match its header (corrupted archive)")
    notes = [f"read array '{key}'", _axis_note(shape, hax, axis)]
    return common.Decoded(array, "npz", hax, notes=notes, array_key=key)


def _axis_note(shape: tuple[int, ...], hax: int, axis: int | None) -> str:
    why = "as given by axis=" + str(axis) if axis is not None else "the smallest dimension"
    layout = "Z×H×W" if hax == 0 else "H×W×Z"
    return f"height axis {hax} of shape {shape} ({why}): layout {layout}"
