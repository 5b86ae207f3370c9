"""Ranking: pure functions from an input DataFrame and a track to a ranked table with reasons.

Steps (each a function): resolve the baseline, compute the track's metrics (derived ones and
scores, in file order; a metric given as an input column is used as given), decide eligibility
(status, role, training, missing values, gates that apply to the row's data set and device,
adjudications) with a reason for every unranked row, rank each metric among the eligible rows
under its tie policy, rank by the sub-track's rule and tie policy, then assess the stability of
runtime-based ranks (``stability``).

Conventions: values in the output table are canonical (record units: ms, counts, MACs);
renderers divide by each metric's ``scale``. Per-metric ranks are over the ranked rows at full
precision, "competition" (1224) or "ordinal" (ties broken by the metric's ``tie_break``, then
the entry name; never by row order). Gates compare printed values (``fmt.printed``) unless the
track says ``compare = "exact"``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leaderboard import context as ctx
from leaderboard.compute import compute_metrics
from leaderboard.fmt import printed, text
from leaderboard.inputs import RANKABLE_STATUS, InputError, cell_error, is_metric_column, parse_number
from leaderboard.tracks import NON_NEGATIVE, Gate, SubTrack, Track, base_name, is_canonical


@dataclass
class Prepared:
    """Input rows with the track's metrics computed, and the baseline constants used."""
    table: pd.DataFrame                 # base columns + kind + one column per track metric
    baseline: dict[str, float]          # track metric -> canonical value used as baseline.X
    baseline_source: dict[str, str]     # track metric -> "entry <name>" | "published (...)"
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # loud: shown first, marked WARNING
    given: dict[str, np.ndarray] = field(default_factory=dict)
    base_idx: int | None = None
    synthetic: bool = False
    published: dict[str, float] = field(default_factory=dict)   # published figures actually used


@dataclass
class Ranking:
    track: Track
    sub: SubTrack
    table: pd.DataFrame                 # ranked rows first (by rank), then unranked, baselines, references
    baseline: dict[str, float]
    baseline_source: dict[str, str]
    compare: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    context: ctx.Summary = field(default_factory=ctx.Summary)
    gates: list[tuple[Gate, str]] = field(default_factory=list)   # active gates, "" or why not applicable
    stability: object = None            # stability.Assessment or None

    @property
    def ranked(self) -> pd.DataFrame:
        return self.table[self.table["ranked"]]

    @property
    def unranked(self) -> pd.DataFrame:
        return self.table[~self.table["ranked"]]

    def rank_of(self, entry: str):
        row = self.table[self.table["entry"] == entry]
        if row.empty:
            raise KeyError(f"{entry!r} is not in the {self.track.name}:{self.sub.id} table")
        value = row["rank"].iloc[0]
        return None if pd.isna(value) else int(value)

    def status_of(self, entry: str) -> str:
        return str(self.table.loc[self.table["entry"] == entry, "status"].iloc[0])


_BASELINE_PREFIX = re.compile(r"^(team)?0+[_\- ]+")


def _norm(name: str) -> str:
    """Entry names compare case-insensitively; the organizers' ``00_``/``team00_`` prefix
    (team number 0 is the baseline in the NTIRE 2022-2026 repositories) is dropped."""
    return _BASELINE_PREFIX.sub("", str(name).strip().lower())


def find_baseline_rows(frame: pd.DataFrame, track: Track, entry: str | None = None) -> list[int]:
    """Row indices of the baseline: ``entry`` if given, else rows whose ``status`` column says
    ``baseline``, else entries named like the track's baseline (case-insensitive)."""
    if entry:
        return [i for i, e in frame["entry"].items() if _norm(e) == _norm(entry)]
    if "role" in frame.columns:
        marked = [i for i, r in frame["role"].items() if r == "baseline"]
        if marked:
            return marked
    names = {_norm(n) for n in track.baseline.entries}
    return [i for i, e in frame["entry"].items()
            if _norm(e) in names and frame.at[i, "role"] != "reference"]


def _numeric(table: pd.DataFrame, col: str) -> np.ndarray:
    """A column as floats; text cells are refused naming the file, line, entry and column."""
    series = table[col]
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.astype(float).to_numpy()
    else:
        values = np.full(len(table), math.nan)
        for pos, (i, cell) in enumerate(series.items()):
            if cell is None or (isinstance(cell, float) and math.isnan(cell)):
                continue
            if isinstance(cell, (int, float)) and not isinstance(cell, bool):
                values[pos] = float(cell)
                continue
            try:
                value = parse_number(str(cell))
            except ValueError as exc:
                raise cell_error(table, i, col, str(exc)) from None
            values[pos] = math.nan if value is None else value
    return values


def _check_given(table: pd.DataFrame, track: Track, key: str, values: np.ndarray) -> None:
    non_negative = base_name(key) in NON_NEGATIVE or track.device_bound(key)
    for pos, i in enumerate(table.index):
        v = values[pos]
        if math.isinf(v):
            raise cell_error(table, i, key, f"{v} is infinite")
        if non_negative and v < 0:
            raise cell_error(table, i, key, f"{v:g} is negative; a {track.metrics[key].label} cannot be")


def _published_applicability(table: pd.DataFrame, track: Track, key: str) -> str | None:
    """Why the track's published baseline figure for ``key`` does not fit the measured rows."""
    for i in table.index:
        if table.at[i, "synthetic"] or table.at[i, "kind"] == "reference" \
                or table.at[i, "status"] not in RANKABLE_STATUS:
            continue
        why = ctx.mismatch(track, key, table, i)
        if why:
            return why
    return None


def prepare(frame: pd.DataFrame, track: Track, *, baseline_entry: str | None = None,
            baseline_use: str | None = None) -> Prepared:
    """Compute the track's metrics for every row and resolve the baseline constants.

    ``baseline_use`` (default: the track's ``baseline.use``): ``"entry"`` takes the baseline's
    values from a baseline entry present in the data (same machine as the others), falling back
    per metric to the published values where those fit the data's context; ``"values"`` always
    uses the published values, with a loud warning where they were measured elsewhere.
    """
    use = baseline_use or track.baseline.use
    table = frame.copy().reset_index(drop=True)
    table["kind"] = np.where(table["role"] == "reference", "reference", "entry")
    table["synthetic"] = False
    notes: list[str] = []
    warnings: list[str] = []

    # Metric columns: given track metrics are used as given; unknown columns are reported.
    given: dict[str, np.ndarray] = {}
    for key, metric in track.metrics.items():
        if key not in table.columns:
            continue
        values = _numeric(table, key)
        _check_given(table, track, key, values)
        table[key] = values
        if metric.expr is not None and not np.all(np.isnan(values)):
            given[key] = values
            n = int((~np.isnan(values)).sum())
            notes.append(f"{metric.label}: taken as given from the input column '{key}' for {n} of "
                         f"{len(table)} rows (not recomputed from {metric.expr}).")
    unknown = [c for c in table.columns if is_metric_column(c) and not is_canonical(c)
               and c not in track.metrics and c not in ("kind", "synthetic")]
    if unknown:
        notes.append(f"Columns not used (not record metrics, not metrics of {track.name}): {', '.join(unknown)}.")

    rows = find_baseline_rows(table, track, baseline_entry)
    if baseline_entry and not rows:
        raise InputError(f"--baseline {baseline_entry!r}: no such entry "
                         f"(entries: {', '.join(map(str, table['entry']))})")
    table.loc[rows, "kind"] = "baseline"
    usable = [i for i in rows if table.at[i, "status"] in RANKABLE_STATUS]
    if len(usable) > 1:
        notes.append(f"several baseline entries ({', '.join(table.loc[usable, 'entry'])}); "
                     f"using {table.at[usable[0], 'entry']}")
    base_idx = usable[0] if usable and use == "entry" else None

    # Published figures: used only where the data's context matches the track's, or when forced.
    published: dict[str, float] = {}
    dropped: dict[str, str] = {}
    for key, value in track.baseline.values.items():
        if key not in track.metrics:
            continue
        why = _published_applicability(table, track, key)
        if why is None:
            published[key] = value
        elif use == "values":
            published[key] = value
            warnings.append(f"WARNING: the published {track.baseline.name} {track.metrics[key].label} "
                            f"({why}) is used as the baseline although it was measured elsewhere: "
                            "scores that use it are not comparable.")
        else:
            dropped[key] = why
    if rows and not usable:
        bad = table.loc[rows[0]]
        warnings.append(f"WARNING: the baseline entry {bad['entry']} did not run ({bad['status']}); "
                        + ("published figures that fit this run are used instead." if published else
                           "no published figure fits this run, so nothing that needs the baseline is computed."))
    synthetic = base_idx is None and bool(published)
    if synthetic:
        row = {c: None for c in table.columns}
        row.update({"entry": f"{track.baseline.name} (published)", "status": "ok", "trained": True,
                    "origin": track.path.name, "kind": "baseline", "synthetic": True, "role": "",
                    "ctx.assumed": True})
        row.update({k: v for k, v in track.baseline.values.items() if k not in track.metrics})
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        table["synthetic"] = table["synthetic"].astype(bool)
        base_idx = len(table) - 1
        for key in given:
            given[key] = np.append(given[key], math.nan)

    def column(name: str):
        if name in table.columns and name not in given:
            return _numeric(table, name)
        return None

    values, baseline = compute_metrics(track, column, len(table), given=given, base_idx=base_idx,
                                       synthetic=synthetic, published=published)
    for key, why in dropped.items():
        if key not in baseline:
            notes.append(f"The published {track.baseline.name} {track.metrics[key].label} is not used ({why}) "
                         "and no baseline entry measured it here: what needs it is not computed "
                         "(--baseline-values forces the published figure).")
    source = {}
    for key in baseline:
        if base_idx is not None and not math.isnan(values[key][base_idx]) and not synthetic:
            source[key] = f"entry {table.at[base_idx, 'entry']}"
        else:
            source[key] = "published"
    for key, series in values.items():
        table[key] = series
    return Prepared(table=table, baseline=baseline, baseline_source=source, notes=notes, warnings=warnings,
                    given=given, base_idx=base_idx, synthetic=synthetic, published=published)


def gate_check(gate: Gate, track: Track, value: float, baseline: dict[str, float], compare: str) -> str | None:
    """None when ``value`` (canonical units) passes the gate, else the reason string."""
    metric = track.metrics[gate.metric]
    label = gate.label or metric.label
    digits = metric.digits if gate.digits is None else int(gate.digits)
    shown = metric.display(value)

    def cmp(x: float) -> float:
        return printed(x, digits) if compare == "printed" else x

    def say(x: float) -> str:
        return text(x, digits) if compare == "printed" else format(x, ".10g")

    if gate.baseline:
        if gate.metric not in baseline:
            return f"{label}: the baseline has no value to compare with"
        ref = metric.display(baseline[gate.metric])
        if metric.direction == "lower" and cmp(shown) > cmp(ref):
            return f"{label} {say(shown)} > baseline {say(ref)}"
        if metric.direction == "higher" and cmp(shown) < cmp(ref):
            return f"{label} {say(shown)} < baseline {say(ref)}"
        return None
    if gate.at_least is not None and cmp(shown) < cmp(float(gate.at_least)):
        return f"{label} {say(shown)} < {say(float(gate.at_least))}"
    if gate.at_most is not None and cmp(shown) > cmp(float(gate.at_most)):
        return f"{label} {say(shown)} > {say(float(gate.at_most))}"
    return None


def active_gates(track: Track, sub: SubTrack) -> list[Gate]:
    """Gates of this sub-track whose switch (if any) is on."""
    return [g for g in track.gates if (not g.tracks or sub.id in g.tracks)
            and (g.switch is None or track.switches.get(g.switch, (False, ""))[0])]


def _needed(track: Track, sub: SubTrack, gates: list[Gate]) -> list[str]:
    # Per-metric tie-break metrics are not required: a missing one sorts last, then the name decides.
    keys = ([sub.by] if sub.by else []) + list(sub.of) + list(sub.tie_break) + [g.metric for g in gates]
    return list(dict.fromkeys(keys))


def baseline_refs(track: Track, key: str) -> list[str]:
    """Track metrics whose baseline value ``key`` needs (``baseline.X`` anywhere in its chain)."""
    from leaderboard import expr as expressions

    refs, seen, pending = [], set(), [key]
    while pending:
        k = pending.pop()
        if k in seen or k not in track.metrics or track.metrics[k].expr is None:
            continue
        seen.add(k)
        for name in expressions.names(track.metrics[k].expr):
            if name.startswith("baseline."):
                ref = name[len("baseline."):]
                if ref not in refs:
                    refs.append(ref)
            else:
                pending.append(name)
    return refs


def gate_applies(gate: Gate, track: Track, prep: Prepared, i) -> str | None:
    """None when the gate applies to row ``i``, else why not (data set or device differ)."""
    if gate.baseline and prep.baseline_source.get(gate.metric, "").startswith("entry"):
        return None     # compared with a baseline measured alongside
    return ctx.mismatch(track, gate.metric, prep.table, i)


def check_inputs_present(prep: Prepared, track: Track, sub: SubTrack, gates: list[Gate]) -> None:
    """A metric the rule needs that no row has is an input error, not a table ranking nobody."""
    measured = prep.table[~prep.table["synthetic"]]
    for key in _needed(track, sub, gates):
        if measured[key].notna().any():
            continue
        absent = [n for n in track.inputs([key])
                  if n not in measured.columns or not pd.to_numeric(measured[n], errors="coerce").notna().any()]
        if not absent:
            continue    # the inputs are there, the baseline is not: every row says so
        sources = sorted({str(o) for o in measured["origin"].dropna()})
        where = sources[0] if len(sources) == 1 else f"{len(sources)} inputs ({sources[0]}, ...)"
        have = [c for c in measured.columns if is_metric_column(c) and c not in ("kind", "synthetic")]
        raise InputError(f"{where}: no values for {', '.join(absent)}, needed for "
                         f"{track.metrics[key].label} in {track.name}:{sub.id} "
                         f"(columns present: {', '.join(have) or 'none'})")


def eligibility(prep: Prepared, track: Track, sub: SubTrack, compare: str
                ) -> tuple[pd.Series, pd.Series, list[tuple[Gate, str]]]:
    """(ranked: bool Series, status: str Series, gates with "" or why not applicable)."""
    table = prep.table
    gates = active_gates(track, sub)
    needed = _needed(track, sub, gates)
    adjudicated = {}
    for adj in track.adjudications:
        if not adj.tracks or sub.id in adj.tracks:
            adjudicated[_norm(adj.entry)] = adj
    not_applicable: dict[int, dict[str, int]] = {k: {} for k in range(len(gates))}
    ranked, status = [], []
    for i, row in table.iterrows():
        reasons: list[str] = []
        if row["kind"] == "reference":
            ranked.append(False)
            status.append("reference (listed, not ranked)")
            continue
        if row["kind"] == "baseline" and not track.baseline.ranked:
            reasons.append("baseline (not ranked)")
        if row["status"] not in RANKABLE_STATUS:
            reasons.append(f"{row['status']}: {row['error']}" if row.get("error") else str(row["status"]))
        elif not bool(row["trained"]):
            reasons.append("untrained (no checkpoint): not ranked")
        missing = []
        for key in needed:
            if pd.isna(row[key]):
                inputs = [n for n in track.inputs([key])
                          if n not in track.metrics and (n not in table.columns or pd.isna(table.at[i, n]))]
                base = [n for n in baseline_refs(track, key) if n not in prep.baseline]
                what = [*inputs, *[f"baseline {track.metrics[n].label}" for n in base]]
                missing.append(f"{track.metrics[key].label} (missing {', '.join(what)})" if what
                               else track.metrics[key].label)
        if missing and row["status"] in RANKABLE_STATUS:
            reasons.append("no " + "; no ".join(missing))
        gate_reasons = []
        for k, g in enumerate(gates):
            if pd.isna(row[g.metric]):
                continue
            why = gate_applies(g, track, prep, i)
            if why:
                not_applicable[k][why] = not_applicable[k].get(why, 0) + 1
                continue
            r = gate_check(g, track, float(row[g.metric]), prep.baseline, compare)
            if r:
                gate_reasons.append(r)
        adj = adjudicated.get(_norm(row["entry"]))
        if adj and adj.action == "exclude":
            ranked.append(False)
            status.append(f"excluded by organizers: {adj.reason}")
            continue
        if adj and adj.action == "include":
            blocking = [r for r in reasons if r.startswith("no ")]
            waived = [r for r in reasons if not r.startswith("no ")] + gate_reasons
            if blocking:
                ranked.append(False)
                status.append(f"admitted by organizers ({adj.reason}) but " + "; ".join(blocking))
            else:
                ranked.append(True)
                status.append(f"admitted by organizers: {adj.reason}"
                              + (f" (waived: {'; '.join(waived)})" if waived else ""))
            continue
        reasons += gate_reasons
        ranked.append(not reasons)
        status.append("; ".join(reasons))
    gate_info = []
    for k, g in enumerate(gates):
        why = "; ".join(f"{reason} ({n} {'entry' if n == 1 else 'entries'})"
                        for reason, n in not_applicable[k].items())
        gate_info.append((g, why))
    return (pd.Series(ranked, index=table.index, dtype=bool), pd.Series(status, index=table.index, dtype=object),
            gate_info)


def _sort_order(frame: pd.DataFrame, key: str, direction: str, tie_break, track: Track) -> list:
    """Row labels in rank order: ``key``, then the tie-break metrics, then the entry name."""
    order = [key] + list(tie_break)
    ascending = [direction == "lower"] + [track.metrics[k].direction == "lower" for k in tie_break]
    ordered = frame.assign(_name=frame["entry"].astype(str).str.lower()).sort_values(
        order + ["_name"], ascending=ascending + [True], kind="mergesort", na_position="last")
    return list(ordered.index)


def policy_ranks(frame: pd.DataFrame, key: str, direction: str, ties: str, tie_break, track: Track) -> pd.Series:
    """Ranks of ``frame[key]`` (NaN stays unranked): competition ("1224") or ordinal."""
    values = frame[key]
    if ties == "competition":
        return values.rank(method="min", ascending=(direction == "lower"))
    present = frame[values.notna()]
    order = _sort_order(present, key, direction, tie_break, track)
    out = pd.Series(np.nan, index=frame.index, dtype=float)
    out.loc[order] = np.arange(1, len(order) + 1, dtype=float)
    return out


def competition_ranks(values: pd.Series, direction: str) -> pd.Series:
    """Shared ranks with gaps ("1224"): equal values share the best rank, the next is skipped."""
    return values.rank(method="min", ascending=(direction == "lower"))


def rank(frame: pd.DataFrame, track: Track, sub: SubTrack | str | None = None, *,
         compare: str | None = None, baseline_entry: str | None = None,
         baseline_use: str | None = None, stability: bool = True) -> Ranking:
    """Rank ``frame`` (from ``inputs``) under one sub-track of ``track``."""
    sub = track.subtracks[0] if sub is None else (track.subtrack(sub) if isinstance(sub, str) else sub)
    compare = compare or track.compare
    prep = prepare(frame, track, baseline_entry=baseline_entry, baseline_use=baseline_use)
    check_inputs_present(prep, track, sub, active_gates(track, sub))
    table = prep.table
    ok, status, gate_info = eligibility(prep, track, sub, compare)
    table["ranked"] = ok
    table["status"] = status
    eligible = table[ok]

    metric_keys = list(dict.fromkeys(list(sub.show) + ([sub.by] if sub.by else []) + list(sub.of)))
    for key in metric_keys:
        m = track.metrics[key]
        table[f"rank.{key}"] = policy_ranks(eligible, key, m.direction, m.ties, m.tie_break, track)

    if sub.rule == "sort":
        table["key"] = table[sub.by]
        direction = track.metrics[sub.by].direction
    else:
        table["key"] = table[[f"rank.{k}" for k in sub.of]].sum(axis=1, min_count=len(sub.of))
        direction = "lower"
    eligible = table[ok]
    final = policy_ranks(eligible, "key", direction, sub.ties, sub.tie_break, track)
    table["rank"] = pd.array([None] * len(table), dtype="Int64")
    final = final.dropna()
    table.loc[final.index, "rank"] = final.astype("int64")

    ranked_part = table[ok].assign(_k=table.loc[ok, "rank"].astype(float))
    ranked_part = ranked_part.assign(_name=ranked_part["entry"].str.lower()).sort_values(
        ["_k", "_name"], kind="mergesort")
    asc = direction == "lower"
    unranked = table[~ok]
    block = unranked["kind"].map({"entry": 0, "baseline": 1, "reference": 2}).fillna(0)
    unranked = unranked.assign(_b=block, _k=unranked["key"] if asc else -unranked["key"],
                               _name=unranked["entry"].str.lower())
    unranked = unranked.sort_values(["_b", "_k", "_name"], na_position="last", kind="mergesort")
    ordered = pd.concat([ranked_part, unranked]).drop(columns=["_k", "_b", "_name"], errors="ignore")
    keep = ["rank", "entry", "kind", "ranked", "status"] + list(track.metrics) + \
        [f"rank.{k}" for k in metric_keys] + ["key", "trained", "origin", "line", "synthetic"]
    extra = [c for c in ordered.columns if c.startswith("ctx.") or c in ("raw.runtime", "runtime_cv",
                                                                          "runtime_cv_source")]
    ordered = ordered[keep + extra].reset_index(drop=True)
    result = Ranking(track=track, sub=sub, table=ordered, baseline=prep.baseline,
                     baseline_source=prep.baseline_source, compare=compare, notes=prep.notes,
                     warnings=prep.warnings, context=ctx.summarize(ordered, track), gates=gate_info)
    if stability:
        from leaderboard.stability import assess

        result.stability = assess(result, prep)
    return result


def rank_all(frame: pd.DataFrame, track: Track, subs=None, **kwargs) -> list[Ranking]:
    """One Ranking per sub-track (all of the track's by default)."""
    return [rank(frame, track, s, **kwargs) for s in (subs or track.subtracks)]
