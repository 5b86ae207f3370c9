"""Records: atomic JSON files, record keys, provenance.

A record is the JSON file ``OUT/records/<entry>.json`` described in ``docs/design.md``.
Files are written to a temporary name in the same folder and renamed, so an interrupted
run never leaves a half-written record.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import socket
import subprocess
from pathlib import Path

import harness
from harness.core.fsio import atomic_write_json, atomic_write_text, read_json  # noqa: F401 (re-exported)

SCHEMA = "esr-record/1"
# Statuses after which an entry is finished: rerunning skips it unless --force.
TERMINAL = {"ok", "untrained", "import_error", "card_error", "no_card", "build_error", "load_error",
            "run_error", "bad_output", "timeout", "oom", "crashed"}
MEASURED = {"ok", "untrained"}


def record_key(card: dict, checkpoint_sha256: str | None, data_hashes: dict, settings: dict) -> str:
    """Identity of a measurement: changed inputs give a new key and are re-measured."""
    blob = json.dumps(
        {"card": card, "checkpoint": checkpoint_sha256, "data": data_hashes, "settings": settings},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def is_complete(record, key: str | None = None) -> bool:
    return (
        isinstance(record, dict)
        and record.get("schema") == SCHEMA
        and record.get("status") in TERMINAL
        and (key is None or record.get("key") == key)
    )


def error_record(entry: str, status: str, error: str, **extra) -> dict:
    record = {"schema": SCHEMA, "entry": entry, "status": status, "error": error, "trained": False, "metrics": {}}
    record.update(extra)
    return record


def git_commit(repo: str | Path | None = None) -> str | None:
    repo = Path(repo or Path(harness.__file__).resolve().parents[1])
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() if out.returncode == 0 else None
        if commit:
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def provenance(**extra) -> dict:
    """Where and with what a number was measured."""
    info = {
        "harness": harness.__version__,
        "git": git_commit(),
        "torch": package_version("torch"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info
