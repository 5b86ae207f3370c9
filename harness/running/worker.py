"""Measure ONE entry; runs in its own subprocess (``python -m harness.running.worker JOB.json``).

This process runs team code, so it is trusted with nothing: it gets LR images only (an
LR-only cache file), writes no file of the run, and reports to its parent over the channel
(``harness.running.channel``): the start and end of each timed pass, each SR output of the
first trial (``uint8`` RGB, the parent computes PSNR/SSIM against the HR), and finally its
record content or its failure. The parent validates all of it and writes the record.

Stages, each mapped to the status it yields when it fails:
import/card (``import_error``/``card_error``) -> build (``build_error``) -> load
(``load_error``) -> deploy (``deploy_error``) -> complexity (non-fatal, flagged) ->
per split: warm-up + timed trials, SR outputs of the first trial sent (``run_error``,
``bad_output``, ``oom`` with the size asked for).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from harness.measure import timing as _timing  # noqa: F401 (binds the clock before any team file is imported)
from harness.measure.deploy import DeployError, apply_deploy
from harness.running.channel import WorkerLink
from harness.submissions.importing import explain_failure, open_submission
from harness.running.settings import RunSettings
from harness.submissions.checkpoint import LoadError, load_entry_checkpoint
from harness.submissions.discovery import entries_of_file, one_line


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


def measure_split(prepared: Prepared, split, settings: RunSettings, device: str, forward, link) -> dict:
    """Warm-up, timed trials, peak memory of the forwards; SR outputs of the first trial go to the parent.

    ``split`` holds LR images only. Each SR output of trial 0 is checked (shape, finite),
    converted to uint8 RGB and sent; this process waits for the parent's answer (the parent
    scores the image meanwhile), outside the timed region and outside the memory figure.
    """
    import torch

    from harness.measure.memory import PeakMemory
    from harness.measure.metrics_torch import to_uint8 as to_uint8_device
    from harness.measure.timing import run_timed

    entry = prepared.entry
    inputs = [to_input(p.lr, entry.input_range, device) for p in split.pairs]
    mem = PeakMemory(device)
    ipc = [os.environ.get("ESR_CUDA_IPC", "1") != "0"]  # ESR_CUDA_IPC=0: always hand CUDA outputs over through the host

    def on_trial(trial: int, phase: str) -> None:
        link.send({"type": "pass", "split": split.split, "trial": trial, "phase": phase})

    def on_output(trial: int, index: int, out) -> None:
        if trial != 0:
            return
        with mem.excluded():
            pair = split.pairs[index]
            h, w = pair.lr.shape[:2]
            want = (1, 3, h * entry.scale, w * entry.scale)
            if tuple(out.shape) != want:
                raise BadOutput(
                    f"{entry.name}: output shape {tuple(out.shape)} for LR {w}x{h} of "
                    f"{pair.name}; expected {want} (scale {entry.scale})"
                )
            lo, hi = torch.aminmax(out.detach())  # one pass, no mask: NaN propagates, +-Inf shows at an end
            if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
                raise BadOutput(f"{entry.name}: output of {pair.name} contains NaN or Inf")
            sr_device = to_uint8_device(out, entry.input_range)  # torch, multi-threaded; = metrics.to_uint8
            message = {"type": "sr", "split": split.split, "index": index}
            if out.is_cuda:  # quantised on the device; the parent scores it there (CUDA IPC) or gets a host copy
                from harness.measure.output_share import share_output

                header, payload = share_output(sr_device, allow_ipc=ipc[0])
                reply = link.request({**header, **message}, payload)
                if reply.get("type") == "host":  # the parent could not map the handle: host copies from now on
                    ipc[0] = False
                    header, payload = share_output(sr_device, allow_ipc=False)
                    header["reason"] = str(reply.get("reason") or "CUDA IPC refused by the quality process")[:200]
                    reply = link.request({**header, **message}, payload)
            else:
                sr = sr_device.permute(1, 2, 0).contiguous().numpy()
                reply = link.request({**message, "shape": list(sr.shape), "dtype": "uint8"}, sr)
            if reply.get("type") != "ack":
                raise BadOutput(str(reply.get("error") or f"{entry.name}: the parent refused the output of {pair.name}"))

    with mem:
        timing = run_timed(forward, inputs, trials=settings.trials, device=device, on_output=on_output,
                           on_trial=on_trial)
    return {
        "images": [p.name for p in split.pairs],
        "runtime_ms": timing.per_image_ms,
        "protocol": timing.protocol,
        "memory": mem.to_dict(),
    }


def timed_with_settle(prepared: Prepared, split, settings, device, forward, flags: list, link) -> dict:
    """Time a split; if the model changes itself while running, flag it and re-time once settled."""
    from harness.measure.timing import state_fingerprint

    before = state_fingerprint(prepared.model)
    result = measure_split(prepared, split, settings, device, forward, link)
    after = state_fingerprint(prepared.model)
    if after != before:
        flags.append(
            f"{prepared.entry.name}: parameters changed during the {split.split} forwards "
            f"({before[0]} -> {after[0]} params; lazy re-parameterisation?); re-measured after it settled"
        )
        result = measure_split(prepared, split, settings, device, forward, link)
        if state_fingerprint(prepared.model) != after:
            raise StageError("run_error", f"{prepared.entry.name}: parameters keep changing on every forward")
    return result


def float_buffers(model) -> dict:
    """Persistent floating-point buffers other than batch-norm statistics: {name: elements}.

    The parent counts parameters from the checkpoint's tensors; these are the tensors of
    the state dict that are not parameters, named so that the parent can leave them out."""
    import torch

    params = {name for name, _ in model.named_parameters()}
    return {name: int(t.numel()) for name, t in model.state_dict().items()
            if name not in params and torch.is_floating_point(t)
            and not name.endswith(("running_mean", "running_var"))}


def measure(job: dict, link) -> dict:
    """Run every stage for the job's entry and return the record content this process vouches for."""
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
    load = dict(prepared.load, buffers=float_buffers(prepared.model))

    complexity = None
    if settings.complexity:
        complexity = job["_complexity"] = count_complexity(prepared.model, entry, settings, device, flags)

    from harness.measure.inference import wrap_forward

    forward, mode = wrap_forward(prepared.model, scale=entry.scale, **settings.modes)
    metrics = {"params": sum(p.numel() for p in prepared.model.parameters())}
    if complexity and "error" not in complexity:
        for key in COMPLEXITY_METRICS:
            if key in complexity:
                metrics[key] = complexity[key]
    raw, memory = {}, {}
    protocol = None  # no split: a complexity-only job (esr run --no-quality)
    if not job["lr_splits"]:
        flags.append(f"{name}: complexity only (--no-quality): no runtime, memory or quality measured")
    first_lrs = []
    trained = prepared.load["trained"]
    for what in restore_timing_globals(global_state):
        flags.append(f"{name}: the model's code changed {what} (import, build or deploy); reset before timing")
    for split_name, path in job["lr_splits"].items():
        split = load_cache(path)
        split.split = split_name
        first_lrs = first_lrs or [p.lr for p in split.pairs[:3]]
        res = timed_with_settle(prepared, split, settings, device, forward, flags, link)
        raw[split_name] = {"images": res["images"], "runtime_ms": res["runtime_ms"]}
        memory[split_name] = res["memory"]
        metrics[f"{split_name}.memory_mib"] = res["memory"]["peak_mib"]
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
        "card": entry.to_dict(),
        "metrics": metrics,
        "raw": raw,
        "complexity": complexity,
        "runtime": {"protocol": protocol, "mode": mode},
        "memory": memory,
        "deploy": prepared.deploy,
        "load": load,
        "flags": flags,
        "submission": session.report(entry, prepared.load),
        "provenance": {"device": device, "device_name": device_name, "threads": torch.get_num_threads(),
                       "worker_pid": os.getpid()},
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



_SIZE = re.compile(r"(?:tried to allocate|Unable to allocate)\s+([0-9.]+)\s*(bytes|[KMGT]i?B)", re.IGNORECASE)
_UNITS = {"bytes": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def allocation_failure(exc: BaseException) -> tuple[bool, int | None]:
    """(is an allocation failure, bytes asked for or None), for CPU and CUDA allocators.

    Recognises ``MemoryError`` (numpy: "Unable to allocate 30.0 GiB ..."), torch's CPU
    allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes")
    and CUDA ("CUDA out of memory. Tried to allocate 20.00 GiB").
    """
    text = str(exc)
    oom = isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or \
        "out of memory" in text.lower() or "can't allocate memory" in text.lower()
    if not oom:
        return False, None
    match = _SIZE.search(text)
    if not match:
        return True, None
    return True, int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def complexity_fields(complexity: dict | None) -> dict:
    """Complexity counted before a failure (a checkpoint that did not load): sent with the failure."""
    if not complexity:
        return {}
    out = {"complexity": complexity, "flags": list(complexity.get("flags", []))}
    if "error" not in complexity:
        out["metrics"] = {k: complexity[k] for k in COMPLEXITY_METRICS if k in complexity}
    return out


def submission_fields(job: dict) -> dict:
    if job.get("_session") is None:
        return {}
    return {"submission": job["_session"].report(job.get("_entry"))}


def failure(status: str, error: str, detail: str = "", **extra) -> dict:
    return {"type": "failure", "status": status, "error": error, "detail": detail[-4000:], **extra}


def run_job(job: dict, link) -> dict:
    """The message that ends this worker: ``record`` (content) or ``failure``."""
    name = job["entry"]
    try:
        return {"type": "record", "record": measure(job, link)}
    except StageError as exc:
        return failure(exc.status, str(exc), traceback.format_exc(), **complexity_fields(exc.complexity or job.get("_complexity")),
                       **submission_fields(job))
    except BadOutput as exc:
        return failure("bad_output", str(exc), traceback.format_exc(), **complexity_fields(job.get("_complexity")),
                       **submission_fields(job))
    except BaseException as exc:  # noqa: BLE001 (a team's code may raise anything, SystemExit included)
        oom, size = allocation_failure(exc)
        if oom:
            asked = f"tried to allocate {human_bytes(size)}" if size else "allocation failed"
            return failure("oom", f"{name}: out of memory: {asked} ({one_line(exc)})", traceback.format_exc(),
                           requested_bytes=size, **submission_fields(job))
        why = explain_failure(exc) if isinstance(exc, Exception) else None
        return failure("run_error", f"{name}: {why or one_line(exc)}", traceback.format_exc(),
                       **complexity_fields(job.get("_complexity")), **submission_fields(job))  # counted before it failed


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
    link = WorkerLink(int(job["channel"]["out"]), int(job["channel"]["in"]))
    link.send({"type": "hello", "entry": job["entry"], "pid": os.getpid()})
    link.send(run_job(job, link))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
