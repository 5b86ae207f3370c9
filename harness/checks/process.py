"""Runs the model checks in one subprocess with CUDA hidden; a crash becomes a failed line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.checks.result import CheckResult
from harness.checks.static import Submission


def run_model_checks(sub: Submission, *, zoo_dirs: list[str], data: str | None, input_shape: tuple,
                     baseline: dict | None, timeout_s: float = 600.0) -> list[CheckResult]:
    """Run the model checks in one subprocess with CUDA hidden; a crash becomes a failed line."""
    job = {"file": str(sub.model_file.resolve()), "zoo_dirs": zoo_dirs, "data": data,
           "input_shape": list(input_shape), "baseline": baseline}
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="esr-check-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "results.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "harness.checks", str(job_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
            code, tail = proc.returncode, (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        except subprocess.TimeoutExpired:
            code, tail = None, []
        state = _read(out_path) or {"results": [], "current": "imports", "entry": ""}
    results = [CheckResult(**r) for r in state["results"]]
    if state.get("done"):
        return results
    where = state.get("current") or "imports"
    if code is None:
        why = f"did not finish within {timeout_s:g} s"
        fix = "look for an endless loop, or a forward that is far too slow on the CPU"
    else:
        why = f"the check process died ({_exit_reason(code)})" + (f": {' | '.join(tail)}" if tail else "")
        fix = "the model crashes the interpreter (segfault, os._exit, sys.exit, custom CUDA/C++ operator); run it alone to see"
    results.append(CheckResult(where, "fail", f"{why} during this check", fix, state.get("entry", "")))
    return results


def _exit_reason(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _read(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


