"""Runs the model checks in one confined subprocess with CUDA hidden; a crash becomes a failed line.

The subprocess runs through ``harness.core.sandbox`` like a worker of ``esr run``: no network,
nothing writable but its own scratch folder, its whole process tree killed at the end.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from harness.checks.result import CheckResult
from harness.checks.static import Submission
from harness.core.sandbox import run_confined


def run_model_checks(sub: Submission, *, zoo_dirs: list[str], data: str | None, input_shape: tuple,
                     baseline: dict | None, timeout_s: float = 600.0, sandbox: str = "auto",
                     memory_limit_mib: int | None = None) -> list[CheckResult]:
    """Run the model checks in one confined subprocess with CUDA hidden; a crash becomes a failed line.

    Raises ``harness.core.sandbox.SandboxUnavailable`` for ``sandbox="required"`` on a machine
    that cannot confine.
    """
    job = {"file": str(sub.model_file.resolve()), "zoo_dirs": zoo_dirs, "data": data,
           "input_shape": list(input_shape), "baseline": baseline}
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="esr-check-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "results.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "harness.checks", str(job_path), str(out_path)]
        outcome = run_confined(cmd, scratch=tmp, timeout_s=timeout_s, mode=sandbox,
                               memory_limit_mib=memory_limit_mib, env=env)
        code = None if outcome.timed_out else outcome.returncode
        tail = (outcome.stderr or outcome.stdout or "").strip().splitlines()[-3:]
        state = _read(out_path) or {"results": [], "current": "imports", "entry": ""}
    if not isinstance(state, dict) or not isinstance(state.get("results"), list):
        state = {"results": [], "current": "imports", "entry": ""}
    isolation = outcome.isolation
    if isolation["pid_namespace"]:
        line = CheckResult("isolation", "pass", f"model checks ran confined ({isolation['mechanism']}; no network, "
                           f"read-only files, memory limit {isolation['memory_limit_mib'] or 'none'} MiB)")
    else:
        line = CheckResult("isolation", "warn", f"model checks ran unconfined ({isolation.get('reason', '')})",
                           "run on a Linux machine that allows namespaces, or use --sandbox required to refuse")
    if outcome.oom:
        state["results"] = state["results"] + [{"name": state.get("current") or "imports", "status": "fail",
                                                "message": f"killed by the memory limit ({isolation['memory_limit_mib']} MiB)",
                                                "fix": "the model needs more memory than --memory-limit allows, or leaks it",
                                                "entry": state.get("entry", "")}]
        state["done"] = True
    results = [line] + [CheckResult(**r) for r in state["results"]]
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


