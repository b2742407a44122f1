"""A tiny, complete screening artifact root for page, CLI and evaluation tests.

The real table (copied from ``assets/electrodes``), the real model classes at toy size and
untrained: latents are random, so tests check plumbing and behaviour, never model quality.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent  # tests/ -> repo
LATENT = 4  # latent side; descriptors are 4x larger
TINY_UNET = dict(block_out_channels=(16, 32), attention_levels=(False, True), attention_head_dim=8,
                 norm_num_groups=8)


def build_screening_root(root: Path, *, with_screening: bool = True) -> Path:
    from battgen.data.table import load_scaler, load_table
    from battgen.models.atom_regressor import AtomRegressor
    from battgen.models.screening import BattGenScreeningPipeline, build_screening_unet, make_training_scheduler
    from battgen.models.translator import AFMTranslator

    shutil.copytree(REPO / "assets" / "electrodes", root / "assets" / "electrodes")
    table = load_table(root / "assets" / "electrodes")
    scaler = load_scaler(root / "assets" / "electrodes")
    torch.manual_seed(0)
    translator = AFMTranslator(block_out_channels=(8, 16, 32), norm_num_groups=8, sample_size=4 * LATENT,
                               scaling_factor=0.7)
    regressor = AtomRegressor(latent_size=LATENT, conv_channels=(8, 16), hidden_units=16, latent_scaling_factor=0.7)
    translator.save_pretrained(root / "checkpoints" / "translator")
    regressor.save_pretrained(root / "checkpoints" / "atom_regressor")
    n = len(table)
    np.savez_compressed(root / "checkpoints" / "translator" / "latents.npz",
                        mu=np.random.default_rng(0).normal(size=(n, 4, LATENT, LATENT)).astype(np.float16),
                        material=np.arange(n), rotation=np.zeros(n, int), split=table["split"].to_numpy(str),
                        working_ion=table["working_ion"].to_numpy(str), material_id=table["id"].to_numpy(str),
                        scaling_factor=np.float32(0.7))
    if with_screening:
        pipe = BattGenScreeningPipeline(
            unet=build_screening_unet(sample_size=LATENT, **TINY_UNET), scheduler=make_training_scheduler(),
            translator=translator, atom_regressor=regressor,
            property_low=list(scaler.low), property_high=list(scaler.high))
        pipe.save_pretrained(root / "checkpoints" / "screening")
    return root
