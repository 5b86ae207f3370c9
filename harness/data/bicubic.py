"""MATLAB-compatible bicubic resize: ``imresize(img, scale, 'bicubic')``.

Reproduces MATLAB's semantics (the LR files of the challenges and of Set5/DIV2K were made
with it), not just its kernel:

- cubic kernel with a = -0.5 (Keys), support 4;
- antialiasing when downscaling: the kernel is widened by 1/scale,
  ``h(x) = scale * cubic(scale * x)``, support ``4 / scale``;
- coordinate mapping: output pixel x (1-based) samples input position
  ``u = x / scale + 0.5 * (1 - 1 / scale)``;
- taps ``floor(u - width/2) + (0 .. ceil(width) + 1)``, out-of-range indices mirrored
  (symmetric padding: ``1..n, n..1`` repeated);
- weights normalised to sum 1 for every output pixel;
- one dimension at a time, the dimension with the smallest scale first (height first on ties);
- on uint8 input every one-dimensional pass returns uint8 (round half away from zero,
  saturate to [0, 255]), so the intermediate image is rounded too. Float input is never
  rounded or clipped.

With these rules the uint8 path reproduces MATLAB's ``LR_bicubic`` files bit for bit
(``tests/test_bicubic.py``). ``weight_matrix`` exposes the same weights as a dense matrix so
a torch module can apply the resize as matrix products (``models/bicubic.py``).
"""
from __future__ import annotations

import math

import numpy as np

KERNEL_WIDTH = 4.0  # support of the cubic kernel (a = -0.5)


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel with a = -0.5, as MATLAB's ``imresize`` defines it."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def output_length(in_len: int, scale: float) -> int:
    """MATLAB's output size ``ceil(in_len * scale)``, immune to float noise like 255 * (1/3)."""
    exact = in_len * scale
    nearest = round(exact)
    if abs(exact - nearest) < 1e-9:
        return int(nearest)
    return int(math.ceil(exact))


def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Taps of a one-dimensional resize: ``(indices, weights)``, both ``out_len x P``.

    ``indices`` are 0-based input positions after mirroring; ``weights`` (float64) sum to 1
    per row. Columns whose weights are all zero are dropped, as MATLAB does.
    """
    if in_len < 1 or out_len < 1:
        raise ValueError(f"imresize: lengths must be positive, got in_len={in_len}, out_len={out_len}")
    if scale <= 0:
        raise ValueError(f"imresize: scale must be positive, got {scale}")
    width = KERNEL_WIDTH
    antialias = scale < 1
    if antialias:
        width = KERNEL_WIDTH / scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if antialias else cubic(distance)
    # Sequential row sum (tap order), like MATLAB's sum, rather than numpy's pairwise sum.
    total = weights[:, 0].copy()
    for j in range(1, taps):
        total = total + weights[:, j]
    weights = weights / total[:, None]
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def weight_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense ``out_len x in_len`` float64 matrix M with ``resized = M @ signal`` (one dimension).

    Mirrored taps that land on the same input pixel are added together; rows sum to 1.
    """
    indices, weights = contributions(in_len, out_len, scale)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), indices.shape[1])
    np.add.at(matrix, (rows, indices.ravel()), weights.ravel())
    return matrix


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (MATLAB's ``round`` and its uint8 cast), exactly for all doubles."""
    t = np.trunc(x)
    frac = x - t  # exact in floating point
    return t + np.sign(x) * (np.abs(frac) >= 0.5)


def to_uint8_matlab(x: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8 conversion: round half away from zero, saturate to [0, 255]."""
    return np.clip(round_half_away(x), 0, 255).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    """One-dimensional pass along ``axis`` in float64, taps summed in MATLAB's order."""
    indices, weights = contributions(img.shape[axis], out_len, scale)
    src = np.moveaxis(img, axis, 0).astype(np.float64, copy=False)
    extra = (1,) * (src.ndim - 1)
    acc = weights[:, 0].reshape(-1, *extra) * src[indices[:, 0]]
    for j in range(1, indices.shape[1]):
        acc += weights[:, j].reshape(-1, *extra) * src[indices[:, j]]
    return np.moveaxis(acc, 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image by ``scale`` exactly like MATLAB ``imresize(img, scale, 'bicubic')``.

    img: ``H x W`` or ``H x W x C``, uint8 or float. scale: e.g. ``1/4`` (down) or ``4`` (up);
    output size is ``ceil(H * scale) x ceil(W * scale)``.
    Returns the same dtype: uint8 input is rounded (half away from zero) and saturated after
    EACH one-dimensional pass; float input is returned unrounded and unclipped.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: expected an H x W or H x W x C image, got shape {img.shape}")
    is_uint8 = img.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"imresize: expected uint8 or float input, got {img.dtype}; "
                         "convert 16-bit images to uint8 or float first")
    scale = float(scale)
    out_shape = [output_length(img.shape[0], scale), output_length(img.shape[1], scale)]
    # MATLAB sorts the dimensions by scale; both scales are equal here, so height goes first.
    out = img
    for axis in (0, 1):
        out = _resize_axis(out, axis, out_shape[axis], scale)
        if is_uint8:
            out = to_uint8_matlab(out)
    if not is_uint8:
        out = out.astype(img.dtype, copy=False)
    return out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that height and width are multiples of ``scale``."""
    img = np.asarray(img)
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
