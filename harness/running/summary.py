"""The run's own summary table (console and Markdown). Rankings live in ``leaderboard/``.

The console table picks a layout by width: ``full`` (every column), ``medium`` (abbreviated
headers, the valid split only) or ``narrow`` (80 columns: entry, status, params, MACs, runtime,
PSNR and SSIM on Y). The entry name is never dropped: it wraps. Full precision stays in the
records and in ``leaderboard.md``. The quality of an untrained entry (no checkpoint) is shown as
``-`` with the reason in the notes, never as a dB figure.
"""
from __future__ import annotations

import math

MEASURED = ("ok", "untrained")


def _int(v) -> str:
    return f"{int(v):,}"


def _q(digits: int):
    return lambda v: "inf" if math.isinf(v) else f"{v:.{digits}f}"


# (header, short header, metric key, formatter, short formatter)
COLUMNS = [
    ("Params", "Params (M)", "params", _int, lambda v: f"{v / 1e6:.3f}"),
    ("MACs (G)", "MACs (G)", "macs", lambda v: f"{v / 1e9:.4f}", lambda v: f"{v / 1e9:.2f}"),
    ("MACs legacy (G)", "MACs22 (G)", "macs_legacy", lambda v: f"{v / 1e9:.4f}", lambda v: f"{v / 1e9:.2f}"),
    ("Acts (M)", "Acts (M)", "activations", lambda v: f"{v / 1e6:.4f}", lambda v: f"{v / 1e6:.2f}"),
    ("Conv", "Conv", "conv", lambda v: f"{int(v)}", lambda v: f"{int(v)}"),
]
SPLIT_COLUMNS = [
    ("Runtime (ms)", "ms", "runtime_ms", lambda v: f"{v:.2f}", lambda v: f"{v:.1f}"),
    ("Memory (MiB)", "MiB", "memory_mib", lambda v: f"{v:.1f}", lambda v: f"{v:.0f}"),
    ("PSNR RGB (dB)", "PSNR", "psnr_rgb", _q(4), _q(2)),
    ("PSNR Y (dB)", "PSNR-Y", "psnr_y", _q(4), _q(2)),
    ("SSIM RGB", "SSIM", "ssim_rgb", _q(4), _q(4)),
    ("SSIM Y", "SSIM-Y", "ssim_y", _q(4), _q(4)),
]
# Columns kept by each layout (metric keys); None keeps them all.
LAYOUTS = {
    "full": None,
    "medium": {"params", "macs", "macs_legacy", "activations", "conv", "runtime_ms", "memory_mib", "psnr_y", "ssim_y"},
    "narrow": {"params", "macs", "runtime_ms", "psnr_y", "ssim_y"},
}
QUALITY = {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"}
CORRECTED = "\u2020"  # official-convention value that an artefact skews: the corrected one is in the notes
CORRECTIONS = {"macs": "macs_corrected", "macs_legacy": "macs_legacy_corrected"}
LEGEND = (
    "MACs are multiply-accumulates (the challenges call them FLOPs) at the run's complexity input; runtime is the "
    "mean over trials of the per-trial mean per image; quality of an untrained entry (no checkpoint) is '-': "
    "measured without its weights it means nothing; \u2020 marks an official-convention MACs value that misses (or "
    "miscounts) work: the corrected value is in the notes; 'no complexity' marks an entry whose complexity could not "
    "be counted."
)
SHORT_LEGEND = "MACs = multiply-accumulates at the complexity input; ms = mean per image; full precision in the records."


def needed_width(headers, rows, layout: str) -> int:
    """Characters the table needs on one line per row (box and padding included)."""
    cols = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    per_column = 1 if layout != "full" else 3  # a space between columns, or a rule and padding
    return sum(cols) + per_column * len(cols) + 1


def layout_for(width: int | None, records=None) -> str:
    """The widest layout that fits ``width`` (with records: measured on their cells)."""
    if width is None:
        return "full"
    for layout in ("full", "medium"):
        if records is not None:
            if needed_width(*table_rows(records, layout), layout) <= width:
                return layout
        elif width >= {"full": 190, "medium": 110}[layout]:
            return layout
    return "narrow"


def splits_of(records) -> list[str]:
    seen = []
    for r in records:
        for key in r.get("metrics", {}):
            if "." in key and key.split(".", 1)[0] not in seen:
                seen.append(key.split(".", 1)[0])
    return sorted(seen, key=lambda s: (s != "valid", s))


def table_rows(records, layout: str = "full") -> tuple[list[str], list[list[str]]]:
    """Headers and string cells, one row per record, in record order."""
    keep = LAYOUTS[layout]
    short = layout != "full"
    splits = splits_of(records)
    if short:
        splits = splits[:1]  # the other splits stay in the records and in leaderboard.md
    headers = ["Entry", "Status"]
    headers += [(s if short else h) for h, s, key, _, _ in COLUMNS if keep is None or key in keep]
    for split in splits:
        prefix = f"{split} " if len(splits) > 1 else ""
        headers += [prefix + (s if short else h) for h, s, key, _, _ in SPLIT_COLUMNS if keep is None or key in keep]
    rows = []
    for r in records:
        m = r.get("metrics", {})
        row = [r["entry"], status_text(r)]
        for _, _, key, fmt, sfmt in COLUMNS:
            if keep is None or key in keep:
                mark = CORRECTED if corrected(m, key) is not None else ""
                row.append((sfmt if short else fmt)(m[key]) + mark if m.get(key) is not None else "-")
        for split in splits:
            for _, _, key, fmt, sfmt in SPLIT_COLUMNS:
                if keep is not None and key not in keep:
                    continue
                value = m.get(f"{split}.{key}")
                if value is None or (key in QUALITY and not r.get("trained", False)):
                    row.append("-")
                else:
                    row.append((sfmt if short else fmt)(value))
        rows.append(row)
    return headers, rows


def status_text(record) -> str:
    """The status, with 'no complexity' when the counters failed on a measured entry."""
    failed = isinstance(record.get("complexity"), dict) and "error" in record["complexity"]
    return f"{record['status']} (no complexity)" if failed else record["status"]


def corrected(metrics: dict, key: str):
    """The corrected value of ``key`` when it differs from the official-convention one, else None."""
    value = metrics.get(CORRECTIONS.get(key, ""))
    return value if value is not None and metrics.get(key) is not None and value != metrics[key] else None


def notes(records) -> list[str]:
    out = []
    untrained = [r["entry"] for r in records if r.get("status") == "untrained"]
    if untrained:
        out.append(f"quality '-' for {', '.join(untrained)}: no trained checkpoint found in the zoo, so PSNR/SSIM "
                   "would measure random weights; complexity and speed are real. Point --zoo (or ESR_ZOO) at the "
                   "official checkpoints (README, 'Reference checkpoints').")
    for r in records:
        if r.get("error"):
            out.append(f"{r['entry']} [{r['status']}]: {r['error']}")
        m = r.get("metrics", {})
        fixes = [f"{key} {m[key] / 1e9:.4f} G official, {corrected(m, key) / 1e9:.4f} G corrected"
                 for key in CORRECTIONS if corrected(m, key) is not None]
        if fixes:
            out.append(f"{r['entry']} [{CORRECTED} corrected]: {'; '.join(fixes)}")
        for flag in r.get("flags") or []:
            out.append(f"{r['entry']} [flag]: {flag}")
    unconfined = [r for r in records if (r.get("isolation") or {}).get("mechanism") == "none"]
    if unconfined:  # --sandbox auto on a machine without namespaces, or --sandbox off
        reason = (unconfined[0].get("isolation") or {}).get("reason", "")
        out.append(f"UNCONFINED: team code of {', '.join(r['entry'] for r in unconfined)} ran without the sandbox "
                   f"({reason}): it could write files, use the network and leave processes; not for judging")
    return out


def markdown(records, title: str = "") -> str:
    headers, rows = table_rows(records)
    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(headers) - 2)) + "|")
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    extra = notes(records)
    if extra:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in extra]
    lines += ["", LEGEND]
    return "\n".join(lines) + "\n"


def rich_table(records, title: str = "", width: int | None = None):
    """The console table for a terminal ``width`` wide (None: the full layout)."""
    from rich import box
    from rich.table import Table

    layout = layout_for(width, records)
    headers, rows = table_rows(records, layout)
    narrow = layout != "full"
    table = Table(title=title or None, caption=SHORT_LEGEND if narrow else LEGEND, show_lines=False,
                  box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD, padding=(0, 1 if not narrow else 0),
                  collapse_padding=narrow, pad_edge=not narrow)
    for i, h in enumerate(headers):
        if i == 0:
            table.add_column(h, justify="left", overflow="fold", min_width=8, ratio=None)
        elif i == 1:
            table.add_column(h, justify="left", overflow="fold")
        else:
            table.add_column(h, justify="right", no_wrap=True)
    styles = {"ok": "green", "untrained": "yellow"}
    for r, row in zip(records, rows):
        row = list(row)
        style = styles.get(r["status"], "red") if row[1] == r["status"] or r["status"] not in styles else "yellow"
        row[1] = f"[{style}]{row[1]}[/]"
        table.add_row(*row)
    return table
