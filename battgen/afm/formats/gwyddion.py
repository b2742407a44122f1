"""Gwyddion ``.gwy`` uploads: the file's single volume (``GwyBrick``), else all of its image channels.

Parsed here rather than with ``gwyfile``, which loops forever on a string component without its
terminating NUL byte.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from battgen.afm.formats import channels, common

# Gwyddion objects nest a few levels (container → data field → unit); deeper is hostile input.
MAX_GWY_DEPTH = 32


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


def decode_gwy(upload: common.Upload, array_key: str | None) -> common.Decoded:
    label = upload.name
    if upload.data.startswith(b"GWYO"):
        raise ValueError(f"{label} is a Gwyddion 1.x file (GWYO), an old format that is not supported: "
                         "open it in Gwyddion 2 and save it again as .gwy")
    if not upload.data.startswith(b"GWYP"):
        raise common.not_format(upload, "a Gwyddion .gwy file")
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
        common.check_stack_shape((zres, yres, xres), 8, 0, label)
        # GwyBrick stores x fastest, then y, then z.
        values = _gwy_values(brick, xres * yres * zres, label).reshape(zres, yres, xres)
        title = root.items.get(f"{key}/title")
        shown = f" ('{title}')" if isinstance(title, str) else ""
        axis_unit = _unit(brick, "si_unit_z")
        if axis_unit and channels.quantity_of("z", axis_unit) != channels.TOPOGRAPHY:
            raise ValueError(f"{label}: volume {key}{shown} runs over {axis_unit} along z, not over tip height (m); "
                             "a force-map stack needs maps at several tip heights")
        volume = channels.describe_channel(title if isinstance(title, str) and title else key,
                                           _unit(brick, "si_unit_w"), values)
        channels.check_force_map(label, [volume])
        notes = [f"read volume {key}{shown}: z levels = heights"]
        decoded = common.Decoded(values, "gwyddion", 0, notes=notes, array_key=key, channels=[volume])
        _brick_heights(brick, zres, axis_unit, decoded)
        return decoded

    if not fields:
        raise ValueError(f"{label} holds no image channels or volumes")
    numbers = sorted(fields)
    first = fields[numbers[0]]
    xres, yres = _gwy_int(first, "xres", label), _gwy_int(first, "yres", label)
    common.check_stack_shape((len(numbers), yres, xres), 8, 0, label)
    maps, described = [], []
    for n in numbers:
        f = fields[n]
        fx, fy = _gwy_int(f, "xres", label), _gwy_int(f, "yres", label)
        if (fx, fy) != (xres, yres):
            raise ValueError(
                f"{label}: channel {n} is {fy}×{fx} pixels but channel {numbers[0]} is {yres}×{xres}; "
                "every height must have the same size"
            )
        values = _gwy_values(f, xres * yres, label).reshape(yres, xres)
        maps.append(values)
        described.append(_describe_field(root, n, f, values))
    # Δf or force maps among other channels (a topography image kept beside them) are the stack.
    force = [i for i, c in enumerate(described) if c.quantity in channels.FORCE_MAP_QUANTITIES]
    notes = []
    if len(force) >= common.MIN_HEIGHTS and len(force) < len(numbers):
        left_out = [c for i, c in enumerate(described) if i not in force]
        notes.append("left out the channels that are not force maps: "
                     + ", ".join(f"{c.name} ({c.quantity})" for c in left_out))
        numbers = [numbers[i] for i in force]
        maps = [maps[i] for i in force]
        described = [described[i] for i in force]
    channels.check_force_map(label, described)
    shown = ", ".join(c.name for c in described)
    if any(c.quantity in channels.FORCE_MAP_QUANTITIES for c in described):
        notes.append(f"read {len(numbers)} image channels ({shown}) as heights, in order")
    else:
        notes.append(f"read {len(numbers)} image channels ({shown}) as heights, in order; the file does not "
                     "say what they hold (no unit or telling title), so they are taken to be Δf maps")
    return common.Decoded(np.stack(maps, axis=0), "gwyddion", 0, notes=notes, channels=described)


def _brick_heights(brick: _GwyObject, zres: int, axis_unit: str, decoded: common.Decoded) -> None:
    """Tip heights of a volume's z levels from its z calibration, where the file has one.

    Gwyddion stores a volume's z extent as a positive size (``zreal``) from an offset (``zoff``),
    so without a calibration the levels are evenly spaced but their direction is not recorded.
    A ``calibration`` data line gives the z value of every level (e.g. an uneven sweep): those
    are the heights, larger = farther from the sample, as in the Nanonis readers.
    """
    calibration = brick.items.get("calibration")
    if isinstance(calibration, _GwyObject) and calibration.name == "GwyDataLine":
        zs = calibration.items.get("data")
        unit = _unit(calibration, "si_unit_y") or axis_unit
        usable = (isinstance(zs, np.ndarray) and zs.dtype.kind == "f" and zs.size == zres
                  and bool(np.isfinite(zs).all()) and np.unique(zs).size == zres)
        if not usable:
            decoded.notes.append(f"the volume's z calibration does not give {zres} distinct finite levels, "
                                 "so it is not used: levels assumed evenly spaced")
            return
        if unit and channels.quantity_of("z", unit) != channels.TOPOGRAPHY:
            decoded.notes.append(f"the volume's z calibration is in {unit}, not a length, so it is not used")
            return
        decoded.heights = np.asarray(zs, dtype=np.float64)
        shown = f" {unit}" if unit else ""
        decoded.order_source = (f"z calibration in the file, {zs.min():.4g} to {zs.max():.4g}{shown}; "
                                "larger Z = farther")
        return
    zreal, zoff = brick.items.get("zreal"), brick.items.get("zoff", 0.0)
    if isinstance(zreal, float) and isinstance(zoff, float) and np.isfinite(zreal) and np.isfinite(zoff):
        shown = f" {axis_unit}" if axis_unit else ""
        decoded.notes.append(f"z levels evenly spaced over {zoff:.4g} to {zoff + zreal:.4g}{shown}; Gwyddion "
                             "does not record the direction without a z calibration")


def _unit(obj: _GwyObject, key: str) -> str:
    unit = obj.items.get(key)
    if isinstance(unit, _GwyObject) and isinstance(unit.items.get("unitstr"), str):
        return unit.items["unitstr"]
    return ""


def _describe_field(root: _GwyObject, number: int, field: _GwyObject, values: np.ndarray) -> channels.Channel:
    """Title (``/N/data/title``), value unit (``si_unit_z``) and scan size of image channel ``number``."""
    title = root.items.get(f"/{number}/data/title")
    xreal, yreal = field.items.get("xreal"), field.items.get("yreal")
    size = channels.scan_size(xreal if isinstance(xreal, float) else None,
                              yreal if isinstance(yreal, float) else None, _unit(field, "si_unit_xy"))
    return channels.describe_channel(title if isinstance(title, str) and title else f"channel {number}",
                                     _unit(field, "si_unit_z"), values, scan_size=size)
