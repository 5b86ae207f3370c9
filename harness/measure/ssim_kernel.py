"""One-pass SSIM kernel (Numba): the sum of the SSIM map of two uint8 planes, float64.

``metrics`` uses it for planes of 1 Mpixel or more when Numba imports (and ``ESR_SSIM_KERNEL`` is
not ``opencv``); otherwise OpenCV's separable filters do the same sum strip by strip. Both are
the MATLAB definition (11 x 11 Gaussian, sigma 1.5, 'valid' region) and agree with
scikit-image to 1e-12 (tests/test_metrics_fast.py runs every SSIM test with both).

Why a kernel: the four filtered quantities per pixel (``mu_x``, ``mu_y``, ``E[x^2 + y^2]``,
``E[xy]``) must be float64 (the variances are differences of numbers up to 2^17), and OpenCV's
float64 filters are scalar and write four full float64 planes per strip. This kernel keeps the
horizontally filtered rows in a ring of 11 rows (4 x 11 x width float64: under 1 MiB at DIV2K
width, so it stays in a core's cache), filters each output row vertically from the ring into four
rows and forms the map from them, so every input pixel is read once and nothing leaves the cache.
Each loop runs over one row with unit stride, which the compiler vectorises.
The Gaussian is symmetric, so each 11-tap pass is 6 multiplications of folded pairs.

Floating point: float64 throughout. ``fastmath`` is limited to reassociation and contraction
(fused multiply-add): the sums may be evaluated in another order than OpenCV's, which moves the
result by a few ulps (about 1e-15 on an SSIM), never NaN/infinity handling or division.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_FAST = {"reassoc", "contract", "nsz"}


@njit(nogil=True, cache=True, fastmath=_FAST, inline="always")
def _row(src, dst, g0, g1, g2, g3, g4, g5, width):
    """``dst[j]`` = the 11-tap symmetric filter of ``src`` centred on ``j + 5`` ('valid')."""
    for j in range(width):
        c = j + 5
        dst[j] = (g0 * src[c] + g1 * (src[c - 1] + src[c + 1]) + g2 * (src[c - 2] + src[c + 2])
                  + g3 * (src[c - 3] + src[c + 3]) + g4 * (src[c - 4] + src[c + 4])
                  + g5 * (src[c - 5] + src[c + 5]))


@njit(nogil=True, cache=True, fastmath=_FAST, inline="always")
def _column(ring, k, dst, g0, g1, g2, g3, g4, g5, width):
    """``dst[j]`` = the 11-tap filter down ring rows ``k`` (centre, then the pairs at distance 1..5)."""
    r0, a1, b1, a2, b2 = ring[k[0]], ring[k[1]], ring[k[2]], ring[k[3]], ring[k[4]]
    a3, b3, a4, b4, a5, b5 = ring[k[5]], ring[k[6]], ring[k[7]], ring[k[8]], ring[k[9]], ring[k[10]]
    for j in range(width):
        dst[j] = (g0 * r0[j] + g1 * (a1[j] + b1[j]) + g2 * (a2[j] + b2[j]) + g3 * (a3[j] + b3[j])
                  + g4 * (a4[j] + b4[j]) + g5 * (a5[j] + b5[j]))


@njit(nogil=True, cache=True, fastmath=_FAST)
def ssim_map_sum(a, b, g, c1, c2):
    """Sum over the 'valid' region of the SSIM map of uint8 planes ``a`` (x) and ``b`` (y).

    ``g``: the normalised 11-tap Gaussian (``metrics.gaussian_window_1d()``); ``c1``, ``c2``:
    ``(K1 L)^2`` and ``(K2 L)^2``. The region has ``(h - 10) x (w - 10)`` pixels.
    """
    h, w = a.shape
    width = w - 10
    # rings of horizontally filtered rows (row i in slot i % 11): x, y, x^2 + y^2, xy
    rx, ry, rs, rp = np.empty((11, width)), np.empty((11, width)), np.empty((11, width)), np.empty((11, width))
    xf, yf, sf, pf = np.empty(w), np.empty(w), np.empty(w), np.empty(w)
    mx, my, es, ep = np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    k = np.empty(11, np.int64)
    g0, g1, g2, g3, g4, g5 = g[5], g[4], g[3], g[2], g[1], g[0]
    total = 0.0
    for i in range(h):
        for j in range(w):
            xv = np.float64(a[i, j])
            yv = np.float64(b[i, j])
            xf[j] = xv
            yf[j] = yv
            sf[j] = xv * xv + yv * yv
            pf[j] = xv * yv
        slot = i % 11
        _row(xf, rx[slot], g0, g1, g2, g3, g4, g5, width)
        _row(yf, ry[slot], g0, g1, g2, g3, g4, g5, width)
        _row(sf, rs[slot], g0, g1, g2, g3, g4, g5, width)
        _row(pf, rp[slot], g0, g1, g2, g3, g4, g5, width)
        if i < 10:
            continue
        # output row i - 10 is centred on input row i - 5; the rings hold rows i - 10 .. i
        k[0] = (i - 5) % 11
        for t in range(1, 6):
            k[2 * t - 1] = (i - 5 - t) % 11
            k[2 * t] = (i - 5 + t) % 11
        _column(rx, k, mx, g0, g1, g2, g3, g4, g5, width)
        _column(ry, k, my, g0, g1, g2, g3, g4, g5, width)
        _column(rs, k, es, g0, g1, g2, g3, g4, g5, width)
        _column(rp, k, ep, g0, g1, g2, g3, g4, g5, width)
        acc = 0.0
        for j in range(width):
            p = mx[j] * my[j]
            q = mx[j] * mx[j] + my[j] * my[j]
            # (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))
            acc += ((2.0 * p + c1) * (2.0 * (ep[j] - p) + c2)) / ((q + c1) * (es[j] - q + c2))
        total += acc
    return total
