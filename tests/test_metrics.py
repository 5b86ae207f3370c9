"""PSNR/SSIM/Y/to_uint8 conventions against independent computations on Set5 pairs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.io import imread
from skimage.metrics import structural_similarity

from harness.data.bicubic import imresize, modcrop
from harness.measure.metrics import mean_psnr, psnr, rgb2y, ssim, to_uint8

NAMES = ["baby", "bird", "butterfly", "head", "woman"]


def _pair(set5, name, scale, upscaler):
    hr = modcrop(imread(set5 / "HR" / f"{name}.png"), scale)
    if upscaler == "matlab_lr":  # MATLAB's LR file, upscaled by our MATLAB-compatible bicubic
        lr = imread(set5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
        return imresize(lr, scale), hr
    return imresize(imresize(hr, 1 / scale), scale), hr  # round trip through our own resize


def _crop(img, c):
    return img[c:-c, c:-c] if c else img


def _psnr_reference(a, b):
    d = a.astype(np.float64) - b.astype(np.float64)
    return 10 * np.log10(255.0 ** 2 / np.mean(d ** 2))


def _ssim_reference(a, b, channel_axis):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=channel_axis)


CASES = [(s, c, u) for s, u in [(4, "matlab_lr"), (2, "matlab_lr"), (4, "roundtrip")] for c in (0, 4, s)]


@pytest.mark.parametrize("scale,crop,upscaler", CASES)
@pytest.mark.parametrize("name", NAMES)
def test_psnr_and_ssim_match_references(set5, name, scale, crop, upscaler):
    sr, hr = _pair(set5, name, scale, upscaler)
    a, b = _crop(sr, crop), _crop(hr, crop)
    ya, yb = rgb2y(a), rgb2y(b)
    assert psnr(sr, hr, crop_border=crop, channel="rgb") == pytest.approx(_psnr_reference(a, b), abs=1e-6)
    assert psnr(sr, hr, crop_border=crop, channel="y") == pytest.approx(_psnr_reference(ya, yb), abs=1e-6)
    assert ssim(sr, hr, crop_border=crop, channel="rgb") == pytest.approx(_ssim_reference(a, b, 2), abs=1e-6)
    assert ssim(sr, hr, crop_border=crop, channel="y") == pytest.approx(_ssim_reference(ya, yb, None), abs=1e-6)


def test_set5_x4_bicubic_published_averages(set5):
    """Issue 3: MATLAB bicubic x4 on Set5, border 4, averages over the five images."""
    values = {k: [] for k in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")}
    for name in NAMES:
        sr, hr = _pair(set5, name, 4, "matlab_lr")
        for key in values:
            metric, channel = key.split("_")
            fn = psnr if metric == "psnr" else ssim
            values[key].append(fn(sr, hr, crop_border=4, channel=channel))
    means = {k: round(float(np.mean(v)), 4) for k, v in values.items()}
    assert means == {"psnr_rgb": 26.6921, "ssim_rgb": 0.7731, "psnr_y": 28.4164, "ssim_y": 0.8101}


def test_rgb2y_known_colours():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]],
                   dtype=np.uint8)
    # 16 + 65.481 = 81.481, 16 + 128.553 = 144.553, 16 + 24.966 = 40.966, 16 + 219 * 128/255 = 125.93
    np.testing.assert_array_equal(rgb2y(img), [[16, 235, 81, 145, 41, 126]])
    assert rgb2y(img).dtype == np.uint8


def test_rgb2y_all_colours_against_exact_rational():
    v = np.arange(256, dtype=np.uint8)
    cube = np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1).reshape(4096, 4096, 3)
    s = cube.astype(np.int64) @ np.array([65481, 128553, 24966])  # 255000 * (Y - 16)
    exact = (s + 127_500) // 255_000 + 16  # half away from zero, exact
    ties = s % 255_000 == 127_500
    y = rgb2y(cube)
    assert ties.sum() == 194
    assert np.array_equal(y[~ties], exact[~ties])  # identical wherever the value is not a tie
    assert np.all((y[ties] == exact[ties]) | (y[ties] == exact[ties] - 1))
    # MATLAB's float64 evaluation rounds 149 of the 194 ties down (pins the arithmetic order)
    assert int(np.count_nonzero(y[ties] != exact[ties])) == 149


def test_to_uint8_conventions():
    t = torch.tensor([0.5, 1.5, 2.5, -3.0, 300.0, 127.5]).view(1, 3, 1, 2)
    # channels (0.5, 1.5), (2.5, -3), (300, 127.5): half to even, clipped
    expected = np.array([[[0, 2, 255], [2, 0, 128]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(t, 255.0), expected)
    np.testing.assert_array_equal(to_uint8(t[0], 255.0), expected)
    np.testing.assert_array_equal(to_uint8(t[0].permute(1, 2, 0).numpy(), 255.0), expected)
    unit = torch.tensor([0.5, 1.0, -0.1, 1.2, 0.0, 0.25]).view(1, 3, 1, 2)
    # 0.5 * 255 = 127.5 -> 128 (even); 0.25 * 255 = 63.75 -> 64
    np.testing.assert_array_equal(to_uint8(unit, 1.0), [[[128, 0, 0], [255, 255, 64]]])
    assert to_uint8(unit, 1.0).dtype == np.uint8
    with pytest.raises(ValueError, match="input_range"):
        to_uint8(unit, 2.0)
    with pytest.raises(ValueError, match="batch size 1"):
        to_uint8(torch.zeros(2, 3, 4, 4), 1.0)


def test_identical_images_and_mean_psnr():
    img = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert psnr(img, img, crop_border=0, channel="rgb") == math.inf
    assert psnr(img, img, crop_border=4, channel="y") == math.inf
    assert ssim(img, img, crop_border=0, channel="rgb") == pytest.approx(1.0, abs=1e-12)
    assert mean_psnr([30.0, 32.0]) == 31.0
    assert mean_psnr([30.0, math.inf]) == math.inf
    with pytest.raises(ValueError, match="no values"):
        mean_psnr([])


def test_psnr_known_value():
    a = np.zeros((10, 10, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255^2 / 300 -> PSNR = 10 log10(300)
    assert psnr(a, b, crop_border=0, channel="rgb") == pytest.approx(10 * math.log10(300), abs=1e-12)
    assert psnr(a, b, crop_border=1, channel="rgb") == math.inf  # the pixel is in the border


def test_errors_name_the_fix():
    a = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="to_uint8"):
        psnr(a.astype(np.float32), a, crop_border=0, channel="rgb")
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, a[:30], crop_border=0, channel="rgb")
    with pytest.raises(ValueError, match="channel must be one of"):
        psnr(a, a, crop_border=0, channel="Y")
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=-1, channel="rgb")
    with pytest.raises(ValueError, match="H x W x 3"):
        psnr(a[..., 0], a[..., 0], crop_border=0, channel="rgb")
    with pytest.raises(ValueError, match="SSIM needs at least 11x11"):
        ssim(a, a, crop_border=11, channel="rgb")
    with pytest.raises(TypeError):
        psnr(a, a)  # conventions are required keyword arguments
    with pytest.raises(TypeError):
        ssim(a, a, crop_border=4)
