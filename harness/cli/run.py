"""``esr run``: measure every entry, write the run folder, print the table."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.running.settings import RunSettings, parse_shape


def add_arguments(p) -> None:
    from harness.cli.common import default_models, default_zoo

    p.add_argument("--models", type=Path, default=default_models(), help="folder of model files (default: models/)")
    p.add_argument("--zoo", type=Path, default=default_zoo(), help="folder of checkpoints (default: $ESR_ZOO or model_zoo/)")
    p.add_argument("--data", default=None, help="validation data: 'builtin' (default), a folder, or HR_DIR,LR_DIR")
    p.add_argument("--test", default=None, help="optional test split, same forms as --data")
    p.add_argument("--out", type=Path, default=Path("results"), help="run folder (default: results/)")
    p.add_argument("--scale", type=int, default=4, help="upscaling factor of the run (default 4)")
    p.add_argument("--entries", default=None, help="comma-separated entry names (default: all at --scale but heavy ones)")
    p.add_argument("--all", action="store_true", dest="all_entries",
                   help="include the entries whose card says heavy (EDSR) in a run without --entries")
    p.add_argument("--trials", type=int, default=3, help="timed passes over the data after warm-up (default 3)")
    p.add_argument("--crop-border", default="4", help="pixels cropped before PSNR/SSIM: an int or 'scale' (default 4)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of each worker (default: torch's)")
    p.add_argument("--input", default="3x256x256", help="LR input of the complexity counters (default 3x256x256)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per entry (default 1800)")
    from harness.cli.common import add_confinement_arguments

    add_confinement_arguments(p)
    p.add_argument("--cudnn-benchmark", action="store_true", help="turn cudnn.benchmark on (recorded)")
    p.add_argument("--no-quality", action="store_true",
                   help="complexity only: no data is read, no PSNR/SSIM, no timing (replays of published tables)")
    p.add_argument("--no-complexity", action="store_true", help="skip the complexity counters")
    p.add_argument("--fp16", action="store_true", help="half precision inference (CUDA only; recorded)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA only; recorded)")
    p.add_argument("--self-ensemble", action="store_true", help="x8 self-ensemble (recorded)")
    p.add_argument("--tile", type=int, default=None, help="tiled inference with this LR tile size (recorded)")
    p.add_argument("--overlap", type=int, default=16, help="LR overlap between tiles (default 16)")
    p.add_argument("--save-sr", type=Path, default=None,
                   help="write the uint8 SR outputs whose PSNR is reported as DIR/<entry>/<split>/<image>.png")
    p.add_argument("--force", action="store_true", help="re-measure entries whose record is complete")
    p.add_argument("--retry-failed", action="store_true",
                   help="redo every failed entry (timeout, oom, crashed, errors); ok records are kept")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any entry failed")
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="where entries run (default local)")
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    p.add_argument("--exclusive-timing", action="store_true",
                   help="ray: time one entry per machine at a time while PSNR/complexity run in parallel")
    p.add_argument("--retries", type=int, default=2, help="ray: retries of a worker that dies (default 2)")
    p.add_argument("--tracks", default="", help="comma-separated track names for 'esr report' (recorded in run.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def settings_from_args(args) -> RunSettings:
    from harness.cli.common import memory_limit_from_args

    modes = {}
    if args.fp16:
        modes["fp16"] = True
    if args.channels_last:
        modes["channels_last"] = True
    if args.self_ensemble:
        modes["self_ensemble"] = True
    if args.tile:
        modes.update(tile=args.tile, overlap=args.overlap)
    return RunSettings(
        device=args.device, trials=args.trials,
        crop_border=args.crop_border if args.crop_border == "scale" else int(args.crop_border),
        threads=args.threads, input_shape=parse_shape(args.input), cudnn_benchmark=args.cudnn_benchmark,
        timeout_s=args.timeout, complexity=not args.no_complexity, modes=modes,
        save_sr=str(args.save_sr.resolve()) if getattr(args, "save_sr", None) else None,
        sandbox=args.sandbox, memory_limit_mib=memory_limit_from_args(args),
    )


class OptionError(ValueError):
    """An option that cannot work; refused before anything runs (exit 2)."""


def validate(args) -> None:
    """Refuse unusable options before anything runs, one line naming the option and the fix."""
    import re

    if not args.timeout > 0:
        raise OptionError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    if args.threads is not None and args.threads < 1:
        raise OptionError(f"--threads {args.threads}: must be at least 1 (or leave it out for torch's default)")
    if args.tile is not None and args.tile < 1:
        raise OptionError(f"--tile {args.tile}: must be a positive LR tile size in pixels (or leave it out)")
    if args.overlap < 0:
        raise OptionError(f"--overlap {args.overlap}: must be >= 0")
    if args.trials < 1:
        raise OptionError(f"--trials {args.trials}: must be at least 1")
    if args.scale < 1:
        raise OptionError(f"--scale {args.scale}: must be a positive integer")
    try:
        shape = parse_shape(args.input)
    except ValueError:
        raise OptionError(f"--input {args.input}: expected CxHxW such as 3x256x256") from None
    if any(v < 1 for v in shape):
        raise OptionError(f"--input {args.input}: every dimension must be at least 1 (for example 3x256x256)")
    if args.crop_border != "scale" and not re.fullmatch(r"\d+", str(args.crop_border)):
        raise OptionError(f"--crop-border {args.crop_border}: give a non-negative integer or 'scale'")
    if args.entries is not None and not [e for e in args.entries.split(",") if e.strip()]:
        raise OptionError(f"--entries {args.entries!r}: names no entry; give comma-separated entry names")
    for flag, folder in (("--models", args.models), ("--zoo", args.zoo)):
        if not Path(folder).is_dir():
            what = "does not exist" if not Path(folder).exists() else "is not a folder"
            raise OptionError(f"{flag} {folder}: {what}; give the folder of "
                              f"{'model files' if flag == '--models' else 'checkpoints'}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {out}: is a file; give a folder for the run")
    probe = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OptionError(f"--out {out}: {probe} is not writable; choose another folder")
    validate_device(args)


def validate_device(args) -> None:
    import re

    device = args.device
    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise OptionError(f"--device {device}: unknown device; use cpu, cuda, cuda:N or auto")
    cuda_wanted = device.startswith("cuda")
    if cuda_wanted or args.fp16 or device == "auto":
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if cuda_wanted:
            index = int(device.split(":")[1]) if ":" in device else 0
            if index >= have:
                raise OptionError(f"--device {device}: " + ("no CUDA device on this machine" if not have else
                                  f"this machine has {have} CUDA device(s) (cuda:0..cuda:{have - 1})")
                                  + "; use --device cpu or another index")
        if args.fp16 and (device == "cpu" or (device == "auto" and not have)):
            raise OptionError("--fp16: half precision is measured on CUDA only and this run is on the CPU; "
                              "drop --fp16 or use a CUDA device")


def main(args) -> int:
    from rich.console import Console

    from harness.running.runner import RunConfig, RunError, run
    from harness.running.summary import notes, rich_table

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:  # logs and CI: the full table
        console = Console(width=200)
    try:
        validate(args)
    except OptionError as exc:
        print(f"esr run: {exc}", file=sys.stderr)
        return 2
    extra = {}
    if args.backend == "ray":
        extra = {"exclusive_timing": args.exclusive_timing, "retries": args.retries}
    try:
        config = RunConfig(
            out=args.out, models=args.models, zoo=args.zoo, data=args.data, test=args.test, scale=args.scale,
            entries=[e.strip() for e in args.entries.split(",") if e.strip()] if args.entries else None,
            all_entries=args.all_entries, force=args.force, retry_failed=args.retry_failed, strict=args.strict,
            backend=args.backend, address=args.address,
            tracks=[t.strip() for t in args.tracks.split(",") if t.strip()],
            settings=settings_from_args(args), extra=extra, quality=not args.no_quality,
        )
        outcome = run(config, console=console, progress=not args.quiet)
    except (RunError, ValueError) as exc:
        console.print(f"[red]esr run: {exc}[/]")
        return 2
    for rec in outcome.records:
        card = rec.get("card") or {}
        if card.get("source") == "inferred":
            console.print(f"[yellow]inferred card for {rec['entry']}[/]: class {card['model']}(), scale {card['scale']}, "
                          f"input range {card['input_range']:g}, checkpoint {card['checkpoint']} "
                          f"(add a sidecar {rec['entry']}.toml to confirm)")
    for line in outcome.notes:
        console.print(f"[yellow]{line}[/]", highlight=False)
    for entry, reason in outcome.redone.items():
        console.print(f"redone {entry}: {reason}", markup=False, highlight=False)
    if outcome.reused:
        console.print(f"kept complete records from an earlier run: {', '.join(outcome.reused)} (use --force to re-measure)")
    if outcome.records:
        console.print(rich_table(outcome.records, title=f"esr run: {args.out}", width=console.width))
    for line in notes(outcome.records) + run_notes(outcome, args.scale):
        console.print(f"  {line}", markup=False, highlight=False)
    console.print(f"records: {args.out / 'records'}   table: {args.out / 'leaderboard.md'}")
    if not any(r.get("status") in ("ok", "untrained") for r in outcome.records):
        console.print("[red]esr run: nothing was measured[/] (see the lines above); exit 1")
        return 1
    if args.strict and outcome.failed:
        return 1
    return 0


def run_notes(outcome, scale: int) -> list[str]:
    """What the run left out, and why: other scales, the default job's heavy entries, helper files."""
    lines = []
    for name in outcome.skipped:
        card_scale = outcome.skipped_scales.get(name, "N")
        lines.append(f"{name}: not measured: its card says scale {card_scale}, the run is at scale {scale} "
                     f"(run with --scale {card_scale})")
    for name, reason in outcome.left_out.items():
        lines.append(f"{name}: left out of the default job ({reason}); include it with --entries {name} or --all")
    lines += outcome.helper_notes
    return lines
