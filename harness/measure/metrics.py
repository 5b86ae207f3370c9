"""Quality metrics with every convention explicit: ``to_uint8``, ``rgb2y``, ``psnr``, ``ssim``.

Conventions (see "Quality conventions" in README.md):

- Inputs of ``psnr``/``ssim`` are uint8 ``H x W x 3`` RGB images of equal shape; a float
  SR output is first turned into uint8 by ``to_uint8`` (clip, round half to even), as the
  challenges' ``tensor2uint``/``quantize`` do.
- ``crop_border`` (pixels, removed from every side) and ``channel`` (``'rgb'`` or ``'y'``)
  are required keyword arguments: the call site says what it measures.
- Y is MATLAB's BT.601 ``rgb2ycbcr`` luma in the 16-235 range, returned as uint8 (MATLAB
  returns uint8 for uint8 input), so Y is rounded before PSNR and SSIM.
- PSNR: MAX = 255, one MSE over all cropped pixels (and all three channels for RGB);
  identical images give ``math.inf``; ``mean_psnr`` is ``inf`` when any value is.
- SSIM: MATLAB reference ``ssim_index`` (Wang et al. 2004): 11 x 11 Gaussian window,
  sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering, mean of the SSIM map;
  RGB is the mean of the three per-channel SSIMs. Equal to scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.ndimage import correlate1d

CHANNELS = ("rgb", "y")
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0

# BT.601 luma of MATLAB's rgb2ycbcr for uint8 input: T = (1/255) * [65.481 128.553 24.966].
_Y_COEFFS = tuple((1 / 255) * c for c in (65.481, 128.553, 24.966))


def to_uint8(x, input_range: float) -> np.ndarray:
    """Float image -> uint8 ``H x W x 3`` RGB: ``clip(x / input_range * 255, 0, 255)``, round half to even.

    x: torch tensor ``1 x 3 x H x W`` or ``3 x H x W``, or numpy float ``H x W x 3``.
    input_range: 1.0 or 255.0, the range of ``x``. The arithmetic stays in the input's
    float precision (float32 for model outputs), like the challenges' ``tensor2uint``;
    the factor ``255 / input_range`` is exactly 255 or 1.
    """
    if input_range not in (1.0, 255.0):
        raise ValueError(f"to_uint8: input_range must be 1.0 or 255.0, got {input_range!r}")
    if hasattr(x, "detach"):  # torch tensor, CHW order
        t = x.detach()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"to_uint8: expected batch size 1, got tensor shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"to_uint8: expected a 1x3xHxW or 3xHxW tensor, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"to_uint8: expected a float tensor, got {t.dtype}")
        if str(t.dtype) not in ("torch.float32", "torch.float64"):
            t = t.float()  # half/bfloat16 outputs: numpy has no bfloat16
        arr = t.cpu().numpy().transpose(1, 2, 0)
    else:
        arr = np.asarray(x)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"to_uint8: expected an H x W x 3 array, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"to_uint8: expected a float array, got {arr.dtype}")
    factor = arr.dtype.type(255.0 / input_range)
    return np.round(np.clip(arr * factor, 0, 255)).astype(np.uint8)


def rgb2y(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of a uint8 RGB image, as uint8 ``H x W`` (16-235 range).

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, evaluated in float64 the way MATLAB
    does for uint8 input (coefficients ``(1/255) * 65.481`` etc., ``imlincomb`` order
    ``K1 R + K2 G + K3 B + 16``) and rounded half away from zero like MATLAB's uint8 output.
    194 of the 2^24 colours are exact ties (.5) in rational arithmetic; the float evaluation
    decides them, as in MATLAB (see "Quality conventions" in README.md).
    """
    img = _check_uint8_rgb(img, "rgb2y")
    x = img.astype(np.float64)
    y = _Y_COEFFS[0] * x[..., 0]
    y += _Y_COEFFS[1] * x[..., 1]
    y += _Y_COEFFS[2] * x[..., 2]
    y += 16.0
    return _round_half_away(y).astype(np.uint8)  # 16..235, no saturation needed


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (MATLAB), exact for every double (no ``floor(x + 0.5)`` slip)."""
    t = np.trunc(x)
    return t + np.sign(x) * (np.abs(x - t) >= 0.5)


def psnr(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, channel: str) -> float:
    """PSNR in dB with MAX = 255 between two uint8 ``H x W x 3`` RGB images.

    crop_border: pixels removed from every side before measuring.
    channel: ``'rgb'`` (one MSE over the three channels) or ``'y'`` (MATLAB Y, uint8).
    Identical images give ``math.inf``. The squared error is summed exactly in integers.
    """
    a, b = _prepare(sr, hr, crop_border, channel, "psnr")
    diff = (a.astype(np.int64) - b.astype(np.int64)).ravel()
    sse = int(np.dot(diff, diff))
    if sse == 0:
        return math.inf
    mse = sse / diff.size
    return 10.0 * math.log10(DATA_RANGE ** 2 / mse)


def ssim(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, channel: str) -> float:
    """SSIM (MATLAB reference definition) between two uint8 ``H x W x 3`` RGB images.

    crop_border: pixels removed from every side before measuring.
    channel: ``'rgb'`` (mean of the three per-channel SSIMs) or ``'y'`` (MATLAB Y, uint8).
    Window 11 x 11 Gaussian (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering,
    mean of the SSIM map. Filtering is separable, in float64.
    """
    a, b = _prepare(sr, hr, crop_border, channel, "ssim")
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim: image is {a.shape[0]}x{a.shape[1]} after cropping {crop_border} px; "
                         f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW}")
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def mean_psnr(values: Sequence[float]) -> float:
    """Arithmetic mean of per-image PSNRs; ``inf`` if any image is identical to its reference.

    An infinite PSNR is kept as infinity rather than dropped or capped, so an average is never
    silently made from a subset of the images.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_psnr: no values")
    if any(math.isinf(v) for v in values):
        return math.inf
    return math.fsum(values) / len(values)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(r * r) / (2 * sigma * sigma))
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation keeping only the 'valid' part."""
    pad = (len(w) - 1) // 2
    out = correlate1d(x, w, axis=0, mode="constant")[pad:-pad]
    return correlate1d(out, w, axis=1, mode="constant")[:, pad:-pad]


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    w = gaussian_window_1d()
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    mu_x = _filter_valid(x, w)
    mu_y = _filter_valid(y, w)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = _filter_valid(x * x, w) - mu_xx
    var_y = _filter_valid(y * y, w) - mu_yy
    cov = _filter_valid(x * y, w) - mu_xy
    num = (2 * mu_xy + c1) * (2 * cov + c2)
    den = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
    return float(np.mean(num / den))


def _check_uint8_rgb(img, who: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            raise ValueError(f"{who}: got a {img.dtype} image; convert float outputs with "
                             "harness.measure.metrics.to_uint8(x, input_range) first")
        raise ValueError(f"{who}: expected a uint8 image, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{who}: expected an H x W x 3 RGB image, got shape {img.shape}")
    return img


def _prepare(sr, hr, crop_border, channel, who: str) -> tuple[np.ndarray, np.ndarray]:
    sr = _check_uint8_rgb(sr, f"{who} (sr)")
    hr = _check_uint8_rgb(hr, f"{who} (hr)")
    if sr.shape != hr.shape:
        raise ValueError(f"{who}: shapes differ, sr {sr.shape} vs hr {hr.shape}; "
                         "modcrop the HR to the scale and check the model's output size")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"{who}: crop_border must be a non-negative int (pixels), got {crop_border!r}")
    if channel not in CHANNELS:
        raise ValueError(f"{who}: channel must be one of {CHANNELS}, got {channel!r}")
    h, w = sr.shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"{who}: crop_border={crop_border} leaves nothing of a {h}x{w} image")
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    if channel == "y":
        return rgb2y(sr), rgb2y(hr)
    return sr, hr
