"""``esr profile ENTRY``: complexity of one entry (after its deploy step) without running data.

Prints params, MACs by fvcore (NTIRE 2023-2026), by the legacy NTIRE 2022 hook counter and by
``FlopCounterMode``, activations, conv count, the per-operator breakdown and what each
operator fvcore did not count means. ``--json`` prints the profile dict instead.

The team's code runs only in a confined subprocess (``python -m harness.cli.profile JOB OUT``,
through ``harness.core.sandbox``), never in the ``esr`` process itself.
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
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for the profile (default 600)")
    from harness.cli.common import add_confinement_arguments

    add_confinement_arguments(p)


def profile_entry(entry, zoo, input_shape, device: str = "cpu", session=None) -> dict:
    """Build, load and deploy the entry as a run would, then profile it.

    ``session`` (:func:`harness.submissions.importing.open_submission`, opened by the profiling
    subprocess before the entry was imported) adds what it neutralised to the flags.
    """
    from harness.measure.complexity import profile
    from harness.running.worker import prepare_model

    prepared = prepare_model(entry, zoo, device)
    result = profile(prepared.model, input_shape=input_shape, device=device, input_range=entry.input_range)
    result = {"entry": entry.name, "trained": prepared.load.get("trained"), "deploy": prepared.deploy, **result}
    result["flags"] = list(prepared.flags) + result["flags"]
    if session is not None:
        result["flags"] += session.flags(entry.name)
        result["submission"] = session.report(entry, prepared.load)
    return result


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
    if result["conv_modules"] != result["conv"]:
        console.print(f"conv: {result['conv']} calls of {result['conv_modules']} Conv2d/ConvTranspose2d modules "
                      f"(the 2022 organizers count calls)", highlight=False)
    for key in ("macs", "macs_legacy"):
        if result[f"{key}_corrected"] != result[key]:
            console.print(f"[yellow]{key}: {result[key] / 1e9:.4f} G official convention, "
                          f"{result[key + '_corrected'] / 1e9:.4f} G corrected[/]", highlight=False)
    for a in result["artefacts"]:
        hidden = "unknown" if a["hidden_macs"] is None else f"{a['hidden_macs'] / 1e9:.4f} G"
        console.print(f"artefact {a['op']} x{a['calls']}: hides {hidden} ({a['counter']}): {a['cause']}", highlight=False)
    if result["uncalled_modules"]:
        console.print(f"[yellow]modules never called:[/] {', '.join(result['uncalled_modules'])}", highlight=False)
    deploy = result.get("deploy")
    if deploy:
        console.print(f"deploy step {deploy['method']}: max abs diff {deploy['max_abs_diff']:.3g}", highlight=False)
    if result.get("trained") is False:
        console.print("[yellow]checkpoint absent: counted with random weights (counts do not depend on them)[/]")
    for flag in result["flags"]:
        console.print(f"[yellow]flag:[/] {flag}", highlight=False)


def profile_confined(card: dict, zoo, input_shape, device: str, *, timeout_s: float = 600.0, sandbox: str = "auto",
                     memory_limit_mib: int | None = None) -> dict:
    """Profile the entry of ``card`` (from the catalog) in a confined subprocess; raises ValueError on failure."""
    import sys
    import tempfile

    from harness.core.sandbox import run_confined

    with tempfile.TemporaryDirectory(prefix="esr-profile-") as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "profile.json"
        job.write_text(json.dumps({"file": card["file"], "entry": card["name"], "zoo": str(Path(zoo).resolve()),
                                   "input_shape": list(input_shape), "device": device}))
        outcome = run_confined([sys.executable, "-m", "harness.cli.profile", str(job), str(out)], scratch=tmp,
                               timeout_s=timeout_s, mode=sandbox, memory_limit_mib=memory_limit_mib)
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            result = None
    if outcome.timed_out:
        raise ValueError(f"{card['name']}: profiling did not finish within {timeout_s:g} s; raise --timeout")
    if outcome.oom:
        raise ValueError(f"{card['name']}: profiling was killed by the memory limit "
                         f"({outcome.isolation['memory_limit_mib']} MiB); raise --memory-limit")
    if not isinstance(result, dict):
        tail = " | ".join((outcome.stderr or outcome.stdout).strip().splitlines()[-3:])
        how = f"killed by {outcome.signal}" if outcome.signal else f"exit code {outcome.returncode}"
        raise ValueError(f"{card['name']}: the profiling process ended without a result ({how}): {tail}")
    if "error" in result:
        raise ValueError(result["error"])
    result["isolation"] = outcome.isolation
    return result


def _profile_job(job_path: str, out_path: str) -> int:
    """Subprocess side: build, load, deploy and profile one entry; write JSON (or an error)."""
    from harness.running.worker import StageError, load_entry
    from harness.submissions.importing import open_submission

    job = json.loads(Path(job_path).read_text())
    try:
        session = open_submission(job["file"], job["device"])  # `models` = its folder; CUDA calls on a CPU
        entry = load_entry(job["file"], job["entry"])
        result = profile_entry(entry, job["zoo"], tuple(job["input_shape"]), job["device"], session=session)
    except StageError as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # the team's model raised while being profiled
        result = {"error": f"{job['entry']}: profiling failed: {type(exc).__name__}: {str(exc).strip()[:300]}"}
    Path(out_path).write_text(json.dumps(result, default=str))
    return 0


def main(args) -> int:
    from rich.console import Console

    from harness.cli.common import memory_limit_from_args
    from harness.core.sandbox import SandboxUnavailable
    from harness.running.runner import RunError, read_catalog
    from harness.running.settings import parse_shape

    console = Console(stderr=args.json)
    try:
        shape = parse_shape(args.input)
        limit = memory_limit_from_args(args)
        catalog = read_catalog(args.models, args.timeout, sandbox=args.sandbox, memory_limit_mib=limit)
        if args.entry not in catalog["entries"]:
            import difflib

            close = difflib.get_close_matches(args.entry, list(catalog["entries"]), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown entry {args.entry!r}.{hint} Known entries: {', '.join(catalog['entries']) or '(none)'}")
        result = profile_confined(catalog["entries"][args.entry], args.zoo, shape, args.device, timeout_s=args.timeout,
                                  sandbox=args.sandbox, memory_limit_mib=limit)
    except (ValueError, RunError, SandboxUnavailable) as exc:
        console.print(f"[red]esr profile: {exc}[/]", highlight=False)
        return 2
    except Exception as exc:  # team code failed while counting: one line, never a traceback
        from harness.submissions.discovery import one_line

        console.print(f"[red]esr profile: {args.entry}: counting failed: {one_line(exc)}[/]", highlight=False)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, console)
    return 0


if __name__ == "__main__":  # python -m harness.cli.profile JOB.json OUT.json (the confined side)
    import sys

    sys.exit(_profile_job(sys.argv[1], sys.argv[2]))
