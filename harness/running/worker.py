"""Measure ONE entry; runs in its own subprocess (``python -m harness.running.worker JOB.json``).

Stages, each mapped to the record status it yields when it fails:
import/card (``import_error``/``card_error``) -> build (``build_error``) -> load
(``load_error``) -> deploy (``deploy_error``) -> complexity (non-fatal, flagged) ->
per split: warm-up + timed trials with quality on the first trial (``run_error``,
``bad_output``, ``oom``). The record is written atomically by this process; the parent
writes ``timeout``/``crashed`` records when the process never gets that far.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from harness.submissions.checkpoint import LoadError, load_entry_checkpoint
from harness.measure.deploy import DeployError, apply_deploy
from harness.submissions.discovery import entries_of_file, one_line
from harness.submissions.importing import explain_failure, open_submission
from harness.running.records import SCHEMA, atomic_write_json, provenance
from harness.running.settings import RunSettings


class StageError(RuntimeError):
    def __init__(self, status: str, message: str, model=None):
        super().__init__(message)
        self.status = status
        self.model = model  # load_error: the built model, so complexity is still counted
        self.complexity = None


class BadOutput(RuntimeError):
    pass


@dataclass
class Prepared:
    """A built, loaded and deployed model and what happened on the way."""

    model: object
    entry: object
    load: dict
    deploy: dict | None
    flags: list = field(default_factory=list)


def load_entry(file: str, name: str):
    entries, problem = entries_of_file(Path(file))
    if problem:
        raise StageError(problem.status, problem.error)
    for entry in entries:
        if entry.name == name:
            return entry
    raise StageError("card_error", f"{name}: {Path(file).name} no longer declares this entry")


def prepare_model(entry, zoo_dir, device: str = "cpu") -> Prepared:
    """Build on the CPU, load strictly, apply the deploy step; then move to ``device``.

    The RNG is seeded first, so an untrained entry gets the same random weights every run.
    """
    import torch

    torch.manual_seed(0)
    try:
        model = entry.build()
    except Exception as exc:
        why = explain_failure(exc) or one_line(exc)
        raise StageError("build_error", f"{entry.name}: constructing {entry.model_name} failed: {why}") from exc
    deploy = None
    flags = []
    try:
        if entry.deploy and entry.load_after_deploy:
            deploy = apply_deploy(model, entry.deploy, name=entry.name)
        info = load_entry_checkpoint(model, entry, zoo_dir)
        if entry.deploy and not entry.load_after_deploy:
            deploy = apply_deploy(model, entry.deploy, name=entry.name)
    except LoadError as exc:
        raise StageError("load_error", str(exc), model=model) from exc
    except DeployError as exc:
        raise StageError("deploy_error", str(exc)) from exc
    if deploy and not deploy["equivalent"]:
        raise StageError(
            "deploy_error",
            f"{entry.name}: deploy step {entry.deploy!r} changes the output (max abs diff {deploy['max_abs_diff']:.3g} "
            f">= {deploy['tolerance']:g})",
        )
    model.eval()
    model.to(device)
    return Prepared(model=model, entry=entry, load=info.to_dict(), deploy=deploy, flags=flags)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StageError("run_error", f"device {name!r} requested but CUDA is not available")
    return name


def to_input(lr, input_range: float, device: str):
    """uint8 HxWx3 RGB -> float32 1x3xHxW in [0, input_range] on ``device``.

    One float32 allocation per image: the uint8 array (a page of the memory-mapped cache) is
    permuted and converted in one copy and scaled in place. On CUDA the uint8 image is pinned
    and copied asynchronously (a quarter of the float32 bytes), then converted on the device.
    """
    import warnings

    import torch

    with warnings.catch_warnings():  # the cache is mapped read-only; the tensor is only read
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(lr)
    if str(device).startswith("cuda"):
        t = t.pin_memory().to(device, non_blocking=True)
    x = t.permute(2, 0, 1).unsqueeze(0).to(torch.float32, memory_format=torch.contiguous_format)
    if input_range != 255.0:
        x.mul_(input_range / 255.0)
    return x


def measure_split(prepared: Prepared, split, settings: RunSettings, device: str, forward, stash=None) -> dict:
    """Warm-up, timed trials, quality on the first trial's outputs, peak memory."""
    from harness.measure.memory import PeakMemory
    from harness.measure.metrics import quality as quality_figures
    from harness.measure.metrics import to_uint8
    from harness.measure.timing import run_timed

    entry = prepared.entry
    crop = settings.crop_for(entry.scale)
    inputs = [to_input(p.lr, entry.input_range, device) for p in split.pairs]
    quality = {k: [None] * len(split.pairs) for k in ("psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y")}
    quality_s = [0.0]

    def on_output(trial: int, index: int, out) -> None:
        if trial != 0:
            return
        pair = split.pairs[index]
        want = (1, 3, pair.hr.shape[0], pair.hr.shape[1])
        if tuple(out.shape) != want:
            raise BadOutput(
                f"{entry.name}: output shape {tuple(out.shape)} for LR {pair.lr.shape[1]}x{pair.lr.shape[0]} of "
                f"{pair.name}; expected {want} (scale {entry.scale})"
            )
        if not bool(out.isfinite().all()):
            raise BadOutput(f"{entry.name}: output of {pair.name} contains NaN or Inf")
        sr = to_uint8(out, entry.input_range)
        if stash is not None:  # --save-sr: exactly the uint8 image scored below; the parent writes the PNG
            from harness.running.save_sr import stash_sr

            stash_sr(stash, split.split, index, sr)
        t0 = time.perf_counter()
        for key, value in quality_figures(sr, pair.hr, crop_border=crop).items():
            quality[key][index] = value
        quality_s[0] += time.perf_counter() - t0

    with PeakMemory(device) as mem:
        timing = run_timed(forward, inputs, trials=settings.trials, device=device, on_output=on_output)
    result = {
        "images": [p.name for p in split.pairs],
        "runtime_ms": timing.per_image_ms,
        "trial_means_ms": timing.trial_means_ms,
        "mean_ms": timing.mean_ms,
        "best_ms": timing.best_ms,
        "stats": timing.stats(),
        "quality_seconds": quality_s[0],
        "protocol": timing.protocol,
        "memory": mem.to_dict(),
        "crop_border": crop,
    }
    result.update(quality)
    result["mean"] = {k: mean_quality(v) for k, v in quality.items()}
    return result


def mean_quality(values) -> float:
    """Mean over images; PSNR of an identical image is inf, and then so is the mean."""
    vals = [float(v) for v in values]
    return math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)


def timed_with_settle(prepared: Prepared, split, settings, device, forward, flags: list, stash=None) -> dict:
    """Time a split; if the model changes itself while running, flag it and re-time once settled."""
    from harness.measure.timing import state_fingerprint

    before = state_fingerprint(prepared.model)
    result = measure_split(prepared, split, settings, device, forward, stash)
    after = state_fingerprint(prepared.model)
    if after != before:
        flags.append(
            f"{prepared.entry.name}: parameters changed during the {split.split} forwards "
            f"({before[0]} -> {after[0]} params; lazy re-parameterisation?); re-measured after it settled"
        )
        result = measure_split(prepared, split, settings, device, forward, stash)
        if state_fingerprint(prepared.model) != after:
            raise StageError("run_error", f"{prepared.entry.name}: parameters keep changing on every forward")
    return result


def measure(job: dict) -> dict:
    """Run every stage for the job's entry and return its record."""
    import torch

    from harness.data.splits import load_cache

    settings = RunSettings.from_dict(job["settings"])
    name = job["entry"]
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    torch.backends.cudnn.benchmark = bool(settings.cudnn_benchmark)
    global_state = timing_globals()  # before the team's file is imported
    device = resolve_device(settings.device)
    session = job["_session"] = open_submission(job["file"], device)  # `models` = its folder; CUDA calls on a CPU
    entry = job["_entry"] = load_entry(job["file"], name)
    try:
        prepared = prepare_model(entry, job.get("zoo"), device)
    except StageError as exc:  # complexity does not depend on the weights: count the built model anyway
        if exc.status == "load_error" and exc.model is not None and settings.complexity:
            exc.complexity = complexity_without_weights(exc.model, entry, settings, device)
        raise
    flags = list(prepared.flags)
    trained = prepared.load["trained"]

    complexity = None
    if settings.complexity:
        complexity = count_complexity(prepared.model, entry, settings, device, flags)

    from harness.measure.inference import wrap_forward

    forward, mode = wrap_forward(prepared.model, scale=entry.scale, **settings.modes)
    metrics = {"params": sum(p.numel() for p in prepared.model.parameters())}
    if complexity and "error" not in complexity:
        for key in COMPLEXITY_METRICS:
            if key in complexity:
                metrics[key] = complexity[key]
    raw, trial_means, memory, stats, quality_seconds = {}, {}, {}, {}, {}
    stash = Path(job["record"]).parent / "sr" if settings.save_sr and job.get("record") else None
    protocol = None  # no split: a complexity-only job (esr run --no-quality)
    if not job["splits"]:
        flags.append(f"{name}: complexity only (--no-quality): no runtime, memory or quality measured")
    first_lrs = []
    for what in restore_timing_globals(global_state):
        flags.append(f"{name}: the model's code changed {what} (import, build or deploy); reset before timing")
    for split_name, cache in job["splits"].items():
        split = load_cache(cache)
        first_lrs = first_lrs or [p.lr for p in split.pairs[:3]]
        res = timed_with_settle(prepared, split, settings, device, forward, flags, stash)
        raw[split_name] = {k: res[k] for k in ("images", "psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "runtime_ms")}
        trial_means[split_name] = res["trial_means_ms"]
        stats[split_name] = res["stats"]
        quality_seconds[split_name] = round(res["quality_seconds"], 3)
        memory[split_name] = res["memory"]
        metrics[f"{split_name}.runtime_ms"] = res["mean_ms"]
        metrics[f"{split_name}.runtime_ms_best"] = res["best_ms"]
        metrics[f"{split_name}.memory_mib"] = res["memory"]["peak_mib"]
        for key, value in res["mean"].items():
            metrics[f"{split_name}.{key}"] = value
        protocol = res["protocol"]
    for what in restore_timing_globals(global_state):
        flags.append(f"{name}: the model's forward changed {what} while being timed; its times are not comparable")
    if trained and first_lrs:  # not a figure: a warning the run prints (no ground truth needed)
        from harness.measure.plausibility import input_range_warning

        warning = input_range_warning(prepared.model, first_lrs, entry.input_range, name, device)
        if warning:
            flags.append(warning)
    device_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_name()
    flags.extend(session.flags(name))
    return {
        "schema": SCHEMA,
        "entry": name,
        "status": "ok" if trained else "untrained",
        "error": None,
        "trained": trained,
        "key": job.get("key"),
        "card": entry.to_dict(),
        "metrics": metrics,
        "raw": raw,
        "complexity": complexity,
        "runtime": {"protocol": protocol, "trial_means_ms": trial_means, "mode": mode, "stats": stats},
        "quality": ({"where": "host", "process": "worker", "overlap": False, "seconds": quality_seconds}
                    if quality_seconds else None),
        "memory": memory,
        "deploy": prepared.deploy,
        "load": prepared.load,
        "flags": flags,
        "submission": session.report(entry, prepared.load),
        "settings": settings.to_dict(),
        "data": job.get("data", {}),
        "provenance": provenance(device=device, device_name=device_name, threads=torch.get_num_threads(),
                                 checkpoint_sha256=prepared.load.get("sha256"), **job.get("provenance", {})),
    }


def timing_globals() -> dict:
    """Process-wide settings that change how fast a model runs; a team file may change them at import."""
    import torch

    return {
        "thread count": torch.get_num_threads(),
        "default dtype": torch.get_default_dtype(),
        "cudnn.enabled": torch.backends.cudnn.enabled,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "mkldnn.enabled": torch.backends.mkldnn.enabled,
        "float32 matmul precision": torch.get_float32_matmul_precision(),
    }


def restore_timing_globals(state: dict) -> list[str]:
    """Put back every setting of :func:`timing_globals` that differs; returns what was changed.

    Flush-denormal mode cannot be read back, so it is always reset to off (torch's default).
    """
    import torch

    now = timing_globals()
    changed = [f"{key} ({state[key]} -> {now[key]})" for key in state if now[key] != state[key]]
    setters = {
        "thread count": torch.set_num_threads,
        "default dtype": torch.set_default_dtype,
        "cudnn.enabled": lambda v: setattr(torch.backends.cudnn, "enabled", v),
        "cudnn.benchmark": lambda v: setattr(torch.backends.cudnn, "benchmark", v),
        "cudnn.deterministic": lambda v: setattr(torch.backends.cudnn, "deterministic", v),
        "cudnn.allow_tf32": lambda v: setattr(torch.backends.cudnn, "allow_tf32", v),
        "cuda.matmul.allow_tf32": lambda v: setattr(torch.backends.cuda.matmul, "allow_tf32", v),
        "mkldnn.enabled": lambda v: setattr(torch.backends.mkldnn, "enabled", v),
        "float32 matmul precision": torch.set_float32_matmul_precision,
    }
    for key, value in state.items():
        if now[key] != value:
            setters[key](value)
    torch.set_flush_denormal(False)
    return changed


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


COMPLEXITY_METRICS = ("params", "macs", "macs_corrected", "macs_legacy", "macs_legacy_corrected", "activations", "conv")


def count_complexity(model, entry, settings, device: str, flags: list) -> dict:
    """``profile`` with its flags appended to ``flags``; a failure is recorded, never fatal."""
    from harness.measure.complexity import profile

    try:
        complexity = profile(model, input_shape=settings.input_shape, device=device, input_range=entry.input_range)
        flags.extend(complexity.get("flags", []))
    except Exception as exc:  # an untraceable model still gets quality and speed
        complexity = {"error": one_line(exc)}
        flags.append(f"{entry.name}: complexity could not be measured: {one_line(exc)}")
    return complexity


def complexity_without_weights(model, entry, settings, device: str) -> dict:
    """Complexity of a model whose checkpoint failed to load: its deploy step runs on the random
    weights (the counts do not depend on them) and the figures go into the load_error record."""
    flags = ["complexity counted on the built model with random weights (counts do not depend on the "
             "weights); the entry is not ranked because its checkpoint did not load"]
    if entry.deploy and not entry.load_after_deploy:
        try:
            apply_deploy(model, entry.deploy, name=entry.name)
        except Exception as exc:  # noqa: BLE001 - count the training form then, and say so
            flags.append(f"deploy step {entry.deploy!r} failed on random weights ({one_line(exc)}): counted before it")
    model.eval().to(device)
    complexity = count_complexity(model, entry, settings, device, flags)
    complexity["flags"] = flags
    return complexity


def with_complexity(record: dict, complexity: dict | None) -> dict:
    """Put complexity figures counted before a failure into the failure record."""
    if complexity:
        record["complexity"] = complexity
        record.setdefault("flags", []).extend(complexity.get("flags", []))
        if "error" not in complexity:
            record["metrics"] = {k: complexity[k] for k in COMPLEXITY_METRICS if k in complexity}
    return record


def failure_record(job: dict, status: str, error: str, started: float, detail: str = "") -> dict:
    record = {
        "schema": SCHEMA, "entry": job["entry"], "status": status, "error": error, "trained": False,
        "key": job.get("key"), "metrics": {}, "detail": detail[-4000:],
        "settings": job.get("settings"), "data": job.get("data", {}),
        "provenance": provenance(seconds=round(time.time() - started, 3)),
    }
    if job.get("_session") is not None:
        record["submission"] = job["_session"].report(job.get("_entry"))
    return record


def run_job(job: dict) -> dict:
    started = time.time()
    name = job["entry"]
    try:
        record = measure(job)
    except StageError as exc:
        record = with_complexity(failure_record(job, exc.status, str(exc), started, traceback.format_exc()),
                                 exc.complexity)
    except BadOutput as exc:
        record = failure_record(job, "bad_output", str(exc), started, traceback.format_exc())
    except MemoryError as exc:
        record = failure_record(job, "oom", f"{name}: out of memory: {one_line(exc)}", started)
    except Exception as exc:
        status = "oom" if "out of memory" in str(exc).lower() else "run_error"
        why = explain_failure(exc) or one_line(exc)
        record = failure_record(job, status, f"{name}: {why}", started, traceback.format_exc())
    record.setdefault("provenance", {})["seconds"] = round(time.time() - started, 3)
    return record


def die_with_parent() -> None:
    """Linux: end this worker when the driver dies, so a killed run leaves no orphan timing."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1 and not os.environ.get("ESR_SANDBOXED"):  # the driver died before the line above
        # (in the sandbox, PID 1 is the namespace's init, and the namespace dies with the driver)
        sys.exit(1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    die_with_parent()
    if len(argv) != 1:
        print("usage: python -m harness.running.worker JOB.json", file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        job = json.load(fh)
    record = run_job(job)
    atomic_write_json(job["record"], record)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
