"""Track files: a challenge's ranking rules as data (TOML, schema ``esr-track/1``).

One file per challenge in ``leaderboard/tracks/``; each holds several sub-tracks. The schema is
documented in ``docs/leaderboard.md``; this module only parses and validates it, and every
error names the file and the key. Units: every value in a track file is in the metric's
*display* unit (what the report prints: ms, M, G, dB), except ``[baseline].values``, which use
the canonical record units (ms, counts, MACs) so that they can be pasted from a record.
"""
from __future__ import annotations

import difflib
import re
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

# Canonical record metrics (docs/design.md): whole-model counts, and per-split measurements
# written as "<split>.<name>" (valid.runtime_ms, test.psnr_rgb, set5.ssim_y, ...).
MODEL_METRICS = ("params", "macs", "macs_legacy", "activations", "conv")
SPLIT_METRICS = ("runtime_ms", "runtime_ms_best", "memory_mib", "psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y")
RUNTIME_METRICS = ("runtime_ms", "runtime_ms_best")
MEMORY_METRICS = ("memory_mib",)
# Quantities that cannot be negative: an input with a negative value is refused.
NON_NEGATIVE = MODEL_METRICS + RUNTIME_METRICS + MEMORY_METRICS
_SPLIT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def is_canonical(name: str) -> bool:
    """True for a canonical record metric name (``params``, ``valid.runtime_ms``, ...)."""
    if name in MODEL_METRICS:
        return True
    split, _, metric = name.partition(".")
    return bool(metric) and metric in SPLIT_METRICS and bool(_SPLIT_NAME.match(split))


def base_name(name: str) -> str:
    """``valid.runtime_ms`` -> ``runtime_ms``; ``params`` -> ``params``."""
    return name.rpartition(".")[2]


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
    ties: str = "competition"   # per-metric ranks: "competition" (1224) or "ordinal"
    tie_break: tuple[str, ...] = ()   # ordinal per-metric ties: these metrics, then the entry name
    significant: int | None = None    # print to this many significant digits (scores), not `digits` decimals

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
    switch: str | None = None       # active only while this [settings.switches] entry is on
    note: str = ""


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
class Context:
    """What the track's thresholds and published baseline figures were measured on."""
    data: dict = field(default_factory=dict)    # split -> data set name (e.g. valid -> DIV2K_LSDIR_valid)
    device: str = ""                            # e.g. "NVIDIA GeForce RTX 3090"
    memory: str = ""                            # memory kind of the published figures
    runtime: str = ""                           # the runtime protocol in words

    def data_text(self) -> str:
        return ", ".join(f"{s} = {n}" for s, n in self.data.items()) or "not stated"


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 2000
    seed: int = 20240611
    level: float = 0.95


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
    context: Context = field(default_factory=Context)
    switches: dict = field(default_factory=dict)   # name -> (default on?, description)
    bootstrap: Bootstrap = field(default_factory=Bootstrap)

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
            if metric is None or metric.expr is None:
                if key not in out:
                    out.append(key)
                continue
            pending += [n[len("baseline."):] if n.startswith("baseline.") else n
                        for n in expressions.names(metric.expr)]
        return out

    def chain(self, keys) -> list[str]:
        """The given track metrics and every track metric they are computed from (baseline refs too)."""
        out, pending = [], list(keys)
        while pending:
            key = pending.pop(0)
            if key in out or key not in self.metrics:
                continue
            out.append(key)
            if self.metrics[key].expr:
                pending += [n[len("baseline."):] if n.startswith("baseline.") else n
                            for n in expressions.names(self.metrics[key].expr)]
        return out

    def splits_of(self, key: str) -> list[str]:
        """Data splits a track metric depends on (``valid``, ``test``)."""
        return list(dict.fromkeys(n.partition(".")[0] for n in self.inputs([key]) if "." in n))

    def is_runtime(self, key: str) -> bool:
        """Does the metric depend on a measured runtime (device-bound, noisy)?"""
        return any(base_name(n) in RUNTIME_METRICS for n in self.inputs([key]))

    def is_memory(self, key: str) -> bool:
        return any(base_name(n) in MEMORY_METRICS for n in self.inputs([key]))

    def device_bound(self, key: str) -> bool:
        return self.is_runtime(key) or self.is_memory(key)

    def ranked_metrics(self) -> list[str]:
        """Metrics some sub-track ranks by (sort key or rank-sum term): they carry rank subscripts."""
        out = []
        for sub in self.subtracks:
            out += ([sub.by] if sub.by else []) + list(sub.of)
        return list(dict.fromkeys(out))

    def required(self) -> list[str]:
        """Canonical metrics needed to rank any sub-track (ranked metrics and gates)."""
        keys = []
        for sub in self.subtracks:
            keys += ([sub.by] if sub.by else []) + list(sub.of) + list(sub.tie_break)
        keys += [g.metric for g in self.gates if g.switch is None or self.switches.get(g.switch, (False,))[0]]
        return self.inputs(dict.fromkeys(keys))


# ---- parsing helpers: every error names the file and the key ------------------------------------

def _check_keys(where: str, table, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise TrackError(f"{where}: must be a table, not {type(table).__name__} {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TrackError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _number(where: str, value, *, positive: bool = False, integer: bool = False):
    """A TOML number (never a quoted string or a boolean)."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise TrackError(f"{where} must be {kind}, not {type(value).__name__} {value!r}"
                         + (" (remove the quotes)" if isinstance(value, str) else ""))
    if value != value or value in (float("inf"), float("-inf")):
        raise TrackError(f"{where} must be finite, not {value!r}")
    if positive and value <= 0:
        raise TrackError(f"{where} must be > 0, not {value!r}")
    return value


def _string(where: str, value, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise TrackError(f"{where} is required")
        return ""
    if not isinstance(value, str):
        raise TrackError(f"{where} must be a string, not {type(value).__name__} {value!r}")
    if required and not value.strip():
        raise TrackError(f"{where} must not be empty")
    return value


def _strings(where: str, value) -> tuple[str, ...]:
    items = _tuple(value)
    for i, v in enumerate(items):
        _string(f"{where}[{i}]", v, required=True)
    return items


def _bool(where: str, value, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise TrackError(f"{where} must be true or false, not {value!r}")
    return value


def _choice(where: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise TrackError(f"{where} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return value


def _close(name: str, known) -> str:
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def _expression_names(where: str, expr: str, known_metrics: dict, key: str, later=()) -> None:
    """Every name in ``expr`` is a track metric defined before, ``baseline.<track metric>`` or a
    canonical record metric; anything else is a typo that would silently rank nobody."""
    try:
        used = expressions.names(expr)
    except expressions.ExpressionError as exc:
        raise TrackError(f"{where}: {exc}") from None
    for name in used:
        if name.startswith("baseline."):
            ref = name[len("baseline."):]
            if ref not in known_metrics and ref != key:
                raise TrackError(f"{where}: expression {expr!r} uses {name!r}, but {ref!r} is not a metric "
                                 f"of this track defined before {key!r}{_close(ref, known_metrics)}")
            continue
        if name in later:
            raise TrackError(f"{where}: expression {expr!r} uses {name!r}, which is defined after {key!r}; "
                             "define metrics before the expressions that use them")
        if name in known_metrics or is_canonical(name):
            continue
        raise TrackError(f"{where}: expression {expr!r} uses unknown metric {name!r}: not a track metric "
                         f"defined before {key!r} and not a record metric ({', '.join(MODEL_METRICS)}, "
                         f"<split>.{{{','.join(SPLIT_METRICS)}}}){_close(name, list(known_metrics) + list(MODEL_METRICS))}")


def parse_track(data: dict, path: Path) -> Track:
    where = str(path)
    _check_keys(where, data, {"schema", "name", "title", "source", "notes", "settings", "metrics",
                              "baseline", "gates", "tracks", "adjudications", "plot", "context"})
    if data.get("schema") != SCHEMA:
        raise TrackError(f"{where}: schema must be {SCHEMA!r} (found {data.get('schema')!r})")
    name = _string(f"{where}: name", data.get("name")) or path.stem
    title = _string(f"{where}: title", data.get("title")) or path.stem
    settings = data.get("settings", {})
    _check_keys(f"{where} [settings]", settings, {"compare", "ties", "tie_break", "metric_ties",
                                                   "metric_tie_break", "switches", "bootstrap"})
    compare = _choice(f"{where}: settings.compare", settings.get("compare", "printed"), COMPARE)
    default_ties = _choice(f"{where}: settings.ties", settings.get("ties", "competition"), TIES)
    metric_ties = _choice(f"{where}: settings.metric_ties", settings.get("metric_ties", "competition"), TIES)

    raw_metrics = data.get("metrics", {})
    _check_keys(f"{where} [metrics]", raw_metrics, set(raw_metrics))
    metrics: dict[str, Metric] = {}
    for key, spec in raw_metrics.items():
        w = f"{where} [metrics.{key}]"
        _check_keys(w, spec, {"label", "unit", "scale", "digits", "direction", "expr", "note", "ties", "tie_break",
                       "significant"})
        expr = _string(f"{w} expr", spec.get("expr")) or None
        if expr:
            _expression_names(f"{w} expr", expr, metrics, key, later=set(raw_metrics) - set(metrics) - {key})
        metrics[key] = Metric(
            key=key, label=_string(f"{w} label", spec.get("label")) or key,
            unit=_string(f"{w} unit", spec.get("unit")),
            scale=float(_number(f"{w} scale", spec.get("scale", 1.0), positive=True)),
            digits=int(_number(f"{w} digits", spec.get("digits", 2), integer=True)),
            direction=_choice(f"{w} direction", spec.get("direction", "lower"), DIRECTIONS),
            expr=expr, note=_string(f"{w} note", spec.get("note")),
            ties=_choice(f"{w} ties", spec.get("ties", metric_ties), TIES),
            tie_break=_strings(f"{w} tie_break", spec.get("tie_break", settings.get("metric_tie_break", []))),
            significant=None if spec.get("significant") is None else
            int(_number(f"{w} significant", spec["significant"], positive=True, integer=True)))
        if metrics[key].digits < 0:
            raise TrackError(f"{w} digits must be >= 0, not {metrics[key].digits}")
    if not metrics:
        raise TrackError(f"{where}: no [metrics.<key>] tables defined")

    def known(key, what: str) -> str:
        if not isinstance(key, str) or key not in metrics:
            raise TrackError(f"{where}: {what} names metric {key!r}, which is not in [metrics] "
                             f"({', '.join(metrics)}){_close(str(key), metrics)}")
        return key

    for key, metric in metrics.items():
        for k in metric.tie_break:
            known(k, f"metrics.{key}.tie_break")

    b = data.get("baseline", {})
    _check_keys(f"{where} [baseline]", b, {"name", "entries", "values", "use", "ranked", "note"})
    values = b.get("values", {})
    _check_keys(f"{where} [baseline] values", values, set(values))
    baseline = Baseline(
        name=_string(f"{where}: baseline.name", b.get("name")) or "baseline",
        entries=_strings(f"{where}: baseline.entries", b.get("entries")),
        values={k: float(_number(f"{where}: baseline.values.{k}", v)) for k, v in values.items()},
        use=_choice(f"{where}: baseline.use", b.get("use", "entry"), ("entry", "values")),
        ranked=_bool(f"{where}: baseline.ranked", b.get("ranked"), False))

    switches_raw = settings.get("switches", {})
    _check_keys(f"{where} [settings.switches]", switches_raw, set(switches_raw))
    switches = {}
    for sw, spec in switches_raw.items():
        w = f"{where}: settings.switches.{sw}"
        _check_keys(w, spec, {"default", "note"})
        switches[sw] = (_bool(f"{w}.default", spec.get("default"), False), _string(f"{w}.note", spec.get("note")))

    gates = []
    raw_gates = data.get("gates", [])
    if not isinstance(raw_gates, list):
        raise TrackError(f"{where}: gates must be an array of tables ([[gates]])")
    for i, g in enumerate(raw_gates):
        w = f"{where} gates[{i}]"
        _check_keys(w, g, {"metric", "at_least", "at_most", "baseline", "digits", "tracks", "label", "note", "switch"})
        if "metric" not in g:
            raise TrackError(f"{w}: needs 'metric' (the track metric the gate checks)")
        gate = Gate(metric=known(g["metric"], f"gates[{i}].metric"),
                    at_least=None if g.get("at_least") is None else float(_number(f"{w} at_least", g["at_least"])),
                    at_most=None if g.get("at_most") is None else float(_number(f"{w} at_most", g["at_most"])),
                    baseline=_bool(f"{w} baseline", g.get("baseline"), False),
                    digits=None if g.get("digits") is None else int(_number(f"{w} digits", g["digits"], integer=True)),
                    tracks=_strings(f"{w} tracks", g.get("tracks")),
                    label=_string(f"{w} label", g.get("label")) or None,
                    switch=_string(f"{w} switch", g.get("switch")) or None,
                    note=_string(f"{w} note", g.get("note")))
        if sum(x is not None and x is not False for x in (gate.at_least, gate.at_most, gate.baseline or None)) != 1:
            raise TrackError(f"{w}: needs exactly one of at_least, at_most, baseline = true")
        if gate.switch and gate.switch not in switches:
            raise TrackError(f"{w}: switch {gate.switch!r} is not declared in [settings.switches] "
                             f"({', '.join(switches) or 'none declared'})")
        gates.append(gate)

    subs = []
    raw_subs = data.get("tracks", [])
    if not isinstance(raw_subs, list):
        raise TrackError(f"{where}: tracks must be an array of tables ([[tracks]])")
    for i, t in enumerate(raw_subs):
        w = f"{where} tracks[{i}]"
        _check_keys(w, t, {"id", "title", "rule", "by", "of", "show", "ties", "tie_break", "note"})
        if "id" not in t:
            raise TrackError(f"{w}: needs 'id' (the sub-track name used in --track NAME:ID)")
        sub_id = _string(f"{w} id", t["id"], required=True)
        rule = _choice(f"{w} rule", t.get("rule", "sort"), RULES)
        ties = _choice(f"{w} ties", t.get("ties", default_ties), TIES)
        if rule == "sort" and "by" not in t:
            raise TrackError(f"{w}: rule 'sort' needs 'by' (the metric to sort by)")
        by = known(t["by"], f"tracks[{i}].by") if rule == "sort" else None
        of = tuple(known(k, f"tracks[{i}].of") for k in _tuple(t.get("of"))) if rule == "rank_sum" else ()
        if rule == "rank_sum" and not of:
            raise TrackError(f"{w}: rule 'rank_sum' needs a non-empty 'of' list")
        show = tuple(known(k, f"tracks[{i}].show") for k in _tuple(t.get("show", [by] if by else list(of))))
        tie_break = tuple(known(k, f"tracks[{i}].tie_break")
                          for k in _tuple(t.get("tie_break", settings.get("tie_break", []))))
        subs.append(SubTrack(id=sub_id, title=_string(f"{w} title", t.get("title")) or sub_id, rule=rule, by=by,
                             of=of, show=show, ties=ties, tie_break=tie_break))
    if not subs:
        raise TrackError(f"{where}: no [[tracks]] defined")
    ids = [s.id for s in subs]
    if len(set(ids)) != len(ids):
        raise TrackError(f"{where}: sub-track ids must be unique ({', '.join(ids)})")
    for i, gate in enumerate(gates):
        for sub_id in gate.tracks:
            if sub_id not in ids:
                raise TrackError(f"{where}: gates[{i}] names sub-track {sub_id!r}; sub-tracks are {', '.join(ids)}")

    adjudications = []
    for i, a in enumerate(data.get("adjudications", [])):
        w = f"{where} adjudications[{i}]"
        _check_keys(w, a, {"entry", "action", "reason", "tracks"})
        action = _choice(f"{w} action", a.get("action"), ("include", "exclude"))
        if not a.get("reason"):
            raise TrackError(f"{w}: needs a reason (it is shown in the table)")
        adjudications.append(Adjudication(entry=_string(f"{w} entry", a.get("entry"), required=True),
                                          action=action, reason=_string(f"{w} reason", a["reason"]),
                                          tracks=_strings(f"{w} tracks", a.get("tracks"))))

    plot = data.get("plot", {})
    _check_keys(f"{where} [plot]", plot, {"x", "y", "size", "log_x"})
    for k in ("x", "y", "size"):
        if k in plot:
            known(plot[k], f"plot.{k}")

    ctx = data.get("context", {})
    _check_keys(f"{where} [context]", ctx, {"data", "device", "memory", "runtime"})
    ctx_data = ctx.get("data", {})
    _check_keys(f"{where} [context] data", ctx_data, set(ctx_data))
    context = Context(data={s: _string(f"{where}: context.data.{s}", v, required=True) for s, v in ctx_data.items()},
                      device=_string(f"{where}: context.device", ctx.get("device")),
                      memory=_string(f"{where}: context.memory", ctx.get("memory")),
                      runtime=_string(f"{where}: context.runtime", ctx.get("runtime")))

    boot = settings.get("bootstrap", {})
    _check_keys(f"{where} [settings.bootstrap]", boot, {"resamples", "seed", "level"})
    bootstrap = Bootstrap(
        resamples=int(_number(f"{where}: settings.bootstrap.resamples", boot.get("resamples", 2000),
                              positive=True, integer=True)),
        seed=int(_number(f"{where}: settings.bootstrap.seed", boot.get("seed", Bootstrap.seed), integer=True)),
        level=float(_number(f"{where}: settings.bootstrap.level", boot.get("level", 0.95), positive=True)))
    if not 0.5 <= bootstrap.level < 1:
        raise TrackError(f"{where}: settings.bootstrap.level must be in [0.5, 1), not {bootstrap.level}")

    return Track(name=name, title=title, path=path,
                 source=_strings(f"{where}: source", data.get("source")), metrics=metrics, baseline=baseline,
                 gates=tuple(gates), subtracks=tuple(subs), adjudications=tuple(adjudications),
                 compare=compare, plot=plot, notes=_strings(f"{where}: notes", data.get("notes")),
                 context=context, switches=switches, bootstrap=bootstrap)


def with_switches(track: Track, settings: dict[str, bool]) -> Track:
    """The track with some switches turned on or off (``--switch NAME[=on|off]``)."""
    from dataclasses import replace

    switches = dict(track.switches)
    for name, on in settings.items():
        if name not in switches:
            raise TrackError(f"{track.path.name}: no switch {name!r}; switches: {', '.join(switches) or 'none'}")
        switches[name] = (bool(on), switches[name][1])
    return replace(track, switches=switches)


def shipped() -> list[str]:
    """Names of the track files shipped in ``leaderboard/tracks/``."""
    return sorted(p.stem for p in TRACK_DIR.glob("*.toml"))


def load_track(spec: str | Path) -> Track:
    """Load a shipped track by name (``ntire2024``) or a TOML file by path."""
    path = Path(spec)
    if path.suffix == ".toml" and not path.is_file():
        raise TrackError(f"{path}: no such track file")
    if path.suffix != ".toml":
        candidate = TRACK_DIR / f"{spec}.toml"
        if not candidate.is_file():
            raise TrackError(f"unknown track {str(spec)!r}: not a TOML file and not shipped "
                             f"(shipped: {', '.join(shipped())}){_close(str(spec), shipped())}")
        path = candidate
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise TrackError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise TrackError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise TrackError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_track(data, path)


def parse_spec(spec: str) -> tuple[Track, list[SubTrack]]:
    """``name``, ``name:subtrack`` or ``path.toml[:subtrack]`` -> the track and chosen sub-tracks."""
    name, sub = spec, None
    if ":" in spec and not Path(spec).exists():
        name, sub = spec.rsplit(":", 1)
    track = load_track(name)
    return track, ([track.subtrack(sub)] if sub else list(track.subtracks))
