"""Test-split metrics of the AFM translator and the atom regressor, as JSON-ready dicts.

Translator (descriptor maps in [−1, 1], dataset layout (N, H, W, C) or (H, W, C)):

* per descriptor channel: SSIM (Gaussian window, Wang et al. 2004), PSNR and MAE;
* type map: each pixel is classified as background / working ion / gas-phase / other by
  thresholding the R, G, B channels (:func:`type_map_classes`); per-class pixel accuracy
  (recall over the pixels whose *true* class it is) and mean IoU, because most pixels are
  background and overall accuracy alone rewards painting nothing;
* a Fréchet distance between feature statistics of real and generated maps, computed with a
  fixed, seeded, randomly initialised conv net (:func:`frechet_distance_random_conv`).
  Inception weights cannot be downloaded here, so this is **not** the FID of the paper
  (2.301 grey / 26.845 type map) and must not be compared with it; it only ranks our own
  models against each other on the same features.

Atom regressor (112-long atom-count vectors): MAE, MSE and R² per working ion and overall,
each computed over all entries of the (samples x 112) matrix of that ion's test views —
R² is sklearn's ``r2_score`` on the flattened counts, as in the published table — so a model
is judged on the zeros of absent elements too, as the paper's numbers were.

Functions accept numpy arrays or torch tensors; SSIM and the feature net run in torch.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from battgen.afm.loader import GREY_CHANNELS, TYPE_MAP_CHANNELS
from battgen.eval.sei_metrics import r2_score

# Maps live in [−1, 1]: the data range used by SSIM and PSNR.
DATA_RANGE = 2.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_SSIM_CHUNK = 64

# Type-map classes (index = code); the channel that marks each (R = 0, G = 1, B = 2).
TYPE_CLASSES: tuple[str, ...] = ("background", "working_ion", "gas_phase", "other")
_CLASS_OF_CHANNEL = {2: 1, 1: 2, 0: 3}
# A type-map channel is "on" above this value. −1 is "no sphere"; a sphere's value falls towards
# −1 at its rim (it encodes depth below the top surface), so the threshold sits just above the
# background rather than at 0, leaving 5 % of the range for a decoder's tanh never reaching −1.
TYPE_MAP_THRESHOLD = -0.9

FEATURE_NET_SEED = 0
FEATURE_NET_CHANNELS = (16, 32, 64)

ATOM_METRIC_DEFINITION = ("per ion: MAE, MSE and R² over all entries of the (test views x 112) atom-count "
                          "matrix of that ion; R² = sklearn r2_score on the flattened counts")


# --------------------------------------------------------------------------- layout helpers


def _to_nchw(maps, name: str) -> torch.Tensor:
    """(H, W, C) / (N, H, W, C) array or tensor -> float32 (N, C, H, W) CPU tensor.

    float32 (not 64) because a whole 128 x 128 test split is already ~0.6 GB in it; the SSIM
    filter, where cancellation matters, works on float64 chunks.
    """
    t = maps.detach().cpu() if isinstance(maps, torch.Tensor) else torch.as_tensor(np.asarray(maps))
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"{name} must be (H, W, C) or (N, H, W, C), got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).to(torch.float32)


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _to_nchw(x, "x"), _to_nchw(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)} (as N, C, H, W)")
    return a, b


# --------------------------------------------------------------------------- image quality


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x, y, data_range: float = DATA_RANGE, window_size: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Structural similarity of each image and channel: (N, C) array (dataset layout in).

    Wang et al. (2004): local means, variances and covariance under an ``window_size`` Gaussian
    window (sigma 1.5), C1 = (0.01 L)², C2 = (0.03 L)², averaged over the 'valid' positions
    (no padding, as in the reference implementation). A map smaller than the window uses the
    largest odd window that fits. SSIM(x, x) = 1.
    """
    a, b = _pair(x, y)
    n, c, h, w = a.shape
    size = min(window_size, h if h % 2 else h - 1, w if w % 2 else w - 1)
    if size < 1:
        raise ValueError(f"maps of {h} x {w} pixels are too small for SSIM")
    g = _gaussian_window(size, sigma)
    # Separable filter: rows then columns, one group per channel.
    kr = g.view(1, 1, 1, size).repeat(c, 1, 1, 1)
    kc = g.view(1, 1, size, 1).repeat(c, 1, 1, 1)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kr, groups=c), kc, groups=c)

    out = []
    # In chunks: five float64 blurred copies of a whole test split would need gigabytes.
    for start in range(0, n, _SSIM_CHUNK):
        xa, xb = a[start:start + _SSIM_CHUNK].double(), b[start:start + _SSIM_CHUNK].double()
        mu_a, mu_b = blur(xa), blur(xb)
        var_a = blur(xa * xa) - mu_a**2
        var_b = blur(xb * xb) - mu_b**2
        cov = blur(xa * xb) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        out.append(s.mean(dim=(2, 3)))
    return torch.cat(out).numpy()


def psnr(x, y, data_range: float = DATA_RANGE) -> np.ndarray:
    """Peak signal-to-noise ratio 10 log10(L² / MSE) in dB per image and channel: (N, C).

    Identical maps give +inf (stored as null in metrics.json).
    """
    a, b = _pair(x, y)
    mse = ((a - b).double() ** 2).mean(dim=(2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse.numpy())


def mae(x, y) -> np.ndarray:
    """Mean absolute error per image and channel: (N, C)."""
    a, b = _pair(x, y)
    return (a - b).abs().double().mean(dim=(2, 3)).numpy()


# --------------------------------------------------------------------------- type map


def type_map_classes(rgb, threshold: float = TYPE_MAP_THRESHOLD) -> np.ndarray:
    """RGB type map(s) (…, H, W, 3) in [−1, 1] -> int class codes (…, H, W) of :data:`TYPE_CLASSES`.

    A pixel is background when no channel exceeds ``threshold``; otherwise it takes the class
    of its brightest channel (overlapping spheres, anti-aliased rims).
    """
    rgb = np.asarray(rgb.detach().cpu() if isinstance(rgb, torch.Tensor) else rgb, dtype=np.float32)
    if rgb.ndim < 3 or rgb.shape[-1] != 3:
        raise ValueError(f"a type map is (..., H, W, 3), got shape {rgb.shape}")
    brightest = rgb.argmax(axis=-1)
    lookup = np.array([_CLASS_OF_CHANNEL[ch] for ch in range(3)], np.int64)
    return np.where(rgb.max(axis=-1) > threshold, lookup[brightest], 0)


def type_map_class_tensor(descriptors: torch.Tensor, threshold: float = TYPE_MAP_THRESHOLD) -> torch.Tensor:
    """(B, 6, H, W) channels-first descriptors -> (B, H, W) class codes, decoded exactly as
    :func:`type_map_classes` decodes them (for losses computed on the device)."""
    rgb = descriptors[:, TYPE_MAP_CHANNELS]
    lookup = torch.tensor([_CLASS_OF_CHANNEL[ch] for ch in range(3)], device=descriptors.device)
    return torch.where(rgb.amax(1) > threshold, lookup[rgb.argmax(1)], 0)


def type_map_metrics(true_rgb, pred_rgb, threshold: float = TYPE_MAP_THRESHOLD) -> dict:
    """Per-class accuracy (recall), IoU, their means, overall pixel accuracy and class fractions.

    Classes absent from the truth get no accuracy (undefined); IoU is reported for classes
    present in the truth or the prediction, and ``mean_iou`` averages those.
    """
    t = type_map_classes(true_rgb, threshold).ravel()
    p = type_map_classes(pred_rgb, threshold).ravel()
    if t.shape != p.shape:
        raise ValueError(f"type maps disagree in shape: {np.shape(true_rgb)} vs {np.shape(pred_rgb)}")
    k = len(TYPE_CLASSES)
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    support, predicted, hits = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    per_class_accuracy = {TYPE_CLASSES[c]: float(hits[c] / support[c]) for c in range(k) if support[c]}
    union = support + predicted - hits
    iou = {TYPE_CLASSES[c]: float(hits[c] / union[c]) for c in range(k) if union[c]}
    return {
        "per_class_accuracy": per_class_accuracy,
        "mean_class_accuracy": float(np.mean(list(per_class_accuracy.values()))),
        "iou": iou,
        "mean_iou": float(np.mean(list(iou.values()))),
        "pixel_accuracy": float(hits.sum() / max(1, confusion.sum())),
        "class_fraction": {TYPE_CLASSES[c]: float(support[c] / max(1, support.sum())) for c in range(k)},
        "threshold": threshold,
    }


# --------------------------------------------------------------------------- Fréchet distance


class RandomConvFeatures(torch.nn.Module):
    """Fixed random conv net: (N, 3, H, W) -> (N, 64) globally pooled features.

    Weights come from a private RNG seeded with ``seed``, so the features (and every distance
    computed with them) are identical across runs, machines and the caller's global seed.
    Random conv features are known to separate image distributions usefully, but their scale
    is arbitrary: see the module docstring.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = FEATURE_NET_CHANNELS,
                 seed: int = FEATURE_NET_SEED):
        super().__init__()
        layers: list[torch.nn.Module] = []
        c = in_channels
        for c_out in channels:
            layers += [torch.nn.Conv2d(c, c_out, 3, stride=2, padding=1), torch.nn.ReLU()]
            c = c_out
        self.net = torch.nn.Sequential(*layers)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, torch.nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                    m.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


def _features(maps: torch.Tensor, net: RandomConvFeatures, batch_size: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([net(maps[i:i + batch_size].float()).double().numpy()
                               for i in range(0, len(maps), batch_size)])


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """||mu_a − mu_b||² + Tr(S_a + S_b − 2 (S_a S_b)^½) between two feature sets (N, D)."""
    feat_a, feat_b = np.asarray(feat_a, np.float64), np.asarray(feat_b, np.float64)
    if feat_a.ndim != 2 or feat_b.ndim != 2 or feat_a.shape[1] != feat_b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with equal D, got {feat_a.shape} and {feat_b.shape}")
    if min(len(feat_a), len(feat_b)) < 2:
        raise ValueError("a Fréchet distance needs at least 2 samples per set")
    mu_a, mu_b = feat_a.mean(0), feat_b.mean(0)
    cov_a, cov_b = np.cov(feat_a, rowvar=False), np.cov(feat_b, rowvar=False)
    # Tr((S_a S_b)^½) = Σ sqrt(eig(S_a^½ S_b S_a^½)): a symmetric PSD eigenproblem, stable where
    # sqrtm of the non-symmetric product goes complex or fails (few samples, singular covariances).
    w, v = linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_covmean = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_covmean)
    return max(value, 0.0)  # rounding can leave a tiny negative for identical sets


def frechet_distance_random_conv(true_maps, pred_maps, seed: int = FEATURE_NET_SEED) -> dict[str, float]:
    """Fréchet distance on :class:`RandomConvFeatures` of the grey descriptors and of the type map.

    Inputs: descriptors in dataset layout (N, H, W, 6). NOT comparable to the published FID
    (Inception features); comparable only between models scored with the same ``seed``.
    """
    a, b = _pair(true_maps, pred_maps)
    if a.shape[1] != 6:
        raise ValueError(f"expected 6 descriptor channels, got {a.shape[1]}")
    net = RandomConvFeatures(seed=seed)
    return {
        "grey": frechet_distance(_features(a[:, GREY_CHANNELS], net), _features(b[:, GREY_CHANNELS], net)),
        "type_map": frechet_distance(_features(a[:, TYPE_MAP_CHANNELS], net),
                                     _features(b[:, TYPE_MAP_CHANNELS], net)),
    }


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def translator_metrics(true_desc, pred_desc, descriptor_names: Sequence[str],
                       ions: Sequence[str] | None = None) -> dict:
    """Everything the translator is scored on, for (N, H, W, 6) true and predicted descriptors.

    ``per_descriptor``: mean SSIM, PSNR (dB, over images whose PSNR is finite) and MAE per
    channel; ``type_map``: :func:`type_map_metrics`; ``frechet_distance_random_conv``: see
    :func:`frechet_distance_random_conv` (omitted with fewer than 2 views); ``per_ion``
    (with ``ions``): views, mean SSIM over channels and MAE, to show which ions the model
    serves worst.
    """
    s, p, m = ssim(true_desc, pred_desc), psnr(true_desc, pred_desc), mae(true_desc, pred_desc)
    if s.shape[1] != len(descriptor_names):
        raise ValueError(f"{s.shape[1]} channels but {len(descriptor_names)} descriptor names")
    true_np = np.asarray(true_desc.detach().cpu() if isinstance(true_desc, torch.Tensor) else true_desc)
    pred_np = np.asarray(pred_desc.detach().cpu() if isinstance(pred_desc, torch.Tensor) else pred_desc)
    out: dict = {
        "n_views": int(s.shape[0]),
        "per_descriptor": {
            str(name): {"ssim": float(s[:, j].mean()), "psnr": _finite_mean(p[:, j]), "mae": float(m[:, j].mean())}
            for j, name in enumerate(descriptor_names)
        },
        "ssim_mean": float(s.mean()),
        "mae_mean": float(m.mean()),
        "type_map": type_map_metrics(true_np[..., TYPE_MAP_CHANNELS], pred_np[..., TYPE_MAP_CHANNELS]),
    }
    if s.shape[0] >= 2:
        out["frechet_distance_random_conv"] = frechet_distance_random_conv(true_desc, pred_desc)
        out["frechet_distance_note"] = ("random-init conv features (seed "
                                        f"{FEATURE_NET_SEED}); not comparable to the published Inception FID")
    if ions is not None:
        ions = np.asarray(ions).astype(str)
        if ions.shape != (s.shape[0],):
            raise ValueError(f"need one ion per view ({s.shape[0]}), got {ions.shape}")
        out["per_ion"] = {str(ion): {"n_views": int((ions == ion).sum()),
                                     "ssim_mean": float(s[ions == ion].mean()),
                                     "mae_mean": float(m[ions == ion].mean())}
                          for ion in sorted(set(ions))}
    return out


# --------------------------------------------------------------------------- atom regressor


def _count_metrics(true: np.ndarray, pred: np.ndarray) -> dict:
    err = pred - true
    return {"n_views": int(true.shape[0]), "mae": float(np.abs(err).mean()), "mse": float((err**2).mean()),
            "r2": r2_score(true.ravel(), pred.ravel())}


def atom_regressor_metrics(true_counts, pred_counts, ions: Sequence[str]) -> dict:
    """Per working ion and overall MAE / MSE / R² of (N, 112) atom-count vectors.

    Layout of the published table: ``{"per_ion": {ion: {"mae", "mse", "r2", "n_views"}},
    "overall": {...}, "definition": ...}``. R² is None where the ion's true counts are constant.
    """
    true = np.asarray(true_counts, np.float64)
    pred = np.asarray(pred_counts, np.float64)
    ions = np.asarray(ions).astype(str)
    if true.shape != pred.shape or true.ndim != 2:
        raise ValueError(f"true and predicted counts must be equal (N, 112) arrays, got {true.shape} and {pred.shape}")
    if ions.shape != (true.shape[0],):
        raise ValueError(f"need one ion per row ({true.shape[0]}), got {ions.shape}")
    if true.shape[0] == 0:
        raise ValueError("no rows to score")
    return {
        "per_ion": {str(ion): _count_metrics(true[ions == ion], pred[ions == ion]) for ion in sorted(set(ions))},
        "overall": _count_metrics(true, pred),
        "definition": ATOM_METRIC_DEFINITION,
    }
