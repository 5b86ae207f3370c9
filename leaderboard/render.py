"""Renderers: console (rich), Markdown, CSV, JSON and LaTeX from ``rank.Ranking`` objects.

Tables show values in each metric's display unit at its printed precision (scores to four
significant digits, scientific beyond 10^4), with the per-metric rank after the value of
metrics that some sub-track ranks (``0.317 (3)``; LaTeX ``0.317$_{3}$`` as in the challenge
reports). Ranked rows come first; unranked entries, baselines and reference rows follow, each
with the reason it is not ranked. Every format states what the table was measured on (data sets
with their hashes, device, runtime protocol, harness version), the gates and whether they apply,
and, for runtime-based ranks, the bootstrap stability of adjacent ranks ("tie" below 95%) and
each entry's trial-to-trial spread. CSV and JSON keep every value at full precision in
canonical units.
"""
from __future__ import annotations

import io
import json
import math

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leaderboard import context as ctx
from leaderboard.fmt import significant, text
from leaderboard.inputs import CV_COLUMN, RAW_COLUMN
from leaderboard.rank import Ranking
from leaderboard.stability import CV_FLAG

JSON_SCHEMA = "esr-leaderboard/2"


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
    shown = metric.display(float(value))
    return significant(shown, metric.significant) if metric.significant else text(shown, metric.digits)


def subscripted(ranking: Ranking, key: str) -> bool:
    """Only metrics that a sub-track of this track ranks carry a rank (never PSNR shown for information)."""
    return key in ranking.track.ranked_metrics()


def rank_text(ranking: Ranking, row, key: str) -> str | None:
    if not subscripted(ranking, key):
        return None
    r = row.get(f"rank.{key}")
    return None if r is None or pd.isna(r) else str(int(r))


def rank_cell(row) -> str:
    return "-" if pd.isna(row["rank"]) else str(int(row["rank"]))


def key_text(row) -> str:
    value = row["key"]
    return "-" if pd.isna(value) else (str(int(value)) if float(value).is_integer() else f"{value:g}")


def entry_text(row) -> str:
    return f"{row['entry']} (baseline)" if row["kind"] == "baseline" and not row.get("synthetic") \
        else str(row["entry"])


def has_stability(ranking: Ranking) -> bool:
    s = ranking.stability
    return s is not None and not s.omitted and bool(s.pairs)


def has_cv(ranking: Ranking) -> bool:
    return ranking.stability is not None and CV_COLUMN in ranking.table.columns \
        and ranking.table[CV_COLUMN].notna().any()


def stability_text(row) -> str:
    p = row.get("p_above")
    if p is None or pd.isna(p):
        return ""
    return f"tie {p:.2f}" if row.get("stat_tie") else f"{p:.2f}"


def cv_text(row) -> str:
    cv = row.get(CV_COLUMN)
    if cv is None or pd.isna(cv):
        return "-"
    return f"{cv * 100:.1f}%" + (" (!)" if cv > CV_FLAG else "")


def metric_header(ranking: Ranking, key: str) -> str:
    return ctx.header(ranking.track, key, ranking.context)


def headers(ranking: Ranking) -> list[str]:
    out = ["Rank", "Entry"] + [metric_header(ranking, k) for k in columns(ranking)]
    if ranking.sub.rule == "rank_sum":
        out.append("Rank sum")
    if has_stability(ranking):
        out.append("vs. above")
    if has_cv(ranking):
        out.append("Trial CV")
    return out + ["Status"]


def rows(ranking: Ranking, cell=None) -> list[list[str]]:
    """String cells per row; ``cell(value_text, rank_text)`` joins a value and its rank."""
    cell = cell or (lambda v, r: f"{v} ({r})" if r else v)
    out = []
    for _, row in ranking.table.iterrows():
        cells = [rank_cell(row), entry_text(row)]
        cells += [cell(value_text(ranking, k, row[k]), rank_text(ranking, row, k)) for k in columns(ranking)]
        if ranking.sub.rule == "rank_sum":
            cells.append(key_text(row))
        if has_stability(ranking):
            cells.append(stability_text(row))
        if has_cv(ranking):
            cells.append(cv_text(row))
        cells.append(str(row["status"]) if row["status"] else "ranked")
        out.append(cells)
    return out


def _ties_text(ranking: Ranking) -> str:
    track, sub = ranking.track, ranking.sub

    def policy(ties, tie_break):
        if ties == "competition":
            return "shared (1224)"
        labels = [track.metrics[k].label for k in tie_break] + ["entry name"]
        return "ordinal, broken by " + ", then ".join(labels)

    out = f"ties: {policy(sub.ties, sub.tie_break)}"
    ranked = [k for k in columns(ranking) + list(sub.of) if subscripted(ranking, k)]
    policies: dict[str, list[str]] = {}
    for k in dict.fromkeys(ranked):
        m = track.metrics[k]
        policies.setdefault(policy(m.ties, m.tie_break), []).append(m.label)
    if policies:
        out += "; per-metric ranks (in parentheses, among ranked entries): " + "; ".join(
            f"{', '.join(labels)}: {p}" for p, labels in policies.items())
    return out


def threshold_text(gate, metric) -> str:
    """A threshold gate's bound as printed: ``>= 28.63 dB`` (at the gate's digits, else the metric's)."""
    digits = metric.digits if gate.digits is None else gate.digits
    if gate.at_least is not None:
        return f">= {text(gate.at_least, digits)} {metric.unit}".rstrip()
    return f"<= {text(gate.at_most, digits)} {metric.unit}".rstrip()


def gate_lines(ranking: Ranking) -> list[str]:
    if not ranking.gates:
        return []
    parts = []
    for g, why in ranking.gates:
        m = ranking.track.metrics[g.metric]
        if g.baseline:
            part = f"{g.label or m.label} no worse than the baseline"
        else:
            part = f"{g.label or m.label} {threshold_text(g, m)}"
        data = [ranking.track.context.data[s] for s in ranking.track.splits_of(g.metric)
                if s in ranking.track.context.data]
        if data and not g.baseline:
            part += f" (on {', '.join(data)})"
        if why:
            part += f" [NOT APPLIED: {why}]"
        parts.append(part)
    how = "printed values" if ranking.compare == "printed" else "unrounded values"
    return ["Ranked only if: " + "; ".join(parts) + f" (compared on {how})."]


def notes(ranking: Ranking) -> list[str]:
    """Lines under a table: warnings, rule and ties, gates, baseline, context, stability, sources."""
    track, sub = ranking.track, ranking.sub
    out = list(ranking.warnings)
    direction = "lower" if sub.rule == "rank_sum" else track.metrics[sub.by].direction
    out.append(f"Rule: {rule_words(ranking).lower()[0] + rule_words(ranking)[1:]} ({direction} is better); "
               f"{_ties_text(ranking)}.")
    out += gate_lines(ranking)
    if ranking.baseline:
        shown = [k for k in columns(ranking) if k in ranking.baseline]
        srcs = sorted(set(ranking.baseline_source[k] for k in shown)) if shown else []
        vals = ", ".join(f"{track.metrics[k].label} {value_text(ranking, k, _scalar(ranking.baseline[k]))} "
                         f"{track.metrics[k].unit}".rstrip() for k in shown)
        where = ""
        if "published" in srcs:
            where = f" [published: {track.context.device or 'device not stated'}, {track.context.data_text()}]"
        out.append(f"Baseline {track.baseline.name} ({'; '.join(srcs)}){where}: {vals}.")
    out += ranking.context.lines(track)
    if ranking.stability is not None:
        out.append(ranking.stability.text())
    if has_cv(ranking):
        out.append(f"Trial CV: trial-to-trial coefficient of variation of the runtime (worst split); "
                   f"(!) above {CV_FLAG:.0%}: a noisy machine, rerun before trusting close ranks.")
    out += [f"{track.metrics[k].label}: {track.metrics[k].note}." for k in columns(ranking) if track.metrics[k].note]
    out += list(track.notes) + list(ranking.notes)
    out.append("Source: " + " | ".join(track.source) + f" ({track.path.name}).")
    return out


def _scalar(value):
    return float(value) if not hasattr(value, "shape") or not value.shape else float(value.ravel()[0])


def rule_words(ranking: Ranking) -> str:
    """The rule with metric labels: "Sorted by Ave. Time", "Sum of the ranks of #Params, FLOPs"."""
    track, sub = ranking.track, ranking.sub
    if sub.rule == "sort":
        return f"Sorted by {track.metrics[sub.by].label}"
    return "Sum of the ranks of " + ", ".join(track.metrics[k].label for k in sub.of)


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


def narrow_table(ranking: Ranking, width: int) -> Table:
    """The console table for a terminal narrower than the full table: the rank, the entry (wrapped,
    never dropped), the ranked metric and as many other columns as fit, values without their
    per-metric ranks; an unranked entry's reason moves to the notes under the table."""
    heads = headers(ranking)
    plain = rows(ranking, cell=lambda v, r: v)
    ranked_by = metric_header(ranking, ranking.sub.by) if ranking.sub.by else "Rank sum"
    keep = [0, 1] + [i for i, h in enumerate(heads) if h == ranked_by]
    status = len(heads) - 1
    short_status = [("yes" if c[status] == "ranked" else "no") for c in plain]
    reasons = [f"{c[1]}: {c[status]}" for c in plain if c[status] != "ranked"]

    def cell_width(i):
        longest_word = max(len(w) for w in heads[i].split())  # headers wrap between words
        return max([len(c[i]) for c in plain] + [longest_word])

    def need(cols, name_width):  # each column: its cells, 2 of padding, 1 rule; then "Ranked" and a rule
        return sum((name_width if i == 1 else cell_width(i)) + 3 for i in cols) + len("Ranked") + 3 + 1

    name_width = max(8, min(cell_width(1), width - need([i for i in keep if i != 1], 0) - 3))
    for i in range(2, status):
        if i not in keep and need(sorted(keep + [i]), name_width) <= width:
            keep.append(i)
    keep.sort()
    notes_text = "\n".join(notes(ranking) + reasons + ["Values at printed precision; per-metric ranks, all "
                                                        "columns and full precision: --format md, csv or json."])
    table = Table(title=escape(title(ranking)), caption=escape(notes_text), caption_justify="left")
    for i in keep:
        table.add_column(escape(heads[i]), justify="left" if i == 1 else "right", overflow="fold",
                         width=name_width if i == 1 else cell_width(i))
    table.add_column("Ranked", justify="left", no_wrap=True, width=len("Ranked"))
    n_ranked = int(ranking.table["ranked"].sum())
    for r, cells in enumerate(plain):
        table.add_row(*[escape(cells[i]) for i in keep], short_status[r], style=None if r < n_ranked else "dim",
                      end_section=(r == n_ranked - 1 and n_ranked < len(ranking.table)))
    return table


def fits(table: Table, width: int) -> bool:
    from rich.measure import Measurement

    console = Console(width=10_000, file=io.StringIO())
    return Measurement.get(console, console.options, table).maximum <= width


def to_console(rankings: list[Ranking], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal and "COLUMNS" not in __import__("os").environ:
            console = Console(width=200)  # piped: the full table
    for r in rankings:
        table = console_table(r)
        if not fits(table, console.width):
            table = narrow_table(r, console.width)
        console.print(table)
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
                 "| " + " | ".join(_md_escape(h) for h in head) + " |",
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

def _row_frame(r: Ranking) -> pd.DataFrame:
    table = r.table.drop(columns=[c for c in r.table.columns if c.startswith("ctx.") or c == RAW_COLUMN])
    contexts = [ctx.row_context(r.table, i, r.track) for i in r.table.index]
    for field in ("data", "device", "protocol", "harness", "memory"):
        table[f"context.{field}"] = [c[field] for c in contexts]
    return table.assign(track=r.track.name, subtrack=r.sub.id)


def frame(rankings: list[Ranking]) -> pd.DataFrame:
    """All rows of all rankings, canonical units, full precision, with each row's context."""
    out = pd.concat([_row_frame(r) for r in rankings], ignore_index=True)
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
        s = r.stability
        out.append({
            "schema": JSON_SCHEMA, "track": r.track.name, "subtrack": r.sub.id, "title": title(r),
            "rule": {"kind": r.sub.rule, "by": r.sub.by, "of": list(r.sub.of), "ties": r.sub.ties,
                     "tie_break": list(r.sub.tie_break)},
            "compare": r.compare,
            "metrics": {k: {"label": m.label, "header": metric_header(r, k), "unit": m.unit, "scale": m.scale,
                            "digits": m.digits, "direction": m.direction, "expr": m.expr, "ties": m.ties,
                            "tie_break": list(m.tie_break)} for k, m in r.track.metrics.items()},
            "gates": [{"metric": g.metric, "at_least": g.at_least, "at_most": g.at_most, "baseline": g.baseline,
                       "applied": not why, "not_applied_because": why or None} for g, why in r.gates],
            "baseline": {"name": r.track.baseline.name,
                         "values": {k: _scalar(v) for k, v in r.baseline.items()}, "source": r.baseline_source},
            "context": {"data": r.context.data, "devices": r.context.devices, "protocols": r.context.protocols,
                        "harness": r.context.harness, "memory_kinds": r.context.memory_kinds,
                        "published": r.context.published, "assumed_track_context": r.context.assumed,
                        "track_context": {"data": r.track.context.data, "device": r.track.context.device,
                                          "memory": r.track.context.memory, "runtime": r.track.context.runtime}},
            "stability": None if s is None else {"metrics": s.keys, "resamples": s.resamples, "seed": s.seed,
                                                 "level": s.level, "omitted": s.omitted, "pairs": s.pairs},
            "warnings": r.warnings,
            "notes": notes(r),
            "rows": [{k: _clean(v) for k, v in row.items()} for row in _row_frame(r).to_dict("records")],
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


def _tex_number(s: str) -> str:
    """``3.709e+04`` -> ``$3.709{\\times}10^{4}$``; other values escaped."""
    if "e+" in s or "e-" in s:
        mant, _, exp = s.partition("e")
        try:
            return f"${mant}{{\\times}}10^{{{int(exp)}}}$"
        except ValueError:
            pass
    return tex_escape(s)


def _tex_header(h: str) -> str:
    """``Ave. Time [ms]`` -> two lines: the label, then the unit (narrow columns)."""
    if h.endswith("]") and " [" in h:
        label, _, unit = h[:-1].rpartition(" [")
        return rf"\begin{{tabular}}[b]{{@{{}}c@{{}}}}{tex_escape(label)}\\[-1pt][{tex_escape(unit)}]\end{{tabular}}"
    return tex_escape(h)


def latex(rankings: list[Ranking]) -> str:
    """One booktabs ``table`` per ranking, shrunk to ``\\linewidth`` when wider.

    Needs ``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}``. Ranked entries first, then
    (after a rule) unranked entries with their reason, baselines and reference rows; a dagger
    marks a rank that is a statistical tie with the one above.
    """
    parts = []
    for r in rankings:
        head = headers(r)
        keys = columns(r)
        with_status = not r.table["ranked"].all()
        stab, cv = has_stability(r), has_cv(r)
        n_ranked = int(r.table["ranked"].sum())
        body = []
        for i, (_, row) in enumerate(r.table.iterrows()):
            if i == n_ranked and n_ranked:
                body.append(r"\midrule")
            rank = rank_cell(row)
            rank = "--" if rank == "-" else rank + (r"$^\dagger$" if stab and row.get("stat_tie") else "")
            cells = [rank, tex_escape(entry_text(row))]
            for k in keys:
                v, rk = value_text(r, k, row[k]), rank_text(r, row, k)
                num = _tex_number(v)
                if rk and num.endswith("$"):
                    num = num[:-1] + f"{{}}_{{{rk}}}$"      # one math group: no "$$" in the source
                elif rk:
                    num += f"$_{{{rk}}}$"
                cells.append(num)
            if r.sub.rule == "rank_sum":
                cells.append(key_text(row))
            if stab:
                cells.append(tex_escape(stability_text(row)))
            if cv:
                cells.append(tex_escape(cv_text(row)))
            if with_status:
                cells.append("" if row["ranked"] and not row["status"] else
                             r"\raggedright " + tex_escape(row["status"] or "").replace(r"\_", r"\_\allowbreak{}"))
            body.append(" & ".join(cells) + r" \tabularnewline")
        head_cells = [_tex_header(h) for h in head[:-1]] + ([tex_escape("Note")] if with_status else [])
        spec = "rl" + "r" * (len(head_cells) - 2 - int(with_status)) + (r"p{3.6cm}" if with_status else "")
        c = r.context
        data = "; ".join(f"{s}: {', '.join(v)}" for s, v in c.data.items()) or "not recorded"
        caption = (f"{title(r)}. {rule_words(r)}. Data {data}; device "
                   f"{', '.join(c.devices) or 'not recorded'}; runtime protocol "
                   f"{'; '.join(c.protocols) or (r.track.context.runtime if c.published else '') or 'not recorded'}; "
                   f"harness {', '.join(c.harness) or ('none (published figures)' if c.published else 'not recorded')}.")
        if stab:
            caption += (f" $\\dagger$: statistical tie with the entry above (kept ahead in fewer than "
                        f"{r.stability.level:.0%} of {r.stability.resamples} paired bootstrap resamples).")
        gate = gate_lines(r)
        cap = tex_escape(caption).replace(r"\$\textbackslash{}dagger\$", r"$\dagger$")
        if gate:
            cap += " " + tex_escape(gate[0])
        for w in r.warnings:
            cap += r" \textbf{" + tex_escape(w) + "}"
        parts.append("\n".join([
            r"\begin{table}[t]", r"\centering",
            rf"\caption{{{cap}}}",
            rf"\label{{tab:{r.track.name}-{r.sub.id}}}",
            r"\scriptsize", r"\setlength{\tabcolsep}{3pt}",
            r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
            rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(head_cells) + r" \\",
            r"\midrule", *body, r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]))
    return "\n".join(parts)


def standalone(tex_tables: str) -> str:
    """A standard single-column article (letter paper, default margins) around ``latex()`` output."""
    return "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage{graphicx}",
                      r"\begin{document}", tex_tables, r"\end{document}", ""])


RENDERERS = {"md": markdown, "csv": to_csv, "json": to_json, "tex": latex}
