"""AFM views on the device and their translator latents, shared by the translator and the atom regressor."""

from __future__ import annotations

import numpy as np
import torch

from battgen.models.translator import AFMTranslator

EVAL_BATCH = 64


def view_batch(arr: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of a channels-last host tensor as float32 channels-first on ``device``."""
    return arr[idx.cpu()].to(device, non_blocking=True).permute(0, 3, 1, 2).float().contiguous()


@torch.no_grad()
def encode_means(model: AFMTranslator, stacks: torch.Tensor, idx: np.ndarray,
                 device: torch.device, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Posterior means (len(idx), 4, h, w) float32 of rows ``idx`` of channels-last ``stacks``."""
    model.eval()
    out = []
    for start in range(0, len(idx), batch_size):
        b = torch.as_tensor(idx[start:start + batch_size])
        out.append(model.encode(view_batch(stacks, b, device)).mode().float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, *model.latent_shape(*stacks.shape[1:3])), np.float32)
