"""PSNR/SSIM of an entry's SR outputs, computed in the parent against the HR (no team code here).

The worker that runs the model holds LR images only; it sends each SR output of the first
timed trial as ``uint8`` ``H x W x 3`` RGB (``decode_sr`` turns a channel frame into an
array) and this module compares it with the HR. Interface:

* ``Quality(splits, entry=, crop_border=, sinks=())`` -- ``splits`` maps a split name to a
  ``harness.data.splits.Split`` holding the HR;
* ``quality.add(split, index, sr)`` -- checks the shape against the HR, computes the four
  figures, then hands the image to every sink: ``sink(split, index, name, sr)`` (for example
  saving the SR images); raises ``BadOutputError`` for a wrong shape or dtype;
* ``quality.results()`` -- per split: ``images``, the per-image lists ``psnr_rgb``, ``psnr_y``,
  ``ssim_rgb``, ``ssim_y`` and their ``mean``; raises ``BadOutputError`` if an image is missing.

Where the figures were computed is recorded by ``placement()`` in ``record["quality"]``.
"""
from __future__ import annotations

import math
import os

import numpy as np

KEYS = ("psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y")


class BadOutputError(ValueError):
    """An SR output that cannot be scored (wrong shape, dtype, or missing)."""


def decode_sr(header: dict, payload: bytes | None) -> np.ndarray:
    """A channel frame ``{"shape": [H, W, 3], "dtype": "uint8"}`` + raw bytes -> array (read-only)."""
    shape = header.get("shape")
    if header.get("dtype") != "uint8":
        raise BadOutputError(f"SR output of dtype {header.get('dtype')!r}; the worker must send uint8")
    if (not isinstance(shape, list) or len(shape) != 3 or shape[2] != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise BadOutputError(f"SR output of shape {shape!r}; expected [H, W, 3]")
    if payload is None or len(payload) != shape[0] * shape[1] * 3:
        raise BadOutputError(f"SR output of shape {shape} arrived with {0 if payload is None else len(payload)} bytes")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def mean_quality(values) -> float:
    """Mean over images; PSNR of an identical image is inf, and then so is the mean."""
    vals = [float(v) for v in values]
    return math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)


class Quality:
    """Scores one entry's SR outputs, split by split, image by image."""

    def __init__(self, splits: dict, *, entry: str, crop_border: int, sinks=()):
        self.splits = splits
        self.entry = entry
        self.crop_border = int(crop_border)
        self.sinks = list(sinks)
        self.values = {name: {k: [None] * len(s.pairs) for k in KEYS} for name, s in splits.items()}
        self.seconds = 0.0  # time spent scoring (the worker waits meanwhile)
        self.split_seconds = {}
        self.identical = []  # images whose SR output equals the HR bit for bit

    def expected_shape(self, split: str, index: int) -> tuple:
        return tuple(self.splits[split].pairs[index].hr.shape)

    def add(self, split: str, index: int, sr: np.ndarray) -> dict:
        """Score one SR image; returns its four figures."""
        from time import perf_counter

        from harness.measure.metrics import psnr, ssim

        if split not in self.splits or not isinstance(index, int) or not 0 <= index < len(self.splits[split].pairs):
            raise BadOutputError(f"{self.entry}: SR output for unknown image {split}[{index!r}]")
        pair = self.splits[split].pairs[index]
        if sr.dtype != np.uint8 or sr.shape != pair.hr.shape:
            raise BadOutputError(f"{self.entry}: SR output of {pair.name} is {sr.dtype} {sr.shape}; "
                                 f"expected uint8 {pair.hr.shape} (HR size)")
        started = perf_counter()
        out = {}
        for channel in ("rgb", "y"):
            out[f"psnr_{channel}"] = psnr(sr, pair.hr, crop_border=self.crop_border, channel=channel)
            out[f"ssim_{channel}"] = ssim(sr, pair.hr, crop_border=self.crop_border, channel=channel)
        for key, value in out.items():
            self.values[split][key][index] = value
        if np.array_equal(sr, pair.hr):
            self.identical.append(f"{split}/{pair.name}")
        self.seconds += perf_counter() - started
        self.split_seconds[split] = self.split_seconds.get(split, 0.0) + perf_counter() - started
        for sink in self.sinks:
            sink(split, index, pair.name, sr)
        return out

    def missing(self, split: str) -> list[str]:
        vals = self.values[split]["psnr_rgb"]
        return [p.name for p, v in zip(self.splits[split].pairs, vals) if v is None]

    def results(self) -> dict:
        out = {}
        for split, vals in self.values.items():
            gone = self.missing(split)
            if gone:
                raise BadOutputError(f"{self.entry}: no SR output received for {len(gone)} image(s) of {split} "
                                     f"({', '.join(gone[:5])})")
            res = {"images": [p.name for p in self.splits[split].pairs], **{k: list(v) for k, v in vals.items()}}
            res["mean"] = {k: mean_quality(v) for k, v in vals.items()}
            out[split] = res
        return out

    def problems(self) -> list[str]:
        """An SR output equal to the HR bit for bit is what a model that read the ground truth returns."""
        if not self.identical:
            return []
        return [f"SR output identical to the HR for {len(self.identical)} image(s) "
                f"({', '.join(self.identical[:5])}): the ground truth reached the model"]

    def placement(self) -> dict:
        """``record["quality"]``: where and how the figures were computed."""
        return {"where": "host", "computed_by": "harness.running.quality", "process": "parent (no team code)",
                "pid": os.getpid(), "device": "cpu", "transport": "pipe (uint8 RGB frames)", "overlap": False,
                "crop_border": self.crop_border, "seconds": {s: round(v, 3) for s, v in self.split_seconds.items()}}
