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
    """fvcore MACs (official convention), its unsupported operators explained, and the artefacts:
    operators that hide MACs, measured another way (``harness.measure.complexity.artefacts``)."""
    from harness.measure.complexity import profile

    r = profile(model, input_shape=input_shape, input_range=input_range)
    keys = ("macs", "macs_corrected", "macs_legacy", "macs_legacy_corrected", "artefacts")
    return {"unsupported": r["unsupported_ops"], "explanations": r["explanations"], **{k: r[k] for k in keys}}


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
    legacy, fixed = stats.get("macs_legacy"), stats.get("macs_legacy_corrected")
    if not unsupported and legacy == fixed:
        return CheckResult("operators", "pass", f"{name}: fvcore counts every operator", "", name)
    explained = stats.get("explanations") or {}
    hidden = {a["op"]: a for a in stats.get("artefacts") or []}
    free, costly = [], []
    for op, count in sorted(unsupported.items()):
        why = explained.get(op) or "not counted by fvcore"
        known = (hidden.get(op) or {}).get("hidden_macs")
        if known:
            why += f"; hides {known / 1e9:.4f} G MACs, measured by {hidden[op]['counter']}"
        if why.startswith("does not count by definition") or (op in hidden and known == 0):
            free.append(f"{op} x{count}")
        else:
            costly.append(f"{op} x{count} ({why})")
    parts = costly + ([f"{', '.join(free)} (element-wise or data movement: no MACs by definition)"] if free else [])
    text = f"{name}: fvcore does not count: {'; '.join(parts)}" if parts else f"{name}: fvcore counts every operator"
    if legacy is not None and fixed is not None and legacy != fixed:
        text += (f"; the NTIRE 2022 counter's nn.Linear rule is wrong on token input: macs_legacy {legacy / 1e9:.4f} G "
                 f"official, {fixed / 1e9:.4f} G corrected")
        if not costly:
            return CheckResult("operators", "warn", text, "the record keeps both values; rank 2022-style tracks by the "
                               "official one only if the organizers ask for it", name)
    if costly:
        ops = ", ".join(c.split(" x", 1)[0] for c in costly)
        fix = f"{ops} may hide multiply-accumulates: the MACs are a lower bound; prefer standard operators (conv, linear, matmul)"
        if stats.get("macs_corrected", stats.get("macs")) != stats.get("macs"):
            fix += (f"; official-convention (fvcore) {stats['macs'] / 1e9:.4f} G, corrected "
                    f"{stats['macs_corrected'] / 1e9:.4f} G (the record keeps both)")
        return CheckResult("operators", "warn", text, fix, name)
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
