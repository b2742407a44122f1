"""AFM views on the device and their translator latents, shared by the translator and the atom regressor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from battgen.afm.loader import AFMDataset
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


def latents_arrays(mu: np.ndarray, data: AFMDataset, scaling_factor: float) -> dict[str, np.ndarray]:
    """The arrays of a translator's ``latents.npz``: every view's posterior mean with its labels."""
    if len(mu) != len(data):
        raise ValueError(f"{len(mu)} latents for {len(data)} views")
    return {
        "mu": mu.astype(np.float16),
        "material": data.material,
        "rotation": data.rotation,
        "split": data.split,
        "working_ion": data.working_ion,
        "scaling_factor": np.float32(scaling_factor),
        **({} if data.material_id is None else {"material_id": data.material_id}),
    }


def encode_dataset(translator_dir: str | Path, data_path: str | Path, *, device: torch.device | None = None,
                   progress: bool = False) -> tuple[dict[str, np.ndarray], AFMDataset]:
    """A trained translator's latents of every view of an AFM dataset, e.g. one grown since it was trained.

    The checkpoint's ``scaling_factor`` is kept, not refitted: the translator is unchanged, so the
    latent space the screening model learns is the one its metrics describe.
    """
    from battgen.afm.loader import load_afm_dataset

    dev = device or torch.device("cpu")
    model = AFMTranslator.from_pretrained(str(translator_dir)).to(dev)
    data = load_afm_dataset(data_path, dtype=np.float16)
    stacks = torch.from_numpy(data.stacks)
    idx = np.arange(len(data))
    chunks = range(0, len(idx), EVAL_BATCH * 8)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="encoding views", unit="chunk")
    mu = np.concatenate([encode_means(model, stacks, idx[s:s + EVAL_BATCH * 8], dev) for s in chunks])
    return latents_arrays(mu, data, float(model.config.scaling_factor)), data
