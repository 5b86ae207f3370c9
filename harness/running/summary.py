"""The run's own summary table (console and Markdown). Rankings live in ``leaderboard/``."""
from __future__ import annotations

import math

# (header, metric key or callable, formatter)
COLUMNS = [
    ("Params", "params", lambda v: f"{int(v):,}"),
    ("MACs (G)", "macs", lambda v: f"{v / 1e9:.4f}"),
    ("MACs legacy (G)", "macs_legacy", lambda v: f"{v / 1e9:.4f}"),
    ("Acts (M)", "activations", lambda v: f"{v / 1e6:.4f}"),
    ("Conv", "conv", lambda v: f"{int(v)}"),
]
SPLIT_COLUMNS = [
    ("Runtime (ms)", "runtime_ms", lambda v: f"{v:.2f}"),
    ("Memory (MiB)", "memory_mib", lambda v: f"{v:.1f}"),
    ("PSNR RGB (dB)", "psnr_rgb", lambda v: "inf" if math.isinf(v) else f"{v:.4f}"),
    ("PSNR Y (dB)", "psnr_y", lambda v: "inf" if math.isinf(v) else f"{v:.4f}"),
    ("SSIM RGB", "ssim_rgb", lambda v: f"{v:.4f}"),
    ("SSIM Y", "ssim_y", lambda v: f"{v:.4f}"),
]
QUALITY = {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"}
UNTRAINED = "*"  # quality of an entry measured without its checkpoint: shown, never ranked
LEGEND = (
    "MACs are multiply-accumulates (the challenges call them FLOPs) at the run's complexity input; runtime is the "
    "mean over trials of the per-trial mean per image; * marks the quality of an untrained entry (no checkpoint): "
    "shown, never ranked."
)


def splits_of(records) -> list[str]:
    seen = []
    for r in records:
        for key in r.get("metrics", {}):
            if "." in key and key.split(".", 1)[0] not in seen:
                seen.append(key.split(".", 1)[0])
    return sorted(seen, key=lambda s: (s != "valid", s))


def table_rows(records) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells, one row per record, in record order."""
    splits = splits_of(records)
    headers = ["Entry", "Status"] + [h for h, _, _ in COLUMNS]
    for split in splits:
        prefix = f"{split} " if len(splits) > 1 else ""
        headers += [prefix + h for h, _, _ in SPLIT_COLUMNS]
    rows = []
    for r in records:
        m = r.get("metrics", {})
        row = [r["entry"], r["status"]]
        row += [fmt(m[key]) if m.get(key) is not None else "-" for _, key, fmt in COLUMNS]
        for split in splits:
            for _, key, fmt in SPLIT_COLUMNS:
                value = m.get(f"{split}.{key}")
                if value is None:
                    row.append("-")
                elif key in QUALITY and not r.get("trained", False):
                    row.append(f"{fmt(value)}{UNTRAINED}")
                else:
                    row.append(fmt(value))
        rows.append(row)
    return headers, rows


def notes(records) -> list[str]:
    out = []
    for r in records:
        if r.get("error"):
            out.append(f"{r['entry']} [{r['status']}]: {r['error']}")
        for flag in r.get("flags") or []:
            out.append(f"{r['entry']} [flag]: {flag}")
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


def rich_table(records, title: str = ""):
    from rich.table import Table

    headers, rows = table_rows(records)
    table = Table(title=title or None, caption=LEGEND, show_lines=False)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i == 0)
    styles = {"ok": "green", "untrained": "yellow"}
    for r, row in zip(records, rows):
        row = list(row)
        row[1] = f"[{styles.get(r['status'], 'red')}]{row[1]}[/]"
        table.add_row(*row)
    return table
