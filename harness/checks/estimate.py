"""Complexity and speed estimates (subprocess side): counters, operators, requirements, CPU time."""
from __future__ import annotations

import re
import time

from harness.checks.result import CheckResult, _one

TIMING_REPEATS = 3


def measure_entry(model, entry, input_shape: tuple) -> dict:
    """Params, MACs and unsupported operators (fvcore, explained) and CPU runtime on ``input_shape``.

    fvcore alone, as the challenges count MACs; the full ``harness.measure.complexity.profile`` (three
    counters) is what ``esr run`` records.
    """
    stats = {"input_shape": list(input_shape), "params": sum(p.numel() for p in model.parameters())}
    try:
        stats.update(_fvcore_counts(model, input_shape, entry.input_range))
    except Exception as exc:
        stats["complexity_error"] = _one(exc)
    stats["runtime_ms"] = cpu_runtime_ms(model, input_shape, entry.input_range)
    return stats


def _fvcore_counts(model, input_shape, input_range) -> dict:
    import logging
    import warnings

    import torch
    from fvcore.nn import FlopCountAnalysis

    try:
        from harness.measure.complexity import explain_op
    except ImportError:
        def explain_op(op):
            return "not counted by fvcore"
    for name in ("fvcore", "fvcore.nn.jit_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)
    x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(0)) * input_range
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, (x,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = int(analysis.total())
        unsupported = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    return {"macs": macs, "unsupported": unsupported, "explanations": {op: explain_op(op) for op in unsupported}}


def cpu_runtime_ms(model, input_shape, input_range) -> float:
    """Median of TIMING_REPEATS forwards after one warm-up, in ms, on the CPU."""
    import statistics

    import torch

    x = torch.rand(*input_shape) * input_range
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(TIMING_REPEATS):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def operators_check(stats: dict, name: str) -> CheckResult:
    """fvcore's unsupported operators, each explained; warn when one may hide multiply-accumulates."""
    if stats.get("complexity_error"):
        return CheckResult("operators", "warn", f"{name}: fvcore could not trace the model: {stats['complexity_error']}",
                           "the MACs column will be empty; avoid data-dependent Python control flow in forward()", name)
    unsupported = stats.get("unsupported") or {}
    if not unsupported:
        return CheckResult("operators", "pass", f"{name}: fvcore counts every operator", "", name)
    explained = stats.get("explanations") or {}
    free, costly = [], []
    for op, count in sorted(unsupported.items()):
        why = explained.get(op) or "not counted by fvcore"
        if why.startswith("does not count by definition"):
            free.append(f"{op} x{count}")
        else:
            costly.append(f"{op} x{count} ({why})")
    parts = costly + ([f"{', '.join(free)} (element-wise or data movement: no MACs by definition)"] if free else [])
    text = f"{name}: fvcore does not count: {'; '.join(parts)}"
    if costly:
        ops = ", ".join(c.split(" x", 1)[0] for c in costly)
        return CheckResult("operators", "warn", text, f"{ops} may hide multiply-accumulates: the MACs are a lower bound; "
                           f"prefer standard operators (conv, linear, matmul)", name)
    return CheckResult("operators", "pass", text, "", name)


def requirements_check(entry) -> CheckResult:
    from importlib import metadata

    missing = []
    for req in entry.requirements:
        pkg = re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0]
        try:
            metadata.version(pkg)
        except metadata.PackageNotFoundError:
            missing.append(req)
    if missing:
        return CheckResult("requirements", "warn", f"{entry.name}: not installed here: {', '.join(missing)}",
                           f"pip install {' '.join(missing)} (or drop the dependency: the organizers install nothing else)",
                           entry.name)
    text = f"{entry.name}: " + (f"requirements installed ({', '.join(entry.requirements)})" if entry.requirements
                                else "no extra requirements")
    return CheckResult("requirements", "pass", text, "", entry.name)
