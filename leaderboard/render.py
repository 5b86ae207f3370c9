"""Renderers: console (rich), Markdown, CSV, JSON and LaTeX from ``rank.Ranking`` objects.

Tables show values in each metric's display unit at its printed precision, with the per-metric
rank after the value (``0.317 (3)``; LaTeX ``0.317$_{(3)}$`` as in the challenge reports).
Ranked rows come first; unranked entries and baselines follow in a separate block, each with
the reason it is not ranked. CSV and JSON keep every value at full precision in canonical units.
"""
from __future__ import annotations

import io
import json
import math

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leaderboard.fmt import text
from leaderboard.rank import Ranking

JSON_SCHEMA = "esr-leaderboard/1"


def columns(ranking: Ranking) -> list[str]:
    """Track metrics shown for this sub-track, in order (the ranked metric always included)."""
    keys = list(ranking.sub.show)
    if ranking.sub.by and ranking.sub.by not in keys:
        keys.append(ranking.sub.by)
    return keys


def value_text(ranking: Ranking, key: str, value) -> str:
    metric = ranking.track.metrics[key]
    if value is None or pd.isna(value):
        return "-"
    return text(metric.display(float(value)), metric.digits)


def rank_text(row, key: str) -> str | None:
    r = row.get(f"rank.{key}")
    return None if r is None or pd.isna(r) else str(int(r))


def rank_cell(row) -> str:
    return "-" if pd.isna(row["rank"]) else str(int(row["rank"]))


def key_text(row) -> str:
    value = row["key"]
    return "-" if pd.isna(value) else (str(int(value)) if float(value).is_integer() else f"{value:g}")


def entry_text(row) -> str:
    return f"{row['entry']} (baseline)" if row["kind"] == "baseline" and "(published)" not in row["entry"] \
        else str(row["entry"])


def headers(ranking: Ranking) -> list[str]:
    out = ["Rank", "Entry"] + [ranking.track.metrics[k].header for k in columns(ranking)]
    if ranking.sub.rule == "rank_sum":
        out.append("Rank sum")
    return out + ["Status"]


def rows(ranking: Ranking, cell=None) -> list[list[str]]:
    """String cells per row; ``cell(value_text, rank_text)`` joins a value and its rank."""
    cell = cell or (lambda v, r: f"{v} ({r})" if r else v)
    out = []
    for _, row in ranking.table.iterrows():
        cells = [rank_cell(row), entry_text(row)]
        cells += [cell(value_text(ranking, k, row[k]), rank_text(row, k)) for k in columns(ranking)]
        if ranking.sub.rule == "rank_sum":
            cells.append(key_text(row))
        cells.append(str(row["status"]) if row["status"] else "ranked")
        out.append(cells)
    return out


def notes(ranking: Ranking) -> list[str]:
    """Lines under a table: rule, ties, gates, baseline, metric notes, sources."""
    track, sub = ranking.track, ranking.sub
    ties = "shared competition ranks (1224)" if sub.ties == "competition" else \
        "ordinal; ties broken by " + ", ".join(list(sub.tie_break) + ["entry name"])
    out = [f"Rule: {sub.rule_text} ({'lower' if sub.rule == 'rank_sum' else track.metrics[sub.by].direction}"
           f" is better); ties: {ties}; per-metric ranks in parentheses among ranked entries."]
    gates = [g for g in track.gates if not g.tracks or sub.id in g.tracks]
    if gates:
        parts = []
        for g in gates:
            m = track.metrics[g.metric]
            digits = m.digits if g.digits is None else g.digits
            if g.baseline:
                parts.append(f"{g.label or m.label} no worse than the baseline")
            elif g.at_least is not None:
                parts.append(f"{g.label or m.label} >= {text(g.at_least, digits)} {m.unit}".rstrip())
            else:
                parts.append(f"{g.label or m.label} <= {text(g.at_most, digits)} {m.unit}".rstrip())
        how = "printed values" if ranking.compare == "printed" else "unrounded values"
        out.append("Ranked only if: " + "; ".join(parts) + f" (compared on {how}).")
    if ranking.baseline:
        shown = [k for k in columns(ranking) if k in ranking.baseline]
        srcs = sorted(set(ranking.baseline_source[k] for k in shown)) if shown else []
        vals = ", ".join(f"{track.metrics[k].label} {value_text(ranking, k, ranking.baseline[k])} "
                         f"{track.metrics[k].unit}".rstrip() for k in shown)
        out.append(f"Baseline {track.baseline.name} ({'; '.join(srcs)}): {vals}.")
    out += [f"{track.metrics[k].label}: {track.metrics[k].note}." for k in columns(ranking) if track.metrics[k].note]
    out += list(track.notes) + list(ranking.notes)
    out.append("Source: " + " | ".join(track.source) + f" ({track.path.name}).")
    return out


def title(ranking: Ranking) -> str:
    return f"{ranking.track.title} - {ranking.sub.title}"


# ---- console ------------------------------------------------------------------------------

def console_table(ranking: Ranking) -> Table:
    # escape: "[dB]" would otherwise be read as rich markup and vanish.
    table = Table(title=escape(title(ranking)), caption=escape("\n".join(notes(ranking))),
                  caption_justify="left")
    for i, h in enumerate(headers(ranking)):
        wraps = i == 1 or h == "Status"
        table.add_column(escape(h), justify="left" if wraps else "right", no_wrap=not wraps,
                         overflow="fold", min_width=12 if wraps else len(h))
    n_ranked = int(ranking.table["ranked"].sum())
    for i, cells in enumerate(rows(ranking)):
        table.add_row(*map(escape, cells), style=None if i < n_ranked else "dim",
                      end_section=(i == n_ranked - 1 and n_ranked < len(ranking.table)))
    return table


def to_console(rankings: list[Ranking], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: do not crop the table at 80 columns
            console = Console(width=200)
    for r in rankings:
        console.print(console_table(r))
        console.print()


def console_text(rankings: list[Ranking], width: int = 200) -> str:
    buf = io.StringIO()
    to_console(rankings, Console(file=buf, width=width, color_system=None, force_terminal=False))
    return buf.getvalue()


# ---- Markdown -----------------------------------------------------------------------------

def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def markdown(rankings: list[Ranking]) -> str:
    parts = []
    for r in rankings:
        head = headers(r)
        lines = [f"### {title(r)}", "",
                 "| " + " | ".join(head) + " |",
                 "|" + "|".join("---" if h in ("Entry", "Status") else "---:" for h in head) + "|"]
        n_ranked = int(r.table["ranked"].sum())
        for i, cells in enumerate(rows(r)):
            if i == n_ranked and n_ranked:
                lines.append("| " + " | ".join([""] * len(head)) + " |")  # visual break before unranked
            lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
        lines.append("")
        lines += [f"- {_md_escape(n)}" for n in notes(r)]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


# ---- CSV and JSON (full precision) ----------------------------------------------------------

def frame(rankings: list[Ranking]) -> pd.DataFrame:
    """All rows of all rankings, canonical units, full precision (``track``/``subtrack`` columns)."""
    parts = [r.table.assign(track=r.track.name, subtrack=r.sub.id) for r in rankings]
    out = pd.concat(parts, ignore_index=True)
    first = ["track", "subtrack"]
    return out[first + [c for c in out.columns if c not in first]]


def to_csv(rankings: list[Ranking]) -> str:
    # float_format=None writes repr(float): the shortest string that reads back to the same float.
    return frame(rankings).to_csv(index=False)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is None:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def to_json(rankings: list[Ranking]) -> str:
    out = []
    for r in rankings:
        out.append({
            "schema": JSON_SCHEMA, "track": r.track.name, "subtrack": r.sub.id, "title": title(r),
            "rule": {"kind": r.sub.rule, "by": r.sub.by, "of": list(r.sub.of), "ties": r.sub.ties,
                     "tie_break": list(r.sub.tie_break)},
            "compare": r.compare,
            "metrics": {k: {"label": m.label, "unit": m.unit, "scale": m.scale, "digits": m.digits,
                            "direction": m.direction, "expr": m.expr} for k, m in r.track.metrics.items()},
            "baseline": {"name": r.track.baseline.name, "values": r.baseline, "source": r.baseline_source},
            "notes": notes(r),
            "rows": [{k: _clean(v) for k, v in row.items()} for row in r.table.to_dict("records")],
        })
    return json.dumps(out, indent=1, allow_nan=False)


# ---- LaTeX --------------------------------------------------------------------------------

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "<": r"$<$", ">": r"$>$"}


def tex_escape(s: str) -> str:
    s = str(s).replace(">=", "\x00ge").replace("<=", "\x00le")
    out = "".join(_TEX.get(ch, ch) for ch in s)
    return out.replace("\x00ge", r"$\geq$").replace("\x00le", r"$\leq$")


def latex(rankings: list[Ranking]) -> str:
    """One booktabs ``table`` per ranking (needs ``\\usepackage{booktabs}``)."""
    parts = []
    for r in rankings:
        head = headers(r)
        spec = "rl" + "r" * (len(head) - 3) + "p{5cm}"
        body = []
        n_ranked = int(r.table["ranked"].sum())
        cells_all = rows(r, cell=lambda v, rk: f"{tex_escape(v)}$_{{({rk})}}$" if rk else tex_escape(v))
        for i, cells in enumerate(cells_all):
            if i == n_ranked and n_ranked:
                body.append(r"\midrule")
            status = "" if cells[-1] == "ranked" else tex_escape(cells[-1])
            body.append(" & ".join([tex_escape(cells[0]) if cells[0] != "-" else "--", tex_escape(cells[1])]
                                   + cells[2:-1] + [status]) + r" \\")
        caption = tex_escape(title(r)) + ". " + " ".join(tex_escape(n) for n in notes(r)[:2])
        parts.append("\n".join([
            r"\begin{table}[t]", r"\centering", r"\footnotesize",
            rf"\caption{{{caption}}}",
            rf"\label{{tab:{r.track.name}-{r.sub.id}}}",
            rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(tex_escape(h if h != "Status" else "Note") for h in head) + r" \\",
            r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]))
    return "\n".join(parts)


def standalone(tex_tables: str) -> str:
    """A minimal article around ``latex()`` output, for checking that it compiles."""
    return "\n".join([r"\documentclass{article}", r"\usepackage[margin=1.5cm,landscape]{geometry}",
                      r"\usepackage{booktabs}", r"\begin{document}", tex_tables, r"\end{document}", ""])


RENDERERS = {"md": markdown, "csv": to_csv, "json": to_json, "tex": latex}
