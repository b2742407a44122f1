"""Nanonis uploads: a ``.3ds`` grid-spectroscopy file sweeping Z, or ``.sxm`` scans, one per height.

Parsed here rather than with ``nanonispy2``, which zero-pads truncated grids and allocates
whatever size a header declares. The frequency-shift (Δf) channel is read unless ``array_key``
names another. The tip heights these files record (the ``.3ds`` Z sweep, the
``Z-Controller>Z (m)`` entry of ``.sxm`` headers, where a larger Z is a more retracted tip) decide
the height order. ``.sxm`` rows are stored in acquisition order: upward scans are flipped so that
row 0 is the top edge in every scan, as Gwyddion shows them (a series mixing up and down scans
would otherwise stack mirrored maps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from battgen.afm.formats import common
from battgen.afm.formats.channels import (FREQUENCY_SHIFT, check_force_map, describe_channel, quantity_of,
                                          unit_in_name)

# Nanonis headers are a few kB; a megabyte without an end tag means this is not a header.
MAX_HEADER_BYTES = 1024 * 1024


def _pick_channel(channels: Sequence[str], array_key: str | None, label: str) -> str:
    """The frequency-shift channel (forward direction), or the one named by ``array_key``."""
    listing = ", ".join(repr(c) for c in channels)
    if array_key is not None:
        if array_key not in channels:
            raise ValueError(f"{label} has no channel '{array_key}'; its channels are: {listing}")
        return array_key
    candidates = [c for c in channels if quantity_of(c, None) == FREQUENCY_SHIFT and "[bwd]" not in c.lower()]
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


def _split_nanonis_header(upload: common.Upload, end_tag: bytes, what: str) -> tuple[str, int]:
    """Header text and the offset just past the end-tag line."""
    window = upload.data[:MAX_HEADER_BYTES]
    pos = window.find(end_tag)
    tag = end_tag.decode()
    if pos < 0:
        if len(upload.data) < MAX_HEADER_BYTES:
            raise ValueError(f"{upload.name}: no {tag} line — not {what}, or its header is truncated")
        limit = common.mb(MAX_HEADER_BYTES)
        raise ValueError(f"{upload.name}: no {tag} line in the first {limit} — not {what}")
    header = window[:pos]
    if b"\x00" in header:
        raise common.not_format(upload, what)
    return header.decode("latin-1"), pos + len(end_tag)


def decode_3ds(upload: common.Upload, array_key: str | None) -> common.Decoded:
    label = upload.name
    if upload.data.startswith(tuple(m for m, _ in common.SIGNATURES if m != b"Grid dim=")):
        raise common.not_format(upload, "a Nanonis .3ds grid file")
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
    common.check_stack_shape((ny, nx, points), 4, 2, label)
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

    # The unit is part of a .3ds channel name: 'OC M1 Freq. Shift (Hz)'.
    described = describe_channel(channel, unit_in_name(channel), cube, map_shape=(ny, nx))
    check_force_map(label, [described], chosen=array_key)
    notes = [f"read channel '{channel}': {ny}×{nx} grid, {points} Z points per pixel"]
    decoded = common.Decoded(cube, "nanonis-3ds", 2, notes=notes, array_key=channel, channels=[described])
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
    upload: common.Upload
    nx: int
    ny: int
    dtype: str
    direction: str
    channels: list[tuple[str, int]]  # (name, number of stored frames: 1 or 2)
    channel_dirs: list[str]
    units: list[str]  # the :DATA_INFO: Unit column ("" where the table has none)
    data_start: int
    z: float | None


def _parse_sxm(upload: common.Upload) -> _SxmScan:
    label = upload.name
    if not upload.data.startswith(b":"):
        raise common.not_format(upload, "a Nanonis .sxm scan")
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
    i_unit = columns.index("Unit") if "Unit" in columns else None
    channels: list[tuple[str, int]] = []
    dirs: list[str] = []
    units: list[str] = []
    for row in rows[1:]:
        if len(row) <= max(i_name, i_dir):
            raise ValueError(f"{label}: malformed :DATA_INFO: row {row!r}")
        d = row[i_dir].strip().lower()
        if d not in ("both", "forward", "backward", "fwd", "bwd"):
            raise ValueError(f"{label}: channel '{row[i_name]}' has unknown direction {row[i_dir]!r}")
        channels.append((row[i_name].strip(), 2 if d == "both" else 1))
        dirs.append(d)
        units.append(row[i_unit].strip() if i_unit is not None and i_unit < len(row) else "")
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
    return _SxmScan(upload, nx, ny, dtype, direction, channels, dirs, units, data_start, z)


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


def decode_sxm(uploads: Sequence[common.Upload], array_key: str | None) -> common.Decoded:
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
    common.check_stack_shape((len(scans), first.ny, first.nx), 4, 0, common.display_name(uploads))
    notes = [f"read channel '{channel}' from {len(scans)} scans, one per height"]
    maps = []
    for scan in scans:
        values, scan_notes = _sxm_map(scan, channel)
        maps.append(values)
        notes.extend(scan_notes)
    stack = np.stack(maps, axis=0)
    unit = first.units[[n for n, _ in first.channels].index(channel)]
    described = describe_channel(channel, unit, stack)
    check_force_map(common.display_name(uploads), [described], chosen=array_key)
    decoded = common.Decoded(stack, "nanonis-sxm", 0, notes=notes, array_key=channel, channels=[described])
    zs = [s.z for s in scans]
    if all(z is not None for z in zs) and len(set(zs)) == len(zs):
        decoded.heights = np.array(zs, dtype=np.float64)
        decoded.order_source = "Z-Controller>Z (m) in each header; larger Z = farther"
    else:
        notes.append("Z-Controller>Z is missing or repeated in the headers, so the tip heights are unknown")
    return decoded
