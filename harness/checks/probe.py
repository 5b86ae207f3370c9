"""Output probes (subprocess side): shape, range, determinism, lazy fusion, input range."""
from __future__ import annotations

import math

from harness.checks.deploy import state_fingerprint
from harness.checks.result import CheckResult, Recorder, _one

# Spatial size of the LR probe used by the output, lazy-fusion and determinism checks:
# non-square (catches swapped H/W) and a multiple of 16 (window-based models).
PROBE_HW = (32, 48)


RANGE_MARGIN_DB = 3.0   # declared range this many dB worse than the other one -> warn


RANGE_IMAGES = 3        # images used by the input-range check


RANGE_CROP = 48         # LR centre crop (pixels) of each of those images


DETERMINISM_RTOL = 1e-5  # max abs diff between two forwards, relative to the input range




def probe_checks(model, entry, rec: Recorder) -> bool:
    """Output shape/dtype/finite, no change of the state by a forward, two forwards agree."""
    import torch

    name = entry.name
    h, w = PROBE_HW
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1)) * entry.input_range
    want = (1, 3, h * entry.scale, w * entry.scale)
    before = state_fingerprint(model)
    try:
        with torch.inference_mode():
            out1 = model(x.clone())
    except Exception as exc:
        rec.add(CheckResult("output", "fail", f"{name}: forward on a 1x3x{h}x{w} input raised {_one(exc)}",
                            "the model must accept any LR size (pad inside forward if it needs multiples)", name))
        return False
    after = state_fingerprint(model)
    if not isinstance(out1, torch.Tensor):
        rec.add(CheckResult("output", "fail", f"{name}: forward returned a {type(out1).__name__}, not a tensor",
                            "return the SR image tensor only", name))
        return False
    problems = []
    if tuple(out1.shape) != want:
        problems.append(f"shape {'x'.join(map(str, out1.shape))} for a 1x3x{h}x{w} input, expected "
                        f"{'x'.join(map(str, want))} (scale {entry.scale})")
    if out1.dtype != torch.float32:
        problems.append(f"dtype {out1.dtype}, expected torch.float32")
    if out1.is_floating_point():
        bad = int((~torch.isfinite(out1)).sum())
        if bad:
            problems.append(f"{bad} of {out1.numel()} values are NaN or Inf")
    if problems:
        fix = ("the card's scale must be the model's upscaling factor" if "shape" in problems[0]
               else "keep the forward in float32 and guard divisions/logs/sqrt against 0")
        rec.add(CheckResult("output", "fail", f"{name}: output " + "; ".join(problems), fix, name))
        return False
    rec.add(CheckResult("output", "pass", f"{name}: {'x'.join(map(str, want))} float32, finite", "", name))

    rec.start("no lazy fusion", name)
    if after != before:
        rec.add(CheckResult(
            "no lazy fusion", "fail",
            f"{name}: the first forward changed the model (params {before[0]:,} -> {after[0]:,}, state dict changed)",
            "re-parameterise in a method and declare deploy = \"<method>\" on the card; never inside forward()", name))
        with torch.inference_mode():
            out1 = model(x.clone())  # compare the settled model with itself below
        after = state_fingerprint(model)
    else:
        rec.add(CheckResult("no lazy fusion", "pass", f"{name}: state dict and {after[0]:,} parameters unchanged by a forward",
                            "", name))
    rec.start("determinism", name)
    with torch.inference_mode():
        out2 = model(x.clone())
    if state_fingerprint(model) != after:
        rec.add(CheckResult("determinism", "fail", f"{name}: the model changes itself on every forward",
                            "inference must not modify parameters or buffers", name))
        return True
    diff = float((out2.float() - out1.float()).abs().max()) if out2.shape == out1.shape else math.inf
    tol = DETERMINISM_RTOL * entry.input_range
    if not diff <= tol:
        rec.add(CheckResult("determinism", "fail",
                            f"{name}: two forwards on the same input differ (max abs diff {diff:.3g} > {tol:g})",
                            "remove randomness from inference (dropout or noise outside eval mode, random sampling)", name))
    else:
        rec.add(CheckResult("determinism", "pass", f"{name}: two forwards agree (max abs diff {diff:.2g})", "", name))
    return True




def input_range_check(model, entry, data: str | None) -> CheckResult:
    """PSNR (RGB, border = scale) on a few LR centre crops fed at 1.0 and at 255."""
    import numpy as np
    import torch

    from harness.measure.metrics import psnr, to_uint8

    name = entry.name
    try:
        from harness.data.splits import load_split

        split = load_split(data, scale=entry.scale, split="valid")
    except Exception as exc:
        return CheckResult("input range", "skip", f"{name}: no data for the check ({_one(exc)})", "pass --data DIR", name)
    s = entry.scale
    scores = {1.0: [], 255.0: []}
    for pair in split.pairs[:RANGE_IMAGES]:
        lh, lw = pair.lr.shape[:2]
        c = min(RANGE_CROP, lh, lw)
        y0, x0 = (lh - c) // 2, (lw - c) // 2
        lr = pair.lr[y0:y0 + c, x0:x0 + c]
        hr = pair.hr[y0 * s:(y0 + c) * s, x0 * s:(x0 + c) * s]
        base = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float().unsqueeze(0) / 255.0
        for r in scores:
            with torch.inference_mode():
                out = model(base * r)
            value = psnr(to_uint8(out, r), hr, crop_border=s, channel="rgb")
            scores[r].append(min(value, 100.0))
    mean = {r: sum(v) / len(v) for r, v in scores.items()}
    declared, other = entry.input_range, 255.0 if entry.input_range == 1.0 else 1.0
    text = (f"{name}: PSNR on {len(scores[1.0])} crops: {mean[declared]:.2f} dB at the declared {declared:g}, "
            f"{mean[other]:.2f} dB at {other:g}")
    if mean[declared] < mean[other] - RANGE_MARGIN_DB:
        return CheckResult("input range", "warn", text + f"; the model looks trained for {other:g}",
                           f"set input_range = {other:.1f} on the card if the model was trained on [0, {other:g}]", name)
    return CheckResult("input range", "pass", text, "", name)
