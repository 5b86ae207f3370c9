"""``esr check PATH --track NAME``: the team's estimated score beside the track's baseline.

One command instead of three hidden steps: the submission and the track's baseline entry are
each measured by ``esr run`` (same settings, same data for the validation and the test split,
same machine, one after the other), each with its own checkpoint folder, and the two records
are ranked together by the track's rules (``leaderboard.rank``): a frame of two rows. The team
sees its score and sub-scores beside the baseline's, whether it would beat the baseline, and
the PSNR gates with whether they can be judged on the data used.

The two run folders (``OUT/team``, ``OUT/baseline``) are ordinary run folders: a second call
reuses complete records, ``esr rank OUT/team OUT/baseline --track NAME`` ranks them again and
``esr factsheet ENTRY --run OUT/team`` prints the factsheet figures.
"""
from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

BUILTIN = (None, "", "builtin")


class EstimateError(ValueError):
    pass


@dataclass
class TeamEstimate:
    """One team entry ranked with the baseline under every sub-track of the track."""

    entry: str
    record: dict
    rankings: list                       # leaderboard.rank.Ranking per sub-track
    values: dict                         # track metric -> team value (canonical units)
    baseline_values: dict                # track metric -> baseline value (canonical units)
    frame: object = None                 # the two-row input frame (team row first)


@dataclass
class Estimate:
    track: object                        # leaderboard.tracks.Track
    baseline_entry: str
    baseline_record: dict
    teams: list[TeamEstimate]
    out: Path
    notes: list[str] = field(default_factory=list)


# ---- locating the two sides ------------------------------------------------------------------

def team_checkpoints(model_file: Path) -> list[str]:
    """Checkpoint names the sidecar card declares (read statically), else ``<stem>.pth``."""
    sidecar = model_file.with_suffix(".toml")
    names = []
    if sidecar.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(sidecar.read_text())
        except (OSError, ValueError):
            data = {}
        tables = data.get("entry") if isinstance(data.get("entry"), list) else [data]
        names = [str(t["checkpoint"]) for t in tables if isinstance(t, dict) and t.get("checkpoint")]
    return names or [f"{model_file.stem}.pth"]


def team_zoo(model_file: Path, candidates: list[str]) -> Path:
    """The first candidate folder holding one of the team's checkpoints (else the first candidate)."""
    names = team_checkpoints(model_file)
    for folder in candidates:
        if any((Path(folder) / n).is_file() for n in names):
            return Path(folder)
    return Path(candidates[0])


def baseline_name(track, models: Path) -> str:
    """The first of the track's ``[baseline] entries`` declared in ``models``."""
    names = list(track.baseline.entries)
    if not names:
        raise EstimateError(f"{track.path}: [baseline] names no entries, so no baseline can be measured")
    for name in names:
        if (Path(models) / f"{name}.py").is_file():
            return name
    from harness.running.runner import read_catalog

    catalog = read_catalog(Path(models))
    for name in names:
        if name in catalog["entries"]:
            return name
    raise EstimateError(f"{models}: none of the {track.name} baseline entries ({', '.join(names)}) is declared "
                        f"there; pass --models DIR holding {names[0]}.py")


def published_source(card: dict) -> str | None:
    """Where a reference checkpoint is published, as the entry card's notes say (``owner/repo, model_zoo/x.pth``)."""
    notes = str(card.get("notes") or "")
    found = re.search(r"([A-Za-z0-9][\w.-]*/[\w.-]+)[,\s]+(model_zoo/[\w.-]+\.pth)", notes)
    if found:
        return f"github.com/{found.group(1)} ({found.group(2)})"
    return None


# ---- measuring and ranking ---------------------------------------------------------------------

def measure_pair(*, model_file: Path, team_zoo_dir: Path, models: Path, baseline_zoo: Path, baseline: str,
                 data, test, settings, out: Path, scale: int = 4):
    """``esr run`` on the submission (a copy of its file and card) and on the baseline entry."""
    from harness.running.runner import RunConfig, run

    out = Path(out)
    copy = out / "submission"
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir(parents=True)
    shutil.copy2(model_file, copy / model_file.name)
    if model_file.with_suffix(".toml").is_file():
        shutil.copy2(model_file.with_suffix(".toml"), copy / model_file.with_suffix(".toml").name)
    # The team's side is always measured again (its file may have changed under the same card);
    # the baseline's complete record is reused while its card, checkpoint, data and settings hold.
    team = run(RunConfig(out=out / "team", models=copy, zoo=team_zoo_dir, data=data, test=test, scale=scale,
                         settings=settings, force=True), progress=False)
    base = run(RunConfig(out=out / "baseline", models=Path(models), zoo=Path(baseline_zoo), data=data, test=test,
                         scale=scale, entries=[baseline], settings=settings), progress=False)
    base_records = [r for r in base.records if r["entry"] == baseline]
    if not base_records:
        raise EstimateError(f"baseline {baseline}: no record was written in {out / 'baseline'}")
    return team.records, base_records[0]


def rank_pair(team_record: dict, baseline_record: dict, track) -> TeamEstimate:
    """Rank the two records under every sub-track of ``track`` (leaderboard's engine)."""
    from leaderboard.inputs import from_records
    from leaderboard.rank import rank

    frame = from_records([team_record, baseline_record], ["team", "baseline"])
    base = baseline_record["entry"]
    rankings = [rank(frame, track, sub, baseline_entry=base, stability=False) for sub in track.subtracks]
    table = rankings[0].table.set_index("entry")
    values = {k: _float(table.at[team_record["entry"], k]) for k in track.metrics}
    base_values = {k: _float(table.at[base, k]) for k in track.metrics}
    return TeamEstimate(team_record["entry"], team_record, rankings, values, base_values, frame)


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def estimate(path, *, track: str, zoo=None, baseline_zoo=None, models=None, data=None, test=None,
             settings=None, out=None) -> Estimate:
    """Measure the submission at ``path`` and the track's baseline; rank them together."""
    from harness.checks.static import locate, zoo_candidates
    from harness.cli.common import default_models, default_zoo
    from harness.running.settings import RunSettings
    from leaderboard.tracks import load_track

    rules = load_track(track)
    sub, problems = locate(path)
    if sub.model_file is None:
        raise EstimateError(problems[0].message if problems else f"{path}: no model file")
    models = Path(models or default_models())
    baseline = baseline_name(rules, models)
    out = Path(out or Path("results") / f"check-{rules.name}")
    notes = []
    if test is None:
        test = data or "builtin"
        notes.append("test split: the validation data again (no --test given); the track averages the two runtimes")
    team_records, base_record = measure_pair(
        model_file=sub.model_file, team_zoo_dir=team_zoo(sub.model_file, zoo_candidates(sub, zoo, default_zoo())),
        models=models, baseline_zoo=Path(baseline_zoo or default_zoo()), baseline=baseline, data=data, test=test,
        settings=settings or RunSettings(device="auto"), out=out)
    teams = []
    for rec in team_records:
        if rec["entry"] == baseline:
            raise EstimateError(f"{sub.model_file.name}: entry {baseline} is the {rules.name} baseline itself; "
                                "rename the team's entry")
        teams.append(rank_pair(rec, base_record, rules))
    return Estimate(rules, baseline, base_record, teams, out, notes)


# ---- the report ----------------------------------------------------------------------------------

def _shown(track, key: str, value: float) -> str:
    from leaderboard.fmt import text

    metric = track.metrics[key]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return text(metric.display(value), metric.digits)


def _data_text(record: dict) -> str:
    parts = []
    for split, info in (record.get("data") or {}).items():
        parts.append(f"{split} = {info.get('name')} ({info.get('n')} images, hash {str(info.get('file_hash'))[:12]})")
    return "; ".join(parts) or "not recorded"


def active_gates(team: TeamEstimate) -> list:
    """The gates the engine applied in any sub-track (switched-off gates left out), in order."""
    gates = []
    for ranking in team.rankings:
        for gate, _ in getattr(ranking, "gates", None) or [(g, "") for g in ranking.track.gates]:
            if gate not in gates:
                gates.append(gate)
    return gates


def gate_lines(track, team: TeamEstimate, record: dict) -> list[str]:
    """One line per active gate: value, threshold, pass/fail, and whether the data used can judge it."""
    from leaderboard.rank import gate_check
    from leaderboard.render import threshold_text

    ranking = team.rankings[0]
    lines = []
    for gate in active_gates(team):
        metric = track.metrics[gate.metric]
        value = team.values.get(gate.metric, math.nan)
        if gate.baseline:
            want = f"no worse than the baseline ({_shown(track, gate.metric, team.baseline_values.get(gate.metric))})"
        else:
            want = threshold_text(gate, metric)
        label = gate.label or metric.label
        if math.isnan(value):
            lines.append(f"{label} {want}: not measured here")
            continue
        reason = gate_check(gate, track, value, ranking.baseline, ranking.compare)
        verdict = "passes" if reason is None else f"fails ({reason})"
        judged = judgeable(track, gate, team, record)
        if not record.get("trained", True) and _quality_metric(track, gate.metric):
            judged = "cannot be judged: the team's entry is untrained (no checkpoint), its PSNR is of random weights"
        lines.append(f"{label} {want}: {_shown(track, gate.metric, value)} {metric.unit} here, {verdict}; {judged}")
    return lines


def _quality_metric(track, key: str) -> bool:
    return any(n.split(".")[-1].startswith(("psnr", "ssim")) for n in track.inputs([key]))


def judgeable(track, gate, team: TeamEstimate, record: dict) -> str:
    """Whether the gate can be judged on the data (and device) the team's row was measured on.

    The engine's rule (``leaderboard.context``): a threshold defined on the challenge's data or
    device holds only for rows measured on them; a comparison with the baseline measured alongside
    always applies.
    """
    if gate.baseline:
        return "judged against the baseline measured alongside"
    from leaderboard.context import mismatch

    why = mismatch(track, gate.metric, team.frame, 0) if team.frame is not None else None
    builtin = [s for s in track.splits_of(gate.metric)
               if ((record.get("data") or {}).get(s) or {}).get("name") in BUILTIN]
    if builtin:
        expected = getattr(getattr(track, "context", None), "data", None) or {}
        why = "; ".join(f"{s} measured on the built-in set (six scikit-image photos), the threshold is defined on "
                        f"{expected.get(s, 'the challenge' + chr(39) + 's ' + s + ' set')}" for s in builtin)
    if why:
        fix = (" (pass --data/--test with the challenge's validation and test folders)"
               if _quality_metric(track, gate.metric) else "")
        return f"CANNOT be judged on this data: {why}{fix}"
    return "judged on the track's own data"


def report_lines(est: Estimate) -> list[str]:
    """The estimate as printable lines."""
    track = est.track
    base_rec = est.baseline_record
    base = est.baseline_entry
    lines = [f"Estimated score under {track.name} ({track.title}): the submission and the baseline {base}, "
             "measured the same way one after the other on this machine"]
    prov = base_rec.get("provenance") or {}
    device = (base_rec.get("settings") or {}).get("device")
    device_used = prov.get("device") or device
    cpu = str(device_used or "").startswith("cpu")
    lines.append(f"  data: {_data_text(base_rec)}")
    lines.append(f"  device: {device_used} ({prov.get('device_name', '?')}), "
                 f"{(base_rec.get('settings') or {}).get('trials')} trial(s) per split")
    if cpu:
        lines.append("  CPU runtimes are a relative guide only: the organizers time every entry on their GPU; "
                     "the runtime terms below compare the two models on this CPU")
    lines += [f"  note: {n}" for n in est.notes]
    for team in est.teams:
        rec = team.record
        if rec.get("status") not in ("ok", "untrained"):
            lines.append(f"{team.entry}: not measured ({rec.get('status')}: {rec.get('error')}); no estimate")
            continue
        width = max(len(m.header) for m in track.metrics.values())
        lines.append("")
        lines.append(f"  {'metric':<{width}}  {team.entry:>16}  {base + ' (baseline)':>20}")
        for key, metric in track.metrics.items():
            mine, theirs = _shown(track, key, team.values.get(key)), _shown(track, key, team.baseline_values.get(key))
            if _quality_metric(track, key):  # random weights give a meaningless dB figure
                mine = mine if rec.get("trained", True) else "- (untrained)"
                theirs = theirs if base_rec.get("trained", True) else "- (untrained)"
            lines.append(f"  {metric.header:<{width}}  {mine:>16}  {theirs:>20}")
        lines.append("")
        for ranking in team.rankings:
            lines.append("  " + subtrack_line(track, ranking, team))
        gates = gate_lines(track, team, rec)
        if gates:
            lines.append("  gates:")
            lines += [f"    {g}" for g in gates]
        if not rec.get("trained", True):
            lines.append(f"  {team.entry} is untrained (its checkpoint was not found): complexity and runtime are "
                         "real, its PSNR is not; put the checkpoint beside the file or pass --zoo DIR")
    if not base_rec.get("trained", True) and base_rec.get("status") in ("ok", "untrained"):
        lines += [""] + baseline_checkpoint_lines(track, base_rec)
    elif base_rec.get("status") not in ("ok", "untrained"):
        lines += ["", f"baseline {base}: not measured ({base_rec.get('status')}: {base_rec.get('error')})"]
    return lines


def subtrack_line(track, ranking, team: TeamEstimate) -> str:
    sub = ranking.sub
    if sub.rule == "sort":
        metric = track.metrics[sub.by]
        mine, theirs = team.values.get(sub.by, math.nan), team.baseline_values.get(sub.by, math.nan)
        if math.isnan(mine) or math.isnan(theirs):
            verdict = "cannot be compared (a value is missing)"
        else:
            better = mine < theirs if metric.direction == "lower" else mine > theirs
            verdict = "beats the baseline" if better else ("ties the baseline" if mine == theirs
                                                           else "does NOT beat the baseline")
        head = (f"{sub.id}: {metric.label} {_shown(track, sub.by, mine)} vs baseline {_shown(track, sub.by, theirs)} "
                f"({metric.direction} is better): {verdict}")
    else:
        wins = []
        for key in sub.of:
            metric = track.metrics[key]
            mine, theirs = team.values.get(key, math.nan), team.baseline_values.get(key, math.nan)
            if not (math.isnan(mine) or math.isnan(theirs)):
                if (mine < theirs) if metric.direction == "lower" else (mine > theirs):
                    wins.append(metric.label)
        head = (f"{sub.id}: {sub.rule_text}: better than the baseline in {len(wins)} of {len(sub.of)}"
                + (f" ({', '.join(wins)})" if wins else ""))
    status = ranking.table.set_index("entry").at[team.entry, "status"]
    return head + (f"; the rules would not rank it here: {status}" if status else "; no rule excludes it on this data")


def baseline_checkpoint_lines(track, base_rec: dict) -> list[str]:
    """What is missing when the baseline ran untrained, and where its checkpoint is published."""
    card = base_rec.get("card") or {}
    ckpt = card.get("checkpoint") or "(none named on its card)"
    load = base_rec.get("load") or {}
    source = published_source(card)
    lines = [f"baseline {base_rec['entry']} ran UNTRAINED: its checkpoint {ckpt} was not found"
             + (f" at {load['path']}" if load.get("path") else "")
             + ". Params, FLOPs and runtime do not depend on the weights, so the scores above stand; its PSNR does."]
    where = f"published at {source}" if source else f"see the card notes of {base_rec['entry']}: {card.get('notes') or '-'}"
    lines.append(f"  needs: {ckpt}, {where}; put it in a folder and pass --baseline-zoo DIR (or set ESR_ZOO=DIR)")
    return lines
