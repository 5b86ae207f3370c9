"""The harness's own overhead per entry against the model's forward time, side by side in one run.

Run: ``python bench/bench_overhead.py [--trials 3] [--entries imdn rlfn] [--threads 2]``.

For every scale-4 entry in ``models/`` the built-in data set (decoded once, before any timing)
goes through the worker's real per-split path (``harness.running.worker.timed_with_settle``: input
conversion, warm-up, timed trials, output checks, uint8 conversion, PSNR/SSIM on the first
trial, peak memory, the deploy-safety fingerprints). The forward callable is wrapped so the
time spent inside the model's forward calls (warm-up included) is summed; the overhead is
the wall time of the whole path minus that sum; the time inside ``harness.measure.metrics``
(``to_uint8``, ``psnr``, ``ssim``, first trial only) is shown as its part. The one-off per-entry costs (build + load +
deploy, and the complexity profile at 1x3x256x256) are printed beside it, not in the ratio.
Target: loop overhead under 10% of the model's forward time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class ForwardClock:
    """Wraps a forward callable and sums the nanoseconds spent inside it."""

    def __init__(self, forward):
        self.forward = forward
        self.ns = 0
        self.calls = 0

    def __call__(self, x):
        t0 = time.perf_counter_ns()
        y = self.forward(x)
        self.ns += time.perf_counter_ns() - t0
        self.calls += 1
        return y


class Stopwatch:
    """Wraps a function and sums the nanoseconds spent inside it (to split the overhead)."""

    def __init__(self, fn):
        self.fn = fn
        self.ns = 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter_ns()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.ns += time.perf_counter_ns() - t0


def bench_entry(entry, split, zoo, trials: int) -> dict:
    import harness.measure.metrics as metrics

    from harness.measure.complexity import profile
    from harness.measure.inference import wrap_forward
    from harness.running.settings import RunSettings
    from harness.running.worker import prepare_model, timed_with_settle

    t0 = time.perf_counter()
    prepared = prepare_model(entry, zoo, "cpu")
    t_prepare = time.perf_counter() - t0
    t0 = time.perf_counter()
    profile(prepared.model, input_range=entry.input_range)
    t_profile = time.perf_counter() - t0
    forward, _ = wrap_forward(prepared.model, scale=entry.scale)
    clock = ForwardClock(forward)
    settings = RunSettings(trials=trials)
    originals = {name: getattr(metrics, name) for name in ("psnr", "ssim", "to_uint8")}
    watches = {name: Stopwatch(fn) for name, fn in originals.items()}
    for name, watch in watches.items():  # the worker imports these at call time
        setattr(metrics, name, watch)
    try:
        t0 = time.perf_counter_ns()
        result = timed_with_settle(prepared, split, settings, "cpu", clock, [])
        total_ns = time.perf_counter_ns() - t0
    finally:
        for name, fn in originals.items():
            setattr(metrics, name, fn)
    metrics_ns = sum(w.ns for w in watches.values())
    overhead_ns = total_ns - clock.ns
    return {
        "entry": entry.name, "forwards": clock.calls, "forward_s": clock.ns / 1e9, "overhead_s": overhead_ns / 1e9,
        "ratio": overhead_ns / clock.ns, "metrics_s": metrics_ns / 1e9,
        "other_ratio": (overhead_ns - metrics_ns) / clock.ns, "prepare_s": t_prepare, "profile_s": t_profile,
        "psnr_y": result["mean"]["psnr_y"], "runtime_ms": result["mean_ms"],
    }


def main(argv=None) -> int:
    import torch

    from harness.data.splits import load_split
    from harness.submissions.discovery import discover

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--zoo", type=Path, default=Path(os.environ.get(
        "ESR_ZOO", Path(os.environ.get("ESR_SHARED", REPO.parent / "shared")) / "zoo")))
    parser.add_argument("--entries", nargs="*", help="entry names (default: every scale-4 entry)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-params", type=float, default=5e6,
                        help="skip larger entries unless named in --entries (EDSR full takes minutes on a CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    split = load_split("builtin", scale=4)
    decode_s = time.perf_counter() - t0
    catalog = discover(args.models)
    names = args.entries or [n for n in catalog.names() if catalog.entries[n].scale == 4]
    if not args.entries:
        sizes = {n: sum(p.numel() for p in catalog.entries[n].build().parameters()) for n in names}
        skipped = [n for n in names if sizes[n] > args.max_params]
        names = [n for n in names if n not in skipped]
        if skipped:
            print(f"skipped (over {args.max_params:.0f} params; name them with --entries): {', '.join(skipped)}")
    print(f"built-in set: {len(split.pairs)} images, LR {split.pairs[0].lr.shape[1]}x{split.pairs[0].lr.shape[0]}; "
          f"decoded once in {decode_s:.2f} s (not counted); trials {args.trials}; threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}")
    header = (f"{'entry':<12}{'forwards':>9}{'forward s':>11}{'overhead s':>12}{'overhead/forward':>18}"
              f"{'of it metrics s':>16}{'non-metric/fwd':>15}{'prepare s':>11}{'profile s':>11}{'PSNR-Y':>9}")
    print(header, flush=True)
    worst = 0.0
    for name in names:
        try:
            r = bench_entry(catalog.entries[name], split, args.zoo, args.trials)
        except Exception as exc:  # one broken entry should not hide the others
            print(f"{name:<12} failed: {type(exc).__name__}: {exc}")
            continue
        worst = max(worst, r["ratio"])
        print(f"{r['entry']:<12}{r['forwards']:>9}{r['forward_s']:>11.3f}{r['overhead_s']:>12.3f}"
              f"{100 * r['ratio']:>17.1f}%{r['metrics_s']:>16.3f}{100 * r['other_ratio']:>14.1f}%{r['prepare_s']:>11.2f}{r['profile_s']:>11.2f}{r['psnr_y']:>9.3f}", flush=True)
    print(f"worst loop overhead: {100 * worst:.1f}% of forward time (target < 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
