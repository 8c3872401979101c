"""The quality protocol of docs/contracts.md §5 (PSNR on torchmetrics).

SR and HR are compared as single-channel uint8 (SR clamped and rounded) with ``scale`` pixels
cropped at each border; PSNR (peak 255) and SSIM (Gaussian window 11, sigma 1.5, constants for
range 255) per image, then averaged over images. Bicubic and the consistency figure (PSNR between
the bicubic-downsampled SR and the LR input) are always computed beside the model.

Sharpness is the high-frequency energy ratio: SR's spectral energy above the LR Nyquist frequency
over HR's (1.0 = as much fine detail as the original; bicubic has far less, a model that invents
noise more). It needs no weights and tells a blurred model from a sharp one where PSNR cannot.
"""
from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from dist_train.degradation import bicubic_upsample, downsample

METRIC_NAMES = ("psnr_db", "ssim", "bicubic_psnr_db", "bicubic_ssim", "consistency_psnr_db", "hf_energy_ratio",
                "bicubic_hf_energy_ratio")
# depend on the data only, not on the model
BICUBIC_NAMES = ("bicubic_psnr_db", "bicubic_ssim", "bicubic_hf_energy_ratio")
MODEL_NAMES = tuple(name for name in METRIC_NAMES if name not in BICUBIC_NAMES)


def quantize(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 gray levels (clamped and rounded), kept as float64 for the arithmetic."""
    return (image.detach().double().clamp(0.0, 1.0) * 255.0).round()


def _crop(image: torch.Tensor, crop: int) -> torch.Tensor:
    return image[..., crop:image.shape[-2] - crop, crop:image.shape[-1] - crop] if crop > 0 else image


def psnr_per_image(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> torch.Tensor:
    """PSNR in dB of each image of an ``N x 1 x H x W`` pair, on uint8 levels, peak 255."""
    return peak_signal_noise_ratio(_crop(quantize(sr), crop), _crop(quantize(hr), crop), data_range=255.0,
                                   reduction="none", dim=(1, 2, 3))


SSIM_WINDOW_PX = 11
SSIM_SIGMA = 1.5


def _gaussian_taps() -> list[float]:
    coords = torch.arange(SSIM_WINDOW_PX, dtype=torch.float64) - (SSIM_WINDOW_PX - 1) / 2
    taps = torch.exp(-coords ** 2 / (2 * SSIM_SIGMA ** 2))
    return (taps / taps.sum()).tolist()


SSIM_TAPS = _gaussian_taps()  # the normalised 1-D Gaussian, made once


def _filter_rows_valid(images: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """'Valid' correlation along the second-last axis, accumulated in place from shifted views."""
    height = images.shape[-2] - len(taps) + 1
    out = images[..., :height, :] * taps[0]
    for shift, tap in enumerate(taps[1:], start=1):
        out.add_(images[..., shift:shift + height, :], alpha=tap)
    return out


def _gaussian_filter_valid(images: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """'Valid' correlation of the last two axes with the separable Gaussian (float64 throughout)."""
    rows = _filter_rows_valid(images, taps)
    return _filter_rows_valid(rows.transpose(-1, -2).contiguous(), taps).transpose(-1, -2)


def ssim_per_image(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> torch.Tensor:
    """SSIM of each image (Gaussian window 11, sigma 1.5, K1=0.01, K2=0.03, range 255).

    Averaged over the valid region only (where the whole window lies inside the image), as in
    Wang et al.'s reference code, scikit-image and BasicSR; torchmetrics 1.9 averages its SSIM map
    over reflect-padded borders, and its float64 2-D convolution unfolds every window (9 s and
    5 GB for a 1024 px image on a CPU), so the separable filter is applied here directly
    (tests/test_metrics.py checks it against torchmetrics' map and an independent numpy version).
    NaN for an image smaller than the window, which has no valid region.
    """
    sr_levels, hr_levels = _crop(quantize(sr), crop), _crop(quantize(hr), crop)
    if min(hr_levels.shape[-2:]) < SSIM_WINDOW_PX:  # no window fits: undefined
        return torch.full(hr_levels.shape[:1], float("nan"), dtype=torch.float64, device=hr_levels.device)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    stacked = torch.stack([sr_levels, hr_levels, sr_levels * sr_levels, hr_levels * hr_levels, sr_levels * hr_levels])
    mu_sr, mu_hr, sq_sr, sq_hr, prod = _gaussian_filter_valid(stacked, SSIM_TAPS)
    var_sr, var_hr, cov = sq_sr - mu_sr ** 2, sq_hr - mu_hr ** 2, prod - mu_sr * mu_hr
    ssim_map = ((2 * mu_sr * mu_hr + c1) * (2 * cov + c2)) / ((mu_sr ** 2 + mu_hr ** 2 + c1) * (var_sr + var_hr + c2))
    return ssim_map.flatten(1).mean(dim=1)


def high_frequency_energy_ratio(sr: torch.Tensor, hr: torch.Tensor, scale: int, crop: int) -> torch.Tensor:
    """SR's spectral energy above the LR Nyquist frequency over HR's, per image of an ``N x 1 x H x W`` pair.

    The band is what the LR grid cannot hold: spatial frequencies above ``1 / (2 * scale)`` cycles
    per pixel along either axis, so all of the energy there was restored, not passed through.
    Both images are quantized to uint8 levels like the other figures and cropped by ``crop``;
    each has its mean removed and a 2-D Hann window applied, so that the jump where the FFT wraps
    an image edge around adds no energy of its own. HR against itself is exactly 1.0.
    """
    sr_levels, hr_levels = _crop(quantize(sr), crop), _crop(quantize(hr), crop)
    height, width = hr_levels.shape[-2:]
    window = torch.outer(torch.hann_window(height, periodic=False, dtype=torch.float64),
                         torch.hann_window(width, periodic=False, dtype=torch.float64)).to(hr_levels.device)
    nyquist = 0.5 / scale
    above = ((torch.fft.fftfreq(height, dtype=torch.float64).abs() > nyquist)[:, None]
             | (torch.fft.fftfreq(width, dtype=torch.float64).abs() > nyquist)[None, :]).to(hr_levels.device)

    def band_energy(levels: torch.Tensor) -> torch.Tensor:
        centred = (levels - levels.mean(dim=(-2, -1), keepdim=True)) * window
        return (torch.fft.fft2(centred).abs().square() * above).flatten(1).sum(dim=1)

    return band_energy(sr_levels) / band_energy(hr_levels)


def consistency_psnr(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """PSNR in dB between the bicubic downsample of (quantized) SR and the LR input, per image."""
    sr_levels = quantize(sr) / 255.0
    return psnr_per_image(downsample(sr_levels, scale), lr, crop=0)


def evaluate(sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, scale: int,
             with_bicubic: bool = True) -> dict[str, torch.Tensor]:
    """Per-image figures of the protocol for the model and (unless told not to) for bicubic, as
    float64 tensors of length N."""
    figures = {
        "psnr_db": psnr_per_image(sr, hr, scale),
        "ssim": ssim_per_image(sr, hr, scale),
        "consistency_psnr_db": consistency_psnr(sr, lr, scale),
        "hf_energy_ratio": high_frequency_energy_ratio(sr, hr, scale, scale),
    }
    if with_bicubic:
        bicubic = bicubic_upsample(lr.float(), scale)
        figures |= {"bicubic_psnr_db": psnr_per_image(bicubic, hr, scale),
                    "bicubic_ssim": ssim_per_image(bicubic, hr, scale),
                    "bicubic_hf_energy_ratio": high_frequency_energy_ratio(bicubic, hr, scale, scale)}
    return figures


class MetricAccumulator:
    """Sums per-image figures so that ranks can all-reduce (sum, count) and average over images."""

    def __init__(self, names: tuple[str, ...] = METRIC_NAMES):
        self.names = names
        self.sums = torch.zeros(len(names), dtype=torch.float64)
        self.count = 0

    def add(self, per_image: dict[str, torch.Tensor]) -> None:
        for index, name in enumerate(self.names):
            self.sums[index] += per_image[name].double().cpu().sum()
        self.count += len(per_image["psnr_db"])

    def as_tensor(self) -> torch.Tensor:
        """``[sums..., count]`` for an all-reduce."""
        return torch.cat([self.sums, torch.tensor([float(self.count)], dtype=torch.float64)])

    def means(self, reduced: torch.Tensor) -> dict[str, float]:
        """Averages over images from an (all-reduced) ``as_tensor`` result."""
        count = max(reduced[-1].item(), 1.0)
        return {name: reduced[i].item() / count for i, name in enumerate(self.names)} | {"images": int(reduced[-1].item())}
