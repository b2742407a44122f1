"""Multi-page grayscale TIFF uploads: one page per height, read with ``tifffile``."""

from __future__ import annotations

import io
import struct

import numpy as np
import tifffile

from battgen.afm.formats import common
from battgen.afm.formats.channels import check_force_map, describe_channel, unit_in_name

MAX_TIFF_PAGES = 2 * common.MAX_HEIGHTS

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _unreadable_tiff(label: str, exc: Exception) -> ValueError:
    return ValueError(f"{label}: not a readable TIFF, truncated or corrupted ({type(exc).__name__}: {exc})")


def _check_ifd_chain(data: bytes, label: str) -> None:
    """Refuse a TIFF whose chain of image directories leads past its end.

    tifffile logs such a break and returns the pages before it, so a cut multi-page upload would
    otherwise arrive as a shorter stack (or "one height") instead of as a truncated file.
    """
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    offset_format, count_format, entry_size, first = (("Q", "Q", 20, 8) if big else ("I", "H", 12, 4))
    offset_size, count_size = struct.calcsize(offset_format), struct.calcsize(count_format)
    if len(data) < first + offset_size:
        raise ValueError(f"{label} is truncated: the file ends inside the TIFF header")
    offset = struct.unpack_from(order + offset_format, data, first)[0]
    seen: set[int] = set()
    while offset and len(seen) <= MAX_TIFF_PAGES:
        if offset in seen:
            raise ValueError(f"{label}: corrupted TIFF (its image directories form a loop)")
        seen.add(offset)
        if offset + count_size > len(data):
            raise ValueError(f"{label} is truncated: image directory {len(seen)} starts at byte {offset}, "
                             f"the file has {len(data)}")
        entries = struct.unpack_from(order + count_format, data, offset)[0]
        next_at = offset + count_size + entries * entry_size
        if next_at + offset_size > len(data):
            raise ValueError(f"{label} is truncated: image directory {len(seen)} ends at byte "
                             f"{next_at + offset_size}, the file has {len(data)}")
        offset = struct.unpack_from(order + offset_format, data, next_at)[0]


def decode_tiff(upload: common.Upload) -> common.Decoded:
    label = upload.name
    if not upload.data.startswith(_TIFF_MAGICS):
        raise common.not_format(upload, "a TIFF image")
    _check_ifd_chain(upload.data, label)
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
            common.check_dtype(np.dtype(page.dtype), f"{label} page {i}")
        # tifffile zero-fills or skips data past the end of the file; a cut upload must fail.
        for i, page in enumerate(pages):
            for offset, count in zip(page.dataoffsets, page.databytecounts):
                if offset + count > len(upload.data):
                    raise ValueError(
                        f"{label} is truncated: page {i} stores data up to byte {offset + count}, "
                        f"the file has {len(upload.data)}"
                    )
        titles = [_page_title(page) for page in pages]
        itemsize = max(np.dtype(p.dtype).itemsize for p in pages)
        common.check_stack_shape((len(pages), *first.shape), itemsize, 0, label)
        try:
            maps = [page.asarray() for page in pages]
        except MemoryError:
            raise
        except Exception as exc:
            raise ValueError(f"{label}: a page cannot be decoded ({type(exc).__name__}: {exc})") from exc
    if any(m.shape != first.shape for m in maps):
        raise ValueError(f"{label}: a page decoded to an unexpected shape (corrupted file?)")
    array = np.stack(maps, axis=0)
    common.check_dtype(array.dtype, label)
    described = []
    if any(titles):
        described = [describe_channel(t or f"page {i}", unit_in_name(t), m)
                     for i, (t, m) in enumerate(zip(titles, maps))]
        check_force_map(label, described)
    return common.Decoded(array, "tiff", 0, notes=[f"read {len(pages)} TIFF pages, one per height"],
                          channels=described)


def _page_title(page) -> str:
    """A page's ImageDescription when it names the page ('HeightRetrace', 'Δf (Hz)'), else ''.

    tifffile's own shape record (JSON) and ImageJ's settings block describe the file, not the page.
    """
    text = (page.description or "").strip()
    if not text or text.startswith(("{", "ImageJ=")) or "\n" in text or len(text) > 80:
        return ""
    return text
