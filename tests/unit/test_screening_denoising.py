"""The screening U-Net's clean-latent error by noise level: the arithmetic of the clean estimate,
and the report's own / shuffled / constant comparison on a denoiser that knows each target."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from battgen.eval.screening_denoising import denoising_by_noise_level
from battgen.models.screening import build_screening_unet, make_training_scheduler, predicted_clean_latent

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_the_exact_training_target_implies_the_clean_latent(kind):
    scheduler = make_training_scheduler(prediction_type=kind)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn((3, 4, 8, 8), generator=g), torch.randn((3, 4, 8, 8), generator=g)
    for t in (10, 500, 990):
        timesteps = torch.full((3,), t)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        target = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, timesteps), "sample": x0}[kind]
        estimate = predicted_clean_latent(target, noisy, scheduler.alphas_cumprod[t], kind)
        torch.testing.assert_close(estimate, x0, atol=2e-3, rtol=1e-3)


class KnowsEachTarget(torch.nn.Module):
    """A v-prediction denoiser that returns the exact velocity of the target its condition names
    (the condition's first entry indexes ``targets``): what a U-Net that memorised the training
    set would do; conditions that name no target get the targets' mean."""

    def __init__(self, targets: torch.Tensor, scheduler):
        super().__init__()
        self.targets, self.scheduler = targets, scheduler
        self.config = SimpleNamespace(class_embed_type="projection")

    def forward(self, noisy, timesteps, encoder_hidden_states=None, class_labels=None):
        index = class_labels[:, 0].round().long()
        known = (index >= 0) & (index < len(self.targets)) & (class_labels[:, -1] == 1)
        x0 = torch.where(known[:, None, None, None], self.targets[index.clamp(0, len(self.targets) - 1)],
                         self.targets.mean(0, keepdim=True))
        a = self.scheduler.alphas_cumprod[timesteps].to(noisy)[:, None, None, None]
        noise = (noisy - a.sqrt() * x0) / (1 - a).clamp_min(1e-12).sqrt()
        return SimpleNamespace(sample=a.sqrt() * noise - (1 - a).sqrt() * x0)


def test_a_denoiser_that_uses_its_condition_beats_the_constant_and_the_shuffled_condition():
    scheduler = make_training_scheduler(prediction_type="v_prediction", zero_terminal_snr=True)
    targets = torch.randn((6, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    conditions = np.zeros((6, 17), np.float32)
    conditions[:, 0], conditions[:, -1] = np.arange(6), 1
    report = denoising_by_noise_level(KnowsEachTarget(targets, scheduler), scheduler, targets.numpy(), conditions,
                                      timesteps=(999, 500, 50))
    assert report["materials"] == 6 and [r["timestep"] for r in report["rows"]] == [999, 500, 50]
    constant = float(((targets - targets.mean(0)) ** 2).mean())
    for row in report["rows"]:
        assert row["constant_mse"] == pytest.approx(constant, rel=1e-5)
        assert row["own_mse"] < 1e-6 and row["condition_gain"] > 0.99
        assert row["shuffled_mse"] > constant  # another material's target is further than the mean
    high = report["rows"][0]
    assert high["snr"] == 0 and high["null_mse"] == pytest.approx(constant, rel=1e-4)


def test_an_untrained_unet_is_reported_as_no_better_than_the_constant_at_high_noise():
    torch.manual_seed(0)
    unet = build_screening_unet(sample_size=8, block_out_channels=(16, 32), attention_levels=(False, True),
                                attention_head_dim=8, norm_num_groups=8)
    scheduler = make_training_scheduler(prediction_type="v_prediction", zero_terminal_snr=True)
    targets = np.random.default_rng(0).normal(size=(5, 4, 8, 8)).astype(np.float32)
    conditions = np.zeros((5, 17), np.float32)
    conditions[:, -1] = 1
    row = denoising_by_noise_level(unet, scheduler, targets, conditions, timesteps=(999,))["rows"][0]
    assert np.isfinite([row["own_mse"], row["shuffled_mse"], row["null_mse"]]).all()
    assert row["own_vs_constant"] > 1
    with pytest.raises(ValueError, match="N >= 2"):
        denoising_by_noise_level(unet, scheduler, targets[:1], conditions[:1])
