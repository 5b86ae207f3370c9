"""What a table was measured on, and whether a track's thresholds and published figures apply.

A track states the data sets and device its gates and baseline figures were defined on
(``[context]``). Each input row carries its own context: records name their data sets
(``data.<split>.name``/``file_hash``, or the challenge layout), device (``settings.device``,
``provenance.device_name``), runtime protocol, harness version and memory kind; a published CSV
names them in optional ``dataset``/``dataset.<split>``/``device`` columns and is otherwise taken
to be measured on the track's own data and device. A gate or a published baseline figure is
applied to a row only where the row's data set (for the splits the metric reads) and, for
runtime and memory, its device match the track's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from leaderboard.tracks import Track


def _norm(text) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _device_norm(text) -> str:
    text = _norm(text)
    for word in ("nvidia", "geforce", "tesla", "quadro"):
        text = text.replace(word, "")
    return text


def _value(table: pd.DataFrame, i, col: str):
    if col not in table.columns:
        return None
    value = table.at[i, col]
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def assumed(table: pd.DataFrame, i) -> bool:
    """A published row that names no data set or device: taken as the track's own."""
    if _value(table, i, "ctx.assumed"):
        return True
    has = [c for c in table.columns if c.startswith("ctx.data") or c in ("ctx.device", "ctx.device_name")]
    return all(_value(table, i, c) is None for c in has) and _value(table, i, "line") is not None


def row_data(table: pd.DataFrame, i, split: str, track: Track) -> str | None:
    """The data set row ``i`` was measured on for ``split`` (None: not recorded)."""
    if assumed(table, i):
        return track.context.data.get(split)
    return _value(table, i, f"ctx.data.{split}") or _value(table, i, "ctx.data")


def row_device(table: pd.DataFrame, i, track: Track) -> str | None:
    """Device name of row ``i`` (``cpu``, ``NVIDIA H200``, ...); None: not recorded."""
    if assumed(table, i):
        return track.context.device or None
    name = _value(table, i, "ctx.device_name")
    device = _value(table, i, "ctx.device")
    if device is not None and str(device).startswith("cpu"):
        return f"CPU ({name})" if name else "CPU"
    return name or device


def is_cpu(device) -> bool:
    return device is not None and str(device).lower().startswith("cpu")


def data_matches(name, expected) -> bool:
    return name is not None and _norm(name) == _norm(expected)


def device_matches(device, expected) -> bool:
    if device is None:
        return False
    if is_cpu(device):
        return is_cpu(expected) or "cpu" in str(expected).lower()
    got, want = _device_norm(device), _device_norm(expected)
    return bool(got) and bool(want) and (want in got or got in want)


def mismatch(track: Track, key: str, table: pd.DataFrame, i) -> str | None:
    """Why the track's thresholds/figures for metric ``key`` do not apply to row ``i`` (None: they do)."""
    for split in track.splits_of(key):
        expected = track.context.data.get(split)
        if not expected:
            continue
        got = row_data(table, i, split, track)
        if got is None:
            return f"{split} data set not recorded (defined on {expected})"
        if not data_matches(got, expected):
            return f"measured on {got}, defined on {expected}"
    if track.device_bound(key) and track.context.device:
        got = row_device(table, i, track)
        if got is None:
            return f"device not recorded (defined on {track.context.device})"
        if not device_matches(got, track.context.device):
            return f"measured on {got}, defined on {track.context.device}"
    return None


@dataclass
class Summary:
    """The context of a table, for captions and notes."""
    data: dict = field(default_factory=dict)        # split -> ["name (sha256 abcd...)", ...]
    devices: list = field(default_factory=list)
    protocols: list = field(default_factory=list)
    harness: list = field(default_factory=list)
    memory_kinds: list = field(default_factory=list)
    published: bool = False                         # rows are published figures (no harness)
    assumed: bool = False                           # the track's own data/device assumed

    @property
    def cpu(self) -> bool:
        return bool(self.devices) and all(is_cpu(d) for d in self.devices)

    @property
    def mixed_devices(self) -> bool:
        return len(self.devices) > 1

    def memory_kind(self) -> str | None:
        kinds = [k for k in self.memory_kinds if k]
        return ", ".join(kinds) if kinds else None

    def lines(self, track: Track) -> list[str]:
        data = "; ".join(f"{s} = {', '.join(v)}" for s, v in self.data.items()) or "not recorded"
        devices = ", ".join(self.devices) or "not recorded"
        how = " (as published: the table names none, so the track's own are assumed)" if self.assumed else ""
        protocol = "; ".join(self.protocols) or (track.context.runtime if self.published else "") or "not recorded"
        harness = ", ".join(self.harness) or ("none (published figures)" if self.published else "not recorded")
        out = [f"Measured on: data {data}; device {devices}{how}.",
               f"Runtime protocol: {protocol}. Harness version: {harness}."]
        if self.memory_kinds:
            out.append(f"Memory: {', '.join(MEMORY_TEXT.get(k, k) for k in self.memory_kinds)}.")
        if self.mixed_devices:
            out.append(f"WARNING: rows were measured on different devices ({devices}): their runtimes and "
                       "memory do not compare.")
        return out


MEMORY_TEXT = {
    "cuda_max_memory_allocated": "GPU, torch.cuda.max_memory_allocated (peak allocated by tensors)",
    "cpu_peak_rss_growth": "CPU, growth of the process's peak resident set size (not GPU memory)",
}


def summarize(table: pd.DataFrame, track: Track) -> Summary:
    """Context of the measured rows of ``table`` (synthetic published-baseline rows excluded)."""
    s = Summary()
    rows = [i for i in table.index if not _value(table, i, "synthetic")]
    splits = list(dict.fromkeys(
        list(track.context.data) + [c[len("ctx.data."):] for c in table.columns if c.startswith("ctx.data.")]))
    for i in rows:
        if assumed(table, i):
            s.assumed = True
        if _value(table, i, "line") is not None:
            s.published = True
        for split in splits:
            name = row_data(table, i, split, track)
            if name is None:
                continue
            digest = _value(table, i, f"ctx.hash.{split}")
            text = f"{name} (sha256 {str(digest)[:12]})" if digest else (
                f"{name} (no hash: published figures)" if _value(table, i, "line") is not None else str(name))
            s.data.setdefault(split, [])
            if text not in s.data[split]:
                s.data[split].append(text)
        for col, bucket in (("ctx.protocol", s.protocols), ("ctx.harness", s.harness)):
            v = _value(table, i, col)
            if v is not None and str(v) not in bucket:
                bucket.append(str(v))
        device = row_device(table, i, track)
        if device is not None and device not in s.devices:
            s.devices.append(device)
        kind = _value(table, i, "ctx.memory_kind")
        if kind is None and assumed(table, i):
            kind = track.context.memory or None
        for k in (str(kind).split(", ") if kind else []):
            if k not in s.memory_kinds:
                s.memory_kinds.append(k)
    return s


def header(track: Track, key: str, summary: Summary) -> str:
    """Column header of a metric, labelled with the device (runtime) or memory kind."""
    metric = track.metrics[key]
    label, unit = metric.label, metric.unit
    if track.is_memory(key):
        kinds = summary.memory_kinds
        if any(k.startswith("cpu") for k in kinds):
            label = "CPU mem. (RSS growth)" if len(kinds) == 1 else "Mem. (mixed kinds)"
        elif kinds and track.context.memory and kinds != [track.context.memory]:
            label = f"Mem. ({', '.join(kinds)})"
    if track.is_runtime(key) and summary.devices:
        if summary.cpu:
            unit = f"{unit}, CPU" if unit else "CPU"
        elif summary.mixed_devices:
            unit = f"{unit}, mixed devices" if unit else "mixed devices"
    return f"{label} [{unit}]" if unit else label


def row_context(table: pd.DataFrame, i, track: Track) -> dict:
    """Context of one row as text: data (with hashes), device, runtime protocol, harness, memory kind."""
    if _value(table, i, "synthetic"):
        return {"data": track.context.data_text() + " (published)", "device": track.context.device or "not stated",
                "protocol": track.context.runtime or "not stated", "harness": "none (published figures)",
                "memory": track.context.memory or ""}
    published = _value(table, i, "line") is not None
    splits = list(dict.fromkeys(
        list(track.context.data) + [c[len("ctx.data."):] for c in table.columns if c.startswith("ctx.data.")]))
    parts = []
    for split in splits:
        name = row_data(table, i, split, track)
        if name is None:
            continue
        digest = _value(table, i, f"ctx.hash.{split}")
        parts.append(f"{split}={name}" + (f" (sha256 {str(digest)[:12]})" if digest else ""))
    memory = _value(table, i, "ctx.memory_kind") or (track.context.memory if assumed(table, i) else None)
    return {"data": "; ".join(parts) or "not recorded",
            "device": row_device(table, i, track) or "not recorded",
            "protocol": _value(table, i, "ctx.protocol") or (track.context.runtime if published else "")
            or "not recorded",
            "harness": _value(table, i, "ctx.harness") or ("none (published figures)" if published else "not recorded"),
            "memory": memory or ""}
