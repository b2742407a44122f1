"""Augmenting translator latents as the microscope would move the stack they came from.

The translator is convolutional with an overall stride of 4: a stack offset by 4k pixels
encodes to its latent rolled by k (measured on the 648 held-out views, 160 checked: roll by one
latent pixel leaves an RMS difference of 0.12 of the latent RMS away from the two-pixel border,
0.31 with it, against 1.06 between the unshifted pair). Rolling the latent map is therefore a
faithful, free stand-in for a lateral offset. Quarter turns and mirror images are only half
faithful (0.43-0.64 against 0.96-1.10): the translator has learned oriented filters, so those
are offered as a separate, weaker option.
"""

from __future__ import annotations

import torch

from battgen.models.atom_regressor_options import AUGMENTATIONS

# Largest roll in latent pixels: 12 stack pixels, the largest lateral offset of the robustness table.
MAX_SHIFT = 3


def roll_each(latents: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Sample i of (B, C, h, w) rolled by (dy[i], dx[i]) as ``torch.roll`` would, in one gather."""
    b, _, h, w = latents.shape
    rows = (torch.arange(h, device=latents.device)[None, :] - dy[:, None]) % h
    cols = (torch.arange(w, device=latents.device)[None, :] - dx[:, None]) % w
    batch = torch.arange(b, device=latents.device)[:, None, None]
    return latents[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def dihedral_each(latents: torch.Tensor, k: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Sample i turned by k[i] quarter turns, mirrored left-right first where flip[i]."""
    out = torch.where(flip[:, None, None, None], latents.flip(-1), latents)
    turned = [torch.rot90(out, q, dims=(2, 3)) for q in range(4)]
    return torch.stack(turned)[k, torch.arange(len(k), device=latents.device)]


def augment_latents(latents: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """A random augmentation of every sample of a (B, C, h, w) batch; ``mode`` in AUGMENTATIONS."""
    if mode not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {mode!r}")
    if mode == "none":
        return latents
    b, _, h, w = latents.shape
    if mode == "shift-dihedral":
        if h != w:
            raise ValueError(f"quarter turns need a square latent map, got {h}x{w}")
        k = torch.randint(0, 4, (b,), generator=generator).to(latents.device)
        flip = torch.randint(0, 2, (b,), generator=generator).bool().to(latents.device)
        latents = dihedral_each(latents, k, flip)
    dy, dx = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (2, b), generator=generator).to(latents.device)
    return roll_each(latents, dy, dx)


def add_latent_noise(latents: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``latents`` plus Gaussian noise of standard deviation ``sigma`` (in the scaled latents' units).

    Why: a robust encoder reads a distorted stack close to, not onto, its clean latent (held-out
    RMS error about 0.15 against a latent spread of about 0.7), and a head fitted to clean latents
    only can be steep in exactly those directions. Noise of that size teaches it to be flat there.
    """
    if sigma < 0:
        raise ValueError(f"latent noise must be >= 0, got {sigma}")
    if sigma == 0:
        return latents
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device, latents.dtype)
    return latents + sigma * noise
