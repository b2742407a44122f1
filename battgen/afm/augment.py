"""Training-time microscope distortions: a random one of :mod:`battgen.afm.distortions` per view.

The robustness table scores fixed strengths; training draws the kind and the strength afresh for
every view, across the range a measurement spans (SNR 2-30, up to 8 px of drift, 12 px of offset,
20°, ±0.3 Å of tip height), so the translator sees more than the table's twelve points. Each range
reaches past the table's harshest point of its kind (SNR 3, 6 px of drift, ±0.2 Å): a point at the
very edge of the training range is drawn too rarely to be learned (session 10's encoder, trained to
SNR 3, 6 px and ±0.2 Å, missed the bar on exactly those three rows). Geometric
distortions move the target descriptors with the sample (``Distortion.apply_with_truth``): the
model should follow the sample, not learn to undo the shift.

:func:`distorted_pairs` gives the robust-encoder fine-tune (:mod:`battgen.train.robust_encoder`)
each distorted stack beside the clean stack a perfect microscope would have recorded of the
sample where the distortion left it: what the encoder should read the distorted one as.
"""

from __future__ import annotations

import numpy as np

from battgen.afm.distortions import Distortion
from battgen.afm.formats.grid import to_unit_range

# kind: (low, high, unit) of the strength drawn uniformly (SNR on a log scale)
TRAINING_RANGES: dict[str, tuple[float, float, str]] = {
    "gaussian": (2.0, 30.0, "SNR"),
    "pink": (2.0, 30.0, "SNR"),
    "drift": (0.5, 8.0, "px"),
    "offset": (1.0, 12.0, "px"),
    "rotation": (1.0, 20.0, "deg"),
    "tip_height": (-3.0, 3.0, "steps of 0.1 Å"),
}


def kind_probabilities(pink_weight: float = 1.0) -> np.ndarray:
    """Probability of each kind of :data:`TRAINING_RANGES`, in its order: equal, except that 1/f noise
    is drawn ``pink_weight`` times as often as each other kind.

    Why a weight for 1/f noise alone: its low-frequency wander looks like the sample itself, so it
    is the kind the encoder learns slowest (held-out latent error about twice that of white noise).
    """
    if not pink_weight >= 0:
        raise ValueError(f"the 1/f noise weight must be >= 0, got {pink_weight}")
    weights = np.array([pink_weight if kind == "pink" else 1.0 for kind in TRAINING_RANGES])
    return weights / weights.sum()


def random_distortion(rng: np.random.Generator, pink_weight: float = 1.0) -> Distortion:
    """One distortion of a random kind (:func:`kind_probabilities`) at a random strength within
    :data:`TRAINING_RANGES`."""
    if pink_weight == 1.0:
        # the unweighted draw, kept as it was so that seeded runs repeat exactly
        kind = list(TRAINING_RANGES)[int(rng.integers(len(TRAINING_RANGES)))]
    else:
        kind = list(TRAINING_RANGES)[int(rng.choice(len(TRAINING_RANGES), p=kind_probabilities(pink_weight)))]
    low, high, unit = TRAINING_RANGES[kind]
    if unit == "SNR":
        value = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    else:
        value = float(rng.uniform(low, high))
    return Distortion(f"{kind} {value:.3g} {unit}", kind, value, unit)


def augment_views(stacks: np.ndarray, descriptors: np.ndarray, probability: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Copies of (B, H, W, heights) stacks and (B, H, W, 6) descriptors in which each view is, with
    ``probability``, replaced by a randomly distorted one (its descriptors moved with the sample)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"the augmentation probability must be in [0, 1], got {probability}")
    stacks = np.array(stacks, np.float32)
    descriptors = np.array(descriptors, np.float32)
    for i in np.flatnonzero(rng.random(len(stacks)) < probability):
        distorted, truth = random_distortion(rng).apply_with_truth(stacks[i], descriptors[i], rng)
        stacks[i] = distorted
        descriptors[i] = truth
    return stacks, descriptors


def distorted_pairs(stacks: np.ndarray, rng: np.random.Generator, pink_weight: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(distorted, reference, kinds) for (B, H, W, heights) stacks: every view distorted at random
    (:func:`random_distortion` with ``pink_weight``), and its reference, the clean stack moved with the sample (offset,
    rotation, half the drift; unmoved for noise and tip height) and min–max normalised as an
    upload is. The encoder that reads each distorted stack as its reference is robust to them."""
    stacks = np.asarray(stacks, np.float32)
    distorted, reference, kinds = np.empty_like(stacks), np.empty_like(stacks), []
    for i, stack in enumerate(stacks):
        distortion = random_distortion(rng, pink_weight)
        distorted[i], moved = distortion.apply_with_truth(stack, stack, rng)
        reference[i] = to_unit_range(moved)
        kinds.append(distortion.kind)
    return distorted, reference, kinds
