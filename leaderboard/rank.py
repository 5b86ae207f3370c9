"""Ranking: pure functions from an input DataFrame and a track to a ranked table with reasons.

Steps (each a function): resolve the baseline, compute the track's metrics (derived ones and
scores, in file order), decide eligibility (status, training, missing values, gates,
adjudications) with a reason for every unranked row, rank each metric among the eligible rows,
then rank by the sub-track's rule and tie policy.

Conventions: values in the output table are canonical (record units: ms, counts, MACs);
renderers divide by each metric's ``scale``. Per-metric ranks are competition ranks ("1224")
over the ranked rows at full precision. Gates compare printed values (``fmt.printed``) unless
the track says ``compare = "exact"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leaderboard import expr as expressions
from leaderboard.fmt import printed, text
from leaderboard.inputs import RANKABLE_STATUS
from leaderboard.tracks import Gate, SubTrack, Track


@dataclass
class Prepared:
    """Input rows with the track's metrics computed, and the baseline constants used."""
    table: pd.DataFrame                 # base columns + kind + one column per track metric
    baseline: dict[str, float]          # track metric -> canonical value used as baseline.X
    baseline_source: dict[str, str]     # track metric -> "measured <entry>" | "published"
    notes: list[str] = field(default_factory=list)


@dataclass
class Ranking:
    track: Track
    sub: SubTrack
    table: pd.DataFrame                 # ranked rows first (by rank), then unranked and baselines
    baseline: dict[str, float]
    baseline_source: dict[str, str]
    compare: str
    notes: list[str] = field(default_factory=list)

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


def _norm(name: str) -> str:
    return str(name).strip().lower()


def find_baseline_rows(frame: pd.DataFrame, track: Track, entry: str | None = None) -> list[int]:
    """Row indices of entries that are the track's baseline (case-insensitive names)."""
    names = {_norm(entry)} if entry else {_norm(n) for n in track.baseline.entries}
    return [i for i, e in frame["entry"].items() if _norm(e) in names]


def prepare(frame: pd.DataFrame, track: Track, *, baseline_entry: str | None = None,
            baseline_use: str | None = None) -> Prepared:
    """Compute the track's metrics for every row and resolve the baseline constants.

    ``baseline_use`` (default: the track's ``baseline.use``): ``"entry"`` takes the baseline's
    values from a measured entry present in the data (same machine as the others), falling back
    to the published values per metric; ``"values"`` always uses the published values.
    """
    use = baseline_use or track.baseline.use
    table = frame.copy().reset_index(drop=True)
    table["kind"] = "entry"
    rows = find_baseline_rows(table, track, baseline_entry)
    if baseline_entry and not rows:
        raise ValueError(f"--baseline {baseline_entry!r}: no such entry "
                         f"(entries: {', '.join(map(str, table['entry']))})")
    usable = [i for i in rows if table.at[i, "status"] in RANKABLE_STATUS]
    notes = []
    if len(usable) > 1:
        notes.append(f"several baseline entries ({', '.join(table.loc[usable, 'entry'])}); "
                     f"using {table.at[usable[0], 'entry']}")
    for i in rows:
        table.at[i, "kind"] = "baseline"
    base_idx = usable[0] if usable and use == "entry" else None
    synthetic = base_idx is None and bool(track.baseline.values)
    if synthetic:
        row = {"entry": f"{track.baseline.name} (published)", "status": "ok", "trained": True,
               "error": None, "origin": track.path.name, "kind": "baseline"}
        row.update({k: v for k, v in track.baseline.values.items() if k not in track.metrics})
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        base_idx = len(table) - 1

    computed: dict[str, pd.Series] = {}
    baseline: dict[str, float] = {}
    source: dict[str, str] = {}
    nan = pd.Series(np.nan, index=table.index, dtype=float)

    def resolve(name: str):
        if name.startswith("baseline."):
            return baseline.get(name[len("baseline."):], math.nan)
        if name in computed:
            return computed[name]
        if name in table.columns:
            return pd.to_numeric(table[name], errors="coerce").astype(float)
        return nan

    for key, metric in track.metrics.items():
        series = resolve(metric.source) if metric.expr is None else expressions.evaluate(metric.expr, resolve)
        if not isinstance(series, pd.Series):
            series = pd.Series(series, index=table.index)
        series = series.astype(float).copy()
        published = track.baseline.values.get(key)
        if synthetic and published is not None:
            series.iat[base_idx] = published
        if base_idx is not None and not math.isnan(series.iat[base_idx]):
            baseline[key] = float(series.iat[base_idx])
            source[key] = "published" if synthetic else f"entry {table.at[base_idx, 'entry']}"
        elif published is not None:
            baseline[key], source[key] = float(published), "published"
        computed[key] = series
    for key, series in computed.items():
        table[key] = series
    return Prepared(table=table, baseline=baseline, baseline_source=source, notes=notes)


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


def _needed(track: Track, sub: SubTrack, gates: list[Gate]) -> list[str]:
    keys = ([sub.by] if sub.by else []) + list(sub.of) + list(sub.tie_break) + [g.metric for g in gates]
    return list(dict.fromkeys(keys))


def eligibility(prep: Prepared, track: Track, sub: SubTrack, compare: str) -> tuple[pd.Series, pd.Series]:
    """(ranked: bool Series, status: str Series) with one reason per unranked row."""
    table = prep.table
    gates = [g for g in track.gates if not g.tracks or sub.id in g.tracks]
    needed = _needed(track, sub, gates)
    adjudicated = {}
    for adj in track.adjudications:
        if not adj.tracks or sub.id in adj.tracks:
            adjudicated[_norm(adj.entry)] = adj
    ranked, status = [], []
    for i, row in table.iterrows():
        reasons: list[str] = []
        is_baseline = row["kind"] == "baseline"
        if is_baseline and not track.baseline.ranked:
            reasons.append("baseline (not ranked)")
        if row["status"] not in RANKABLE_STATUS:
            reasons.append(f"{row['status']}: {row['error']}" if row.get("error") else str(row["status"]))
        elif not bool(row["trained"]):
            reasons.append("untrained (no checkpoint): not ranked")
        missing = []
        for key in needed:
            if pd.isna(row[key]):
                inputs = [n for n in track.inputs([key])
                          if n not in table.columns or pd.isna(table.at[i, n])]
                missing.append(f"{track.metrics[key].label} (missing {', '.join(inputs)})" if inputs
                               else track.metrics[key].label)
        if missing and row["status"] in RANKABLE_STATUS:
            reasons.append("no " + "; no ".join(missing))
        gate_reasons = [r for g in gates if not pd.isna(row[g.metric])
                        for r in [gate_check(g, track, float(row[g.metric]), prep.baseline, compare)] if r]
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
    return pd.Series(ranked, index=table.index, dtype=bool), pd.Series(status, index=table.index, dtype=object)


def competition_ranks(values: pd.Series, direction: str) -> pd.Series:
    """Shared ranks with gaps ("1224"): equal values share the best rank, the next is skipped."""
    return values.rank(method="min", ascending=(direction == "lower"))


def rank(frame: pd.DataFrame, track: Track, sub: SubTrack | str | None = None, *,
         compare: str | None = None, baseline_entry: str | None = None,
         baseline_use: str | None = None) -> Ranking:
    """Rank ``frame`` (from ``inputs``) under one sub-track of ``track``."""
    sub = track.subtracks[0] if sub is None else (track.subtrack(sub) if isinstance(sub, str) else sub)
    compare = compare or track.compare
    prep = prepare(frame, track, baseline_entry=baseline_entry, baseline_use=baseline_use)
    table = prep.table
    ok, status = eligibility(prep, track, sub, compare)
    table["ranked"] = ok
    table["status"] = status
    eligible = table[ok]

    metric_keys = list(dict.fromkeys(list(sub.show) + ([sub.by] if sub.by else []) + list(sub.of)))
    for key in metric_keys:
        table[f"rank.{key}"] = competition_ranks(eligible[key], track.metrics[key].direction)

    if sub.rule == "sort":
        table["key"] = table[sub.by]
        direction = track.metrics[sub.by].direction
    else:
        table["key"] = table[[f"rank.{k}" for k in sub.of]].sum(axis=1, min_count=len(sub.of))
        direction = "lower"
    eligible = table[ok]
    if sub.ties == "competition":
        final = competition_ranks(eligible["key"], direction)
    else:
        order = ["key"] + list(sub.tie_break) + ["entry"]
        ascending = [direction == "lower"] + [track.metrics[k].direction == "lower" for k in sub.tie_break] + [True]
        ordered = eligible.sort_values(order, ascending=ascending, kind="mergesort")
        final = pd.Series(range(1, len(ordered) + 1), index=ordered.index, dtype=float)
    table["rank"] = pd.array([None] * len(table), dtype="Int64")
    table.loc[final.index, "rank"] = final.astype("int64")

    ranked_part = table[ok]
    ranked_part = ranked_part.assign(_k=ranked_part["rank"]).sort_values(["_k", "entry"], kind="mergesort")
    asc = direction == "lower"
    unranked = table[~ok]
    unranked = unranked.assign(_b=(unranked["kind"] == "baseline"),
                               _k=unranked["key"] if asc else -unranked["key"])
    unranked = unranked.sort_values(["_b", "_k", "entry"], na_position="last", kind="mergesort")
    ordered = pd.concat([ranked_part, unranked]).drop(columns=["_k", "_b"], errors="ignore")
    columns = (["rank", "entry", "kind", "ranked", "status"] + list(track.metrics)
               + [f"rank.{k}" for k in metric_keys] + ["key", "trained", "origin"])
    ordered = ordered[columns].reset_index(drop=True)
    return Ranking(track=track, sub=sub, table=ordered, baseline=prep.baseline,
                   baseline_source=prep.baseline_source, compare=compare, notes=prep.notes)


def rank_all(frame: pd.DataFrame, track: Track, subs=None, **kwargs) -> list[Ranking]:
    """One Ranking per sub-track (all of the track's by default)."""
    return [rank(frame, track, s, **kwargs) for s in (subs or track.subtracks)]
