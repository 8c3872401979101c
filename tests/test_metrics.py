"""The quality protocol (docs/contracts.md §5) equals an independent numpy implementation on real X-rays.

The research code reported the PSNR of the mean MSE against the last image's maximum; here PSNR
and SSIM are computed per image on uint8 levels with a fixed peak of 255, then averaged.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from dist_train.degradation import bicubic_upsample, downsample
from dist_train.metrics import (MetricAccumulator, consistency_psnr, evaluate, high_frequency_energy_ratio,
                                psnr_per_image, ssim_per_image)


def numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def _valid_filter_matrix(n: int, kernel: np.ndarray) -> np.ndarray:
    """``(n - k + 1) x n`` matrix whose product with a signal is its 'valid' correlation with kernel."""
    k = len(kernel)
    matrix = np.zeros((n - k + 1, n))
    for row in range(n - k + 1):
        matrix[row, row:row + k] = kernel
    return matrix


def _gaussian_filter_valid(image: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    coords = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-coords ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    return _valid_filter_matrix(image.shape[0], kernel) @ image @ _valid_filter_matrix(image.shape[1], kernel).T


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 with an 11x11 Gaussian (sigma 1.5), over the valid region, L = 255."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _gaussian_filter_valid(a), _gaussian_filter_valid(b)
    var_a = _gaussian_filter_valid(a * a) - mu_a ** 2
    var_b = _gaussian_filter_valid(b * b) - mu_b ** 2
    cov = _gaussian_filter_valid(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def load_gray(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("L"))).float()[None, None] / 255.0


@pytest.fixture(scope="module")
def real_pairs(realxray_dir):
    """(hr, lr, bicubic) for the real NIH PNGs of ../shared/realxray, centre 512 px to stay quick."""
    pairs = []
    for path in sorted(realxray_dir.glob("*.png")):
        hr = load_gray(path)[..., 256:768, 256:768]
        lr = downsample(hr, 4)
        pairs.append((hr, lr, bicubic_upsample(lr, 4)))
    assert len(pairs) == 10
    return pairs


def test_psnr_and_ssim_equal_an_independent_numpy_implementation(real_pairs):
    for hr, _, bicubic in real_pairs:
        sr_u8 = np.round(np.clip(bicubic[0, 0].double().numpy(), 0, 1) * 255)[4:-4, 4:-4]
        hr_u8 = np.round(hr[0, 0].double().numpy() * 255)[4:-4, 4:-4]
        assert psnr_per_image(bicubic, hr, crop=4).item() == pytest.approx(numpy_psnr(sr_u8, hr_u8), abs=1e-5)  # float32 log10 inside torchmetrics
        assert ssim_per_image(bicubic, hr, crop=4).item() == pytest.approx(numpy_ssim(sr_u8, hr_u8), abs=1e-5)


def test_bicubic_scores_in_the_expected_band_on_whole_real_xrays(realxray_dir):
    """Whole 1024 px NIH images, 4x: bicubic lands between 35 and 41 dB on average."""
    scores = []
    for path in sorted(realxray_dir.glob("*.png")):
        hr = load_gray(path)
        lr = downsample(hr, 4)
        scores.append(psnr_per_image(bicubic_upsample(lr, 4), hr, crop=4).item())
    assert 35.0 < float(np.mean(scores)) < 41.0


def test_ssim_equals_torchmetrics_map_over_its_valid_region(real_pairs):
    """The separable filter gives torchmetrics' SSIM map (its 2-D Gaussian convolution) where the
    whole window lies inside the image, on an odd-sized real crop."""
    from torchmetrics.functional.image import structural_similarity_index_measure
    hr, _, bicubic = real_pairs[1]
    hr, bicubic = hr[..., :200, :150], bicubic[..., :200, :150]
    levels = [(image.double().clamp(0, 1) * 255).round()[..., 4:-4, 4:-4] for image in (bicubic, hr)]
    _, ssim_map = structural_similarity_index_measure(*levels, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                      data_range=255.0, reduction="none", return_full_image=True)
    expected = ssim_map[..., 5:-5, 5:-5].flatten(1).mean(dim=1)
    torch.testing.assert_close(ssim_per_image(bicubic, hr, crop=4), expected, rtol=0, atol=1e-10)


def test_psnr_is_averaged_per_image_not_over_pooled_mse():
    """One easy and one hard image: the per-image mean differs from the PSNR of the mean MSE."""
    hr = torch.full((2, 1, 16, 16), 100 / 255)
    sr = hr.clone()
    sr[0] += 1 / 255  # 1 level off everywhere: 48.13 dB
    sr[1] += 20 / 255  # 20 levels off: 22.11 dB
    per_image = psnr_per_image(sr, hr, crop=0)
    torch.testing.assert_close(per_image, torch.tensor([48.1308, 22.1102], dtype=torch.float64), atol=1e-3, rtol=0)
    accumulator = MetricAccumulator()
    accumulator.add(evaluate(sr, hr, downsample(hr, 4), 4))
    pooled_mse_psnr = 10 * np.log10(255 ** 2 / ((1 + 400) / 2))
    assert accumulator.means(accumulator.as_tensor())["psnr_db"] == pytest.approx(per_image.mean().item())
    assert abs(per_image.mean().item() - pooled_mse_psnr) > 5


def test_border_crop_removes_scale_pixels(real_pairs):
    """An error confined to the 4-pixel border does not count."""
    hr, _, _ = real_pairs[0]
    damaged = hr.clone()
    damaged[..., :4, :] = 1 - damaged[..., :4, :]
    assert torch.isinf(psnr_per_image(damaged, hr, crop=4)).all()
    assert psnr_per_image(damaged, hr, crop=3).item() < 40


def test_consistency_separates_faithful_from_unfaithful_sr(real_pairs):
    """Bicubic SR re-downsamples close to its LR; an SR with extra structure does not."""
    hr, lr, bicubic = real_pairs[0]
    faithful = consistency_psnr(bicubic, lr, 4).item()
    unfaithful = consistency_psnr(bicubic + 0.1 * torch.sin(torch.arange(bicubic.shape[-1]) / 8.0), lr, 4).item()
    assert faithful > 40 and unfaithful < faithful - 10


def test_high_frequency_energy_ratio_is_one_for_hr_and_far_below_for_bicubic(real_pairs):
    """The sharpness figure on real X-rays: HR against itself is exactly 1.0, bicubic (which
    restores nothing above the LR Nyquist frequency) well below, invented noise above."""
    for hr, _, bicubic in real_pairs:
        assert high_frequency_energy_ratio(hr, hr, 4, 4).item() == 1.0
        assert high_frequency_energy_ratio(bicubic, hr, 4, 4).item() < 0.5
        noisy = bicubic + torch.randn(bicubic.shape, generator=torch.Generator().manual_seed(0)) * 8 / 255
        assert high_frequency_energy_ratio(noisy, hr, 4, 4).item() > 1.0


def test_high_frequency_energy_ratio_ignores_image_edges_and_brightness():
    """A smooth ramp has no fine detail: its wrap-around edge (a jump for the FFT) and an offset in
    brightness must not count as detail, or bicubic of a smooth image would look sharp."""
    rows = torch.linspace(0.1, 0.9, 64, dtype=torch.float64)
    ramp = (rows[:, None] + rows[None, :]).div(2)[None, None]
    texture = ramp + 0.02 * torch.rand(ramp.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # what remains is the ramp's 8-bit staircase (0.3 levels rms against the texture's 1.5)
    assert high_frequency_energy_ratio(ramp, texture, 4, 0).item() < 0.1
    assert high_frequency_energy_ratio(texture + 0.05, texture, 4, 0).item() == pytest.approx(1.0, abs=0.05)
    assert "hf_energy_ratio" in evaluate(texture.float(), texture.float(), downsample(texture.float(), 4), 4)
