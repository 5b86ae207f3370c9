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

SCHEMA = "esr-record/2"
# Statuses after which an entry is finished: rerunning skips it unless --force, --retry-failed,
# or (for timeout, crashed, oom) a change of the setting that caused it.
TERMINAL = {"ok", "untrained", "import_error", "card_error", "no_card", "build_error", "load_error",
            "deploy_error", "run_error", "bad_output", "timeout", "oom", "crashed"}
MEASURED = {"ok", "untrained"}
# Settings that do not change a measured figure but decide whether an entry fails: kept out of
# the key (RunSettings.key_dict), and a failure they caused is redone when they change.
REDO_WHEN_CHANGED = {"timeout": ("timeout_s",), "oom": ("memory_limit_mib",),
                     "crashed": ("timeout_s", "memory_limit_mib")}


def record_key(card: dict, checkpoint_sha256: str | None, data_hashes: dict, settings: dict, *,
               source_hash: str | None = None, harness_version: str | None = None) -> str:
    """Identity of a measurement: changed inputs give a new key and are re-measured.

    card: the card with paths made relative to the models folder (so the key does not depend on
    how ``--models`` was spelled); source_hash: ``source_hash()`` of the model's files.
    """
    blob = json.dumps(
        {"card": card, "checkpoint": checkpoint_sha256, "data": data_hashes, "settings": settings,
         "source": source_hash, "harness": harness_version or harness.__version__},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _imported_helpers(path: Path, folder: Path) -> list[Path]:
    """``_helper.py`` files of ``folder`` that ``path`` imports (statically, transitively)."""
    import ast

    seen, todo = [], [path]
    while todo:
        current = todo.pop()
        try:
            tree = ast.parse(current.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.level:
                names.update(a.name for a in node.names)
                if node.module:
                    names.add(node.module.split(".")[0])
        for name in sorted(names):
            helper = folder / f"{name}.py"
            if name.startswith("_") and helper.is_file() and helper not in seen:
                seen.append(helper)
                todo.append(helper)
    return seen


def source_files(file: str | Path, models: str | Path) -> list[Path]:
    """Every file whose content decides what the entry's code does.

    A file inside a package folder of the models folder: every file of that folder (caches
    left out). A single file: the file, its sidecar card, and the ``_helper.py`` files of the
    models folder it imports. Paths are resolved first.
    """
    file, models = Path(file).resolve(), Path(models).resolve()
    try:
        rel = file.relative_to(models)
    except ValueError:
        rel = None
    if file.is_dir() or (rel is not None and len(rel.parts) > 1):
        folder = file if file.is_dir() and (rel is None or len(rel.parts) <= 1) else models / rel.parts[0]
        return sorted(p for p in folder.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                      and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    files = [file] + [p for p in [file.with_suffix(".toml")] if p.is_file()]
    return files + _imported_helpers(file, file.parent)


def source_hash(file: str | Path, models: str | Path) -> str:
    """sha256 over the entry's source files: relative path, size and bytes of each."""
    models = Path(models).resolve()
    digest = hashlib.sha256()
    for path in source_files(file, models):
        try:
            rel = path.relative_to(models).as_posix()
        except ValueError:
            rel = path.name
        data = path.read_bytes()
        digest.update(f"{rel}\t{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def record_text(record: dict) -> str:
    """The exact text a record file holds (its content hash is the sha256 of this)."""
    return json.dumps(record, indent=1) + "\n"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def is_complete(record, key: str | None = None) -> bool:
    return (
        isinstance(record, dict)
        and record.get("schema") == SCHEMA
        and record.get("status") in TERMINAL
        and (key is None or record.get("key") == key)
    )


def redo_reason(record: dict, settings: dict, *, retry_failed: bool = False) -> str | None:
    """Why a complete record must be measured again, or None to keep it."""
    status = record.get("status")
    if status in MEASURED:
        return None
    if retry_failed:
        return f"{status} record redone (--retry-failed)"
    old = record.get("settings") or {}
    for name in REDO_WHEN_CHANGED.get(status, ()):
        if name in settings and old.get(name) != settings.get(name):
            return f"{status} under {name}={old.get(name)!r}, now {settings.get(name)!r}: redone"
    return None


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
