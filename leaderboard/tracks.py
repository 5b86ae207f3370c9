"""Track files: a challenge's ranking rules as data (TOML, schema ``esr-track/1``).

One file per challenge in ``leaderboard/tracks/``; each holds several sub-tracks. The schema is
documented in ``docs/leaderboard.md``; this module only parses and validates it. Units: every
value in a track file is in the metric's *display* unit (what the report prints: ms, M, G, dB),
except ``[baseline].values``, which use the canonical record units (ms, counts, MACs) so that
they can be pasted from a record.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from leaderboard import expr as expressions

TRACK_DIR = Path(__file__).resolve().parent / "tracks"
SCHEMA = "esr-track/1"
DIRECTIONS = ("lower", "higher")
TIES = ("competition", "ordinal")
RULES = ("sort", "rank_sum")
COMPARE = ("printed", "exact")


class TrackError(ValueError):
    pass


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str = ""
    scale: float = 1.0          # canonical value / scale = displayed value
    digits: int = 2
    direction: str = "lower"
    expr: str | None = None     # None: the canonical metric of the same name
    note: str = ""

    @property
    def source(self) -> str:
        return self.expr or self.key

    @property
    def header(self) -> str:
        return f"{self.label} [{self.unit}]" if self.unit else self.label

    def display(self, canonical: float) -> float:
        return canonical / self.scale


@dataclass(frozen=True)
class Gate:
    metric: str
    at_least: float | None = None   # display units
    at_most: float | None = None
    baseline: bool = False          # no worse than the baseline, in the metric's direction
    digits: int | None = None       # printed precision; None: the metric's digits
    tracks: tuple[str, ...] = ()    # empty: every sub-track
    label: str | None = None        # name in reasons; default: the metric's label


@dataclass(frozen=True)
class Adjudication:
    entry: str
    action: str                     # "include" (forced in, gates waived) | "exclude"
    reason: str
    tracks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Baseline:
    name: str = "baseline"
    entries: tuple[str, ...] = ()   # entry names in the data that are the baseline
    values: dict = field(default_factory=dict)   # canonical units, keyed by track metric or input
    use: str = "entry"              # "entry": measured values of a present entry win; "values": published
    ranked: bool = False


@dataclass(frozen=True)
class SubTrack:
    id: str
    title: str
    rule: str
    by: str | None = None           # rule "sort"
    of: tuple[str, ...] = ()        # rule "rank_sum"
    show: tuple[str, ...] = ()
    ties: str = "competition"
    tie_break: tuple[str, ...] = ()

    @property
    def rule_text(self) -> str:
        if self.rule == "sort":
            return f"sorted by {self.by}"
        return "sum of per-metric ranks of " + ", ".join(self.of)


@dataclass(frozen=True)
class Track:
    name: str
    title: str
    path: Path
    source: tuple[str, ...]
    metrics: dict[str, Metric]
    baseline: Baseline
    gates: tuple[Gate, ...]
    subtracks: tuple[SubTrack, ...]
    adjudications: tuple[Adjudication, ...] = ()
    compare: str = "printed"
    plot: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def subtrack(self, sub_id: str) -> SubTrack:
        for sub in self.subtracks:
            if sub.id == sub_id:
                return sub
        raise TrackError(f"{self.path.name}: no sub-track {sub_id!r}; "
                         f"choose one of {', '.join(s.id for s in self.subtracks)}")

    def inputs(self, keys=None) -> list[str]:
        """Canonical record metrics the given track metrics (default: all) are computed from."""
        out: list[str] = []
        pending = list(keys or self.metrics)
        seen = set()
        while pending:
            key = pending.pop(0)
            if key in seen:
                continue
            seen.add(key)
            metric = self.metrics.get(key)
            if metric is None:
                if key not in out:
                    out.append(key)
                continue
            if metric.expr is None:
                if key not in out:
                    out.append(key)
                continue
            pending += [n for n in expressions.names(metric.expr) if not n.startswith("baseline.")]
        return out

    def required(self) -> list[str]:
        """Canonical metrics needed to rank any sub-track (ranked metrics and gates)."""
        keys = []
        for sub in self.subtracks:
            keys += ([sub.by] if sub.by else []) + list(sub.of) + list(sub.tie_break)
        keys += [g.metric for g in self.gates]
        return self.inputs(dict.fromkeys(keys))


def _check_keys(where: str, table: dict, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TrackError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def parse_track(data: dict, path: Path) -> Track:
    where = str(path)
    _check_keys(where, data, {"schema", "name", "title", "source", "notes", "settings", "metrics",
                              "baseline", "gates", "tracks", "adjudications", "plot"})
    if data.get("schema") != SCHEMA:
        raise TrackError(f"{where}: schema must be {SCHEMA!r} (found {data.get('schema')!r})")
    settings = data.get("settings", {})
    _check_keys(f"{where} [settings]", settings, {"compare", "ties", "tie_break"})
    compare = settings.get("compare", "printed")
    if compare not in COMPARE:
        raise TrackError(f"{where}: settings.compare must be one of {COMPARE}, not {compare!r}")

    metrics: dict[str, Metric] = {}
    for key, spec in data.get("metrics", {}).items():
        _check_keys(f"{where} [metrics.{key}]", spec,
                    {"label", "unit", "scale", "digits", "direction", "expr", "note"})
        if spec.get("direction", "lower") not in DIRECTIONS:
            raise TrackError(f"{where}: metrics.{key}.direction must be 'lower' or 'higher'")
        metric = Metric(key=key, label=spec.get("label", key), unit=spec.get("unit", ""),
                        scale=float(spec.get("scale", 1.0)), digits=int(spec.get("digits", 2)),
                        direction=spec.get("direction", "lower"), expr=spec.get("expr"),
                        note=spec.get("note", ""))
        if metric.expr:
            try:
                used = expressions.names(metric.expr)
            except expressions.ExpressionError as exc:
                raise TrackError(f"{where}: metrics.{key}: {exc}") from None
            later = [n for n in used if n in data["metrics"] and n not in metrics and n != key]
            if later:
                raise TrackError(f"{where}: metrics.{key} uses {', '.join(later)} defined after it; "
                                 "define metrics before the expressions that use them")
        metrics[key] = metric

    b = data.get("baseline", {})
    _check_keys(f"{where} [baseline]", b, {"name", "entries", "values", "use", "ranked", "note"})
    if b.get("use", "entry") not in ("entry", "values"):
        raise TrackError(f"{where}: baseline.use must be 'entry' or 'values'")
    baseline = Baseline(name=b.get("name", "baseline"), entries=_tuple(b.get("entries")),
                        values={k: float(v) for k, v in b.get("values", {}).items()},
                        use=b.get("use", "entry"), ranked=bool(b.get("ranked", False)))

    def known(key: str, what: str) -> str:
        if key not in metrics:
            raise TrackError(f"{where}: {what} names metric {key!r}, which is not in [metrics] "
                             f"({', '.join(metrics)})")
        return key

    gates = []
    for i, g in enumerate(data.get("gates", [])):
        _check_keys(f"{where} gates[{i}]", g, {"metric", "at_least", "at_most", "baseline", "digits",
                                               "tracks", "label", "note"})
        gate = Gate(metric=known(g["metric"], f"gates[{i}]"), at_least=g.get("at_least"),
                    at_most=g.get("at_most"), baseline=bool(g.get("baseline", False)),
                    digits=g.get("digits"), tracks=_tuple(g.get("tracks")), label=g.get("label"))
        if sum(x is not None and x is not False for x in (gate.at_least, gate.at_most, gate.baseline or None)) != 1:
            raise TrackError(f"{where}: gates[{i}] needs exactly one of at_least, at_most, baseline = true")
        gates.append(gate)

    subs = []
    for i, t in enumerate(data.get("tracks", [])):
        _check_keys(f"{where} tracks[{i}]", t, {"id", "title", "rule", "by", "of", "show", "ties",
                                                "tie_break", "note"})
        rule = t.get("rule", "sort")
        if rule not in RULES:
            raise TrackError(f"{where}: tracks[{i}].rule must be one of {RULES}, not {rule!r}")
        ties = t.get("ties", settings.get("ties", "competition"))
        if ties not in TIES:
            raise TrackError(f"{where}: tracks[{i}].ties must be one of {TIES}, not {ties!r}")
        by = known(t["by"], f"tracks[{i}].by") if rule == "sort" else None
        of = tuple(known(k, f"tracks[{i}].of") for k in t.get("of", ())) if rule == "rank_sum" else ()
        if rule == "rank_sum" and not of:
            raise TrackError(f"{where}: tracks[{i}] has rule 'rank_sum' but no 'of' list")
        show = tuple(known(k, f"tracks[{i}].show") for k in t.get("show", [by] if by else list(of)))
        tie_break = tuple(known(k, f"tracks[{i}].tie_break")
                          for k in t.get("tie_break", settings.get("tie_break", [])))
        subs.append(SubTrack(id=t["id"], title=t.get("title", t["id"]), rule=rule, by=by, of=of,
                             show=show, ties=ties, tie_break=tie_break))
    if not subs:
        raise TrackError(f"{where}: no [[tracks]] defined")
    ids = [s.id for s in subs]
    for gate in gates:
        for sub_id in gate.tracks:
            if sub_id not in ids:
                raise TrackError(f"{where}: a gate names sub-track {sub_id!r}; sub-tracks are {', '.join(ids)}")

    adjudications = []
    for i, a in enumerate(data.get("adjudications", [])):
        _check_keys(f"{where} adjudications[{i}]", a, {"entry", "action", "reason", "tracks"})
        if a.get("action") not in ("include", "exclude"):
            raise TrackError(f"{where}: adjudications[{i}].action must be 'include' or 'exclude'")
        if not a.get("reason"):
            raise TrackError(f"{where}: adjudications[{i}] needs a reason (it is shown in the table)")
        adjudications.append(Adjudication(entry=a["entry"], action=a["action"], reason=a["reason"],
                                          tracks=_tuple(a.get("tracks"))))

    plot = data.get("plot", {})
    _check_keys(f"{where} [plot]", plot, {"x", "y", "size", "log_x"})
    for k in ("x", "y", "size"):
        if k in plot:
            known(plot[k], f"plot.{k}")
    return Track(name=data.get("name", path.stem), title=data.get("title", path.stem), path=path,
                 source=_tuple(data.get("source")), metrics=metrics, baseline=baseline,
                 gates=tuple(gates), subtracks=tuple(subs), adjudications=tuple(adjudications),
                 compare=compare, plot=plot, notes=_tuple(data.get("notes")))


def shipped() -> list[str]:
    """Names of the track files shipped in ``leaderboard/tracks/``."""
    return sorted(p.stem for p in TRACK_DIR.glob("*.toml"))


def load_track(spec: str | Path) -> Track:
    """Load a shipped track by name (``ntire2024``) or a TOML file by path."""
    path = Path(spec)
    if path.suffix != ".toml" or not path.exists():
        candidate = TRACK_DIR / f"{spec}.toml"
        if not candidate.is_file():
            raise TrackError(f"unknown track {str(spec)!r}: not a TOML file and not shipped "
                             f"(shipped: {', '.join(shipped())})")
        path = candidate
    with open(path, "rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise TrackError(f"{path}: invalid TOML: {exc}") from None
    return parse_track(data, path)


def parse_spec(spec: str) -> tuple[Track, list[SubTrack]]:
    """``name``, ``name:subtrack`` or ``path.toml[:subtrack]`` -> the track and chosen sub-tracks."""
    name, sub = spec, None
    if ":" in spec and not Path(spec).exists():
        name, sub = spec.rsplit(":", 1)
    track = load_track(name)
    return track, ([track.subtrack(sub)] if sub else list(track.subtracks))
