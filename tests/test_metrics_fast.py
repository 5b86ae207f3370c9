"""The fast quality paths (OpenCV on the host, torch on a device) against scikit-image and exact integers.

Real images from ``skimage.data``; SR made by a bicubic x4 round trip (and noise), so every
figure is far from trivial. The torch path runs on the CPU device here; the CUDA comparison
lives in bench/gpu_check.sh.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity

from harness.data.bicubic import imresize, modcrop
from harness.measure import metrics, metrics_torch
from harness.measure.metrics import prepare_reference, psnr, quality, rgb2y, sse_uint8, ssim

IMAGES = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee}


@pytest.fixture(params=["numba", "opencv"])
def ssim_kernel(request, monkeypatch):
    """Run a test with each SSIM implementation: the Numba kernel (on every plane size) and OpenCV's filters."""
    if request.param == "numba":
        if metrics.ssim_kernel_name() != "numba":
            pytest.skip("numba is not installed (or ESR_SSIM_KERNEL=opencv): the OpenCV path is tested alone")
        monkeypatch.setattr(metrics, "_KERNEL_MIN_PIXELS", 0)
    else:
        monkeypatch.setattr(metrics, "_KERNEL", False)
    return request.param


def _pair(name, noise=0):
    hr = modcrop(IMAGES[name](), 4)
    sr = imresize(imresize(hr, 0.25), 4)
    if noise:
        rng = np.random.default_rng(len(name))
        sr = np.clip(sr.astype(np.int16) + rng.integers(-noise, noise + 1, sr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def _exact_psnr(a, b):
    d = a.astype(np.int64) - b.astype(np.int64)
    sse = int((d * d).sum())
    return math.inf if sse == 0 else 10 * math.log10(255.0 ** 2 * d.size / sse)


def _sk_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=2 if a.ndim == 3 else None)


def _references(sr, hr, crop):
    a, b = (sr[crop:-crop, crop:-crop], hr[crop:-crop, crop:-crop]) if crop else (sr, hr)
    ya, yb = rgb2y(a), rgb2y(b)
    return {"psnr_rgb": _exact_psnr(a, b), "psnr_y": _exact_psnr(ya, yb),
            "ssim_rgb": _sk_ssim(a, b), "ssim_y": _sk_ssim(ya, yb)}


@pytest.mark.parametrize("name,crop,noise", [("astronaut", 4, 0), ("chelsea", 0, 6), ("coffee", 7, 3)])
@pytest.mark.usefixtures("ssim_kernel")
def test_quality_matches_skimage_and_exact_psnr(name, crop, noise):
    sr, hr = _pair(name, noise)
    want = _references(sr, hr, crop)
    got = quality(sr, hr, crop_border=crop)
    ref = prepare_reference(hr, crop_border=crop)
    assert quality(sr, ref, crop_border=crop) == got  # the prepared HR changes nothing
    for key in ("psnr_rgb", "psnr_y"):
        assert got[key] == pytest.approx(want[key], abs=1e-9)
    for key in ("ssim_rgb", "ssim_y"):
        assert got[key] == pytest.approx(want[key], abs=1e-6)
        assert 0.5 < got[key] < 0.999
    # the single-figure functions agree with quality()
    for key, value in got.items():
        fn = psnr if key.startswith("psnr") else ssim
        assert fn(sr, hr, crop_border=crop, channel=key.split("_")[1]) == pytest.approx(value, abs=1e-12)


def test_ssim_strips_do_not_change_the_value(monkeypatch):
    monkeypatch.setattr(metrics, "_KERNEL", False)  # the strips are the OpenCV path's
    sr, hr = _pair("astronaut", 5)
    whole = _sk_ssim(sr[..., 1], hr[..., 1])
    for rows in (1, 7, 96, 10_000):  # one row per strip, a ragged last strip, one strip
        monkeypatch.setattr(metrics, "_STRIP_ROWS", rows)
        assert ssim(sr, hr, crop_border=0, channel="rgb") == pytest.approx(_sk_ssim(sr, hr), abs=1e-6)
        assert metrics._ssim_plane(np.ascontiguousarray(sr[..., 1]), np.ascontiguousarray(hr[..., 1])) == \
            pytest.approx(whole, abs=1e-6)


@pytest.mark.usefixtures("ssim_kernel")
def test_ssim_flat_regions_stay_exact():
    """Flat bright, mid and dark regions with +-1 noise: the variances are tiny beside E[x^2] there, so a
    filter in float32 would be off by ~1e-5; the float64 filters and differences keep within 1e-9."""
    rng = np.random.default_rng(1)
    hr = np.full((300, 420, 3), 255, np.int16)
    hr[:, :140], hr[:, 140:280] = 0, 128
    hr = np.clip(hr + rng.integers(-1, 2, hr.shape), 0, 255).astype(np.uint8)
    sr = np.clip(hr.astype(np.int16) + rng.integers(-1, 2, hr.shape), 0, 255).astype(np.uint8)
    for a, b in ((sr, hr), (255 - sr, 255 - hr)):
        assert ssim(a, b, crop_border=0, channel="rgb") == pytest.approx(_sk_ssim(a, b), abs=1e-9)
        ya, yb = rgb2y(a), rgb2y(b)
        assert quality(a, b, crop_border=0)["ssim_y"] == pytest.approx(_sk_ssim(ya, yb), abs=1e-9)


@pytest.mark.usefixtures("ssim_kernel")
def test_ssim_bands_on_several_cores_equal_one_pass(monkeypatch):
    sr, hr = _pair("astronaut", 5)
    planes = [np.ascontiguousarray(p) for p in (sr[..., 0], sr[..., 1])], \
        [np.ascontiguousarray(p) for p in (hr[..., 0], hr[..., 1])]
    serial = [metrics._ssim_plane(x, y) for x, y in zip(*planes)]
    monkeypatch.setattr(metrics, "_PARALLEL_MIN_PIXELS", 0)
    for cores in (2, 3, 7):  # bands of unequal height, a ragged last band
        monkeypatch.setattr(metrics.os, "cpu_count", lambda: cores)
        monkeypatch.setattr(metrics, "_POOL", None)
        banded = metrics._ssim_planes(*planes)
        assert banded == pytest.approx(serial, abs=1e-12)
        assert banded[1] == pytest.approx(_sk_ssim(sr[..., 1], hr[..., 1]), abs=1e-6)


def test_sse_is_exact_across_histogram_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (301, 203, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (301, 203, 3), dtype=np.uint8)
    exact = int(((a.astype(np.int64) - b.astype(np.int64)) ** 2).sum())
    assert sse_uint8(a, b) == exact
    monkeypatch.setattr(metrics, "_HIST_EXACT", 1000)  # many chunks, ragged last one
    assert sse_uint8(a, b) == exact
    assert sse_uint8(a[5:-5, 7:-7], b[5:-5, 7:-7]) == int(((a[5:-5, 7:-7].astype(np.int64)
                                                             - b[5:-5, 7:-7]) ** 2).sum())


def test_y_table_equals_rgb2y_on_every_colour():
    v = np.arange(256, dtype=np.uint8)
    cube = np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1).reshape(4096, 4096, 3)
    assert np.array_equal(metrics.rgb2y_table(cube), rgb2y(cube))  # large: builds and uses the table
    assert metrics._Y_TABLE is not None
    img = IMAGES["coffee"]()[3:-2, 1:-4]  # a non-contiguous view, small: uses the table now it exists
    assert np.array_equal(metrics.rgb2y_table(img), rgb2y(img))


def test_reference_and_quality_errors():
    sr, hr = _pair("chelsea")
    ref = prepare_reference(hr, crop_border=4)
    with pytest.raises(ValueError, match="prepared with crop_border=4"):
        quality(sr, ref, crop_border=2)
    with pytest.raises(ValueError, match="shapes differ"):
        quality(sr[:-4], ref, crop_border=4)
    with pytest.raises(ValueError, match="to_uint8"):
        quality(sr.astype(np.float32), hr, crop_border=4)
    with pytest.raises(ValueError, match="SSIM needs at least 11x11"):
        prepare_reference(hr[:20, :20], crop_border=5)
    assert quality(hr, hr, crop_border=4)["psnr_rgb"] == math.inf


# ------------------------------------------------------------------ torch path (CPU device)

@pytest.mark.parametrize("name,crop,noise", [("astronaut", 4, 2), ("chelsea", 3, 0)])
@pytest.mark.usefixtures("ssim_kernel")
def test_torch_quality_equals_host_quality(name, crop, noise):
    sr, hr = _pair(name, noise)
    host = quality(sr, hr, crop_border=crop)
    ref = metrics_torch.prepare_reference(hr, crop_border=crop, device="cpu")
    got = metrics_torch.quality(torch.from_numpy(sr).permute(2, 0, 1), ref, crop_border=crop)
    assert got["psnr_rgb"] == host["psnr_rgb"] and got["psnr_y"] == host["psnr_y"]
    assert got["ssim_rgb"] == pytest.approx(host["ssim_rgb"], abs=1e-6)
    assert got["ssim_y"] == pytest.approx(host["ssim_y"], abs=1e-6)
    want = _references(sr, hr, crop)
    assert got["ssim_rgb"] == pytest.approx(want["ssim_rgb"], abs=1e-6)
    assert got["ssim_y"] == pytest.approx(want["ssim_y"], abs=1e-6)


def test_torch_to_uint8_and_float_output_path():
    sr, hr = _pair("chelsea", 4)
    rng = np.random.default_rng(0)
    out = torch.from_numpy(sr.astype(np.float32) / 255 + rng.normal(0, 0.01, sr.shape).astype(np.float32))
    out = out.permute(2, 0, 1).unsqueeze(0)
    out[0, 0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, -0.2, 1.3])  # ties and clipping
    host_u8 = metrics.to_uint8(out, 1.0)
    dev_u8 = metrics_torch.to_uint8(out, 1.0)
    assert np.array_equal(dev_u8.permute(1, 2, 0).numpy(), host_u8)
    ref = metrics_torch.prepare_reference(hr, crop_border=4, device="cpu")
    got = metrics_torch.quality(out, ref, crop_border=4, input_range=1.0)
    host = quality(host_u8, hr, crop_border=4)
    assert got["psnr_rgb"] == host["psnr_rgb"]
    assert got["ssim_y"] == pytest.approx(host["ssim_y"], abs=1e-6)
    y = metrics_torch.rgb2y(torch.from_numpy(hr).permute(2, 0, 1))
    assert np.array_equal(y.numpy(), rgb2y(hr))
    with pytest.raises(ValueError, match="pass input_range"):
        metrics_torch.quality(out, ref, crop_border=4)


def test_kernel_and_opencv_agree_and_large_planes_use_the_kernel(monkeypatch):
    if metrics.ssim_kernel_name() != "numba":
        pytest.skip("numba is not installed (or ESR_SSIM_KERNEL=opencv)")
    hr = imresize(modcrop(data.astronaut(), 4), 2.0)  # 1024 x 1024: at the kernel's threshold
    rng = np.random.default_rng(9)
    sr = np.clip(hr.astype(np.int16) + rng.integers(-4, 5, hr.shape), 0, 255).astype(np.uint8)
    assert metrics._sum_function(hr.shape[0] * hr.shape[1]) is metrics._ssim_sum_kernel
    x, y = np.ascontiguousarray(sr[..., 2]), np.ascontiguousarray(hr[..., 2])
    assert metrics._ssim_sum_kernel(x, y) == pytest.approx(metrics._ssim_sum_opencv(x, y), rel=1e-13)
    kernel = quality(sr, hr, crop_border=4)
    monkeypatch.setattr(metrics, "_KERNEL", False)
    opencv = quality(sr, hr, crop_border=4)
    assert kernel["psnr_rgb"] == opencv["psnr_rgb"] and kernel["psnr_y"] == opencv["psnr_y"]
    assert kernel["ssim_rgb"] == pytest.approx(opencv["ssim_rgb"], abs=1e-12)
    assert kernel["ssim_y"] == pytest.approx(opencv["ssim_y"], abs=1e-12)
    assert kernel["ssim_y"] == pytest.approx(_references(sr, hr, 4)["ssim_y"], abs=1e-6)


def test_esr_ssim_kernel_opencv_turns_the_kernel_off(monkeypatch):
    monkeypatch.setattr(metrics, "_KERNEL", None)
    monkeypatch.setenv("ESR_SSIM_KERNEL", "opencv")
    assert metrics.ssim_kernel_name() == "opencv"
    assert metrics._sum_function(1 << 30) is metrics._ssim_sum_opencv
