"""The quality protocol of docs/contracts.md §5, on torchmetrics.

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
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

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
SSIM_TILE_PX = 256  # memory bound: torchmetrics' float64 convolution costs ~4.8 kB per pixel


def _ssim_valid_mean(sr_levels: torch.Tensor, hr_levels: torch.Tensor) -> torch.Tensor:
    """Per-image mean of the SSIM map over its valid region (windows wholly inside the image)."""
    _, ssim_map = structural_similarity_index_measure(
        sr_levels, hr_levels, gaussian_kernel=True, sigma=1.5, kernel_size=SSIM_WINDOW_PX,
        data_range=255.0, k1=0.01, k2=0.03, reduction="none", return_full_image=True)
    half = SSIM_WINDOW_PX // 2
    return ssim_map[..., half:-half, half:-half].flatten(1).mean(dim=1)


def ssim_per_image(sr: torch.Tensor, hr: torch.Tensor, crop: int, tile_px: int = SSIM_TILE_PX) -> torch.Tensor:
    """SSIM of each image (Gaussian window 11, sigma 1.5, K1=0.01, K2=0.03, range 255).

    Averaged over the valid region only (where the whole window lies inside the image), as in
    Wang et al.'s reference code, scikit-image and BasicSR; torchmetrics 1.9 averages its SSIM map
    over reflect-padded borders too, so its full map is taken and the half window cropped here.
    Computed in tiles of ``tile_px`` that overlap by one window less a pixel: their valid regions
    partition the image's, so the area-weighted mean is exactly the whole-image figure, in
    bounded memory (whole, a 1024 px image would need 5 GB).
    """
    sr_levels, hr_levels = _crop(quantize(sr), crop), _crop(quantize(hr), crop)
    height, width = hr_levels.shape[-2:]
    margin = SSIM_WINDOW_PX - 1
    total = torch.zeros(hr_levels.shape[0], dtype=torch.float64, device=hr_levels.device)
    area = 0
    for top in range(0, max(height - margin, 1), tile_px):
        for left in range(0, max(width - margin, 1), tile_px):
            window = (..., slice(top, top + tile_px + margin), slice(left, left + tile_px + margin))
            tile_h, tile_w = hr_levels[window].shape[-2:]
            valid = (tile_h - margin) * (tile_w - margin)
            total += _ssim_valid_mean(sr_levels[window], hr_levels[window]) * valid
            area += valid
    return total / area


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
