"""Read uploaded AFM force-map stacks into the fixed grid the translation network expects.

An AFM "stack" is a set of frequency-shift (Δf) maps recorded at several tip heights above the
sample. Scientists upload them in whatever format their microscope or analysis tool wrote; the
network only understands one layout, so :func:`read_stack` turns every supported upload into a
``float32`` array of shape ``(H, W, n_heights)`` (default 64×64×10) normalised exactly like the
training data (:mod:`.grid` states the conventions), and lists every change it made in
:attr:`ReadResult.operations` so the page can show the user what happened to their data.

Supported inputs (chosen by file extension, then verified by content), one module each:

* ``.npy`` / ``.npz`` (:mod:`.numpy_files`) — an ``H×W×Z`` or ``Z×H×W`` array.
* ``.tif`` / ``.tiff`` (:mod:`.tiff`) — a multi-page grayscale TIFF, one page per height.
* ``.3ds`` (:mod:`.nanonis`) — a Nanonis grid-spectroscopy file sweeping Z.
* ``.sxm`` (:mod:`.nanonis`) — Nanonis scans, one file per height: pass a list of files.
* ``.gwy`` (:mod:`.gwyddion`) — a Gwyddion file's single volume, otherwise its image channels.

Every malformed upload raises :class:`ValueError` with a message meant for the user. Uploads are
untrusted, so nothing here unpickles, and the limits in :mod:`.common` bound memory and time.
"""

from __future__ import annotations

from typing import Sequence

from battgen.afm.formats import common, gwyddion, nanonis, numpy_files, tiff
from battgen.afm.formats.common import N_HEIGHTS, TARGET_SHAPE, FileInput, ReadResult
from battgen.afm.formats.grid import to_network_grid

__all__ = ["FileInput", "N_HEIGHTS", "ReadResult", "SUPPORTED_EXTENSIONS", "TARGET_SHAPE", "read_stack"]

SUPPORTED_EXTENSIONS: tuple[str, ...] = ("npy", "npz", "tif", "tiff", "3ds", "sxm", "gwy")

_FORMAT_BY_EXT = {
    ".npy": "npy",
    ".npz": "npz",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".3ds": "nanonis-3ds",
    ".sxm": "nanonis-sxm",
    ".gwy": "gwyddion",
}


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
    target, n_out = common.check_settings(target_shape, n_heights, axis, closest_first)
    uploads = common.read_uploads(path_or_file, name)

    fmts = {_format_of(u) for u in uploads}
    if len(uploads) > 1 and fmts != {"nanonis-sxm"}:
        listed = ", ".join(sorted(u.name for u in uploads))
        raise ValueError(
            f"several files are only accepted as a Nanonis .sxm series (one scan per height); got {listed}"
        )
    fmt = fmts.pop()

    try:
        if fmt == "npy":
            decoded = numpy_files.decode_npy(uploads[0], axis)
        elif fmt == "npz":
            decoded = numpy_files.decode_npz(uploads[0], array_key, axis)
        elif fmt == "tiff":
            decoded = tiff.decode_tiff(uploads[0])
        elif fmt == "nanonis-3ds":
            decoded = nanonis.decode_3ds(uploads[0], array_key)
        elif fmt == "nanonis-sxm":
            decoded = nanonis.decode_sxm(uploads, array_key)
        else:
            decoded = gwyddion.decode_gwy(uploads[0], array_key)
        display = common.display_name(uploads)
        return to_network_grid(decoded, target, n_out, closest_first, display)
    except MemoryError as exc:
        shown = common.display_name(uploads)
        raise ValueError(f"{shown} is too large to decode in the available memory") from exc


def _format_of(upload: common.Upload) -> str:
    fmt = _FORMAT_BY_EXT.get(upload.ext)
    if fmt is None:
        shown = upload.ext or "no extension"
        accepted = ", ".join("." + e for e in SUPPORTED_EXTENSIONS)
        raise ValueError(f"{upload.name}: unsupported file type ({shown}); accepted: {accepted}")
    return fmt
