"""The ``esr`` command. Each sub-command lives in its own module with
``add_arguments(parser)`` and ``main(args) -> int``; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import sys

# name: (module, add_arguments attribute, main attribute, help)
COMMANDS = {
    "run": ("harness.cli.run", "add_arguments", "main", "measure every entry and print the table"),
    "list": ("harness.cli.list", "add_arguments", "main", "list the entries a models folder declares"),
    "profile": ("harness.cli.profile", "add_arguments", "main", "complexity of one entry without running data"),
    "check": ("harness.cli.check", "add_arguments", "main", "check one submission and print a checklist"),
    "factsheet": ("harness.cli.factsheet", "add_arguments", "main", "print a record's factsheet figures (Markdown, LaTeX)"),
    "cards": ("harness.cli.cards", "add_arguments", "main", "write sidecar cards (from an NTIRE test_demo.py)"),
    "replay": ("harness.cli.replay", "add_arguments", "main", "replay a published challenge folder against an oracle"),
    "rank": ("leaderboard.cli", "add_rank_arguments", "rank_main", "rank records or a CSV under a track's rules"),
    "report": ("leaderboard.cli", "add_report_arguments", "report_main", "write every table and plot for a run"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esr", description="Efficient super-resolution benchmark harness")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only == name:
            getattr(importlib.import_module(module), add)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module, _, entry_point, _ = COMMANDS[args.command]
    return int(getattr(importlib.import_module(module), entry_point)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
