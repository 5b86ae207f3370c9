"""Refuse to rank records measured under different conditions (``esr rank --allow-mixed`` overrides).

Records of one ranking must share the data (per split: data set and content hashes), the
device (kind and name) and the measurement settings (everything in ``record["settings"]``
except the limits that decide only whether an entry fails: time and memory limits, sandbox
mode). Only measured records (``ok``, ``untrained``) count; CSV inputs carry no conditions
and are not compared. Standard library only: the leaderboard never imports harness.
"""
from __future__ import annotations

import json
from pathlib import Path

MEASURED = ("ok", "untrained")
NOT_CONDITIONS = {"timeout_s", "memory_limit_mib", "memory_limit_gib", "memory_limit", "sandbox", "device"}


class MixedRecords(ValueError):
    """Records measured under different conditions were given to one ranking."""


def record_paths(inputs) -> list[Path]:
    out = []
    for item in ([inputs] if isinstance(inputs, (str, Path)) else list(inputs)):
        path = Path(item)
        if str(path).lower().endswith(".csv"):
            continue
        if path.is_file():
            out.append(path)
            continue
        folder = path / "records" if (path / "records").is_dir() else path
        if folder.is_dir():
            out.extend(sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")))
    return out


def conditions(record: dict) -> dict:
    """The measurement conditions of one record, flattened: ``{"data.valid": ..., "settings.trials": ...}``."""
    out = {}
    for split, info in sorted((record.get("data") or {}).items()):
        if isinstance(info, dict):
            out[f"data.{split}"] = f"{info.get('name')}:{str(info.get('file_hash'))[:12]}"
    prov = record.get("provenance") or {}
    out["device"] = f"{prov.get('device')} ({prov.get('device_name')})"
    for key, value in sorted((record.get("settings") or {}).items()):
        if key not in NOT_CONDITIONS:
            out[f"settings.{key}"] = json.dumps(value, sort_keys=True)
    return out


def differences(records: list[tuple[str, dict]]) -> list[str]:
    """One text per condition that differs: ``name: value (entries), value (entries)``."""
    seen: dict[str, dict[str, list[str]]] = {}
    measured = [(origin, rec) for origin, rec in records
                if isinstance(rec, dict) and rec.get("status") in MEASURED]
    keys = sorted({k for _, rec in measured for k in conditions(rec)})
    for origin, rec in measured:
        cond = conditions(rec)
        for key in keys:
            seen.setdefault(key, {}).setdefault(cond.get(key, "(absent)"), []).append(str(rec.get("entry", origin)))
    out = []
    for key in keys:
        values = seen[key]
        if len(values) > 1:
            parts = [f"{value} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
                     for value, names in sorted(values.items(), key=lambda kv: -len(kv[1]))]
            out.append(f"{key}: {'; '.join(parts)}")
    return out


def check(inputs) -> None:
    """Raise ``MixedRecords`` naming what differs when the inputs' records were measured differently."""
    records = []
    for path in record_paths(inputs):
        try:
            records.append((str(path), json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError):
            continue  # the record reader reports unreadable files with its own message
    diff = differences(records)
    if diff:
        raise MixedRecords(f"records measured under different conditions: {' | '.join(diff)}; "
                           "rank comparable records or pass --allow-mixed")
