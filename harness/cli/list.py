"""``esr list``: the entries a models folder declares, and the files that declare none."""
from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    from harness.cli.common import default_models, default_zoo

    p.add_argument("--models", type=Path, default=default_models(), help="folder of model files")
    p.add_argument("--zoo", type=Path, default=default_zoo(), help="folder of checkpoints")


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.running.runner import RunError, read_catalog

    console = Console()
    try:
        catalog = read_catalog(args.models)
    except RunError as exc:
        console.print(f"[red]esr list: {exc}[/]")
        return 2
    table = Table(title=f"entries in {args.models}")
    for col in ("Entry", "Class", "Scale", "Range", "Checkpoint", "Source"):
        table.add_column(col)
    for name, card in catalog["entries"].items():
        ckpt = card.get("checkpoint")
        present = "" if not ckpt else (" (present)" if (Path(args.zoo) / ckpt).is_file() else " (absent)")
        table.add_row(name, card["model"], str(card["scale"]), f"{card['input_range']:g}", f"{ckpt or '-'}{present}",
                      card["source"])
    console.print(table)
    for name in catalog.get("inferred", []):
        card = catalog["entries"][name]
        console.print(f"[yellow]inferred card for {name}:[/] class {card['model']}(), scale {card['scale']}, "
                      f"input range {card['input_range']:g}, checkpoint {card['checkpoint']}")
    for p in catalog["problems"]:
        console.print(f"[red]{p['status']}[/]: {p['error']}", highlight=False)
    for name, users in sorted(catalog.get("helpers", {}).items()):
        console.print(f"[dim]{name}: helper imported by {', '.join(users)}; not an entry[/]", highlight=False)
    for other in catalog.get("not_submissions", []):
        console.print(f"[yellow]not a submission[/]: {other['reason']}", highlight=False)
    return 0
