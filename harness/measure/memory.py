"""Peak memory of one phase (a split's warm-up and trials), in MiB (2**20 bytes).

Two kinds, always named in the record:

* ``cuda_max_memory_allocated`` -- ``torch.cuda.reset_peak_memory_stats`` before the block,
  ``torch.cuda.max_memory_allocated`` after it (device synchronised first). This is the
  challenges' figure: it includes the weights and every tensor alive at the peak, and
  excludes the caching allocator's reserve and the CUDA context.
* ``cpu_peak_rss_growth`` -- the growth of the process's peak resident set during the block:
  ``peak RSS in the block - RSS at entry``. The peak is read from ``VmHWM`` in
  ``/proc/self/status`` after resetting it with ``/proc/self/clear_refs`` ("5", Linux >= 4.0).
  Where that write is refused, a thread samples ``VmRSS`` every ``interval_s`` (misses
  spikes shorter than the interval) and ``VmHWM`` is used when it rose during the block
  (then it is exact). Limits: memory the allocator kept from an earlier phase is reused
  without growing RSS, so later phases of the same process can read lower; and the
  figure covers the whole process (other threads included). Non-Linux: ``None``.

``with mem.excluded():`` inside the block leaves out the work done in it (the worker converts
and sends each SR output there, between timed forwards): the peak so far is kept and the
counter is reset when the window closes, so the figure is the peak of the forward passes.
"""
from __future__ import annotations

import contextlib
import threading

MIB = 1 << 20
STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"


def read_status_kib() -> dict:
    """``{"VmRSS": kib, "VmHWM": kib}`` from /proc/self/status; empty where there is none."""
    out = {}
    try:
        with open(STATUS) as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process; False where not permitted."""
    try:
        with open(CLEAR_REFS, "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager measuring the peak memory of its block on ``device``.

    After the block: ``peak_mib`` (float MiB or None), ``kind``, ``method``, ``to_dict()``.
    """

    def __init__(self, device: str = "cpu", *, interval_s: float = 0.001):
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")
        self.kind = "cuda_max_memory_allocated" if self.cuda else "cpu_peak_rss_growth"
        self.interval_s = interval_s
        self.peak_mib = None
        self.baseline_mib = None
        self.method = None
        self._sampler = None
        self._stop = threading.Event()
        self._sampled_kib = 0
        self._paused = False
        self._kept = 0  # peak (KiB on a CPU, bytes on CUDA) carried over excluded windows
        self.excluded_windows = 0

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mib = torch.cuda.memory_allocated(self.device) / MIB
            self.method = "torch.cuda.reset_peak_memory_stats + max_memory_allocated"
            return self
        status = read_status_kib()
        if "VmRSS" not in status:
            self.method = "unavailable (no /proc/self/status)"
            return self
        self._rss0 = status["VmRSS"]
        self.baseline_mib = self._rss0 * 1024 / MIB
        if reset_peak_rss():
            self.method = "VmHWM after clear_refs reset"
        else:
            self.method = f"VmRSS sampled every {self.interval_s * 1000:g} ms (+ VmHWM when it rose)"
            self._hwm0 = status.get("VmHWM", 0)
            self._sampled_kib = self._rss0
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self._paused:
                continue
            rss = read_status_kib().get("VmRSS", 0)
            self._sampled_kib = max(self._sampled_kib, rss)

    @contextlib.contextmanager
    def excluded(self):
        """A window inside the block whose memory use is not counted."""
        self.excluded_windows += 1
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            self._kept = max(self._kept, torch.cuda.max_memory_allocated(self.device))
            try:
                yield
            finally:
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            return
        if self.method is None or self.method.startswith("unavailable"):
            yield
            return
        if self._sampler is None:
            self._kept = max(self._kept, read_status_kib().get("VmHWM", 0))
        else:
            self._sampled_kib = max(self._sampled_kib, read_status_kib().get("VmRSS", 0))
            self._paused = True
        try:
            yield
        finally:
            if self._sampler is None:
                reset_peak_rss()
            else:
                self._paused = False

    def __exit__(self, *exc) -> bool:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            self.peak_mib = max(self._kept, torch.cuda.max_memory_allocated(self.device)) / MIB
            return False
        if self.method.startswith("unavailable"):
            return False
        status = read_status_kib()
        if self._sampler is None:
            peak = max(self._kept, status.get("VmHWM", status["VmRSS"]))
        else:
            self._stop.set()
            self._sampler.join()
            peak = max(self._sampled_kib, status["VmRSS"])
            # the all-time peak was set inside the block (and not in an excluded window)
            if status.get("VmHWM", 0) > self._hwm0 and not self.excluded_windows:
                peak = max(peak, status["VmHWM"])
        self.peak_mib = max(0, peak - self._rss0) * 1024 / MIB
        return False

    def to_dict(self) -> dict:
        return {"kind": self.kind, "peak_mib": self.peak_mib, "baseline_mib": self.baseline_mib,
                "method": self.method, "device": self.device, "excluded_windows": self.excluded_windows}
