"""The four quality figures computed with torch on the device where the SR output already is.

Same definitions as ``harness.measure.metrics`` (read its docstring for the conventions), and
the same values: PSNR from an exact integer sum of squared errors of the uint8 images (int64
on the device); SSIM in float64 with the 11-tap Gaussian applied as two 1-D convolutions
('valid' region, no padding), so it equals the CPU value to 1e-6 (rounding differs only in the
order of float64 sums); Y from the same 2^24-entry table as ``metrics.rgb2y_table``, so it is
bit-identical to ``rgb2y``.

The SR tensor is a float ``1 x 3 x H x W`` (or ``3 x H x W``) model output; ``to_uint8``
quantises it on the device exactly as ``metrics.to_uint8`` does on the host (the arithmetic
stays in the output's float32 precision, round half to even). Tested on the CPU device in CI
(tests/test_metrics_torch.py); ``bench/gpu_check.sh`` compares CUDA values with the CPU ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.measure import metrics

_TABLES: dict = {}  # device -> Y table tensor


@dataclass(frozen=True, eq=False)
class TorchReference:
    """An HR prepared once on a device: cropped R, G, B, Y planes as a uint8 ``4 x h x w`` tensor."""

    planes: object  # torch.uint8, 4 x h x w, on ``device``
    crop_border: int
    shape: tuple  # full HR shape H x W x 3
    device: str


def prepare_reference(hr, *, crop_border: int, device: str, non_blocking: bool = False) -> TorchReference:
    """Crop the uint8 HR, convert it to Y (on the host, once) and copy the four planes to ``device``.

    ``hr``: the uint8 HR image, or its host ``metrics.Reference`` (prepared with the same crop).
    """
    import torch

    ref = metrics.as_reference(hr, crop_border=crop_border, who="prepare_reference")
    host = torch.from_numpy(np.stack(ref.planes))
    if str(device).startswith("cuda"):
        host = host.pin_memory()
    return TorchReference(planes=host.to(device, non_blocking=non_blocking), crop_border=ref.crop_border,
                          shape=ref.shape, device=str(device))


def to_uint8(out, input_range: float):
    """Model output -> uint8 ``3 x H x W`` on the same device, as ``metrics.to_uint8`` does on the host."""
    import torch

    if input_range not in (1.0, 255.0):
        raise ValueError(f"to_uint8: input_range must be 1.0 or 255.0, got {input_range!r}")
    t = out.detach()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_uint8: expected batch size 1, got tensor shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3 or not t.is_floating_point():
        raise ValueError(f"to_uint8: expected a float 1x3xHxW or 3xHxW tensor, got {t.dtype} {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # half/bfloat16 outputs, as on the host
    factor = 255.0 / input_range  # exactly 255 or 1
    x = t * factor  # a fresh tensor (the model's output is left as it is); then clamped and rounded in place
    return x.clamp_(0, 255).round_().to(torch.uint8)


def rgb2y(planes):
    """MATLAB Y of uint8 ``3 x h x w`` RGB planes on their device, via the shared 2^24-entry table."""
    import torch

    device = str(planes.device)
    table = _TABLES.get(device)
    if table is None:
        table = _TABLES[device] = torch.from_numpy(metrics.y_table()).to(device)
    p = planes.to(torch.int64)
    index = p[0] | (p[1] << 8) | (p[2] << 16)
    return table[index]


def sse(a, b) -> int:
    """Exact sum of squared differences of two uint8 tensors (int64 accumulation on the device)."""
    import torch

    d = a.to(torch.int32) - b.to(torch.int32)
    return int((d * d).sum(dtype=torch.int64))


def _window(device):
    import torch

    return torch.from_numpy(metrics.gaussian_window_1d()).to(device=device, dtype=torch.float64)


def ssim_planes(a, b):
    """Mean SSIM map of each pair of uint8 planes ``N x h x w`` (float64), as a list of N floats."""
    import torch
    import torch.nn.functional as F

    c1 = (metrics.SSIM_K1 * metrics.DATA_RANGE) ** 2
    c2 = (metrics.SSIM_K2 * metrics.DATA_RANGE) ** 2
    w = _window(a.device)
    k = w.numel()
    x = a.to(torch.float64)
    y = b.to(torch.float64)
    n = x.shape[0]
    # 4 filtered quantities per plane, as channels of one batch: x, y, x^2 + y^2, x y.
    stack = torch.stack([x, y, x * x + y * y, x * y], dim=1).reshape(n * 4, 1, *x.shape[1:])
    v = F.conv2d(stack, w.view(1, 1, k, 1))
    f = F.conv2d(v, w.view(1, 1, 1, k)).reshape(n, 4, v.shape[2], v.shape[3] - k + 1)
    mu_x, mu_y, e_sq, e_xy = f.unbind(1)
    p2 = 2 * mu_x * mu_y
    m2 = mu_x * mu_x + mu_y * mu_y
    num = (p2 + c1) * (2 * e_xy - p2 + c2)
    den = (m2 + c1) * (e_sq - m2 + c2)
    return [float(v) for v in (num / den).mean(dim=(1, 2))]


def quality(sr, ref: TorchReference, *, crop_border: int, input_range: float | None = None) -> dict:
    """``{"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"}`` of an SR tensor against a ``TorchReference``.

    ``sr``: uint8 ``3 x H x W`` on ``ref.device``, or a float model output when ``input_range``
    is given (quantised by ``to_uint8`` first). Values equal ``metrics.quality``.
    """
    import torch

    if ref.crop_border != crop_border:
        raise ValueError(f"quality: the TorchReference was prepared with crop_border={ref.crop_border}, "
                         f"not {crop_border}")
    if input_range is not None:
        sr = to_uint8(sr, input_range)
    if sr.dtype != torch.uint8 or sr.dim() != 3 or sr.shape[0] != 3:
        raise ValueError(f"quality: expected a uint8 3xHxW tensor, got {sr.dtype} {tuple(sr.shape)}; "
                         "pass input_range to quantise a float output")
    want = (ref.shape[2], ref.shape[0], ref.shape[1])
    if tuple(sr.shape) != want:
        raise ValueError(f"quality: shapes differ, sr {tuple(sr.shape)} vs hr {want} (CHW)")
    c = crop_border
    rgb = sr[:, c:sr.shape[1] - c, c:sr.shape[2] - c]
    planes = torch.cat([rgb, rgb2y(rgb).unsqueeze(0)])
    errors = [sse(planes[i], ref.planes[i]) for i in range(4)]
    return metrics.four_figures(errors, planes[0].numel(), ssim_planes(planes, ref.planes))
