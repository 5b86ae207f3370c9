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

Speed (docs/speed.md): PSNR sums squared errors exactly from a histogram of absolute
differences; SSIM needs four float64 filtered quantities per channel (``mu_x``, ``mu_y``,
``E[x^2 + y^2]``, ``E[xy]``: the formula needs only ``var_x + var_y``), computed for planes of
1 Mpixel or more by the one-pass kernel of ``harness.measure.ssim_kernel`` (Numba) and
otherwise by OpenCV's separable float64 filter in row strips; row bands of each plane run on
all cores. ``quality`` computes all four figures of one image pair sharing the crop and the Y
conversion.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

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
    # For 16 <= y < 256, y + 0.5 is exact or rounds without crossing an integer, so floor(y + 0.5)
    # is MATLAB's round half away from zero (the all-colours test pins it).
    y += 0.5
    np.floor(y, out=y)
    return y.astype(np.uint8)  # 16..235, no saturation needed


def psnr(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, channel: str) -> float:
    """PSNR in dB with MAX = 255 between two uint8 ``H x W x 3`` RGB images.

    crop_border: pixels removed from every side before measuring.
    channel: ``'rgb'`` (one MSE over the three channels) or ``'y'`` (MATLAB Y, uint8).
    Identical images give ``math.inf``. The squared error is summed exactly in integers.
    """
    a, b = _prepare(sr, hr, crop_border, channel, "psnr")
    return _psnr_from_sse(sse_uint8(a, b), a.size)


def sse_uint8(a: np.ndarray, b: np.ndarray) -> int:
    """Exact sum of squared differences of two uint8 arrays of equal shape (Python int).

    ``|a - b|`` is counted into 256 bins (OpenCV's float32 histogram, exact for counts up to
    2^24, so at most 2^24 values go into one call) and ``sum(count[d] * d^2)`` is summed in int64.
    """
    d = cv2.absdiff(a, b)
    d = d.reshape(d.shape[0], -1)
    rows = max(1, _HIST_EXACT // d.shape[1])
    counts = np.zeros(256, dtype=np.int64)
    for r0 in range(0, d.shape[0], rows):
        counts += cv2.calcHist([d[r0:r0 + rows]], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return int(counts @ _SQUARES)


_HIST_EXACT = 1 << 24  # float32 counts are exact integers up to here
_SQUARES = np.arange(256, dtype=np.int64) ** 2


def _psnr_from_sse(sse: int, n: int) -> float:
    if sse == 0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE ** 2 / (sse / n))


def ssim(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, channel: str) -> float:
    """SSIM (MATLAB reference definition) between two uint8 ``H x W x 3`` RGB images.

    crop_border: pixels removed from every side before measuring.
    channel: ``'rgb'`` (mean of the three per-channel SSIMs) or ``'y'`` (MATLAB Y, uint8).
    Window 11 x 11 Gaussian (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering,
    mean of the SSIM map. Filtering is separable, in float64 (see the module docstring).
    """
    a, b = _prepare(sr, hr, crop_border, channel, "ssim")
    _check_ssim_size(a, crop_border)
    if a.ndim == 2:
        return _ssim_planes([a], [b])[0]
    return _ssim_rgb(a, b)


@dataclass(frozen=True, eq=False)
class Reference:
    """An HR image prepared once for scoring many outputs against it (``prepare_reference``).

    ``planes``: the cropped R, G, B and MATLAB-Y planes, each a contiguous uint8 ``h x w``
    array; ``shape``: the full HR shape (``H x W x 3``) an SR output must have.
    """

    planes: tuple
    crop_border: int
    shape: tuple


def prepare_reference(hr: np.ndarray, *, crop_border: int) -> Reference:
    """Split and crop the HR, and convert it to Y, once (the HR is the same for every entry)."""
    hr = _check_uint8_rgb(hr, "prepare_reference")
    _check_crop(hr.shape, crop_border, "prepare_reference")
    c = crop_border
    cropped = hr[c:hr.shape[0] - c, c:hr.shape[1] - c]
    _check_ssim_size(cropped, c)
    planes = tuple(np.ascontiguousarray(p) for p in cv2.split(np.ascontiguousarray(cropped)))
    return Reference(planes=planes + (rgb2y_table(cropped),), crop_border=int(c), shape=tuple(hr.shape))


def as_reference(hr, *, crop_border: int, who: str) -> Reference:
    """``hr`` prepared for scoring: a uint8 HR image is prepared here, a ``Reference`` must have ``crop_border``."""
    if not isinstance(hr, Reference):
        return prepare_reference(hr, crop_border=crop_border)
    if hr.crop_border != crop_border:
        raise ValueError(f"{who}: the Reference was prepared with crop_border={hr.crop_border}, "
                         f"not {crop_border}; prepare it with the crop you measure")
    return hr


def quality(sr: np.ndarray, hr, *, crop_border: int) -> dict:
    """All four figures of one pair: ``{"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"}``.

    ``hr``: the uint8 HR image, or its ``Reference`` (then ``crop_border`` must match it).
    Each value equals ``psnr``/``ssim`` with the same ``crop_border`` and that channel; the SR is
    split, cropped and converted to Y once.
    """
    ref = as_reference(hr, crop_border=crop_border, who="quality")
    sr = _check_uint8_rgb(sr, "quality (sr)")
    if tuple(sr.shape) != ref.shape:
        raise ValueError(f"quality: shapes differ, sr {sr.shape} vs hr {ref.shape}; "
                         "modcrop the HR to the scale and check the model's output size")
    c = crop_border
    cropped = sr[c:sr.shape[0] - c, c:sr.shape[1] - c]
    planes = list(cv2.split(cropped))  # a view: OpenCV reads its rows in place
    # The R, G, B SSIMs start on the pool while this thread makes the Y plane and the four SSEs.
    pending = [_ssim_start(a, b) for a, b in zip(planes, ref.planes)]
    planes.append(rgb2y_table(cropped))
    pending.append(_ssim_start(planes[3], ref.planes[3]))
    sse = [sse_uint8(a, b) for a, b in zip(planes, ref.planes)]
    return four_figures(sse, planes[0].size, [value() for value in pending])


def four_figures(sse: Sequence[int], n: int, ssims: Sequence[float]) -> dict:
    """``quality``'s dict from the per-plane results of the R, G, B and Y planes (``n`` pixels each).

    PSNR-RGB is one MSE over the three channels, SSIM-RGB the mean of the three channel SSIMs.
    Shared by the host path and ``metrics_torch.quality``, so both define the figures the same way.
    """
    return {
        "psnr_rgb": _psnr_from_sse(sum(sse[:3]), 3 * n),
        "psnr_y": _psnr_from_sse(sse[3], n),
        "ssim_rgb": float(np.mean(ssims[:3])),
        "ssim_y": ssims[3],
    }


_Y_TABLE: np.ndarray | None = None
_Y_TABLE_MIN_PIXELS = 1 << 20


def rgb2y_table(img: np.ndarray) -> np.ndarray:
    """``rgb2y`` by lookup in a 2^24-entry table built from ``rgb2y`` itself (16 MiB, built once).

    Equal to ``rgb2y`` by construction, and several times faster on large images. Images below
    ``_Y_TABLE_MIN_PIXELS`` use ``rgb2y`` directly until the table exists, so a process that only
    scores small images never pays the table's one-off cost (about a second).
    """
    if _Y_TABLE is None and img.shape[0] * img.shape[1] < _Y_TABLE_MIN_PIXELS:
        return rgb2y(img)
    table = y_table()
    img = _check_uint8_rgb(img, "rgb2y_table")
    index = cv2.cvtColor(img, cv2.COLOR_RGB2RGBA).view(np.uint32)[..., 0]
    index &= 0xFFFFFF  # little-endian R | G << 8 | B << 16; alpha dropped
    return table[index]


def y_table() -> np.ndarray:
    """The 2^24-entry uint8 table of ``rgb2y`` indexed by ``R | G << 8 | B << 16`` (built once per process)."""
    global _Y_TABLE
    if _Y_TABLE is None:
        v = np.arange(1 << 24, dtype=np.uint32)
        table = np.empty(1 << 24, dtype=np.uint8)
        step = 1 << 20
        for k in range(0, 1 << 24, step):
            chunk = v[k:k + step]
            rgb = np.stack([chunk & 255, (chunk >> 8) & 255, chunk >> 16], axis=-1).astype(np.uint8)
            table[k:k + step] = rgb2y(rgb.reshape(1, -1, 3)).ravel()
        _Y_TABLE = table
    return _Y_TABLE


def _ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of the three per-channel SSIMs (channels split into contiguous planes first)."""
    pa, pb = cv2.split(np.ascontiguousarray(a)), cv2.split(np.ascontiguousarray(b))
    return float(np.mean(_ssim_planes(pa, pb)))


_POOL = None


def _ssim_planes(xs, ys) -> list[float]:
    """``_ssim_plane`` of each pair (large planes in row bands on all cores, see ``_ssim_start``)."""
    return [value() for value in [_ssim_start(x, y) for x, y in zip(xs, ys)]]


def _ssim_start(x: np.ndarray, y: np.ndarray):
    """Start the SSIM of one pair of planes; returns a function that waits for its value.

    Large planes are split into row bands scored on a thread pool with one thread per core
    (OpenCV releases the GIL). Each band is an independent 'valid' SSIM over its output rows
    (its input rows plus the 5-row halo), and the plane's value is the sum over bands divided
    by the plane's count, so the result does not depend on the number of bands beyond float64
    summation order. Small planes, and machines with one core, are scored here and now.
    """
    global _POOL
    workers = min(8, os.cpu_count() or 1)
    if workers == 1 or x.size < _PARALLEL_MIN_PIXELS:
        value = _ssim_plane(x, y)
        return lambda: value
    band_sum = _sum_function(x.size)
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="esr-ssim")
    pad = (SSIM_WINDOW - 1) // 2
    out_rows, out_cols = x.shape[0] - 2 * pad, x.shape[1] - 2 * pad
    step = -(-out_rows // (_BANDS_PER_WORKER * workers))
    bands = [_POOL.submit(band_sum, x[r0:min(r0 + step, out_rows) + 2 * pad], y[r0:min(r0 + step, out_rows) + 2 * pad])
             for r0 in range(0, out_rows, step)]
    return lambda: math.fsum(f.result() for f in bands) / (out_rows * out_cols)


_PARALLEL_MIN_PIXELS = 1 << 18
_BANDS_PER_WORKER = 2  # more bands than threads: the last band of an image ends soon after the others


def _check_crop(shape, crop_border, who: str) -> None:
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"{who}: crop_border must be a non-negative int (pixels), got {crop_border!r}")
    h, w = shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"{who}: crop_border={crop_border} leaves nothing of a {h}x{w} image")


def _check_ssim_size(a: np.ndarray, crop_border: int) -> None:
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim: image is {a.shape[0]}x{a.shape[1]} after cropping {crop_border} px; "
                         f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW}")


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


_WINDOW_1D = gaussian_window_1d()
_WINDOW_COLUMN = _WINDOW_1D.reshape(-1, 1)
_STRIP_ROWS = 64  # output rows per strip: a strip's planes stay in cache while the SSIM map is formed


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM map of two uint8 planes (``'valid'`` region), float64."""
    pad = (SSIM_WINDOW - 1) // 2
    return _sum_function(a.size)(a, b) / ((a.shape[0] - 2 * pad) * (a.shape[1] - 2 * pad))


_KERNEL = None  # the Numba kernel, False where it is not used (see ssim_kernel_name)
_KERNEL_MIN_PIXELS = 1 << 20  # smaller planes use OpenCV: a run of small images never compiles the kernel


def ssim_kernel_name() -> str:
    """``'numba'`` when large planes are scored by ``harness.measure.ssim_kernel``, else ``'opencv'``.

    The kernel is used when Numba imports and ``ESR_SSIM_KERNEL`` is not ``opencv``; both
    compute the same float64 sum (they agree to about 1e-15).
    """
    global _KERNEL, KERNEL_UNAVAILABLE
    if _KERNEL is None:
        _KERNEL = False
        if os.environ.get("ESR_SSIM_KERNEL", "").strip().lower() == "opencv":
            KERNEL_UNAVAILABLE = "ESR_SSIM_KERNEL=opencv"
        else:
            try:
                from harness.measure.ssim_kernel import ssim_map_sum
            except Exception as exc:  # no Numba, or Numba refusing this platform or install
                KERNEL_UNAVAILABLE = f"{type(exc).__name__}: {exc}".splitlines()[0]
            else:
                _KERNEL = ssim_map_sum
    return "numba" if _KERNEL else "opencv"


KERNEL_UNAVAILABLE = None  # why the OpenCV path is used, once ssim_kernel_name() has decided


def _sum_function(pixels: int):
    """The SSIM-map sum used for a plane of ``pixels`` pixels (and every band of it)."""
    if pixels >= _KERNEL_MIN_PIXELS and ssim_kernel_name() == "numba":
        return _ssim_sum_kernel
    return _ssim_sum_opencv


def _ssim_sum_kernel(a: np.ndarray, b: np.ndarray) -> float:
    return _KERNEL(np.ascontiguousarray(a), np.ascontiguousarray(b), _WINDOW_1D,
                   (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2)


def _ssim_sum_opencv(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of the SSIM map of two uint8 planes over the ``'valid'`` region, float64 (OpenCV filters).

    Each strip of output rows is filtered from its input rows plus the 5-row halo; OpenCV
    filters the whole strip (any border mode) and the halo is cropped, which leaves exactly the
    'valid' correlation. ``var_x + var_y`` comes from one filtered ``x^2 + y^2`` plane (float32
    holds it exactly: an integer below 2^17). The map is formed in place in the strip's buffers
    (kept per thread, so no strip allocates), with the constant factor 2 of the luminance
    numerator applied once to the sum.
    """
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    g = _WINDOW_COLUMN
    pad = (SSIM_WINDOW - 1) // 2
    h, w = a.shape
    out_rows = h - 2 * pad
    buf = _strip_buffers(min(_STRIP_ROWS, out_rows), w)
    total = 0.0
    for r0 in range(0, out_rows, _STRIP_ROWS):
        r1 = min(r0 + _STRIP_ROWS, out_rows) + 2 * pad
        n, m = r1 - r0, r1 - r0 - 2 * pad
        x, y = a[r0:r1], b[r0:r1]
        sq, xy = buf.sq[:n], buf.xy[:n]
        sq.fill(0.0)
        cv2.accumulateSquare(x, sq)
        cv2.accumulateSquare(y, sq)  # x^2 + y^2 < 2^17: exact in float32
        np.multiply(x, y, out=xy, dtype=np.uint16)  # <= 65025: exact
        # Rows are cropped here (a contiguous slice); the column halo is dropped in the final sum,
        # so every elementwise operation below runs on contiguous arrays.
        mu_x, mu_y, e_sq, e_xy = (cv2.sepFilter2D(src, cv2.CV_64F, g, g, dst=out[:n])[pad:-pad]
                                  for src, out in zip((x, y, sq, xy), buf.filtered))
        p, s = buf.p[:m], buf.s[:m]
        cv2.multiply(mu_x, mu_y, dst=p)  # mu_x mu_y
        cv2.multiply(mu_x, mu_x, dst=s)
        cv2.accumulateSquare(mu_y, s)  # mu_x^2 + mu_y^2
        cv2.addWeighted(e_xy, 2.0, p, -2.0, c2, dst=e_xy)  # 2 cov + C2
        cv2.addWeighted(e_sq, 1.0, s, -1.0, c2, dst=e_sq)  # var_x + var_y + C2
        cv2.add(p, c1 / 2, dst=p)  # (2 mu_x mu_y + C1) / 2
        cv2.add(s, c1, dst=s)  # mu_x^2 + mu_y^2 + C1
        cv2.multiply(p, e_xy, dst=p)
        cv2.multiply(s, e_sq, dst=s)
        cv2.divide(p, s, dst=p)
        total += cv2.sumElems(p[:, pad:-pad])[0]
    return 2.0 * total


@dataclass
class _StripBuffers:
    sq: np.ndarray        # x^2 + y^2, float32, strip + halo rows
    xy: np.ndarray        # x y, uint16
    filtered: tuple       # mu_x, mu_y, E[x^2 + y^2], E[xy]: float64, strip + halo rows
    p: np.ndarray         # mu_x mu_y, then the map's numerator and the map: float64, strip rows
    s: np.ndarray         # mu_x^2 + mu_y^2, then the map's denominator


_THREAD = threading.local()


def _strip_buffers(rows: int, w: int) -> _StripBuffers:
    """This thread's strip buffers for planes ``w`` wide (reused while the width stays the same)."""
    buf = getattr(_THREAD, "ssim", None)
    if buf is None or buf.sq.shape[1] != w or buf.p.shape[0] < rows:
        halo = rows + SSIM_WINDOW - 1
        buf = _StripBuffers(sq=np.empty((halo, w), np.float32), xy=np.empty((halo, w), np.uint16),
                            filtered=tuple(np.empty((halo, w)) for _ in range(4)),
                            p=np.empty((rows, w)), s=np.empty((rows, w)))
        _THREAD.ssim = buf
    return buf


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
    _check_crop(sr.shape, crop_border, who)
    if channel not in CHANNELS:
        raise ValueError(f"{who}: channel must be one of {CHANNELS}, got {channel!r}")
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    if channel == "y":
        return rgb2y(sr), rgb2y(hr)
    return sr, hr
