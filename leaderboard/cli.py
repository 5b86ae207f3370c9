"""``esr rank`` and ``esr report``: argument definitions and entry points (wired by harness.cli)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from leaderboard import mixing, render
from leaderboard.fsio import atomic_write_text
from leaderboard.inputs import RANKABLE_STATUS, InputError, read_any, read_records
from leaderboard.rank import rank_all
from leaderboard.tracks import TrackError, load_track, parse_spec, shipped, with_switches

FORMATS = ("console", "md", "csv", "tex", "json", "png")
SUFFIX = {"md": ".md", "csv": ".csv", "tex": ".tex", "json": ".json", "png": ".png"}


def write_text(path: Path, content: str) -> None:
    """Atomic write (temporary file in the same folder, then rename)."""
    atomic_write_text(path, content)


def add_rank_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="RECORDS_OR_CSV",
                        help="run folder, records folder, record JSON files, or a CSV of external numbers "
                             "(entry + canonical metric columns)")
    parser.add_argument("--track", required=True, metavar="NAME",
                        help=f"shipped track ({', '.join(shipped())}), NAME:SUBTRACK, or a path to a TOML file")
    parser.add_argument("--format", choices=FORMATS, default="console")
    parser.add_argument("--out", metavar="FILE", help="write here instead of standard output "
                        "(png default: <track>.png in the current folder)")
    parser.add_argument("--compare", choices=("printed", "exact"),
                        help="gate precision: printed values (track default) or unrounded")
    parser.add_argument("--baseline", metavar="ENTRY", help="use this entry as the baseline")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="rank records measured on different data, devices or settings (refused otherwise)")
    parser.add_argument("--baseline-values", action="store_true",
                        help="use the track's published baseline constants even if a baseline entry was measured "
                             "(a loud warning where they were measured on other data or another device)")
    parser.add_argument("--switch", action="append", default=[], metavar="NAME[=on|off]",
                        help="turn a track switch on (or off), e.g. ntire2026 readme_subtrack_constraints")


def parse_switches(items) -> dict[str, bool]:
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        value = value.strip().lower() or "on"
        if value not in ("on", "off", "true", "false", "1", "0"):
            raise TrackError(f"--switch {item}: the value must be on or off")
        out[name.strip()] = value in ("on", "true", "1")
    return out


def _rank(frame, spec: str, args):
    track, subs = parse_spec(spec)
    switches = parse_switches(getattr(args, "switch", None))
    if switches:
        track = with_switches(track, switches)
        subs = [track.subtrack(s.id) for s in subs]
    return track, rank_all(frame, track, subs, compare=getattr(args, "compare", None),
                           baseline_entry=getattr(args, "baseline", None),
                           baseline_use="values" if getattr(args, "baseline_values", False) else None)


def rank_main(args) -> int:
    try:
        if not getattr(args, "allow_mixed", False):
            mixing.check(args.inputs)
        frame = read_any(args.inputs)
        track, rankings = _rank(frame, args.track, args)
        if args.format == "console":
            if args.out:
                write_text(Path(args.out), render.console_text(rankings))
            else:
                render.to_console(rankings)
            return 0
        if args.format == "png":
            from leaderboard.plot import plot

            out = plot(rankings[0], args.out or f"{track.name}.png")
            print(f"wrote {out}")
            return 0
        content = render.RENDERERS[args.format](rankings)
        if args.out:
            write_text(Path(args.out), content)
            print(f"wrote {args.out}")
        else:
            sys.stdout.write(content)
        return 0
    except (TrackError, InputError, ValueError) as exc:
        print(f"esr rank: {one_line(exc)}", file=sys.stderr)
        return 2


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def add_report_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by esr run (run.json, records/)")
    parser.add_argument("--track", action="append", metavar="NAME",
                        help="track to report (repeatable); default: the tracks recorded in RUN_DIR/run.json")
    parser.add_argument("--compare", choices=("printed", "exact"))


def applicable_tracks(frame) -> dict[str, list[str]]:
    """Shipped track -> required metrics missing from every measured row ([] = applicable)."""
    measured = frame[frame["status"].isin(RANKABLE_STATUS)]
    out = {}
    for name in shipped():
        missing = [m for m in load_track(name).required()
                   if m not in measured.columns or measured[m].isna().all()]
        out[name] = missing
    return out


class NoTrack(ValueError):
    """The run names no track and none was given."""


def run_tracks(run_dir: Path) -> list[str]:
    """Tracks recorded in ``run.json`` (key ``tracks``)."""
    run_file = Path(run_dir) / "run.json"
    if not run_file.is_file():
        return []
    try:
        data = json.loads(run_file.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{run_file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    tracks = data.get("tracks") if isinstance(data, dict) else None
    if tracks is not None and not (isinstance(tracks, list) and all(isinstance(t, str) for t in tracks)):
        raise InputError(f"{run_file}: key 'tracks' must be a list of track names, not {tracks!r}")
    return list(tracks or [])


def report(run_dir: Path, specs: list[str] | None = None, compare: str | None = None) -> list[Path]:
    """Write md, csv, json, tex, txt and png for each track into ``run_dir/report``; returns the files.

    Without ``specs`` the tracks recorded in ``run.json`` are used; with none there, ``NoTrack``
    says how to name one (and which shipped tracks this run's metrics can rank).
    """
    run_dir = Path(run_dir)
    frame = read_records(run_dir)
    if not specs:
        specs = run_tracks(run_dir)
    if not specs:
        fits = [name for name, missing in applicable_tracks(frame).items() if not missing]
        raise NoTrack(f"{run_dir / 'run.json'} records no tracks: name one with --track NAME "
                      f"(shipped: {', '.join(shipped())}; this run's metrics can rank: {', '.join(fits) or 'none'})")
    written = []
    out_dir = run_dir / "report"
    for spec in specs:
        track, subs = parse_spec(spec)
        rankings = rank_all(frame, track, subs, compare=compare)
        stem = spec.replace(":", "-") if not spec.endswith(".toml") else track.name
        for fmt, fn in render.RENDERERS.items():
            path = out_dir / f"{stem}{SUFFIX[fmt]}"
            write_text(path, fn(rankings))
            written.append(path)
        write_text(out_dir / f"{stem}.txt", render.console_text(rankings, width=160))
        written.append(out_dir / f"{stem}.txt")
        if track.plot:
            from leaderboard.plot import plot

            written.append(plot(rankings[0], out_dir / f"{stem}.png"))
    return written


def report_main(args) -> int:
    try:
        written = report(Path(args.run_dir), args.track, getattr(args, "compare", None))
    except (TrackError, InputError, ValueError) as exc:
        print(f"esr report: {one_line(exc)}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
