"""Hand-made records and CLI helpers shared by the leaderboard tests."""
from __future__ import annotations

import argparse
import math

from leaderboard.cli import add_rank_arguments, add_report_arguments

# What each shipped track's figures were measured on, as a record names it.
CONTEXTS = {
    "ntire2022": ("div2k", "NVIDIA TITAN Xp"),
    "ntire2024": ("div2k_lsdir", "NVIDIA GeForce RTX 3090"),
    "ntire2026": ("div2k_lsdir", "NVIDIA RTX A6000"),
    "aim2019": ("div2k", "NVIDIA TITAN Xp"),
}


def context(track: str | None = None, *, layout: str | None = None, name: str = "data", device: str = "cuda",
            device_name: str | None = None, memory_kind: str | None = None, splits=("valid", "test")) -> dict:
    """The record keys the leaderboard reads for context (docs/design.md)."""
    if track:
        layout = layout or CONTEXTS[track][0]
        device_name = device_name or CONTEXTS[track][1]
    memory_kind = memory_kind or ("cpu_peak_rss_growth" if device == "cpu" else "cuda_max_memory_allocated")
    return {
        "settings": {"device": device, "trials": 3},
        "data": {s: {"name": name, "split": s, "layout": layout or "benchmark", "file_hash": f"{s}hash0123456789ab"}
                 for s in splits},
        "provenance": {"harness": "0.1.0", "device_name": device_name or ("Test CPU" if device == "cpu" else "GPU")},
        "runtime": {"protocol": {"clock": "cuda_event" if device != "cpu" else "perf_counter_ns", "warmup": True,
                                 "trials": 3, "batch": 1, "device": device, "threads": 2}},
        "memory": {s: {"kind": memory_kind, "peak_mib": 1.0} for s in splits},
    }


def rec(entry, status="ok", trained=True, error=None, ctx: dict | None = None, **metrics):
    """A record as ``esr run`` writes it (only the keys the leaderboard reads)."""
    out = {"schema": "esr-record/2", "entry": entry, "status": status, "trained": trained,
           "error": error, "metrics": {k.replace("__", "."): v for k, v in metrics.items()}}
    out.update(ctx or {})
    return out


def ntire24(entry, params, macs, rv, rt, pv=27.0, pt=27.1, track="ntire2024", ctx=None, **kw):
    return rec(entry, params=params, macs=macs, valid__runtime_ms=rv, test__runtime_ms=rt,
               valid__psnr_rgb=pv, test__psnr_rgb=pt, ctx=ctx if ctx is not None else context(track), **kw)


def ntire22(entry, runtime, params, flops, acts, mem, pv=29.05, pt=28.7, ctx=None):
    return rec(entry, valid__runtime_ms=runtime, test__runtime_ms=runtime, params=params, macs_legacy=flops,
               activations=acts, valid__memory_mib=mem, valid__psnr_rgb=pv, test__psnr_rgb=pt,
               ctx=ctx if ctx is not None else context("ntire2022"))


def score(w, r, f, p, r0, f0, p0):
    """Independent transcription of the README formula (FLOPs in G, params in M, runtime in ms)."""
    return w[0] * math.exp(2 * r / r0) + w[1] * math.exp(2 * f / f0) + w[2] * math.exp(2 * p / p0)


def parse(add, argv):
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


def rank_args(argv):
    return parse(add_rank_arguments, argv)


def report_args(argv):
    return parse(add_report_arguments, argv)
