"""MATLAB imresize parity (Set5 LR files made by MATLAB), hand-computed values, symmetries,
and the ``bicubic`` reference entry."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.io import imread

from harness.data.bicubic import imresize, modcrop, output_length, round_half_away, weight_matrix
from models.bicubic import ENTRIES, Bicubic

NAMES = ["baby", "bird", "butterfly", "head", "woman"]
SCALES = range(2, 9)


def _hr_lr(set5, name, scale):
    hr = modcrop(imread(set5 / "HR" / f"{name}.png"), scale)
    lr = imread(set5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
    return hr, lr


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", NAMES)
def test_reproduces_matlab_lr_exactly(set5, name, scale):
    hr, lr = _hr_lr(set5, name, scale)
    out = imresize(hr, 1 / scale)
    assert out.dtype == np.uint8
    assert out.shape == lr.shape
    assert np.count_nonzero(out != lr) == 0


def test_single_rounding_float_resize_is_not_matlab(set5):
    """Rounding only once (float path) differs from MATLAB's files: the two-pass rounding matters."""
    hr, lr = _hr_lr(set5, "baby", 4)
    once = np.clip(round_half_away(imresize(hr.astype(np.float64), 1 / 4)), 0, 255).astype(np.uint8)
    # 5122 of 49152 values (10.4%) differ, each by one level
    assert np.count_nonzero(once != lr) == 5122
    assert np.abs(once.astype(int) - lr).max() == 1


def test_upscale_hand_computed_float():
    # Scale 2: phases 0.25/0.75 give weights (-0.0703125, 0.8671875, 0.2265625, -0.0234375)
    # and its mirror; borders mirror 10, 50 | ... | 200, 100. Sums worked out by hand.
    row = np.array([[10.0, 50.0, 100.0, 200.0]])
    expected = [6.25, 16.953125, 38.359375, 60.625, 83.75, 123.828125, 180.859375, 209.375]
    out = imresize(row, 2)
    assert out.shape == (2, 8)
    np.testing.assert_array_equal(out, [expected, expected])


def test_upscale_hand_computed_uint8():
    row = np.array([[10, 50, 100, 200]], dtype=np.uint8)
    expected = [6, 17, 38, 61, 84, 124, 181, 209]
    np.testing.assert_array_equal(imresize(row, 2), [expected, expected])


def test_round_half_away():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, 254.5, 3.4999999999999996])
    np.testing.assert_array_equal(round_half_away(x), [1, 2, 3, -1, -3, 0, 255, 3])


def test_uint8_saturates():
    # A sharp edge overshoots below 0 and above 255; MATLAB saturates each pass.
    img = np.zeros((4, 8), dtype=np.uint8)
    img[:, 4:] = 255
    up_float = imresize(img.astype(np.float64), 4)
    assert up_float.min() < 0 and up_float.max() > 255
    up = imresize(img, 4)
    np.testing.assert_array_equal(up, np.clip(round_half_away(up_float), 0, 255))


@pytest.mark.parametrize("s", SCALES)
def test_shapes_and_weight_matrix(s):
    assert output_length(255, 1 / 3) == 85
    assert output_length(10, 1 / s) == int(np.ceil(10 / s))
    for in_len, out_len, scale in [(13, 13 * s, s), (7 * s + 1, 8, 1 / s)]:
        m = weight_matrix(in_len, out_len, scale)
        assert m.shape == (out_len, in_len)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("s", SCALES)
@pytest.mark.parametrize("up", [True, False])
def test_float_path_equals_matrix_products(s, up):
    rng = np.random.default_rng(s)
    img = rng.uniform(0, 255, size=(5 * s + 3, 6 * s + 1, 3))
    scale = s if up else 1 / s
    out = imresize(img, scale)
    h, w = output_length(img.shape[0], scale), output_length(img.shape[1], scale)
    wh, ww = weight_matrix(img.shape[0], h, scale), weight_matrix(img.shape[1], w, scale)
    ref = np.einsum("Hh,hwc,Ww->HWc", wh, img, ww)
    assert out.shape == (h, w, 3)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("s", SCALES)
@pytest.mark.parametrize("up", [True, False])
def test_symmetries(s, up):
    rng = np.random.default_rng(100 + s)
    # sizes that are multiples of s when downscaling: otherwise ceil() makes the grid off-centre
    size = (4 * s + 2, 3 * s + 5) if up else (4 * s, 3 * s)
    img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    scale = s if up else 1 / s
    f = img.astype(np.float64)
    out = imresize(f, scale)
    # MATLAB's mapping is centred: flips commute with the resize, and so does a transpose
    # on the float path (the uint8 path rounds after the first pass, so order matters there).
    np.testing.assert_allclose(imresize(f[::-1], scale), out[::-1], atol=1e-9)
    np.testing.assert_allclose(imresize(f[:, ::-1], scale), out[:, ::-1], atol=1e-9)
    np.testing.assert_allclose(imresize(f.transpose(1, 0, 2), scale), out.transpose(1, 0, 2), atol=1e-9)
    const = np.full_like(img, 77)
    np.testing.assert_array_equal(imresize(const, scale), 77)
    if s in (2, 4, 8):  # dyadic weights: exact arithmetic, so the uint8 path commutes exactly too
        u = imresize(img, scale)
        np.testing.assert_array_equal(imresize(img[::-1], scale), u[::-1])
        np.testing.assert_array_equal(imresize(img[:, ::-1], scale), u[:, ::-1])


def test_float32_and_gray_inputs():
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    out = imresize(img, 1 / 2)
    assert out.dtype == np.float32 and out.shape == (4, 4)
    with pytest.raises(ValueError, match="uint8 or float"):
        imresize(img.astype(np.uint16), 2)


def test_modcrop():
    img = np.zeros((343, 229, 3), dtype=np.uint8)
    assert modcrop(img, 4).shape == (340, 228, 3)
    assert modcrop(img, 3).shape == (342, 228, 3)


# The bicubic reference entry ---------------------------------------------------------------

def test_bicubic_entry_card():
    (entry,) = ENTRIES
    assert entry.name == "bicubic" and entry.scale == 4 and entry.checkpoint is None
    model = entry.build()
    assert sum(p.numel() for p in model.parameters()) == 0
    assert list(model.state_dict()) == []


@pytest.mark.parametrize("name", NAMES)
def test_bicubic_entry_equals_imresize(set5, name):
    lr = imread(set5 / "LR_bicubic" / "X4" / f"{name}x4.png")
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = Bicubic(4)(x)
    assert y.dtype == torch.float32 and y.shape == (1, 3, 4 * lr.shape[0], 4 * lr.shape[1])
    out = np.round(y[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, imresize(lr, 4))


def test_bicubic_entry_range_255_and_cache():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    model = Bicubic(2, input_range=255.0)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float()
    y = model(x)
    np.testing.assert_array_equal(y[0].permute(1, 2, 0).numpy(), imresize(lr, 2))
    model(x)
    assert len(model._matrices) == 1
    assert list(model.state_dict()) == []


def test_bicubic_entry_macs_counted_by_fvcore():
    from fvcore.nn import FlopCountAnalysis

    h, w, s = 16, 12, 4
    counter = FlopCountAnalysis(Bicubic(s), torch.rand(1, 3, h, w))
    counter.unsupported_ops_warnings(False)
    # height pass (w x h) @ (h x sH), width pass (sH x w) @ (w x sW), three channels
    assert counter.total() == 3 * (w * h * s * h + s * h * w * s * w)
