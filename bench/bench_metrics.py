"""PSNR + SSIM throughput on a 2K pair: ``harness.measure.metrics`` against a straightforward float64
NumPy implementation of the same definitions, measured side by side in one run.

Run: ``python bench/bench_metrics.py [--repeats 3]``. The pair is 2040 x 1356 x 3 (DIV2K
size): HR made by upscaling Set5 ``baby`` when ``ESR_SET5`` is present (smooth noise
otherwise), SR = bicubic x4 round trip. Both paths compute PSNR and SSIM, RGB and Y, at
crop border 4; the script checks that every value agrees to 1e-6 and prints the times
(best of N, seconds) and the speed-up.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.data.bicubic import imresize  # noqa: E402
from harness.measure.metrics import psnr, ssim  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
H, W = 1356, 2040
CROP = 4


# --- straightforward float64 reference (same definitions, no tricks) -------------------------

def ref_y(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64)
    y = (1 / 255) * 65.481 * x[..., 0] + (1 / 255) * 128.553 * x[..., 1] + (1 / 255) * 24.966 * x[..., 2] + 16
    return np.where(y - np.floor(y) >= 0.5, np.floor(y) + 1, np.floor(y))  # half up (y > 0)


def ref_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ref_filter2_valid(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """MATLAB filter2(win, x, 'valid'): sum over the 121 window offsets."""
    k = win.shape[0]
    h, w = x.shape[0] - k + 1, x.shape[1] - k + 1
    out = np.zeros((h, w))
    for i in range(k):
        for j in range(k):
            out += win[i, j] * x[i:i + h, j:j + w]
    return out


def ref_ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    r = np.arange(11) - 5.0
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
    win = g / g.sum()  # fspecial('gaussian', 11, 1.5)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = ref_filter2_valid(x, win), ref_filter2_valid(y, win)
    s11 = ref_filter2_valid(x * x, win) - mu1 * mu1
    s22 = ref_filter2_valid(y * y, win) - mu2 * mu2
    s12 = ref_filter2_valid(x * y, win) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
    return float(m.mean())


def reference(sr: np.ndarray, hr: np.ndarray) -> dict:
    a, b = sr[CROP:-CROP, CROP:-CROP], hr[CROP:-CROP, CROP:-CROP]
    ya, yb = ref_y(a), ref_y(b)
    return {"psnr_rgb": ref_psnr(a, b), "psnr_y": ref_psnr(ya, yb),
            "ssim_rgb": float(np.mean([ref_ssim_plane(a[..., c], b[..., c]) for c in range(3)])),
            "ssim_y": ref_ssim_plane(ya, yb)}


def harness(sr: np.ndarray, hr: np.ndarray) -> dict:
    return {"psnr_rgb": psnr(sr, hr, crop_border=CROP, channel="rgb"),
            "psnr_y": psnr(sr, hr, crop_border=CROP, channel="y"),
            "ssim_rgb": ssim(sr, hr, crop_border=CROP, channel="rgb"),
            "ssim_y": ssim(sr, hr, crop_border=CROP, channel="y")}


# --- data ----------------------------------------------------------------------------------

def make_pair() -> tuple[np.ndarray, np.ndarray, str]:
    shared = Path(os.environ.get("ESR_SHARED", REPO.parent / "shared"))
    set5 = Path(os.environ.get("ESR_SET5", shared / "data" / "Set5"))
    baby = set5 / "HR" / "baby.png"
    if baby.is_file():
        from skimage.io import imread

        hr = imresize(imread(baby), 4)[:H, :W]  # 2048 x 2048 -> 1356 x 2040
        source = f"{baby} upscaled x4"
    else:
        rng = np.random.default_rng(0)
        small = rng.uniform(0, 255, size=(H // 8 + 1, W // 8 + 1, 3))
        hr = np.clip(imresize(small, 8)[:H, :W], 0, 255).round().astype(np.uint8)
        source = "smooth noise (Set5 not found)"
    sr = imresize(imresize(hr, 1 / 4), 4)
    return sr, hr, source


def best_s(fn, *args, repeats: int) -> tuple[float, dict]:
    best, value = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sr, hr, source = make_pair()
    print(f"pair {hr.shape[1]}x{hr.shape[0]}x3 uint8 ({source}), crop_border {CROP}, "
          f"PSNR+SSIM RGB and Y, best of {args.repeats}")
    t_ref, v_ref = best_s(reference, sr, hr, repeats=args.repeats)
    t_fast, v_fast = best_s(harness, sr, hr, repeats=args.repeats)
    print()
    print("| metric | harness.measure.metrics | float64 reference | abs diff |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for key in v_ref:
        diff = abs(v_fast[key] - v_ref[key])
        worst = max(worst, diff)
        print(f"| {key} | {v_fast[key]:.8f} | {v_ref[key]:.8f} | {diff:.1e} |")
    print()
    print("| path | seconds per pair (4 metrics) | pairs / s |")
    print("|---|---:|---:|")
    print(f"| float64 NumPy reference (121-tap filter2) | {t_ref:.3f} | {1 / t_ref:.2f} |")
    print(f"| harness.measure.metrics (separable, integer SSE) | {t_fast:.3f} | {1 / t_fast:.2f} |")
    print()
    print(f"speed-up: {t_ref / t_fast:.1f}x (target >= 5x); max abs diff {worst:.1e} (limit 1e-6)")
    if worst > 1e-6:
        sys.exit("FAIL: harness.measure.metrics and the float64 reference disagree beyond 1e-6")


if __name__ == "__main__":
    main()
