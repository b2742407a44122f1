"""What quantity an upload's channels hold, from the titles and units the file carries.

The translator reads a *force-map stack*: maps of one quantity — the frequency shift Δf (Hz) or
the force (N) — recorded at several tip heights. Microscope files also carry the images of one
ordinary scan (topography, amplitude, deflection, phase, current), and a file of those has the
same shape as a stack: a Gwyddion file with HeightRetrace [m], AmplitudeRetrace [m],
DeflectionRetrace [m] and PhaseRetrace [deg] looks like four heights of 256×256 pixels. This
module names each channel's quantity (:func:`quantity_of`) so the readers can refuse such a file
(:class:`NotAForceMapStack`, which carries the channels for the page to list) instead of
translating four different quantities as if they were one quantity at four heights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

FREQUENCY_SHIFT = "frequency shift"
FORCE = "force"
TOPOGRAPHY = "height (topography)"
AMPLITUDE = "amplitude"
DEFLECTION = "deflection"
PHASE = "phase"
CURRENT = "current"
VOLTAGE = "voltage"
UNKNOWN = "unknown"

# What the translator was trained on: maps of one of these at several tip heights.
FORCE_MAP_QUANTITIES = frozenset({FREQUENCY_SHIFT, FORCE})

_LENGTH_UNITS = {"m", "mm", "um", "µm", "μm", "nm", "pm", "a", "å", "angstrom"}
_ANGLE_UNITS = {"deg", "°", "degree", "degrees", "rad", "radian", "radians"}


def _words(text: str) -> str:
    return re.sub(r"[\s_.\-]+", " ", text.lower()).strip()


def _is_frequency_shift_name(name: str) -> bool:
    n = _words(name)
    return ("freq" in n and "shift" in n) or n.startswith("delta f") or n.split(" ")[0] in {"df", "δf"}


def unit_in_name(name: str) -> str:
    """The unit of a Nanonis-style channel name, 'OC M1 Freq. Shift (Hz)' → 'Hz' ('' when none)."""
    match = re.search(r"\(([^()]*)\)\s*$", name)
    return match.group(1).strip() if match else ""


def quantity_of(name: str, unit: str | None) -> str:
    """The quantity a channel holds, from its unit first and its title where the unit is not decisive.

    A length is split by title (amplitude and deflection are lengths too); a channel with
    neither a telling unit nor a telling title is :data:`UNKNOWN`.
    """
    u = (unit or "").strip()
    lowered = u.lower()
    title = _words(name)
    if lowered in {"hz", "khz", "mhz"}:
        return FREQUENCY_SHIFT
    if lowered in {"n", "nn", "pn"}:
        return FORCE
    if lowered in _ANGLE_UNITS:
        return PHASE
    if u in {"A", "nA", "pA"}:
        return CURRENT
    if u in {"V", "mV"}:
        return AMPLITUDE if "amp" in title else VOLTAGE
    if lowered in _LENGTH_UNITS or u in {"Å"}:
        if "amp" in title:
            return AMPLITUDE
        if "defl" in title:
            return DEFLECTION
        return TOPOGRAPHY
    # No unit (or one not listed): the title decides, and only when it says something clear.
    if _is_frequency_shift_name(name):
        return FREQUENCY_SHIFT
    if "force" in title:
        return FORCE
    if "phase" in title:
        return PHASE
    if "amp" in title:
        return AMPLITUDE
    if "defl" in title:
        return DEFLECTION
    if "current" in title:
        return CURRENT
    if any(w in title for w in ("height", "topo")) or title in {"z", "z fwd", "z bwd"}:
        return TOPOGRAPHY
    return UNKNOWN


@dataclass(frozen=True)
class Channel:
    """One channel as the file describes it: what the page lists next to a read or a refusal."""

    name: str
    unit: str  # as written in the file; "" when it gives none
    quantity: str  # :func:`quantity_of`
    rows: int
    columns: int
    minimum: float | None  # finite value range in ``unit``; None when no value is finite
    maximum: float | None
    scan_size: str = ""  # physical width × height where the file records it, e.g. "1 µm × 1 µm"

    def value_range(self) -> str:
        reference = max(abs(self.minimum), abs(self.maximum))
        low, high = (with_prefix(v, self.unit, reference) for v in (self.minimum, self.maximum))
        return f"{low} … {high}"

    def row(self) -> dict[str, object]:
        return {"channel": self.name, "unit": self.unit or "—", "quantity": self.quantity,
                "pixels": f"{self.rows}×{self.columns}",
                "value range": ("—" if self.minimum is None else self.value_range()),
                "scan size": self.scan_size or "—"}


def describe_channel(name: str, unit: str, values: np.ndarray, map_shape: tuple[int, int] | None = None,
                     scan_size: str = "") -> Channel:
    """A :class:`Channel` of a map or stack; ``map_shape`` (rows, columns) defaults to the last two axes."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
    rows, columns = map_shape or values.shape[-2:]
    return Channel(name, unit, quantity_of(name, unit), int(rows), int(columns), lo, hi, scan_size)


_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"),
             (1e-15, "f"))
_SI_BASE_UNITS = {"m", "Hz", "N", "A", "V", "s"}


def with_prefix(value: float, unit: str, reference: float | None = None) -> str:
    """'4.73 nm' for 4.73e-9 m: SI base units get the prefix that suits ``reference`` (default ``value``)."""
    if unit not in _SI_BASE_UNITS:
        return f"{value:.4g} {unit}".rstrip()
    size = abs(reference if reference is not None else value)
    scale, prefix = next(((s, p) for s, p in _PREFIXES if size >= s), _PREFIXES[-1]) if size else (1.0, "")
    return f"{value / scale:.4g} {prefix}{unit}"


def scan_size(width: float | None, height: float | None, unit: str) -> str:
    """'5 µm × 5 µm' from a scan's width and height in ``unit`` ('' when either is unknown)."""
    if width is None or height is None or not (np.isfinite(width) and np.isfinite(height)):
        return ""
    reference = max(abs(width), abs(height))
    return f"{with_prefix(width, unit, reference)} × {with_prefix(height, unit, reference)}"


class NotAForceMapStack(ValueError):
    """The upload holds channels that are not maps of one force quantity at several tip heights.

    A ``ValueError`` like every other refusal of an upload; ``channels`` lists what the file
    holds and ``kind`` says what it is instead ("a topography scan"), for the page to show.
    """

    def __init__(self, message: str, channels: Sequence[Channel], kind: str) -> None:
        super().__init__(message)
        self.channels = list(channels)
        self.kind = kind


def kind_of(channels: Sequence[Channel]) -> str:
    """What a file that is not a force-map stack is, in a few words."""
    quantities = list(dict.fromkeys(c.quantity for c in channels))
    if TOPOGRAPHY in quantities:
        return "a topography scan"
    shown = [q for q in quantities if q != UNKNOWN] or quantities
    return f"a scan of {' and '.join(shown)}"


def _listing(channels: Sequence[Channel]) -> str:
    return ", ".join(f"{c.name} [{c.unit}]" if c.unit else c.name for c in channels)


def check_force_map(label: str, channels: Sequence[Channel], *, chosen: str | None = None) -> None:
    """Refuse a read whose channels are a known quantity other than Δf or force.

    ``channels`` are the maps that would be stacked as heights; channels of unknown quantity
    pass (many files name nothing), a clear other quantity does not, even when chosen by name.
    """
    foreign = [c for c in channels if c.quantity not in FORCE_MAP_QUANTITIES and c.quantity != UNKNOWN]
    if not foreign:
        return
    quantities = list(dict.fromkeys(c.quantity for c in channels))
    kind = kind_of(channels)
    if chosen is not None:
        first = foreign[0]
        message = (f"{label}: channel '{chosen}' holds {first.quantity}"
                   f"{f' ({first.unit})' if first.unit else ''}, not frequency shift (Hz) or force (N); "
                   "the translator reads Δf or force maps at several tip heights, so it is not translated")
    elif len(quantities) > 1:
        message = (f"{label} is {kind}, not a constant-height force-map stack: its channels "
                   f"({_listing(channels)}) are different quantities ({', '.join(quantities)}) of one scan, "
                   "not frequency-shift (Hz) or force maps at several tip heights, so they are not translated")
    else:
        message = (f"{label} is {kind}, not a constant-height force-map stack: every channel "
                   f"({_listing(channels)}) holds {quantities[0]}, not frequency shift (Hz) or force, "
                   "so it is not translated")
    raise NotAForceMapStack(message, channels, kind)
