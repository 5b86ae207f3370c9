"""``esr cards from-test-demo PATH/test_demo.py``: sidecar cards from an NTIRE ``select_model`` chain."""
from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="cards_command", metavar="ACTION")
    demo = sub.add_parser("from-test-demo", help="write one sidecar card per branch of select_model()",
                          description="read an NTIRE-style test_demo.py with ast and write sidecar cards; branches "
                                      "that static reading cannot decide are traced in a confined subprocess")
    demo.add_argument("path", type=Path, help="the test_demo.py to read")
    demo.add_argument("--out", type=Path, default=None,
                      help="folder for the cards (default: the models/ folder beside test_demo.py)")
    demo.add_argument("--scale", type=int, default=4, help="scale of branches whose constructor names none (default 4)")
    demo.add_argument("--force", action="store_true", help="overwrite cards that already exist")
    demo.add_argument("--no-trace", action="store_true",
                      help="never trace: branches that static reading cannot decide are listed, not run "
                           "(tracing runs the organizers' select_model for that id, confined, on the CPU)")
    demo.add_argument("--trace-timeout", type=float, default=300.0, help="seconds allowed per traced branch (default 300)")


def main(args) -> int:
    from rich.console import Console
    from rich.text import Text

    from harness.submissions.cards_convert import convert, write_cards

    console = Console(soft_wrap=True)
    if getattr(args, "cards_command", None) != "from-test-demo":
        console.print("usage: esr cards from-test-demo PATH/test_demo.py [--out DIR] [--scale N] [--force]")
        return 2
    if not args.path.is_file():
        console.print(Text(f"esr cards: {args.path} does not exist", style="red"))
        return 2
    try:
        conv = convert(args.path, scale=args.scale, trace=not args.no_trace, timeout=args.trace_timeout)
    except SyntaxError as exc:
        console.print(Text(f"esr cards: {args.path} is not valid Python: line {exc.lineno}: {exc.msg}", style="red"))
        return 2
    out = args.out or args.path.parent / "models"
    written, kept = write_cards(conv, out, force=args.force)
    for path in written:
        n = len(conv.cards[path.stem])
        console.print(Text(f"wrote {path}" + (f" ({n} entries)" if n > 1 else "")))
    for path in kept:
        console.print(Text(f"kept {path} (exists; --force to overwrite)", style="yellow"))
    for line in conv.warnings:
        console.print(Text(f"! {line}", style="yellow"))
    for label, reason in conv.skipped:
        console.print(Text(f"✗ not converted: {label}: {reason}", style="red"))
    for r in conv.branches:
        if r.how != "failed":
            console.print(Text(f"  model_id {r.model_id} (line {r.line}): {r.how} -> {r.entry}"))
    understood = sum(len(c) for c in conv.cards.values())
    traced = sum(r.how == "traced" for r in conv.branches)
    console.print(Text(f"{understood} branches converted into {len(conv.cards)} cards "
                       f"({understood - traced} static, {traced} traced), {len(conv.skipped)} not understood"))
    return 0
