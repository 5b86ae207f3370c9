"""Inputs: records written by ``esr run`` or a CSV of external (published) numbers.

Both become one DataFrame, one row per entry, with the base columns ``entry``, ``status``,
``trained``, ``error``, ``origin`` (file the row came from), ``line`` (CSV line number),
``role`` (``baseline``/``reference`` from a CSV ``status`` column, else empty), the context
columns ``ctx.*`` (device, data sets, runtime protocol, harness version, memory kind), per-image
runtimes ``raw.runtime`` (records only) and one column per metric (``params``,
``valid.runtime_ms``, ...), in the record units of ``docs/design.md``.

The CSV contract (``docs/leaderboard.md``): ``entry``; optional ``status`` (``baseline``,
``reference`` or empty); canonical metric columns; optional ``dataset`` / ``dataset.<split>``
and ``device`` (without them the table is taken to be measured on the track's own data and
device). Bad input never yields a table: every problem raises ``InputError`` with one line
naming the file, the line or row, and the column or key.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import pandas as pd

from leaderboard.tracks import NON_NEGATIVE, base_name, is_canonical

BASE_COLUMNS = ["entry", "status", "trained", "error", "origin", "line", "role"]
RANKABLE_STATUS = ("ok", "untrained")
CSV_STATUS = {"": "", "ok": "", "baseline": "baseline", "reference": "reference"}
CSV_TEXT_COLUMNS = {"entry", "status", "trained", "error", "dataset", "device", "source", "note", "notes"}
CONTEXT_PREFIX = "ctx."
RAW_COLUMN = "raw.runtime"
CV_COLUMN = "runtime_cv"            # trial-to-trial coefficient of variation of the runtime (max over splits)
CV_SOURCE_COLUMN = "runtime_cv_source"


class InputError(ValueError):
    pass


def is_metric_column(col: str) -> bool:
    """Columns that may hold metric values (everything but base, context, raw and CV columns)."""
    return (col not in BASE_COLUMNS and not col.startswith(CONTEXT_PREFIX) and col != RAW_COLUMN
            and col not in (CV_COLUMN, CV_SOURCE_COLUMN))


# ---- records ------------------------------------------------------------------------------

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


def data_identity(split: str, info: dict) -> str:
    """The data set a record's split was measured on, named as track files name it.

    The harness names a data set after its root folder; for the challenge layouts the layout and
    split identify the set (``div2k_lsdir`` + ``valid`` -> ``DIV2K_LSDIR_valid``).
    """
    layout = str(info.get("layout") or "")
    which = info.get("split") or split
    if layout == "div2k_lsdir":
        return f"DIV2K_LSDIR_{which}"
    if layout == "div2k":
        return f"DIV2K_{which}"
    return str(info.get("name") or "unknown")


def protocol_text(protocol: dict | None) -> str:
    """One line for ``runtime.protocol`` of a record."""
    if not isinstance(protocol, dict) or not protocol:
        return ""
    parts = []
    clock = protocol.get("clock")
    if clock:
        parts.append(f"{clock} clock")
    if protocol.get("warmup"):
        parts.append("warm-up per input shape")
    if protocol.get("trials") is not None:
        parts.append(f"{protocol['trials']} trial(s)")
    if protocol.get("batch") is not None:
        parts.append(f"batch {protocol['batch']}")
    if protocol.get("threads") is not None and str(protocol.get("device", "")).startswith("cpu"):
        parts.append(f"{protocol['threads']} threads")
    return ", ".join(parts)


def _memory_kinds(memory) -> list[str]:
    if not isinstance(memory, dict):
        return []
    if "kind" in memory:
        return [str(memory["kind"])]
    return sorted({str(v["kind"]) for v in memory.values() if isinstance(v, dict) and v.get("kind")})


def _cv(values: list[float]) -> float | None:
    values = [float(v) for v in values if v is not None]
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean > 0 else None


def runtime_cv(rec: dict) -> tuple[float | None, str]:
    """Trial-to-trial coefficient of variation of the runtime, worst split.

    Read from ``runtime.stats.<split>`` when the record has it (``cv`` as a fraction, or
    ``cv_percent``); otherwise computed here from the trial means (``runtime.trial_means_ms``) or
    the raw per-image times: sample standard deviation of the per-trial means over their mean.
    None with one trial (no spread can be measured).
    """
    runtime = rec.get("runtime") if isinstance(rec.get("runtime"), dict) else {}
    stats = runtime.get("stats") if isinstance(runtime.get("stats"), dict) else {}
    found = []
    for split, s in stats.items():
        if not isinstance(s, dict):
            continue
        for key, factor in (("cv", 1.0), ("cv_trials", 1.0), ("cv_percent", 0.01), ("cv_pct", 0.01)):
            if isinstance(s.get(key), (int, float)) and not isinstance(s.get(key), bool):
                found.append(float(s[key]) * factor)
                break
    if found:
        return max(found), "record"
    computed = []
    means = runtime.get("trial_means_ms") if isinstance(runtime.get("trial_means_ms"), dict) else {}
    raw = rec.get("raw") if isinstance(rec.get("raw"), dict) else {}
    for split in dict.fromkeys(list(means) + list(raw)):
        values = means.get(split)
        if not values and isinstance(raw.get(split), dict):
            trials = raw[split].get("runtime_ms") or []
            values = [statistics.fmean(t) for t in trials if t]
        cv = _cv(values or [])
        if cv is not None:
            computed.append(cv)
    return (max(computed), "computed from trial means") if computed else (None, "")


def _check_value(where: str, key: str, value) -> float | None:
    """A record metric value: NaN is 'not measured'; impossible values are refused."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if math.isnan(value):
        return None
    base = base_name(key)
    if base in NON_NEGATIVE:
        if math.isinf(value):
            raise InputError(f"{where}: metrics.{key} = {value}: an infinite {base} is impossible; re-measure the entry")
        if value < 0:
            raise InputError(f"{where}: metrics.{key} = {value}: a negative {base} is impossible; re-measure the entry")
    return value


def from_records(records: list[dict], origins: list[str] | None = None) -> pd.DataFrame:
    rows = []
    for i, rec in enumerate(records):
        where = origins[i] if origins else f"record {i}"
        if not isinstance(rec, dict) or "entry" not in rec:
            raise InputError(f"{where}: not an esr record (no 'entry' key)")
        if not str(rec["entry"]).strip():
            raise InputError(f"{where}: key 'entry' is empty")
        row = {"entry": str(rec["entry"]), "status": rec.get("status", "ok"),
               "trained": bool(rec.get("trained", True)), "error": rec.get("error"),
               "origin": origins[i] if origins else None, "line": None, "role": ""}
        settings = rec.get("settings") if isinstance(rec.get("settings"), dict) else {}
        prov = rec.get("provenance") if isinstance(rec.get("provenance"), dict) else {}
        runtime = rec.get("runtime") if isinstance(rec.get("runtime"), dict) else {}
        device = settings.get("device") or prov.get("device")
        if device:
            row["ctx.device"] = str(device)
        if prov.get("device_name"):
            row["ctx.device_name"] = str(prov["device_name"])
        if prov.get("harness"):
            row["ctx.harness"] = str(prov["harness"])
        if protocol_text(runtime.get("protocol")):
            row["ctx.protocol"] = protocol_text(runtime.get("protocol"))
        kinds = _memory_kinds(rec.get("memory"))
        if kinds:
            row["ctx.memory_kind"] = ", ".join(kinds)
        for split, info in (rec.get("data") or {}).items():
            if isinstance(info, dict):
                row[f"ctx.data.{split}"] = data_identity(split, info)
                if info.get("file_hash"):
                    row[f"ctx.hash.{split}"] = str(info["file_hash"])
        raw = {}
        for split, values in (rec.get("raw") or {}).items():
            if isinstance(values, dict) and values.get("runtime_ms"):
                raw[split] = {"images": list(values.get("images") or []), "runtime_ms": values["runtime_ms"]}
        row[RAW_COLUMN] = raw or None
        cv, source = runtime_cv(rec)
        row[CV_COLUMN], row[CV_SOURCE_COLUMN] = cv, source or None
        for key, value in (rec.get("metrics") or {}).items():
            checked = _check_value(where, key, value)
            if checked is not None:
                row[key] = checked
        rows.append(row)
    frame = _frame(rows)
    frame.attrs["kind"] = "records"
    return frame


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
        except UnicodeDecodeError as exc:
            raise InputError(f"{f}: not UTF-8 text ({exc.reason})") from None
        origins.append(str(f))
    return from_records(records, origins)


# ---- CSV ---------------------------------------------------------------------------------

def parse_number(text: str) -> float | None:
    """A finite number, '' for missing (None); raises ValueError naming what is wrong."""
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text.replace("_", "x"))  # float() accepts 1_000: a typed table never means that
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if math.isnan(value):
        raise ValueError(f"{text!r} is not a number (leave the cell empty for a missing value)")
    if math.isinf(value):
        raise ValueError(f"{text!r} is infinite")
    return value


def cell_error(frame: pd.DataFrame, index, column: str, message: str) -> InputError:
    """One line naming the file, line, entry and column of a bad cell."""
    origin = frame.at[index, "origin"] if "origin" in frame.columns else None
    line = frame.at[index, "line"] if "line" in frame.columns else None
    entry = frame.at[index, "entry"]
    where = f"{origin}" if origin else "input"
    if line is not None and not pd.isna(line):
        where += f" line {int(line)}"
    return InputError(f"{where} (entry {entry!r}), column {column}: {message}")


def _convert(path: Path, lines: list[int], entries: list[str], column: str, cells: list[str], strict: bool):
    """Numbers of a column; strict: every cell a finite number or empty (else InputError)."""
    out = []
    for line, entry, cell in zip(lines, entries, cells):
        try:
            value = parse_number(cell)
        except ValueError as exc:
            if strict:
                raise InputError(f"{path} line {line} (entry {entry!r}), column {column}: {exc}") from None
            return None
        if strict and value is not None and value < 0 and base_name(column) in NON_NEGATIVE:
            raise InputError(f"{path} line {line} (entry {entry!r}), column {column}: "
                             f"{cell.strip()} is negative; a {base_name(column)} cannot be")
        out.append(math.nan if value is None else value)
    return out


def read_csv(path: str | Path) -> pd.DataFrame:
    """External numbers under the CSV contract; ``#`` lines are comments. See the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    rows: list[tuple[int, list[str]]] = []
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or (len(fields) == 1 and not fields[0].strip()) or fields[0].lstrip().startswith("#"):
            continue
        rows.append((number, fields))
    if not rows:
        raise InputError(f"{path}: empty file: no header line (expected 'entry' and metric columns)")
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    for i, h in enumerate(header):
        if not h:
            raise InputError(f"{path} line {header_line}: column {i + 1} of the header has no name")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(f"{path} line {header_line}: column(s) {', '.join(dupes)} appear more than once in the header")
    if "entry" not in header:
        raise InputError(f"{path} line {header_line}: needs an 'entry' column (found {', '.join(header)})")
    body = rows[1:]
    for number, fields in body:
        if len(fields) != len(header):
            raise InputError(f"{path} line {number}: {len(fields)} fields, the header has {len(header)} "
                             "(a missing or extra comma?)")
    lines = [n for n, _ in body]
    cols = {h: [f[i] for _, f in body] for i, h in enumerate(header)}
    entries = [e.strip() for e in cols["entry"]]
    seen: dict[str, int] = {}
    for line, entry in zip(lines, entries):
        if not entry:
            raise InputError(f"{path} line {line}, column entry: empty entry name")
        if entry.lower() in seen:
            raise InputError(f"{path} line {line}, column entry: duplicate entry {entry!r} "
                             f"(first on line {seen[entry.lower()]})")
        seen[entry.lower()] = line
    roles = []
    for line, entry, cell in zip(lines, entries, cols.get("status", [""] * len(body))):
        value = cell.strip().lower()
        if value not in CSV_STATUS:
            raise InputError(f"{path} line {line} (entry {entry!r}), column status: {cell.strip()!r} is not "
                             "a status; use 'baseline', 'reference' (listed, never ranked) or leave it empty")
        roles.append(CSV_STATUS[value])
    data = {"entry": entries, "status": ["ok"] * len(body), "origin": [str(path)] * len(body),
            "line": lines, "role": roles}
    trained = cols.get("trained")
    data["trained"] = [c.strip().lower() not in ("false", "0", "no") for c in trained] if trained else [True] * len(body)
    data["error"] = [c.strip() or None for c in cols["error"]] if "error" in cols else [None] * len(body)
    if "device" in cols:
        data["ctx.device_name"] = [c.strip() or None for c in cols["device"]]
    for h in header:
        if h == "dataset" or h.startswith("dataset."):
            data[f"ctx.{h.replace('dataset', 'data', 1)}"] = [c.strip() or None for c in cols[h]]
    for h in header:
        if h in CSV_TEXT_COLUMNS or h.startswith("dataset."):
            continue
        if is_canonical(h):
            data[h] = _convert(path, lines, entries, h, cols[h], strict=True)
            continue
        numbers = _convert(path, lines, entries, h, cols[h], strict=False)
        # Not a record metric: a track metric given as a column (validated when a track uses it),
        # or a column the track does not know (reported in the table's notes).
        data[h] = numbers if numbers is not None else [c.strip() or None for c in cols[h]]
    if not body:
        raise InputError(f"{path}: no rows after the header line {header_line}")
    frame = _frame(pd.DataFrame(data).to_dict("records"))
    frame.attrs["kind"] = "csv"
    frame.attrs["columns"] = {str(path): header}
    return frame


def read_any(paths) -> pd.DataFrame:
    """CSV files and record paths mixed; later rows with the same entry are an error."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    parts = [read_csv(p) if str(p).lower().endswith(".csv") else read_records([p]) for p in paths]
    if len(parts) == 1:
        return parts[0]
    attrs = {"kind": "+".join(sorted({p.attrs.get("kind", "?") for p in parts})),
             "columns": {k: v for p in parts for k, v in p.attrs.get("columns", {}).items()}}
    frame = pd.concat(parts, ignore_index=True)
    frame.attrs.update(attrs)
    lowered = frame["entry"].str.lower()
    dupes = frame["entry"][lowered.duplicated()].tolist()
    if dupes:
        raise InputError(f"entries given more than once: {', '.join(dupes)} (from {', '.join(map(str, paths))})")
    return frame


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in BASE_COLUMNS + [RAW_COLUMN, CV_COLUMN, CV_SOURCE_COLUMN]:
        if col not in frame.columns:
            frame[col] = None
    frame["role"] = frame["role"].fillna("")
    context = sorted(c for c in frame.columns if c.startswith(CONTEXT_PREFIX))
    metric_cols = [c for c in frame.columns if is_metric_column(c) and c not in context]
    # Values were checked on the way in; text columns stay text (a track that ranks by one
    # refuses it, naming the cell: pandas would silently read "inf" or "nan" as numbers).
    frame[CV_COLUMN] = pd.to_numeric(frame[CV_COLUMN], errors="coerce").astype(float)
    order = BASE_COLUMNS + context + [RAW_COLUMN, CV_COLUMN, CV_SOURCE_COLUMN] + metric_cols
    return frame[order].reset_index(drop=True)
