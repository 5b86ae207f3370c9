"""The parent's intake of what a worker reports: a field whitelist, types, finite numbers.

The worker runs team code, so its record content is data to check, never to trust. The
parent keeps only the fields a worker may set (``WORKER_FIELDS``), refuses malformed ones,
and sets itself everything that decides the result: ``status``, ``trained``, the quality
figures, the runtime statistics (from the raw per-image times), ``crosscheck``, ``key``,
``settings``, ``data``.
"""
from __future__ import annotations

import math
import re

WORKER_FIELDS = {"card", "metrics", "raw", "complexity", "runtime", "memory", "deploy", "load", "flags",
                 "provenance", "submission", "inference"}
# Failure statuses a worker may report; timeout, crashed and (memory-limit) oom are the parent's.
WORKER_FAILURES = {"import_error", "card_error", "build_error", "load_error", "deploy_error", "run_error",
                   "bad_output", "oom"}
PARENT_METRICS = re.compile(r"^(?:[a-z0-9_]+\.)?(?:psnr_|ssim_|runtime_ms)")
METRIC_NAME = re.compile(r"^(?:[a-z0-9_]+\.)?[a-z][a-z0-9_]*$")


class IntakeError(ValueError):
    """The worker's report is malformed; the entry fails with this message."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _one_line(text, limit: int = 1000) -> str:
    text = str(text).strip().splitlines()
    return (text[0] if text else "")[:limit]


def failure(header: dict) -> tuple[str, str, dict]:
    """(status, one-line error, extra fields) of a worker's ``failure`` message."""
    status = header.get("status")
    if status not in WORKER_FAILURES:
        raise IntakeError(f"failure status {status!r} is not one a worker may report")
    extra = {}
    if status == "oom":
        size = header.get("requested_bytes")
        extra["oom"] = {"requested_bytes": size if _number(size) and size >= 0 else None, "source": "allocator"}
    detail = header.get("detail")
    extra["detail"] = detail[-4000:] if isinstance(detail, str) else ""
    # figures counted before the failure (complexity of a model whose checkpoint did not load)
    for key in ("complexity", "submission"):
        if isinstance(header.get(key), dict):
            extra[key] = header[key]
    metrics = header.get("metrics")
    if isinstance(metrics, dict):
        extra["metrics"] = {k: v for k, v in metrics.items()
                            if isinstance(k, str) and METRIC_NAME.match(k) and not PARENT_METRICS.match(k)
                            and _number(v) and v >= 0}
    flags = header.get("flags")
    if isinstance(flags, list):
        extra["flags"] = [_one_line(f, 2000) for f in flags if isinstance(f, str)]
    return status, _one_line(header.get("error") or status), extra


def content(report, *, images: dict, trials: int) -> tuple[dict, list[str]]:
    """Checked copy of the worker's record content and the notes about what was dropped.

    images: split -> image names the parent expects; trials: timed passes per split.
    """
    if not isinstance(report, dict):
        raise IntakeError("the record content is not an object")
    notes = []
    extra = sorted(set(report) - WORKER_FIELDS)
    if extra:
        notes.append(f"ignored fields the worker may not set: {', '.join(extra[:10])}")
    out = {k: report[k] for k in WORKER_FIELDS if k in report}
    for key in ("card", "complexity", "runtime", "memory", "deploy", "load", "provenance", "submission", "inference"):
        if out.get(key) is not None and not isinstance(out[key], dict):
            raise IntakeError(f"field {key!r} is a {type(out[key]).__name__}, expected an object")
    metrics = out.get("metrics")
    if not isinstance(metrics, dict):
        raise IntakeError("field 'metrics' is missing or not an object")
    clean, dropped = {}, []
    for key, value in metrics.items():
        if not isinstance(key, str) or not METRIC_NAME.match(key):
            raise IntakeError(f"metric name {key!r} is not a metric name")
        if PARENT_METRICS.match(key):
            dropped.append(key)
            continue
        if value is None and key.endswith("memory_mib"):
            clean[key] = None  # no memory figure on this platform
            continue
        if not _number(value) or value < 0:
            raise IntakeError(f"metric {key} = {value!r} is not a finite non-negative number")
        clean[key] = value
    if dropped:
        notes.append(f"ignored metrics the parent computes itself: {', '.join(sorted(dropped)[:10])}")
    if "params" not in clean or not isinstance(clean["params"], int):
        raise IntakeError("metric 'params' is missing or not an integer")
    out["metrics"] = clean
    raw = out.get("raw")
    if not isinstance(raw, dict) or set(raw) != set(images):
        raise IntakeError(f"field 'raw' must hold the splits {sorted(images)}")
    for split, names in images.items():
        values = raw[split]
        if not isinstance(values, dict) or values.get("images") != names:
            raise IntakeError(f"raw.{split}.images does not list the split's images in order")
        times = values.get("runtime_ms")
        if (not isinstance(times, list) or len(times) != trials
                or not all(isinstance(t, list) and len(t) == len(names) for t in times)):
            raise IntakeError(f"raw.{split}.runtime_ms must be {trials} lists of {len(names)} times")
        if not all(_number(v) and v >= 0 for t in times for v in t):
            raise IntakeError(f"raw.{split}.runtime_ms holds a value that is not a finite non-negative number")
        raw[split] = {"images": list(names), "runtime_ms": [[float(v) for v in t] for t in times]}
    flags = out.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise IntakeError("field 'flags' must be a list of strings")
    out["flags"] = [_one_line(f, 2000) for f in flags]
    load = out.get("load") or {}
    if not isinstance(load.get("trained"), bool):
        raise IntakeError("load.trained is missing or not a boolean")
    buffers = load.get("buffers") or {}
    if not isinstance(buffers, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in buffers.items()):
        raise IntakeError("load.buffers must map names to element counts")
    return out, notes
