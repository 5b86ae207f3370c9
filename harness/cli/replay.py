"""``esr replay FOLDER``: ingest a published challenge folder and print our figures beside an oracle."""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("folder", type=Path, help="a challenge folder: test_demo.py, models/, model_zoo/, utils/")
    p.add_argument("--published", type=Path, default=None,
                   help="published table (CSV with team, params_m, flops_g, acts_m, conv), joined by team name; "
                        "without it, the organizers' own counters (utils/model_summary.py, fvcore) are the oracle")
    p.add_argument("--oracle", action="store_true", help="run the organizers' counters even with --published")
    p.add_argument("--out", type=Path, default=Path("replay"), help="output folder (default: replay/)")
    p.add_argument("--no-trace", action="store_true", help="do not trace branches static reading cannot decide")
    p.add_argument("--python", default=sys.executable, help="interpreter for the run and the oracle (default: this one)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per oracle child (default 900)")


def main(args) -> int:
    from rich.console import Console
    from rich.text import Text

    from harness.running.replay import FIGURES, fmt, replay

    console = Console(soft_wrap=True)
    folder = args.folder.resolve()
    if args.out.resolve() == folder or folder in args.out.resolve().parents:
        console.print(Text(f"esr replay: --out {args.out} is inside {folder}; the challenge folder is never written",
                           style="red"))
        return 2
    try:
        result = replay(folder, args.out, published=args.published, trace=not args.no_trace,
                        oracle=True if args.oracle else None, python=args.python, timeout=args.timeout,
                        log=lambda m: console.print(Text(m, style="dim")))
    except FileNotFoundError as exc:
        console.print(Text(f"esr replay: {exc}", style="red"))
        return 2
    rows = result["rows"]
    for r in rows:
        figs = "  ".join(f"{f} {fmt(r.ours.get(f), f) if r.ours.get(f) is not None else '-'}"
                         f"/{r.oracle.get(f) if isinstance(r.oracle.get(f), str) else fmt(r.oracle.get(f), f)}"
                         for f in FIGURES)
        mark = "✓" if r.all_match else "✗"
        console.print(Text(f"{mark} {r.team[:24]:24s} {r.entry[:26]:26s} {r.status:10s} {figs}  {r.why}"))
    matched = sum(r.all_match for r in rows)
    with_code = sum(1 for r in rows if r.status != "no code")
    console.print(Text(f"{matched} of {with_code} rows with code match on all four figures; "
                       f"tables in {Path(result['out']) / 'replay.md'} and replay.csv"))
    return 0
