"""Viewing directions for the AFM campaign, and which of them are worth simulating.

The ASD-AFM recipe images every cluster from many quasi-random directions and keeps only
the views that show most structure. Directions come from a Fibonacci (golden-angle) spiral
on the unit sphere: N points spread almost uniformly with no randomness, so a campaign is
reproducible and adding candidates never moves the old ones far.

A rotation ``R`` is a 3×3 orthonormal matrix with det +1 whose last row is the viewing
direction ``d``: ``R @ d = +z`` and rotated coordinates are ``xyz @ R.T``, so after rotation
the tip looks down −z onto the face of the cluster that pointed along ``d``. The in-plane
angle is fixed by making the first row the azimuthal unit vector ``ẑ × d / |ẑ × d|``
(ppafm's ``sphereTangentSpace`` uses the same frame), so it is deterministic and smooth
over the sphere.

Which views are informative: the tip only feels the top few Å of the cluster. A view in which
those top atoms sit at several distinct depths gives a stack whose contrast changes from
height to height (3-D information); a view whose top is one flat plane, or a single atom,
gives the same picture at every height. The score is therefore the Shannon entropy of the
histogram of atom depths below the topmost atom, within the depth the tip can sense.
"""

from __future__ import annotations

import numpy as np

# The CO tip at the closest heights senses atoms ~3–4 Å below the topmost one; deeper atoms
# only add a smooth attractive background, so they must not make a view look "rich".
DEFAULT_DEPTH_WINDOW_A = 4.0
# Roughly the height difference the stack (10 heights 0.1 Å apart, 1 Å amplitude) resolves.
DEFAULT_BIN_WIDTH_A = 0.5


def fibonacci_directions(n: int) -> np.ndarray:
    """(n, 3) unit vectors on a golden-angle spiral, from near +z to near −z.

    The polar coordinate uses the half-offset ``z = 1 − (2i + 1)/n``, so no point sits exactly
    on a pole (where the in-plane frame would be undefined) and the points have equal areas.
    """
    if n < 1:
        raise ValueError(f"need at least one direction, got n={n}")
    i = np.arange(n)
    golden_angle = np.pi * (3.0 - np.sqrt(5.0))
    z = 1.0 - (2.0 * i + 1.0) / n
    r = np.sqrt(1.0 - z * z)
    phi = golden_angle * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def rotation_to_z(direction: np.ndarray) -> np.ndarray:
    """Proper rotation whose last row is ``direction`` (so it maps ``direction`` to +z)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    a = np.cross([0.0, 0.0, 1.0], d)
    if np.linalg.norm(a) < 1e-12:  # looking straight along ±z: any in-plane axis will do
        a = np.array([1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(d, a)  # (a, b, d) is right-handed, so det = +1
    return np.stack([a, b, d])


def fibonacci_rotations(n: int) -> np.ndarray:
    """(n, 3, 3) rotations taking the ``n`` Fibonacci directions to +z."""
    return np.stack([rotation_to_z(d) for d in fibonacci_directions(n)])


def depth_entropy(
    xyz: np.ndarray,
    rotation: np.ndarray | None = None,
    *,
    depth_window: float | None = DEFAULT_DEPTH_WINDOW_A,
    bin_width: float = DEFAULT_BIN_WIDTH_A,
) -> float:
    """Shannon entropy (nats) of the depths of the atoms below the topmost one, seen along +z.

    Depths are binned from the top atom down in ``bin_width`` steps; only atoms within
    ``depth_window`` Å of the top count (``None``: all atoms). 0 means all counted atoms lie
    in one layer; the maximum, ``log(window / bin_width)``, means they fill every depth bin equally.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if bin_width <= 0:
        raise ValueError("bin_width must be positive")
    if len(xyz) == 0:
        return 0.0
    z = xyz @ np.asarray(rotation)[2] if rotation is not None else xyz[:, 2]
    depth = z.max() - z
    if depth_window is not None:
        depth = depth[depth <= depth_window]
    counts = np.bincount(np.floor(depth / bin_width).astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def rank_rotations(
    xyz: np.ndarray,
    rotations: np.ndarray,
    *,
    depth_window: float | None = DEFAULT_DEPTH_WINDOW_A,
    bin_width: float = DEFAULT_BIN_WIDTH_A,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``rotations`` from the most to the least informative view, and every view's entropy.

    Ties (common: entropies are discrete) go to the view that shows more atoms within the
    depth window, then to the lower candidate index, so the ranking is reproducible.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
        raise ValueError(f"rotations must have shape (n, 3, 3), got {rotations.shape}")
    entropy = np.array([depth_entropy(xyz, r, depth_window=depth_window, bin_width=bin_width)
                        for r in rotations])
    z = xyz @ rotations[:, 2].T  # (atoms, views): height of each atom in each view
    window = np.inf if depth_window is None else depth_window
    visible = ((z.max(axis=0) - z) <= window).sum(axis=0)
    # Entropies equal up to float noise must tie, so round before comparing.
    order = np.lexsort((np.arange(len(rotations)), -visible, -np.round(entropy, 9)))
    return order, entropy


def select_rotations(
    xyz: np.ndarray,
    n_candidates: int,
    keep: int,
    *,
    depth_window: float | None = DEFAULT_DEPTH_WINDOW_A,
    bin_width: float = DEFAULT_BIN_WIDTH_A,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``keep`` most informative of ``n_candidates`` Fibonacci views of the atoms ``xyz``.

    Returns (rotations (keep, 3, 3), their candidate indices, their entropies), best first.
    """
    if not 1 <= keep <= n_candidates:
        raise ValueError(f"keep must be between 1 and the number of candidates ({n_candidates}), got {keep}")
    candidates = fibonacci_rotations(n_candidates)
    order, entropy = rank_rotations(xyz, candidates, depth_window=depth_window, bin_width=bin_width)
    chosen = order[:keep]
    return candidates[chosen], chosen, entropy[chosen]
