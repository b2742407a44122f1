"""Bring a decoded stack to the fixed grid the translation network was trained on.

Conventions (the network was trained on them, so uploads are brought to them):

* **Height order**: index 0 along the last axis is the map **farthest from the sample**; the last
  index is the closest. Formats that record the tip height are ordered from that metadata
  (:attr:`Decoded.heights <battgen.afm.formats.common.Decoded.heights>`). Everything else is
  assumed to be farthest-first already; ``closest_first=True`` says index 0 of the upload is the
  closest map (an explicit flag always wins over metadata).
* **Heights are resampled to ``n_heights`` by linear interpolation** along the height axis. The
  heights are assumed evenly spaced from the first to the last map unless the file records
  uneven tip heights (``.sxm`` series, a Gwyddion volume's z calibration), in which case the
  interpolation is linear in Z.
* **Maps are resampled to ``target_shape`` by bilinear interpolation** with the corner pixels
  kept on the corners (``align_corners`` semantics): the first and last rows and columns of the
  upload land exactly on the first and last rows and columns of the output.
* **Normalisation**: per-stack min–max to [−1, 1], applied last, as in training. A constant stack
  carries no information and is refused.
* **In-plane orientation**: rows and columns are kept as the format decoder delivers them. Note
  that the simulated training stacks put row 0 at the lowest y and are shown with
  ``origin="lower"``; show an upload and its translation with the same origin.
"""

from __future__ import annotations

import numpy as np

from battgen.afm.formats import common


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


def to_network_grid(
    d: common.Decoded, target: tuple[int, int], n_heights: int, closest_first: bool | None, name: str
) -> common.ReadResult:
    source_shape = tuple(int(s) for s in d.array.shape)
    ops = list(d.notes)
    a = d.array
    common.check_values(a, name)

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
    stack = to_unit_range(out)
    ops.append(f"normalised to [−1, 1] by per-stack min–max (min {lo:.6g}, max {hi:.6g})")
    return common.ReadResult(
        stack=np.ascontiguousarray(stack),
        source_shape=source_shape,
        operations=ops,
        format=d.fmt,
        array_key=d.array_key,
        name=name,
        channels=list(d.channels),
    )


def to_unit_range(a: np.ndarray) -> np.ndarray:
    """Per-stack min–max to [−1, 1] as float32: the training data's normalisation, applied last.

    A constant array has no contrast to stretch and is refused.
    """
    out = np.asarray(a, dtype=np.float64)
    lo, hi = float(out.min()), float(out.max())
    if lo == hi:
        raise ValueError(f"the stack is constant (every value is {lo}); there is nothing to normalise")
    span = hi - lo
    if np.isfinite(span):
        unit = (out - lo) / span
    else:  # values near the float64 limits: halve before subtracting
        unit = (out / 2 - lo / 2) / (hi / 2 - lo / 2)
    return np.clip(unit * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def _uneven(heights: np.ndarray) -> bool:
    steps = np.diff(heights)
    return bool(np.ptp(steps) > 1e-3 * np.abs(steps).max())
