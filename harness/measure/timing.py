"""The runtime protocol: warm-up, timed trials, synchronisation, an injectable clock.

Protocol (recorded in ``TimingResult.protocol``):

* ``torch.inference_mode``, batch 1, inputs already on the device (transfer is not timed);
* one untimed warm-up forward per distinct input shape (first occurrence order), so
  lazy initialisation, allocator growth and cuDNN autotuning (when ``cudnn.benchmark`` is
  on) happen before timing;
* then ``trials`` passes over all inputs, each forward timed on its own:
  CUDA -- CUDA events recorded around the forward, the device synchronised before the
  start event and before the events are read; CPU -- ``time.perf_counter_ns``;
* ``on_output(trial, index, output)`` runs outside the timed region (quality metrics).

Statistics (ms per image): ``trial_means_ms[t]`` is the mean over images of trial ``t``;
``mean_ms`` is the mean of the trial means (NTIRE 2026, "mean of N runs"); ``best_ms`` the
smallest trial mean (AIM 2019, "best of 3"). Raw times stay in ``per_image_ms``.
``stats()`` adds the median of the trial means and their coefficient of variation
(population standard deviation / mean; 0 for one trial), flagged ``noisy`` above
``NOISY_CV`` (10%): the trials disagree, the machine was busy.

``state_fingerprint`` lives here because its job is deploy safety around timing: the
worker takes it before and after the timed trials, and a change means the model
re-parameterised itself lazily while being timed.
"""
from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

# Bound when the harness is imported, before any team file: a model that replaces
# time.perf_counter_ns at import does not change the clock used here.
_PERF_COUNTER_NS = time.perf_counter_ns


NOISY_CV = 0.10  # coefficient of variation of the trial means above which a split is flagged noisy


def runtime_stats(per_image_ms: list[list[float]]) -> dict:
    """Statistics of raw per-image times (trials x images, ms), as recorded in ``runtime.stats.<split>``.

    ``trial_means_ms`` (mean over images, per trial), ``mean_ms`` (mean of trial means),
    ``median_ms`` (median of trial means), ``best_ms`` (min of trial means), ``cv`` (population
    standard deviation of the trial means / their mean; 0.0 for a single trial) and ``noisy``
    (``cv > NOISY_CV``).
    """
    if not per_image_ms or any(not trial for trial in per_image_ms):
        raise ValueError("runtime_stats: need at least one trial with at least one image time")
    means = [statistics.fmean(t) for t in per_image_ms]
    mean = statistics.fmean(means)
    cv = statistics.pstdev(means) / mean if len(means) > 1 and mean > 0 else 0.0
    return {"trial_means_ms": means, "mean_ms": mean, "median_ms": statistics.median(means),
            "best_ms": min(means), "cv": cv, "noisy": cv > NOISY_CV}


@dataclass
class TimingResult:
    """Runtimes in milliseconds per image (batch 1)."""

    per_image_ms: list[list[float]]  # trials x images, raw
    trial_means_ms: list[float]  # per trial: mean over images
    mean_ms: float  # mean of trial means (NTIRE 2026)
    best_ms: float  # min of trial means (AIM 2019)
    protocol: dict = field(default_factory=dict)

    @property
    def spread_ms(self) -> float:
        """max - min of the trial means."""
        return max(self.trial_means_ms) - min(self.trial_means_ms)

    def stats(self) -> dict:
        """``runtime_stats`` of the raw times: trial means, mean, median, best, cv, noisy."""
        return runtime_stats(self.per_image_ms)

    def to_dict(self) -> dict:
        return asdict(self)


def set_threads(n: int | None) -> int:
    """Fix torch's intra-op CPU thread count (``None`` keeps the default); returns the count in force."""
    import torch

    if n is not None:
        if int(n) < 1:
            raise ValueError(f"thread count must be >= 1, got {n}")
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def state_fingerprint(model) -> tuple[int, str]:
    """``(parameter count, sha256 over the state dict)``: names, dtypes, shapes and raw bytes.

    Equal fingerprints before and after timing mean the model did not change itself
    (no lazy re-parameterisation inside the timed region).
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return int(sum(p.numel() for p in model.parameters())), digest.hexdigest()


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def run_timed(forward: Callable, inputs: list, *, trials: int, device: str = "cpu",
              clock: Callable[[], int] | None = None, on_output: Callable | None = None,
              warmup: bool = True, on_trial: Callable | None = None) -> TimingResult:
    """Time ``forward`` on every input, ``trials`` times, after one warm-up per input shape.

    ``inputs``: tensors already on ``device`` (batch 1). ``clock``: a callable returning
    nanoseconds, replacing the default clock (tests); on CUDA the device is still synchronised
    around it. ``on_output(trial, index, output)`` is called after each timed forward, untimed.
    ``on_trial(trial, "start" | "end")`` is called before a trial's first forward and after its
    last ``on_output`` (the worker tells its parent, which times each pass with its own clock).
    """
    import torch

    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if not inputs:
        raise ValueError("run_timed needs at least one input")
    cuda = _is_cuda(device)
    use_events = cuda and clock is None
    clock_kind = "cuda_event" if use_events else ("injected" if clock is not None else "perf_counter_ns")
    clock = clock or _PERF_COUNTER_NS

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    warmup_shapes = []
    per_image = []
    with torch.inference_mode():
        if warmup:
            for x in inputs:
                shape = list(x.shape)
                if shape not in warmup_shapes:
                    warmup_shapes.append(shape)
                    forward(x)
            sync()
        for trial in range(trials):
            if on_trial is not None:
                on_trial(trial, "start")
            times = []
            for index, x in enumerate(inputs):
                if use_events:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    sync()
                    start.record()
                    out = forward(x)
                    end.record()
                    end.synchronize()
                    ms = float(start.elapsed_time(end))
                else:
                    sync()
                    t0 = clock()
                    out = forward(x)
                    sync()
                    ms = (clock() - t0) / 1e6
                times.append(ms)
                if on_output is not None:
                    on_output(trial, index, out)
                del out
            per_image.append(times)
            if on_trial is not None:
                on_trial(trial, "end")
    summary = runtime_stats(per_image)
    trial_means = summary["trial_means_ms"]
    protocol = {
        "inference_mode": True,
        "batch": 1,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "warmup": bool(warmup),
        "warmup_shapes": warmup_shapes,
        "warmup_forwards": len(warmup_shapes),
        "trials": int(trials),
        "images": len(inputs),
        "clock": clock_kind,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "transfer_timed": False,
        "statistics": {"runtime_ms": "mean of per-trial means (NTIRE 2026)",
                       "runtime_ms_best": "min of per-trial means (AIM 2019)",
                       "cv": "population std / mean of the per-trial means",
                       "noisy": f"cv > {NOISY_CV}"},
    }
    return TimingResult(per_image_ms=per_image, trial_means_ms=trial_means, mean_ms=summary["mean_ms"],
                        best_ms=summary["best_ms"], protocol=protocol)
