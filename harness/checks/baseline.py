"""Comparison with a track's baseline entry (subprocess side)."""
from __future__ import annotations

from pathlib import Path

from harness.checks.estimate import measure_entry
from harness.checks.result import CheckResult, Recorder, _one

# Baseline entry of each track when leaderboard/tracks/<track>.toml does not name one.
TRACK_BASELINES = {
    "aim2019": "msrresnet",
    "ntire2022": "imdn",
    "ntire2023": "rlfn",
    "ntire2024": "rlfn",
    "ntire2025": "efdn",
    "ntire2026": "span",
}


def baseline_check(entries, job: dict, rec: Recorder) -> None:
    """Params, MACs and CPU runtime of the submission next to the track's baseline, same input, same machine."""
    stats = job.get("_stats") or {}
    baseline = job.get("baseline")
    for entry in entries:
        own = stats.get(entry.name)
        rec.start("estimate", entry.name)
        if not own:
            rec.add(CheckResult("estimate", "skip", f"{entry.name}: needs a model that runs", "", entry.name))
            continue
        shape = "x".join(str(v) for v in own["input_shape"][1:])
        text = (f"{entry.name}: {own['params']:,} params, {_g(own.get('macs'))} GMACs, {own['runtime_ms']:.1f} ms "
                f"on this CPU (input {shape})")
        if not baseline:
            rec.add(CheckResult("estimate", "pass", text + "; pass --track to compare with its baseline", "", entry.name))
            continue
        if baseline.get("error"):
            rec.add(CheckResult("estimate", "pass", text + f"; baseline comparison skipped: {baseline['error']}", "",
                                entry.name))
            continue
        base = baseline_stats(baseline, tuple(own["input_shape"]), job)
        if "error" in base:
            rec.add(CheckResult("estimate", "pass", text + f"; baseline comparison skipped: {base['error']}", "", entry.name))
            continue
        ratios = [f"params x{own['params'] / base['params']:.3g}" if base["params"] else "params -"]
        if own.get("macs") is not None and base.get("macs"):
            ratios.append(f"MACs x{own['macs'] / base['macs']:.3g}")
        ratios.append(f"runtime x{own['runtime_ms'] / base['runtime_ms']:.3g}")
        rec.add(CheckResult("estimate", "pass",
                            text + f"; vs {baseline['entry']} ({baseline['track']} baseline: {base['params']:,} params, "
                            f"{_g(base.get('macs'))} GMACs, {base['runtime_ms']:.1f} ms): {', '.join(ratios)}",
                            "", entry.name))


def _g(macs) -> str:
    return "-" if macs is None else f"{macs / 1e9:.4g}"


def baseline_stats(baseline: dict, input_shape: tuple, job: dict) -> dict:
    """Build (and load, when its checkpoint is there) the baseline entry and measure it like the submission."""
    cache = job.setdefault("_baseline", {})
    if "stats" in cache:
        return cache["stats"]
    from harness.submissions.checkpoint import LoadError, load_entry_checkpoint

    try:
        entry = find_baseline_entry(baseline["entries"], Path(baseline["models"]))
        baseline["entry"] = entry.name
        model = entry.build()
        try:
            load_entry_checkpoint(model, entry, baseline.get("zoo"))
        except LoadError:
            pass  # random weights time and count the same
        model.eval()
        stats = measure_entry(model, entry, input_shape)
    except Exception as exc:
        stats = {"error": f"baseline {' / '.join(baseline['entries'])} of {baseline['track']}: {_one(exc)}"}
    cache["stats"] = stats
    return stats


def find_baseline_entry(names: list[str], models: Path):
    """The first of ``names`` declared in ``models/<name>.py``, or else anywhere in the folder."""
    from harness.submissions.discovery import UnknownEntry, discover, entries_of_file

    for name in names:
        own = models / f"{name}.py"
        if own.is_file():
            for entry in entries_of_file(own)[0]:
                if entry.name == name:
                    return entry
    catalog = discover(models, infer=False)
    for name in names:
        if name in catalog.entries:
            return catalog.entries[name]
    raise UnknownEntry(f"none of {', '.join(names)} in {models}")
