"""Is the declared input range plausible? A check that needs no ground truth.

A super-resolution output keeps the brightness of its input: the mean of the SR image is within
a few percent of the mean of the LR image. A model trained on [0, 255] but declared 1.0 (or the
reverse) gives outputs whose mean is off by a large factor (or clipped to black or white). On a
centre crop of a few LR images, run at the declared range and at the other one; warn when the
declared range is far off and the other one is close. Not a figure: a warning in the run's output.
"""
from __future__ import annotations

RATIO_OK = (0.8, 1.25)  # output mean / input mean for a plausible range
CROP = 48               # LR centre crop, pixels per side


def _crop(lr, size: int = CROP):
    h, w = lr.shape[:2]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return lr[top:top + size, left:left + size]


def brightness_ratio(model, lrs, input_range: float, device: str = "cpu") -> float:
    """Mean of the uint8-quantised outputs over the mean of the inputs (both on 0..255)."""
    import numpy as np
    import torch

    out_sum, in_sum = 0.0, 0.0
    with torch.no_grad():
        for lr in lrs:
            patch = np.ascontiguousarray(_crop(lr).transpose(2, 0, 1))
            x = torch.from_numpy(patch).float().unsqueeze(0).mul(input_range / 255.0).to(device)
            y = model(x).float().div(input_range).mul(255.0).clamp(0, 255).round()
            out_sum += float(y.mean())
            in_sum += float(patch.mean())
    return out_sum / in_sum if in_sum else float("nan")


def input_range_warning(model, lrs, input_range: float, name: str, device: str = "cpu") -> str | None:
    """A one-line warning when the other input range fits the model much better, else None."""
    declared = brightness_ratio(model, lrs, input_range, device)
    if RATIO_OK[0] <= declared <= RATIO_OK[1]:
        return None
    other_range = 255.0 if input_range == 1.0 else 1.0
    other = brightness_ratio(model, lrs, other_range, device)
    if not RATIO_OK[0] <= other <= RATIO_OK[1]:
        return None
    return (f"{name}: input range {input_range:g} looks wrong: outputs are {declared:.3g}x as bright as the inputs, "
            f"{other:.3g}x with input_range = {other_range:g}; check the card (quality was measured at "
            f"{input_range:g} as declared)")
