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

* ``quality.receive(header, payload)`` -- one ``sr`` message of the worker: a host frame
  (``decode_sr``) or, on CUDA, an ``harness.measure.output_share`` header (a CUDA IPC handle
  scored on the device by ``metrics_torch``, or a host copy); returns the reply for the worker:
  ``{"type": "ack"}``, or ``{"type": "host", "reason": ...}`` when the IPC handle could not be
  opened here (the worker then sends the same image through the host).

Where the figures were computed is recorded by ``placement()`` in ``record["quality"]``:
``where`` is ``host``, ``cuda-ipc`` or ``host-copy`` (a CUDA output copied through the host,
with the reason).
"""
from __future__ import annotations

import math
import os

import numpy as np

KEYS = ("psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y")
REFERENCE_BUDGET_BYTES = 1 << 30  # prepared HRs kept per process: about 90 DIV2K-size images


class ReferenceStore:
    """HR images prepared for scoring (``metrics.prepare_reference``), kept and shared by entries.

    An HR is the same for every entry, so its cropped R, G, B and Y planes are made once per
    process. Keyed by the split's checked ``content_sha256`` (``load_cache`` sets it), the
    image's index and the crop; a split without a known hash is prepared on every call. The
    store adds references until ``budget_bytes`` is reached and then stops adding: every entry
    scores the images in the same order, so the same first images always hit (an LRU would
    miss on every image of a split larger than the budget).
    """

    def __init__(self, budget_bytes: int = REFERENCE_BUDGET_BYTES):
        import threading

        self.budget_bytes = int(budget_bytes)
        self.bytes = 0
        self._refs = {}
        self._lock = threading.Lock()

    def get(self, split, index: int, crop_border: int):
        from harness.measure.metrics import prepare_reference

        key = (split.content_sha256, split.split, index, int(crop_border))
        if key[0] is None:
            return prepare_reference(split.pairs[index].hr, crop_border=crop_border)
        with self._lock:
            ref = self._refs.get(key)
        if ref is None:
            ref = prepare_reference(split.pairs[index].hr, crop_border=crop_border)
            size = sum(p.nbytes for p in ref.planes)
            with self._lock:
                if self.bytes + size <= self.budget_bytes and key not in self._refs:
                    self._refs[key] = ref
                    self.bytes += size
        return ref


REFERENCES = ReferenceStore()


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

    def __init__(self, splits: dict, *, entry: str, crop_border: int, sinks=(), device: str = "cpu"):
        self.splits = splits
        self.device = str(device)
        self.device_used = "cpu"
        self.where = set()  # transports that brought outputs: host, cuda-ipc, host-copy
        self.host_copy_reasons = set()
        self.entry = entry
        self.crop_border = int(crop_border)
        self.sinks = list(sinks)
        self.values = {name: {k: [None] * len(s.pairs) for k in KEYS} for name, s in splits.items()}
        self.split_seconds = {}  # time spent scoring per split (the worker waits meanwhile)
        self.identical = []  # images whose SR output equals the HR bit for bit

    @property
    def seconds(self) -> float:
        """Time spent scoring, all splits."""
        return sum(self.split_seconds.values())

    def expected_shape(self, split: str, index: int) -> tuple:
        return tuple(self.splits[split].pairs[index].hr.shape)

    def add(self, split: str, index: int, sr) -> dict:
        """Score one SR image (uint8 ``H x W x 3`` array, or uint8 ``3 x H x W`` CUDA tensor); its four figures."""
        from time import perf_counter

        pair = self._pair(split, index)
        on_device = not isinstance(sr, np.ndarray)
        shape = tuple(sr.shape)[1:] + tuple(sr.shape)[:1] if on_device else sr.shape
        if str(sr.dtype) not in ("uint8", "torch.uint8") or shape != pair.hr.shape:
            raise BadOutputError(f"{self.entry}: SR output of {pair.name} is {sr.dtype} {shape}; "
                                 f"expected uint8 {pair.hr.shape} (HR size)")
        started = perf_counter()
        ref = REFERENCES.get(self.splits[split], index, self.crop_border)
        if on_device:
            out, identical = self._score_on_device(pair, ref, sr)
        else:
            from harness.measure.metrics import quality

            out = quality(sr, ref, crop_border=self.crop_border)
            identical = out["psnr_rgb"] == math.inf and np.array_equal(sr, pair.hr)
        for key, value in out.items():
            self.values[split][key][index] = value
        if identical:
            self.identical.append(f"{split}/{pair.name}")
        self.split_seconds[split] = self.split_seconds.get(split, 0.0) + perf_counter() - started
        if self.sinks:
            host = sr.permute(1, 2, 0).contiguous().cpu().numpy() if on_device else sr
            for sink in self.sinks:
                sink(split, index, pair.name, host)
        return out

    def receive(self, header: dict, payload: bytes | None) -> dict:
        """Score one ``sr`` message of the worker; the reply to send back (see the module docstring)."""
        split, index = header.get("split"), header.get("index")
        if "kind" not in header:  # the CPU protocol: raw uint8 H x W x 3 bytes
            self.add(split, index, decode_sr(header, payload))
            self.where.add("host")
            return {"type": "ack"}
        from harness.measure.output_share import ShareError, open_output

        pair = self._pair(split, index)
        if header.get("kind") == "cuda_ipc" and self.device == "cpu":
            raise BadOutputError(f"{self.entry}: a CUDA IPC output arrived in a run on the CPU")
        try:
            sr, where = open_output(header, payload, expect_hw=pair.hr.shape[:2],
                                    device=self.device if self.device.startswith("cuda") else None)
        except ShareError as exc:
            raise BadOutputError(f"{self.entry}: SR output of {pair.name}: {exc}") from exc
        except Exception as exc:  # the handle is valid but cannot be mapped here (driver, namespaces)
            reason = f"CUDA IPC handle not opened by the quality process: {type(exc).__name__}: {exc}"
            self.host_copy_reasons.add(reason.splitlines()[0][:200])
            return {"type": "host", "reason": reason.splitlines()[0][:200]}
        if where == "host-copy" and header.get("reason"):
            self.host_copy_reasons.add(str(header["reason"])[:200])
        self.add(split, index, sr)
        self.where.add(where)
        return {"type": "ack"}

    def _pair(self, split, index):
        if split not in self.splits or not isinstance(index, int) or not 0 <= index < len(self.splits[split].pairs):
            raise BadOutputError(f"{self.entry}: SR output for unknown image {split}[{index!r}]")
        return self.splits[split].pairs[index]

    def _score_on_device(self, pair, host_ref, sr) -> tuple[dict, bool]:
        """The four figures with ``metrics_torch`` where the output is; the HR goes to the device once per image."""
        import torch

        from harness.measure import metrics_torch

        ref = metrics_torch.prepare_reference(host_ref, crop_border=self.crop_border, device=str(sr.device))
        out = metrics_torch.quality(sr, ref, crop_border=self.crop_border)
        identical = False
        if out["psnr_rgb"] == math.inf:
            hr = torch.from_numpy(np.ascontiguousarray(pair.hr)).to(sr.device).permute(2, 0, 1)
            identical = bool(torch.equal(sr, hr))
        self.device_used = str(sr.device)
        return out, identical

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
        where = ("cuda-ipc" if self.where == {"cuda-ipc"} else "host-copy" if "host-copy" in self.where
                 else "mixed" if len(self.where) > 1 else "host")
        out = {"where": where, "computed_by": "harness.running.quality", "process": "parent (no team code)",
               "pid": os.getpid(), "device": self.device_used,
               "transport": {"host": "pipe (uint8 RGB frames)", "cuda-ipc": "CUDA IPC (device memory, no host copy)",
                             "host-copy": "pipe (CUDA output copied through the host)"}.get(where, sorted(self.where)),
               "overlap": False, "crop_border": self.crop_border,
               "seconds": {s: round(v, 3) for s, v in self.split_seconds.items()}}
        if self.host_copy_reasons:
            out["host_copy_reason"] = "; ".join(sorted(self.host_copy_reasons))
        return out
