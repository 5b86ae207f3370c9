"""Run one job (one entry) in its own subprocess with a time limit, and return its record.

The same function serves the local backend and each Ray worker, so both write the same
records. Whatever happens to the subprocess (exception, kill, time-out, segfault), a
record comes back.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.running.records import error_record, provenance, read_json


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def execute_job(job: dict, *, timeout_s: float | None = None, env: dict | None = None) -> dict:
    """Measure ``job['entry']`` in ``python -m harness.running.worker`` and return the record."""
    timeout_s = timeout_s or job.get("settings", {}).get("timeout_s") or 1800.0
    name = job["entry"]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="esr-job-") as tmp:
        job = dict(job, record=str(Path(tmp) / "record.json"))
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        log_path = Path(tmp) / "log.txt"
        cmd = [sys.executable, "-m", "harness.running.worker", str(job_path)]
        run_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return _failed(job, "timeout", f"{name}: did not finish within {timeout_s:g} s (time limit); "
                               f"raise --timeout or check for a hang", started, log_path)
        record = read_json(job["record"])
        if record is not None:
            record.setdefault("provenance", {})["wall_s"] = round(time.time() - started, 3)
            return record
        if code < 0:
            sig = _signal_name(code)
            hint = " (out of memory?)" if sig == "SIGKILL" else ""
            return _failed(job, "oom" if sig == "SIGKILL" else "crashed",
                           f"{name}: worker killed by {sig}{hint}", started, log_path)
        return _failed(job, "crashed", f"{name}: worker exited with code {code} before writing its record", started, log_path)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _failed(job: dict, status: str, error: str, started: float, log_path: Path) -> dict:
    try:
        tail = log_path.read_text(errors="replace")[-4000:]
    except OSError:
        tail = ""
    return error_record(
        job["entry"], status, error, key=job.get("key"), detail=tail, settings=job.get("settings"),
        data=job.get("data", {}), provenance=provenance(wall_s=round(time.time() - started, 3)),
    )
