"""``esr profile ENTRY``: complexity of one entry (after its deploy step) without running data.

Prints params, MACs by fvcore (NTIRE 2023-2026), by the legacy NTIRE 2022 hook counter and by
``FlopCounterMode``, activations, conv count, the per-operator breakdown and what each
operator fvcore did not count means. ``--json`` prints the profile dict instead.
"""
from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p) -> None:
    from harness.cli.common import default_models, default_zoo

    p.add_argument("entry", metavar="ENTRY", help="entry name (see `esr list`)")
    p.add_argument("--models", type=Path, default=default_models(), help="folder of model files")
    p.add_argument("--zoo", type=Path, default=default_zoo(), help="folder of checkpoints")
    p.add_argument("--input", default="3x256x256", help="LR input CxHxW or NxCxHxW (default 3x256x256)")
    p.add_argument("--device", default="cpu", help="device to count on (default cpu)")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")


def profile_entry(entry, zoo, input_shape, device: str = "cpu") -> dict:
    """Build, load and deploy the entry as a run would, then profile it.

    As in a run, ``models`` resolves to the entry's own models folder and, on the CPU, CUDA calls
    are neutralised (undone afterwards, so the calling process is left as it was).
    """
    from harness.measure.complexity import profile
    from harness.running.worker import prepare_model
    from harness.submissions.importing import CudaNeutraliser, models_package, unit_of_path

    folder = unit_of_path(entry.file).path.parent if entry.file else None
    neutraliser = CudaNeutraliser() if device == "cpu" else None
    with models_package(folder) if folder else _nothing(), neutraliser or _nothing():
        prepared = prepare_model(entry, zoo, device)
        result = profile(prepared.model, input_shape=input_shape, device=device, input_range=entry.input_range)
    result = {"entry": entry.name, "trained": prepared.load.get("trained"), "deploy": prepared.deploy, **result}
    result["flags"] = list(prepared.flags) + result["flags"]
    if neutraliser and neutraliser.calls:
        result["flags"].append(f"{entry.name}: CUDA calls neutralised for the CPU ({neutraliser.summary()})")
        result["cuda_neutralised"] = neutraliser.report()
    return result


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def render(result: dict, console) -> None:
    from rich.table import Table

    shape = "x".join(str(v) for v in result["input_shape"])
    summary = Table(title=f"{result['entry']} at {shape}: MACs by fvcore, the legacy NTIRE 2022 counter and "
                          f"FlopCounterMode (the challenges' 'FLOPs' are MACs)")
    for col in ("Params", "MACs (G)", "MACs legacy 2022 (G)", "MACs FlopCounter (G)", "Activations (M)", "Conv"):
        summary.add_column(col, justify="right")
    summary.add_row(f"{result['params']:,}", f"{result['macs'] / 1e9:.4f}", f"{result['macs_legacy'] / 1e9:.4f}",
                    f"{result['flop_counter_macs'] / 1e9:.4f}", f"{result['activations'] / 1e6:.4f}",
                    str(result["conv"]))
    console.print(summary)

    total = max(result["macs"], 1)
    ops = Table(title="fvcore MACs by operator")
    for col, just in (("Operator", "left"), ("MACs (G)", "right"), ("Share", "right")):
        ops.add_column(col, justify=just)
    for op, macs in sorted(result["by_operator"].items(), key=lambda kv: -kv[1]):
        ops.add_row(op, f"{macs / 1e9:.4f}", f"{100 * macs / total:.1f}%")
    console.print(ops)

    if result["unsupported_ops"]:
        unsupported = Table(title="operators fvcore did not count")
        for col, just in (("Operator", "left"), ("Calls", "right"), ("Meaning", "left")):
            unsupported.add_column(col, justify=just)
        for op, count in sorted(result["unsupported_ops"].items()):
            unsupported.add_row(op, str(count), result["explanations"][op])
        console.print(unsupported)
    legacy = ", ".join(f"{k} {v / 1e9:.4f} G" for k, v in sorted(result["macs_legacy_parts"].items()))
    console.print(f"legacy counter parts: {legacy or '-'}", highlight=False)
    if result["conv_calls"] != result["conv"]:
        console.print(f"conv: {result['conv']} Conv2d modules called {result['conv_calls']} times", highlight=False)
    if result["uncalled_modules"]:
        console.print(f"[yellow]modules never called:[/] {', '.join(result['uncalled_modules'])}", highlight=False)
    deploy = result.get("deploy")
    if deploy:
        console.print(f"deploy step {deploy['method']}: max abs diff {deploy['max_abs_diff']:.3g}", highlight=False)
    if result.get("trained") is False:
        console.print("[yellow]checkpoint absent: counted with random weights (counts do not depend on them)[/]")
    for flag in result["flags"]:
        console.print(f"[yellow]flag:[/] {flag}", highlight=False)


def main(args) -> int:
    from rich.console import Console

    from harness.submissions.discovery import DiscoveryError, UnknownEntry, discover, get_entry
    from harness.submissions.importing import models_package
    from harness.running.settings import parse_shape
    from harness.running.worker import StageError

    console = Console(stderr=args.json)
    try:
        shape = parse_shape(args.input)
        with models_package(args.models):  # the entry's lazy `models.*` imports resolve while it is profiled
            entry = get_entry(discover(args.models), args.entry)
            result = profile_entry(entry, args.zoo, shape, args.device)
    except (ValueError, DiscoveryError, UnknownEntry, StageError) as exc:
        console.print(f"[red]esr profile: {exc}[/]", highlight=False)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, console)
    return 0
