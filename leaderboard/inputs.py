"""Inputs: records written by ``esr run`` or a CSV of external (published) numbers.

Both become one DataFrame, one row per entry, with columns ``entry``, ``status``, ``trained``,
``error``, ``origin`` (file the row came from) and one column per canonical metric
(``params``, ``valid.runtime_ms``, ...), in the record units of ``docs/design.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

BASE_COLUMNS = ["entry", "status", "trained", "error", "origin"]
RANKABLE_STATUS = ("ok", "untrained")


class InputError(ValueError):
    pass


def record_files(path: str | Path) -> list[Path]:
    """JSON files named by ``path``: a run folder (``records/``), a records folder or one file."""
    path = Path(path)
    if path.is_file():
        return [path]
    if (path / "records").is_dir():
        path = path / "records"
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: no *.json records here (expected OUT/records/<entry>.json)")
        return files
    raise InputError(f"{path}: no such file or folder")


def from_records(records: list[dict], origins: list[str] | None = None) -> pd.DataFrame:
    rows = []
    for i, rec in enumerate(records):
        if "entry" not in rec:
            where = origins[i] if origins else f"record {i}"
            raise InputError(f"{where}: not an esr record (no 'entry' key)")
        row = {"entry": rec["entry"], "status": rec.get("status", "ok"),
               "trained": bool(rec.get("trained", True)), "error": rec.get("error"),
               "origin": origins[i] if origins else None}
        for key, value in (rec.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = float(value)
        rows.append(row)
    return _frame(rows)


def read_records(paths) -> pd.DataFrame:
    """Records from run folders, records folders or JSON files (one path or a list)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files = [f for p in paths for f in record_files(p)]
    records, origins = [], []
    for f in files:
        try:
            records.append(json.loads(Path(f).read_text()))
        except json.JSONDecodeError as exc:
            raise InputError(f"{f}: not valid JSON ({exc.msg} at line {exc.lineno}); "
                             "is the record half-written? rerun the entry") from None
        origins.append(str(f))
    return from_records(records, origins)


def read_csv(path: str | Path) -> pd.DataFrame:
    """External numbers: a CSV with ``entry`` and canonical metric columns; ``#`` lines are comments.

    Optional columns ``status`` (default ``ok``), ``trained`` (default true) and ``error``; any
    other non-numeric column is kept as text (for example published ranks or a source note).
    """
    path = Path(path)
    frame = pd.read_csv(path, comment="#", skipinitialspace=True)
    if "entry" not in frame.columns:
        raise InputError(f"{path}: needs an 'entry' column (found {', '.join(frame.columns)})")
    frame["entry"] = frame["entry"].astype(str).str.strip()
    dupes = frame["entry"][frame["entry"].duplicated()].tolist()
    if dupes:
        raise InputError(f"{path}: duplicate entries {', '.join(dupes)}")
    if "status" not in frame.columns:
        frame["status"] = "ok"
    frame["status"] = frame["status"].fillna("ok").astype(str)
    if "trained" not in frame.columns:
        frame["trained"] = True
    frame["trained"] = frame["trained"].map(
        lambda v: str(v).strip().lower() not in ("false", "0", "no") if pd.notna(v) else True)
    if "error" not in frame.columns:
        frame["error"] = None
    frame["origin"] = str(path)
    return _frame(frame.to_dict("records"))


def read_any(paths) -> pd.DataFrame:
    """CSV files and record paths mixed; later rows with the same entry are an error."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    parts = [read_csv(p) if str(p).lower().endswith(".csv") else read_records([p]) for p in paths]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    dupes = frame["entry"][frame["entry"].duplicated()].tolist()
    if dupes:
        raise InputError(f"entries given more than once: {', '.join(dupes)} (from {', '.join(map(str, paths))})")
    return frame


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in BASE_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    metric_cols = [c for c in frame.columns if c not in BASE_COLUMNS]
    for col in metric_cols:
        converted = pd.to_numeric(frame[col], errors="coerce")
        if converted.notna().sum() == frame[col].notna().sum():
            frame[col] = converted.astype(float)
    return frame[BASE_COLUMNS + metric_cols].reset_index(drop=True)
