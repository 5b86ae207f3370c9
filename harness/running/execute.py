"""Run one job (one entry) in its own subprocess with a time limit, and return its record.

The same function serves the local backend and each Ray worker, so both write the same
records. Whatever happens to the subprocess (exception, kill, time-out, segfault, memory
limit), a record comes back, and the worker's whole process tree is gone before the next
entry starts. The worker runs confined (``harness.core.sandbox``): its job folder is the only
place it can write; the record says which isolation applied (``isolation``).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from harness.core.sandbox import run_confined
from harness.running.records import error_record, provenance, read_json


def execute_job(job: dict, *, timeout_s: float | None = None, env: dict | None = None) -> dict:
    """Measure ``job['entry']`` in ``python -m harness.running.worker`` and return the record.

    ``job['settings']`` gives ``timeout_s``, ``sandbox`` (auto|required|off) and
    ``memory_limit_mib``; ``job.get('hide')`` lists folders the worker must not see.
    Statuses decided here: ``timeout``; ``oom`` when the memory limit killed the tree
    (read back from the cgroup); ``crashed`` with the signal or exit code otherwise.
    """
    settings = job.get("settings", {})
    timeout_s = timeout_s or settings.get("timeout_s") or 1800.0
    name = job["entry"]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="esr-job-") as tmp:
        job = dict(job, record=str(Path(tmp) / "record.json"))
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        log_path = Path(tmp).parent / f"{Path(tmp).name}.log"  # outside the writable folder: the parent's own log
        cmd = [sys.executable, "-m", "harness.running.worker", str(job_path)]
        run_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        try:
            outcome = run_confined(cmd, scratch=tmp, timeout_s=timeout_s, mode=settings.get("sandbox", "auto"),
                                   memory_limit_mib=settings.get("memory_limit_mib"), hide=job.get("hide", ()),
                                   env=run_env, log_path=log_path)
            isolation = outcome.isolation
            limit = isolation.get("memory_limit_mib")
            if outcome.timed_out:
                return _failed(job, "timeout", f"{name}: did not finish within {timeout_s:g} s (time limit); "
                               f"raise --timeout or check for a hang", started, log_path, isolation)
            if outcome.oom:
                return _failed(job, "oom", f"{name}: killed by the memory limit ({limit} MiB, {isolation['memory_mechanism']}); "
                               f"raise --memory-limit if the model needs more", started, log_path, isolation)
            record = read_json(job["record"])
            if isinstance(record, dict):
                record["entry"] = name  # the record's file name comes from the job, never from the worker
                record.setdefault("provenance", {})["wall_s"] = round(time.time() - started, 3)
                record["isolation"] = isolation
                if settings.get("save_sr") and record.get("status") in ("ok", "untrained"):
                    record = _publish_sr(job, tmp, record, started, log_path, isolation)
                return record
            code = outcome.returncode
            if code is not None and code < 0:
                return _failed(job, "crashed", f"{name}: worker killed by {outcome.signal}", started, log_path, isolation)
            return _failed(job, "crashed", f"{name}: worker exited with code {code} before writing its record",
                           started, log_path, isolation)
        finally:
            try:
                os.unlink(log_path)
            except OSError:
                pass


def _publish_sr(job: dict, tmp: str, record: dict, started: float, log_path: Path, isolation: dict) -> dict:
    """--save-sr: the parent writes the PNG files of the arrays the worker scored (harness.running.save_sr)."""
    from harness.running.save_sr import SaveError, publish_sr

    images = {split: list(info.get("images") or []) for split, info in (job.get("data") or {}).items()}
    try:
        record["sr_saved"] = publish_sr(Path(tmp) / "sr", job["entry"], images, job["settings"]["save_sr"])
    except (SaveError, OSError) as exc:
        return _failed(job, "run_error", f"{job['entry']}: {exc}", started, log_path, isolation)
    return record


def _failed(job: dict, status: str, error: str, started: float, log_path: Path, isolation: dict) -> dict:
    try:
        tail = log_path.read_text(errors="replace")[-4000:]
    except OSError:
        tail = ""
    return error_record(
        job["entry"], status, error, key=job.get("key"), detail=tail, settings=job.get("settings"),
        data=job.get("data", {}), provenance=provenance(wall_s=round(time.time() - started, 3)), isolation=isolation,
    )
