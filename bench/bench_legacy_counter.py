"""Our NTIRE 2022 counter against the organizers' own, on every model their test_demo.py builds.

Run by hand (not CI): ``python bench/bench_legacy_counter.py [--kit ../shared/submissions/ntire2022]
[--size 256] [--out results/legacy_counter.md]``. The organizers' ``select_model`` and
``utils/model_summary.py`` are imported from the kit as ORACLES (bench only; ``harness/`` never
imports them). Their logger/image helpers, absent from the kit, are stubbed; checkpoints load on
the CPU. Per model: params, FLOPs (G), activations (M), conv by theirs and ours, and the
published row (joined by the team named in the comment under each ``model_id`` branch).
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from harness.measure.legacy_counter import count_legacy  # noqa: E402


def team_names(test_demo: Path) -> dict[int, str]:
    """model_id -> team named in the comment right under its branch (``# XPixel Team``)."""
    names, current = {}, None
    for line in test_demo.read_text().splitlines():
        m = re.match(r"\s*(?:el)?if model_id == (-?\d+):", line)
        if m:
            current = int(m.group(1))
            continue
        c = re.match(r"\s*#\s*(.+?)(?:\s+[Tt]eam)?\s*$", line)
        if current is not None and c and current not in names:
            names[current] = c.group(1).strip()
        current = None if not c else current
    return names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kit", type=Path, default=REPO.parent / "shared" / "submissions" / "ntire2022")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--ids", default="-1:45", help="model ids, START:STOP")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    kit = args.kit.resolve()
    os.chdir(kit)
    sys.path.insert(0, str(kit))
    for stub in ("utils.utils_logger", "utils.utils_image"):
        sys.modules[stub] = types.ModuleType(stub)
    load = torch.load
    torch.load = lambda *a, **k: load(*a, **{**k, "map_location": "cpu", "weights_only": False})
    import test_demo  # the organizers' chain (oracle)
    from utils import model_summary as oracle

    published = {}
    table = kit / "published_table.csv"
    if table.is_file():
        published = {row["team"].lower(): row for row in csv.DictReader(table.open())}
    names = team_names(kit / "test_demo.py")
    start, stop = (int(v) for v in args.ids.split(":"))
    res = (3, args.size, args.size)
    lines = [f"| id | team | theirs: params M / FLOPs G / acts M / conv | ours | equal | published | ours = published |",
             "|---|---|---|---|---|---|---|"]
    for model_id in range(start, stop):
        try:
            model = test_demo.select_model(argparse.Namespace(model_id=model_id), torch.device("cpu"))[0]
        except Exception as exc:  # noqa: BLE001 - a branch that builds nothing here
            print(f"{model_id}: not built: {type(exc).__name__}: {str(exc)[:100]}", file=sys.stderr)
            continue
        model.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            ours = count_legacy(model, torch.rand(1, *res))
            acts, conv = oracle.get_model_activation(model, res)
            flops = oracle.get_model_flops(model, res, False)
        params = sum(p.numel() for p in model.parameters())
        theirs_t = (round(params / 1e6, 3), round(flops / 1e9, 2), round(acts / 1e6, 2), conv)
        ours_t = (round(params / 1e6, 3), round(ours["macs"] / 1e9, 2), round(ours["activations"] / 1e6, 2), ours["conv"])
        exact = (int(flops), int(acts), conv) == (ours["macs"], ours["activations"], ours["conv"])
        team = names.get(model_id, "?")
        row = published.get(team.lower())
        pub = (float(row["params_m"]), float(row["flops_g"]), float(row["acts_m"]), int(row["conv"])) if row else None
        match = "-" if pub is None or args.size != 256 else ("yes" if pub == ours_t else "no")
        fix = f" (Linear corrected {ours['macs_corrected'] / 1e9:.2f})" if ours["macs_corrected"] != ours["macs"] else ""
        lines.append(f"| {model_id} | {team} | {theirs_t} | {ours_t}{fix} | {'yes' if exact else 'NO'} | {pub} | {match} |")
        print(lines[-1], flush=True)
    text = f"NTIRE 2022 counter, ours vs the organizers' at 1x{res[0]}x{res[1]}x{res[2]}\n\n" + "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
