"""Wall time of N small entries: local backend vs Ray with 2 workers, side by side in one run.

    python bench/bench_ray.py [--entries 6] [--trials 1] [--threads 1] [--data builtin]

Each entry is a tiny conv + pixel-shuffle network (written into a temporary models
folder) measured on the data set with the full worker (complexity, quality, timing).
The local backend measures them one after another; the Ray backend runs 2 at a time on a
local Ray instance started with ``num_cpus=2``. Ray's start-up is timed separately and
reported both excluded and included.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

MODEL = '''
from torch import nn
from harness.card import Entry


class Bench(nn.Module):
    def __init__(self, width=16, scale=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3 * scale * scale, 3, padding=1))
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.up(self.body(x))


ENTRIES = [Entry(name=f"bench{i:02d}", model=Bench, kwargs={"width": 8 + 2 * i}, scale=4) for i in range(N)]
'''


def timed_run(config) -> tuple[float, list]:
    from harness.running.runner import run

    start = time.perf_counter()
    outcome = run(config, progress=False)
    return time.perf_counter() - start, outcome.records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=6, help="number of entries (default 6)")
    p.add_argument("--trials", type=int, default=1, help="timed passes per entry (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per entry (default 1)")
    p.add_argument("--data", default=None, help="data set (default: built-in)")
    p.add_argument("--input", default="3x64x64", help="complexity input (default 3x64x64)")
    args = p.parse_args(argv)
    try:
        import ray
    except ImportError:
        print('bench_ray: needs Ray: pip install -e ".[ray]"', file=sys.stderr)
        return 2
    from harness.running.runner import RunConfig
    from harness.running.settings import RunSettings, parse_shape

    load_before = os.getloadavg()[0]
    settings = RunSettings(trials=args.trials, threads=args.threads, input_shape=parse_shape(args.input), device="cpu")
    with tempfile.TemporaryDirectory(prefix="esr-bench-ray-") as tmp:
        tmp = Path(tmp)
        (tmp / "models").mkdir()
        (tmp / "models" / "bench.py").write_text(MODEL.replace("range(N)", f"range({args.entries})"))

        def config(name: str, backend: str) -> RunConfig:
            return RunConfig(out=tmp / name, models=tmp / "models", zoo=tmp / "zoo", data=args.data,
                             backend=backend, settings=settings)

        local_s, local_records = timed_run(config("local", "local"))
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        startup_s = time.perf_counter() - start
        try:
            ray_s, ray_records = timed_run(config("ray", "ray"))
        finally:
            ray.shutdown()
    bad = [r["entry"] for r in local_records + ray_records if r["status"] not in ("ok", "untrained")]
    n = args.entries
    print(f"esr bench_ray: {n} entries, trials={args.trials}, threads/entry={args.threads}, "
          f"data={args.data or 'builtin'}, cpus={os.cpu_count()}, "
          f"load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f} (other work on the machine inflates both)")
    print(f"{'backend':<28}{'wall_s':>9}{'s/entry':>9}{'speed-up':>10}")
    print(f"{'local (1 at a time)':<28}{local_s:>9.2f}{local_s / n:>9.2f}{1.0:>10.2f}")
    print(f"{'ray, 2 workers':<28}{ray_s:>9.2f}{ray_s / n:>9.2f}{local_s / ray_s:>10.2f}")
    print(f"{'ray, 2 workers + start-up':<28}{ray_s + startup_s:>9.2f}{(ray_s + startup_s) / n:>9.2f}"
          f"{local_s / (ray_s + startup_s):>10.2f}")
    print(f"ratio local/ray = {local_s / ray_s:.2f} (Ray start-up {startup_s:.1f} s not included)")
    if bad:
        print(f"WARNING: failed entries {bad}; the times are not comparable")
    print("Limits of this machine: with 2 cores, 2 Ray workers can at best halve the wall time; the Ray")
    print("driver, raylet and object store share the same 2 cores, and each entry's wall time is dominated")
    print("by starting its worker subprocess (importing torch), so the ratio here says little about a GPU")
    print("cluster, where each entry owns a GPU and entries take minutes. Runtimes measured 2 at a time on")
    print("2 cores are not fair timings: use --exclusive-timing or the local backend for ranking.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
