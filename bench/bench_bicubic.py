"""How far common bicubic resizers are from MATLAB's ``imresize`` on Set5 (X2 and X4 LR files).

Run: ``python bench/bench_bicubic.py`` (reads ``ESR_SET5``, default ``../shared/data/Set5``).
Prints a Markdown table: % of uint8 values differing from MATLAB's LR files, max abs
difference, PSNR against MATLAB (all channels, no crop; ``inf`` = identical everywhere) and
time per image (best of 5, ms, this machine).
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.io import imread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.data.bicubic import imresize, modcrop, round_half_away  # noqa: E402
from harness.measure.metrics import mean_psnr, psnr  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = ["baby", "bird", "butterfly", "head", "woman"]


def set5_dir() -> Path:
    shared = Path(os.environ.get("ESR_SHARED", REPO.parent / "shared"))
    return Path(os.environ.get("ESR_SET5", shared / "data" / "Set5"))


def harness_uint8(hr, s):
    return imresize(hr, 1 / s)


def float_single_rounding(hr, s):
    out = imresize(hr.astype(np.float64), 1 / s)
    return np.clip(round_half_away(out), 0, 255).astype(np.uint8)


def pil_bicubic(hr, s):
    h, w = hr.shape[0] // s, hr.shape[1] // s
    return np.asarray(Image.fromarray(hr).resize((w, h), Image.Resampling.BICUBIC))


def _torch(hr, s, antialias):
    x = torch.from_numpy(hr).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(hr.shape[0] // s, hr.shape[1] // s), mode="bicubic",
                      align_corners=False, antialias=antialias)
    return y.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def torch_antialias(hr, s):
    return _torch(hr, s, True)


def torch_no_antialias(hr, s):
    return _torch(hr, s, False)


METHODS = {
    "harness imresize (uint8, two passes)": harness_uint8,
    "harness imresize float, rounded once": float_single_rounding,
    "PIL Image.resize(BICUBIC)": pil_bicubic,
    "torch interpolate bicubic antialias=True": torch_antialias,
    "torch interpolate bicubic antialias=False": torch_no_antialias,
}


def best_ms(fn, *args, repeats=5) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn(*args)
        best = min(best, (time.perf_counter_ns() - t0) / 1e6)
    return best


def measure(root: Path, scale: int) -> list[dict]:
    pairs = []
    for name in NAMES:
        hr = modcrop(imread(root / "HR" / f"{name}.png"), scale)
        lr = imread(root / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
        pairs.append((hr, lr))
    rows = []
    for label, fn in METHODS.items():
        differing = total = 0
        max_diff = 0
        psnrs, times = [], []
        for hr, lr in pairs:
            out = fn(hr, scale)
            d = np.abs(out.astype(np.int16) - lr.astype(np.int16))
            differing += int(np.count_nonzero(d))
            total += d.size
            max_diff = max(max_diff, int(d.max()))
            psnrs.append(psnr(out, lr, crop_border=0, channel="rgb"))
            times.append(best_ms(fn, hr, scale))
        rows.append({"method": label, "scale": scale, "pct": 100 * differing / total, "max": max_diff,
                     "psnr": mean_psnr(psnrs), "ms": float(np.mean(times))})
    return rows


def main() -> None:
    root = set5_dir()
    if not (root / "HR").is_dir():
        sys.exit(f"Set5 not found at {root}: set ESR_SET5 or ESR_SHARED")
    torch.set_num_threads(torch.get_num_threads())
    print(f"Set5 {root}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    print()
    print("| scale | method | values differing from MATLAB (%) | max abs diff | PSNR vs MATLAB (dB) | ms / image |")
    print("|---|---|---:|---:|---:|---:|")
    for scale in (2, 4):
        for r in measure(root, scale):
            print(f"| x{r['scale']} down | {r['method']} | {r['pct']:.2f} | {r['max']} | {r['psnr']:.2f} | {r['ms']:.2f} |")


if __name__ == "__main__":
    main()
