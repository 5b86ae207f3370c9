"""``esr check PATH``: every check on one submission, as a checklist with one-line fixes.

Exit code: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 when PATH
or an option is unusable.
"""
from __future__ import annotations

import json
from pathlib import Path

SYMBOLS = {"pass": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skip": ("-", "dim")}
DEFAULT_INPUT = "3x256x256"


def add_arguments(p) -> None:
    from harness.cli.common import add_confinement_arguments, default_models, default_zoo

    p.add_argument("path", type=Path, help="the model file, its sidecar .toml, or a folder holding one submission")
    p.add_argument("--zoo", type=Path, default=None,
                   help="folder of the checkpoint (default: beside the file, then model_zoo/ near it, then $ESR_ZOO)")
    p.add_argument("--data", default=None, help="images for the input-range check: 'builtin' (default) or a folder")
    p.add_argument("--track", default=None, help="compare params, MACs and runtime with this track's baseline entry")
    p.add_argument("--models", type=Path, default=default_models(), help="folder holding the baseline entry (default: models/)")
    p.add_argument("--baseline-zoo", type=Path, default=default_zoo(),
                   help="checkpoints of the baseline entry (default: $ESR_ZOO, else model_zoo/)")
    p.add_argument("--input", default=DEFAULT_INPUT, help=f"LR input of the estimate (default {DEFAULT_INPUT})")
    p.add_argument("--test", default=None,
                   help="with --track: test split of the score estimate (default: the --data images again)")
    p.add_argument("--trials", type=int, default=3, help="with --track: timed passes per split (default 3)")
    p.add_argument("--device", default="auto", help="with --track: device of the score estimate (default auto)")
    p.add_argument("--threads", type=int, default=None, help="with --track: CPU threads of each worker (default: torch's)")
    p.add_argument("--out", type=Path, default=None,
                   help="with --track: run folders of the estimate (default results/check-<track>/)")
    p.add_argument("--no-score", action="store_true", help="with --track: only the ratios, no score estimate")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for the model checks (default 600)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    add_confinement_arguments(p)


def track_baseline(track: str, models: Path, zoo: Path) -> dict:
    """``{"track", "entries", "models", "zoo"}``: the candidate names of the track's baseline entry.

    Names come from ``leaderboard/tracks/<track>.toml`` (``[baseline] entries``) or, without a
    track file, from :data:`harness.checks.baseline.TRACK_BASELINES`; unknown tracks raise ValueError.
    """
    from harness.checks.baseline import TRACK_BASELINES

    names = _baseline_from_track_file(track) or ([TRACK_BASELINES[track]] if track in TRACK_BASELINES else None)
    if not names:
        known = sorted(set(TRACK_BASELINES) | {p.stem for p in TRACKS_DIR.glob("*.toml")})
        raise ValueError(f"unknown track {track!r}; known tracks: {', '.join(known)}")
    info = {"track": track, "entries": names, "models": str(models), "zoo": str(zoo)}
    if not Path(models).is_dir():
        info["error"] = f"models folder {models} not found (baseline {names[0]})"
    return info


TRACKS_DIR = Path(__file__).resolve().parents[2] / "leaderboard" / "tracks"


def _baseline_from_track_file(track: str) -> list[str] | None:
    """``[baseline] entries = [...]`` (or ``baseline = "name"``) of ``leaderboard/tracks/<track>.toml``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = TRACKS_DIR / f"{track}.toml"
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = data.get("baseline")
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("entries"), list):
        return [str(v) for v in value["entries"]] or None
    return None


def check_submission(path, *, zoo=None, data=None, track=None, models=None, baseline_zoo=None,
                     input_shape=(1, 3, 256, 256), timeout_s: float = 600.0, sandbox: str = "auto",
                     memory_limit_mib: int | None = None) -> list:
    """All checks on one submission; returns the CheckResult list (static checks first)."""
    from harness.checks.process import run_model_checks
    from harness.checks.static import check_naming, check_single_file, locate, zoo_candidates
    from harness.cli.common import default_models, default_zoo

    sub, results = locate(path)
    if sub.model_file is None:
        return results
    results += [check_naming(sub), check_single_file(sub)]
    baseline = None
    if track:
        baseline = track_baseline(track, Path(models or default_models()), Path(baseline_zoo or default_zoo()))
    results += run_model_checks(sub, zoo_dirs=zoo_candidates(sub, zoo, default_zoo()), data=data,
                                input_shape=tuple(input_shape), baseline=baseline, timeout_s=timeout_s,
                                sandbox=sandbox, memory_limit_mib=memory_limit_mib)
    return results


def exit_code(results) -> int:
    return 1 if any(r.status == "fail" for r in results) else 0


def render(results, console, title: str) -> None:
    from rich.text import Text

    console.print(Text(title, style="bold"))
    for r in results:
        symbol, colour = SYMBOLS[r.status]
        line = Text()
        line.append(f"{symbol} ", style=colour)
        line.append(f"{r.name}: ", style="bold")
        line.append(r.message)
        console.print(line, soft_wrap=True)
        if r.fix and r.status in ("warn", "fail"):
            console.print(Text(f"    fix: {r.fix}", style="dim"), soft_wrap=True)
    counts = {s: sum(r.status == s for r in results) for s in SYMBOLS}
    verdict = "FAILED" if counts["fail"] else "OK"
    console.print(Text(f"{verdict}: {counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
                       f"{counts['skip']} skipped", style="red" if counts["fail"] else "green"))


def main(args) -> int:
    from rich.console import Console
    from rich.text import Text

    from harness.cli.common import memory_limit_from_args
    from harness.core.sandbox import SandboxUnavailable
    from harness.running.settings import parse_shape

    console = Console(soft_wrap=True)
    try:
        shape = parse_shape(args.input)
        results = check_submission(args.path, zoo=args.zoo, data=args.data, track=args.track, models=args.models,
                                   baseline_zoo=args.baseline_zoo, input_shape=shape, timeout_s=args.timeout,
                                   sandbox=args.sandbox, memory_limit_mib=memory_limit_from_args(args))
    except (FileNotFoundError, ValueError, SandboxUnavailable) as exc:
        console.print(Text(f"esr check: {exc}", style="red"))
        return 2
    render(results, console, f"esr check {args.path}")
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=1))
    code = exit_code(results)
    if args.track and not args.no_score:
        code = max(code, score_estimate(args, shape, console, checks_failed=bool(code)))
    return code


def score_estimate(args, shape, console, *, checks_failed: bool) -> int:
    """The estimated score under ``--track`` beside the baseline (harness.cli.estimate); 0, 1 or 2."""
    from rich.text import Text

    from harness.cli.estimate import EstimateError, estimate, report_lines
    from harness.running.errors import RunError
    from harness.running.settings import RunSettings
    from leaderboard.tracks import TrackError, load_track

    console.print()
    if checks_failed:
        console.print(Text(f"score estimate under {args.track}: skipped, fix the failed checks first", style="yellow"))
        return 0
    try:
        load_track(args.track)
    except TrackError:
        console.print(Text(f"score estimate: no rule file leaderboard/tracks/{args.track}.toml: ratios only", style="yellow"))
        return 0
    try:
        settings = RunSettings(device=args.device, trials=args.trials, input_shape=shape, timeout_s=args.timeout,
                               threads=args.threads)
        est = estimate(args.path, track=args.track, zoo=args.zoo, baseline_zoo=args.baseline_zoo, models=args.models,
                       data=args.data, test=args.test, settings=settings, out=args.out)
    except EstimateError as exc:  # e.g. no baseline entry in --models: the checklist still stands
        console.print(Text(f"score estimate under {args.track}: not made: {exc}", style="yellow"))
        return 0
    except (RunError, TrackError, ValueError) as exc:
        console.print(Text(f"esr check: score estimate: {exc}", style="red"))
        return 2
    for line in report_lines(est):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"run folders: {est.out / 'team'}, {est.out / 'baseline'} "
                  f"(esr rank {est.out / 'team'} {est.out / 'baseline'} --track {est.track.name})",
                  markup=False, highlight=False, soft_wrap=True)
    failed = [t for t in est.teams if t.record.get("status") not in ("ok", "untrained")]
    return 1 if failed else 0

