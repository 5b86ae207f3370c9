"""``esr factsheet ENTRY|RECORD``: the challenge factsheet's figures block, from one record.

The NTIRE ESR factsheets ask every team for the same figures: validation PSNR, validation time
per image, parameters, FLOPs, activations, GPU memory and the number of convolutions. This
command prints them as Markdown and LaTeX, each with its unit and the record key it was read
from, plus what they were measured with (data set and hash, device, runtime protocol, harness
version). It reads the record's JSON only: no torch, no team code.

FLOPs are fvcore's count (the challenges' counter since 2023; one FLOP = one multiply-accumulate);
the NTIRE 2022 counter's value is given on a second line. GPU memory is printed only when the
record measured it on a GPU (``memory.<split>.kind == cuda_max_memory_allocated``); otherwise the
line names what was measured instead.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

GPU_MEMORY_KIND = "cuda_max_memory_allocated"
FORMATS = ("md", "tex")


@dataclass
class Figure:
    """One line of the block: ``value`` is the printed number (or ``-``), ``source`` the record key."""

    label: str
    value: str
    unit: str
    source: str
    note: str = ""


def _number(record: dict, key: str):
    value = (record.get("metrics") or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt(value, scale: float, digits: int) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value / scale:.{digits}f}"


def figures(record: dict, split: str = "valid") -> list[Figure]:
    """The factsheet's figures from a record, in the template's order."""
    def metric(label, key, unit, scale=1.0, digits=2, note=""):
        value = _number(record, key)
        return Figure(label, _fmt(value, scale, digits), unit, f"metrics.{key}",
                      note if value is not None else f"not in the record ({note})" if note else "not in the record")

    settings = record.get("settings") or {}
    complexity = record.get("complexity") or {}
    shape = complexity.get("input_shape") or settings.get("input_shape")
    at = f" at a {'x'.join(str(v) for v in shape)} LR input" if shape else ""
    crop = settings.get("crop_border", "?")
    if crop == "scale":
        crop = (record.get("card") or {}).get("scale", crop)
    trials = settings.get("trials")
    psnr_note = f"RGB, border {crop} cropped, mean over {((record.get('data') or {}).get(split) or {}).get('n', '?')} images"
    if not record.get("trained", True):
        psnr_note += "; UNTRAINED (no checkpoint): random weights, not a result"
    out = [
        metric("Val PSNR", f"{split}.psnr_rgb", "dB", note=psnr_note),
        metric("Val time per image", f"{split}.runtime_ms", "ms",
               note=(f"mean over {trials} trial(s) of the per-trial mean per image" if trials else "mean per image")
               + ("; measured on a CPU: the factsheet asks for the GPU time" if _on_cpu(record) else "")),
        metric("Params", "params", "M", 1e6, 3, note="all parameters after the deploy step"),
        metric("FLOPs", "macs", "G", 1e9, 2, note=f"fvcore (challenges since 2023), 1 FLOP = 1 multiply-accumulate{at}"),
        metric("FLOPs (NTIRE 2022 counter)", "macs_legacy", "G", 1e9, 2, note=f"NTIRE 2022 forward-hook counter{at}"),
        metric("Acts", "activations", "M", 1e6, 2, note=f"elements of every Conv2d output{at}"),
        _memory_figure(record, split),
        metric("Conv", "conv", "count", 1.0, 0, note="Conv2d layers called in one forward"),
    ]
    return out


def _on_cpu(record: dict) -> bool:
    device = ((record.get("runtime") or {}).get("protocol") or {}).get("device") or \
        (record.get("provenance") or {}).get("device") or (record.get("settings") or {}).get("device") or ""
    return str(device).startswith("cpu")


def _memory_figure(record: dict, split: str) -> Figure:
    mem = (record.get("memory") or {}).get(split) or {}
    kind = mem.get("kind")
    value = _number(record, f"{split}.memory_mib")
    if kind == GPU_MEMORY_KIND and value is not None:
        return Figure("GPU memory", _fmt(value, 1.0, 2), "M", f"metrics.{split}.memory_mib",
                      "torch.cuda.max_memory_allocated, MiB (2^20 bytes)")
    if kind is None:
        what = "memory was not measured"
    else:
        what = f"measured instead: {kind} = {_fmt(value, 1.0, 2)} MiB"
    return Figure("GPU memory", "-", "M", f"memory.{split}.kind", f"not measured on a GPU; {what}")


def context(record: dict, split: str = "valid") -> list[tuple[str, str]]:
    """(label, text) lines: what the figures were measured with."""
    data = ((record.get("data") or {}).get(split)) or {}
    prov = record.get("provenance") or {}
    settings = record.get("settings") or {}
    protocol = (record.get("runtime") or {}).get("protocol") or {}
    data_text = (f"{data.get('name', '?')} ({split}, {data.get('n', '?')} images, x{data.get('scale', '?')}), "
                 f"file hash {data.get('file_hash', '?')}") if data else "not recorded"
    device = settings.get("device") or protocol.get("device") or "?"
    device_text = f"{protocol.get('device', device)} ({prov.get('device_name', '?')})"
    parts = []
    if protocol:
        parts.append(f"batch {protocol.get('batch', '?')}")
        if protocol.get("warmup"):
            parts.append("warm-up per input shape")
        parts.append(f"{protocol.get('trials', '?')} trial(s)")
        parts.append(f"clock {protocol.get('clock', '?')}")
        if str(protocol.get("device", "")).startswith("cpu"):
            parts.append(f"{protocol.get('threads', '?')} threads")
        if "cudnn_benchmark" in protocol:
            parts.append(f"cudnn.benchmark {'on' if protocol['cudnn_benchmark'] else 'off'}")
    version = f"esr-harness {prov.get('harness', '?')}" + (f" (git {prov['git']})" if prov.get("git") else "")
    version += f", torch {prov.get('torch', '?')}"
    return [("Entry", f"{record.get('entry')} (status {record.get('status')})"),
            ("Data set", data_text), ("Device", device_text),
            ("Protocol", ", ".join(parts) or "not recorded"), ("Harness", version),
            ("Date", str(prov.get("date", "?")))]


def markdown(record: dict, split: str = "valid") -> str:
    lines = [f"### Factsheet figures: {record.get('entry')}", "",
             "| figure | value | unit | from the record | note |", "|---|---:|---|---|---|"]
    for f in figures(record, split):
        lines.append(f"| {f.label} | {f.value} | {f.unit} | `{f.source}` | {f.note} |")
    lines.append("")
    lines += [f"- {label}: {text}" for label, text in context(record, split)]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}"}
    return "".join(special.get(c, c) for c in text)


def latex(record: dict, split: str = "valid") -> str:
    e = _tex_escape
    lines = [f"% Factsheet figures of {e(str(record.get('entry')))}, written by esr factsheet from its record",
             r"\begin{tabular}{lrl}", r"\hline", r"Figure & Value & Unit \\", r"\hline"]
    for f in figures(record, split):
        if f.value == "-":  # say why on the line itself (e.g. memory measured on a CPU)
            lines.append(f"{e(f.label)} & \\multicolumn{{2}}{{l}}{{-- ({e(f.note)})}} \\\\  % {e(f.source)}")
        else:
            lines.append(f"{e(f.label)} & {e(f.value)} & {e(f.unit)} \\\\  % {e(f.source)}: {e(f.note)}")
    lines += [r"\hline", r"\end{tabular}", ""]
    lines += [r"\par\noindent\footnotesize " + "; ".join(f"{e(label)}: {e(text)}"
                                                        for label, text in context(record, split)[1:5])]
    return "\n".join(lines) + "\n"


def resolve_record(spec: str, run: Path | None) -> Path:
    """A record file: ``spec`` itself when it is a JSON file, else ``<run or results>/records/<spec>.json``."""
    given = Path(spec)
    if given.suffix == ".json" and given.is_file():
        return given
    if given.suffix == ".json":
        raise FileNotFoundError(f"{given}: no such record file")
    folder = (Path(run) if run else Path("results")) / "records"
    path = folder / f"{spec}.json"
    if path.is_file():
        return path
    known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    where = f"{folder} holds: {', '.join(known)}" if known else f"{folder} holds no records (run esr run first, or pass --run DIR)"
    raise FileNotFoundError(f"no record for entry {spec!r}: {path} not found; {where}")


def add_arguments(p) -> None:
    p.add_argument("entry", help="an entry name (its record in results/records/, or --run DIR) or a record .json file")
    p.add_argument("--run", type=Path, default=None, help="run folder holding records/<ENTRY>.json (default: results/)")
    p.add_argument("--split", default="valid", help="split of the PSNR, time and memory figures (default valid)")
    p.add_argument("--format", choices=FORMATS, default=None, help="print only this format (default: md and tex)")
    p.add_argument("--out", type=Path, default=None,
                   help="also write <entry>.factsheet.md and <entry>.factsheet.tex into this folder")


def main(args) -> int:
    import sys

    try:
        path = resolve_record(args.entry, args.run)
        record = json.loads(path.read_text())
    except FileNotFoundError as exc:
        print(f"esr factsheet: {exc}", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        print(f"esr factsheet: {args.entry}: not a JSON record ({exc}); rerun the entry", file=sys.stderr)
        return 2
    if not isinstance(record, dict) or "entry" not in record:
        print(f"esr factsheet: {path}: not an esr record (no 'entry' key)", file=sys.stderr)
        return 2
    if record.get("status") not in ("ok", "untrained"):
        print(f"esr factsheet: {path}: entry {record['entry']} was not measured (status {record.get('status')}: "
              f"{record.get('error')}); fix it and rerun esr run", file=sys.stderr)
        return 1
    if args.split not in (record.get("data") or {}):
        print(f"esr factsheet: {path}: no split {args.split!r} in the record (splits: "
              f"{', '.join(record.get('data') or {}) or 'none'})", file=sys.stderr)
        return 2
    texts = {"md": markdown(record, args.split), "tex": latex(record, args.split)}
    chosen = [args.format] if args.format else list(FORMATS)
    print(f"record: {path}\n")
    for fmt in chosen:
        print(texts[fmt])
    if args.out:
        from harness.core.fsio import atomic_write_text

        for fmt in chosen:
            target = Path(args.out) / f"{record['entry']}.factsheet.{fmt}"
            atomic_write_text(target, texts[fmt])
            print(f"wrote {target}")
    return 0
