"""Composition read the same whichever way a scan is turned: the mean over the stack's eight orientations.

The campaign images every cluster in one in-plane frame (:mod:`battgen.afm.rotations` fixes the
azimuth), so the translator and the atom regressor only ever saw stacks in that frame, and they
learnt it: on the 1,812 held-out test views, session 14's pair read composition R² 0.573 from the
stacks as simulated and 0.42–0.50 from the same stacks turned by a quarter, a half or three
quarters or mirrored. (The shipped regressor also trained on turned views: 0.591 read once,
0.596 as the mean of the eight; README, "Orientation".) A microscope has no such frame: a scan of a real sample is turned any way.
Turning or mirroring a stack is the stack of the same cluster turned or mirrored (the probe is
isotropic in the plane and the grid square), which has the same composition; so the page reads
the composition of all eight (the dihedral group of the square) and reports their mean, which is
then exactly the same for every turn and mirror of an upload, and their spread, which says how
much the reading depends on the orientation. The descriptors are still decoded from the stack as
given (they turn with the sample, the composition does not).
"""

from __future__ import annotations

import numpy as np

# (quarter turns counter-clockwise, mirrored left-right after turning); the first is the stack as given.
ORIENTATIONS: tuple[tuple[int, bool], ...] = tuple((turns, mirrored) for mirrored in (False, True)
                                                   for turns in range(4))


def turn(maps: np.ndarray, quarter_turns: int, mirrored: bool = False) -> np.ndarray:
    """(H, W, C) or (N, H, W, C) maps turned by ``quarter_turns`` × 90° in the image plane, then
    mirrored left-right; square maps keep their shape."""
    maps = np.asarray(maps)
    if maps.ndim not in (3, 4):
        raise ValueError(f"expected (H, W, C) or (N, H, W, C) maps, got shape {maps.shape}")
    rows, cols = (0, 1) if maps.ndim == 3 else (1, 2)
    out = np.rot90(maps, quarter_turns, axes=(rows, cols))
    return np.flip(out, axis=cols) if mirrored else out


def readings_over_orientations(translator, regressor, stacks: np.ndarray, mu: np.ndarray | None = None,
                               batch_size: int = 64) -> np.ndarray:
    """The regressor's atom counts for each of :data:`ORIENTATIONS` of each stack: (8, N, n_outputs),
    the stacks as given first.

    ``stacks`` (N, H, W, 10) as the translator takes them; ``mu`` the posterior means of the stacks
    as given, when the caller already has them (saves one of the eight encodings).
    """
    import torch

    stacks = np.asarray(stacks, np.float32)
    if stacks.ndim != 4 or stacks.shape[1] != stacks.shape[2]:
        raise ValueError(f"expected square (N, H, W, C) stacks, got shape {stacks.shape}")
    readings = []
    for turns, mirrored in ORIENTATIONS:
        if mu is not None and (turns, mirrored) == (0, False):
            latents = np.asarray(mu, np.float32)
        else:
            latents = translator.latent_means(np.ascontiguousarray(turn(stacks, turns, mirrored)), batch_size)
        with torch.no_grad():
            counts = regressor.predict_from_mu(torch.as_tensor(latents, device=regressor.device))
        readings.append(counts.float().cpu().numpy())
    return np.stack(readings)


def composition_over_orientations(translator, regressor, stacks: np.ndarray, mu: np.ndarray | None = None,
                                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(mean, spread) of the regressor's atom counts over :data:`ORIENTATIONS` of each stack: two
    (N, n_outputs) arrays, the mean count and the standard deviation over the eight readings."""
    readings = readings_over_orientations(translator, regressor, stacks, mu, batch_size)
    return readings.mean(0), readings.std(0)
