"""Run one job (one entry) in a confined worker subprocess with a time limit, and return its record.

This is the parent side of the trust boundary (``docs/threat_model.md``): it holds the HR,
gives the worker an LR-only cache beside (not in) its scratch folder, talks to it over two pipes
(``harness.running.channel``), scores the SR outputs itself (``harness.running.quality``),
checks what the worker reports (``harness.running.intake``, ``harness.running.crosscheck``)
and builds the record; it never imports team code and never unpickles anything the worker
produced. The worker runs confined (``harness.core.sandbox``): its scratch folder is the only
place it can write, the run folder and the data are hidden; the record says which isolation
applied (``isolation``). The same function serves the local backend and each Ray task.
Whatever happens to the worker (exception, kill, time-out, memory limit, a broken message),
a record comes back, and its whole process tree is gone before the next entry starts.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.core.sandbox import Confined, SandboxUnavailable
from harness.running import crosscheck, intake
from harness.running.channel import ChannelError, ChannelTimeout, Reader, send
from harness.running.hooks import kill_point
from harness.running.quality import BadOutputError, Quality
from harness.running.records import SCHEMA, error_record, provenance
from harness.running.settings import RunSettings

def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def open_splits(job: dict, folder: Path) -> tuple[dict, dict, list[str]]:
    """The verified HR splits, the LR-only files written for the worker into ``folder``, and
    notes (a modified cache is rebuilt from the source and the note says so)."""
    from harness.data.splits import CacheMismatch, load_cache, load_split, save_cache

    splits, lr_paths, notes = {}, {}, []
    for name, path in job["splits"].items():
        want = (job.get("data", {}).get(name) or {}).get("content_sha256")
        try:
            split = load_cache(path, expect=want)
        except CacheMismatch as exc:
            spec = (job.get("data_specs") or {}).get(name, "")
            scale = (job.get("data", {}).get(name) or {}).get("scale")
            if spec == "" or scale is None:
                raise
            split = load_split(None if spec == "builtin" else spec, scale=scale, split=name)
            save_cache(split, path)
            split = load_cache(path, expect=want)
            notes.append(f"data cache {Path(path).name} was modified ({exc}); rebuilt from {spec}")
        lr = folder / f"lr-{name}.npz"
        save_cache(split, lr, roles=("lr",))
        lr.chmod(0o444)
        splits[name] = split
        lr_paths[name] = str(lr)
    return splits, lr_paths, notes


def hidden_folders(job: dict) -> list[str]:
    """Folders the worker must not see: the run's caches and records, the data's folders.

    A folder that holds what the worker needs (the model file, the zoo, this harness, Python)
    is never hidden (``--out .`` must not hide the models)."""
    import harness

    wanted = [Path(job["file"]).resolve(), Path(job.get("zoo") or ".").resolve(), Path(harness.__file__).resolve(),
              Path(sys.prefix).resolve(), Path(sys.executable).resolve()]
    candidates = [Path(p).resolve().parent for p in job["splits"].values()]
    if job.get("record"):
        candidates.append(Path(job["record"]).resolve().parent)
    for info in (job.get("data") or {}).values():
        if isinstance(info, dict) and info.get("root"):
            candidates.append(Path(info["root"]).resolve())
    out = []
    for folder in candidates:
        if folder.is_dir() and not any(w == folder or folder in w.parents for w in wanted) and str(folder) not in out:
            out.append(str(folder))
    return out


def checkpoint_file(job: dict) -> Path | None:
    name = (job.get("card") or {}).get("checkpoint")
    if not name:
        return None
    return Path(name) if Path(name).is_absolute() else Path(job.get("zoo") or "model_zoo") / name


def execute_job(job: dict, *, timeout_s: float | None = None, env: dict | None = None, sinks=()) -> dict:
    """Measure ``job['entry']`` in a confined worker subprocess and return the record.

    ``job['settings']`` gives ``timeout_s``, ``sandbox`` (auto|required|off) and
    ``memory_limit_mib``. Statuses decided here: ``timeout``; ``oom`` when the memory limit
    killed the tree (read back from the cgroup); ``crashed`` with the signal or exit code; and
    whatever the checks of the worker's report say. sinks: callables ``sink(split, index,
    name, sr_uint8)`` given every SR output of the first trial after it was scored.
    """
    settings = RunSettings.from_dict(job["settings"])
    timeout_s = timeout_s or settings.timeout_s or 1800.0
    name = job["entry"]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="esr-job-") as tmp:
        scratch = Path(tmp) / "scratch"  # the worker's one writable folder; the log stays outside it
        scratch.mkdir()
        inputs = Path(tmp) / "inputs"  # LR files and the job: outside scratch, so read-only when confined
        inputs.mkdir()
        try:
            splits, lr_paths, notes = open_splits(job, inputs)
        except Exception as exc:  # a cache that cannot be read or rebuilt: the entry cannot be measured
            return _failed(job, "run_error", f"{name}: data cache unusable: {exc}", started, None, None)
        scale = next(iter(splits.values())).scale if splits else int((job.get("card") or {}).get("scale") or 1)
        sinks = list(sinks)
        saved = {}
        if getattr(settings, "save_sr", None):  # --save-sr: the parent writes the PNG of each scored image
            from harness.running.save_sr import save_sr

            sinks.append(lambda split, index, image, sr: saved.setdefault(split, []).append(
                save_sr(settings.save_sr, name, split, image, sr)))
        quality = Quality(splits, entry=name, crop_border=settings.crop_for(scale), sinks=sinks,
                          device=str(settings.device))
        to_parent_r, to_parent_w = os.pipe()
        to_worker_r, to_worker_w = os.pipe()
        worker_job = {
            "entry": name, "file": str(Path(job["file"]).resolve()),
            "zoo": str(Path(job["zoo"]).resolve()) if job.get("zoo") else None, "settings": job["settings"],
            "lr_splits": lr_paths, "phase": job.get("phase"), "channel": {"out": to_parent_w, "in": to_worker_r},
        }
        job_path = inputs / "job.json"
        job_path.write_text(json.dumps(worker_job))
        log_path = Path(tmp) / "log.txt"
        run_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        cmd = [sys.executable, "-m", "harness.running.worker", str(job_path)]
        isolation = None
        with open(log_path, "w") as log:
            try:
                box = Confined(cmd, scratch=scratch, mode=settings.sandbox, memory_limit_mib=settings.memory_limit_mib,
                               hide=hidden_folders(job), env=run_env, cwd=str(scratch), stdout=log,
                               stderr=subprocess.STDOUT, pass_fds=(to_parent_w, to_worker_r))
            except SandboxUnavailable as exc:
                for fd in (to_parent_r, to_parent_w, to_worker_r, to_worker_w):
                    os.close(fd)
                return _failed(job, "run_error", f"{name}: {exc}", started, None, None)
            finally:
                for fd in (to_parent_w, to_worker_r):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            try:
                with box:
                    session = _converse(box.proc, Reader(to_parent_r), to_worker_w, quality, name, timeout_s)
                    if session["timeout"]:
                        box.kill()
                    else:
                        try:  # let it exit on its own so that its exit status is its own
                            box.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            box.kill()
                    code = box.returncode
                    oom = box.oom()
                    isolation = box.isolation()
            finally:
                os.close(to_parent_r)
                os.close(to_worker_w)
        session.update(code=code, oom=oom)
        record = _conclude(job, session, quality, started, log_path, timeout_s, isolation)
    record["isolation"] = isolation
    record["flags"] = list(record.get("flags") or []) + notes
    if saved and record.get("status") in ("ok", "untrained"):
        from harness.running.save_sr import saved_summary

        record["sr_saved"] = saved_summary(settings.save_sr, saved)
    return record


def _converse(proc, reader: Reader, to_worker: int, quality: Quality, name: str, timeout_s: float) -> dict:
    """Read the worker's messages until it ends, scoring SR outputs as they come."""
    deadline = time.monotonic() + timeout_s
    passes, current = {}, None
    session = {"final": None, "timeout": False, "protocol": None, "bad_output": None, "passes": passes}
    while True:
        # The worker's children may hold the pipe open after it exits: poll the worker too.
        if not reader.ready(min(0.5, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                session["timeout"] = True
                return session
            if proc.poll() is not None and not reader.ready(0.05):
                return session
            continue
        try:
            message = reader.read(deadline)
        except ChannelTimeout:
            session["timeout"] = True
            return session
        except ChannelError as exc:
            session["protocol"] = str(exc)
            return session
        if message is None:
            return session
        header, payload = message
        now = time.monotonic()
        kind = header["type"]
        if kind == "pass":
            key = (header.get("split"), header.get("trial"))
            if header.get("phase") == "start":
                kill_point("timed_pass", name)
                current = passes[key] = {"start": now, "span_ms": None, "busy_ms": 0.0, "sr_mib": 0.0}
            elif header.get("phase") == "end" and key in passes and passes[key]["span_ms"] is None:
                passes[key]["span_ms"] = (now - passes[key]["start"]) * 1e3
                current = None
            else:
                session["protocol"] = f"unexpected pass message {header}"
                return session
        elif kind == "sr":
            try:
                send(to_worker, quality.receive(header, payload))
            except BadOutputError as exc:
                session["bad_output"] = str(exc)
                _safe_send(to_worker, {"type": "stop", "error": str(exc)})
                return session
            except (OSError, ValueError) as exc:  # a sink failed (--save-sr: a bad name, a full disk)
                session["sink_error"] = f"{name}: {exc}"
                _safe_send(to_worker, {"type": "stop", "error": str(exc)})
                return session
            busy = time.monotonic() - now
            deadline += busy  # scoring is the parent's time, not the entry's
            if current is not None:
                current["busy_ms"] += busy * 1e3
                current["sr_mib"] += len(payload or b"") / 2**20
        elif kind in ("record", "failure"):
            session["final"] = header
        elif kind == "hello":
            session["pid"] = header.get("pid")
        else:
            session["protocol"] = f"unknown message type {kind!r}"
            return session


def _safe_send(fd: int, header: dict) -> None:
    try:
        send(fd, header)
    except OSError:
        pass


def _conclude(job, session, quality, started, log_path, timeout_s, isolation) -> dict:
    name = job["entry"]
    code = session["code"]
    final = session["final"]
    if session["timeout"]:
        return _failed(job, "timeout", f"{name}: did not finish within {timeout_s:g} s (time limit); "
                       f"raise --timeout or check for a hang", started, log_path, isolation)
    if session["oom"]:
        limit = (isolation or {}).get("memory_limit_mib")
        rec = _failed(job, "oom", f"{name}: killed by the memory limit ({limit} MiB, "
                      f"{(isolation or {}).get('memory_mechanism')}); raise --memory-limit if the model needs more",
                      started, log_path, isolation)
        rec["oom"] = {"requested_bytes": None, "source": "memory limit"}
        return rec
    if session["bad_output"]:
        return _failed(job, "bad_output", session["bad_output"], started, log_path, isolation)
    if session.get("sink_error"):
        return _failed(job, "run_error", session["sink_error"], started, log_path, isolation)
    if session["protocol"]:
        return _failed(job, "run_error", f"{name}: the worker broke the message protocol ({session['protocol']})",
                       started, log_path, isolation)
    if final is None:
        if code is not None and code < 0:
            return _failed(job, "crashed", f"{name}: worker killed by {_signal_name(code)}", started, log_path,
                           isolation)
        return _failed(job, "crashed", f"{name}: worker exited with code {code} before reporting its result",
                       started, log_path, isolation)
    if final["type"] == "failure":
        try:
            status, error, extra = intake.failure(final)
        except intake.IntakeError as exc:
            return _failed(job, "run_error", f"{name}: {exc}", started, log_path, isolation)
        rec = _failed(job, status, error, started, log_path, isolation)
        rec.update(extra)
        return rec
    try:
        return assemble(job, final.get("record"), session["passes"], quality, started)
    except intake.IntakeError as exc:
        return _failed(job, "run_error", f"{name}: the worker's record is invalid: {exc}", started, log_path,
                       isolation)
    except BadOutputError as exc:
        return _failed(job, "bad_output", str(exc), started, log_path, isolation)


def assemble(job: dict, report, passes: dict, quality: Quality, started: float) -> dict:
    """The record, from the checked worker report, the parent's quality figures and cross-checks."""
    import statistics

    from harness.measure.timing import runtime_stats

    name = job["entry"]
    settings = RunSettings.from_dict(job["settings"])
    images = {s: [p.name for p in split.pairs] for s, split in quality.splits.items()}
    content, notes = intake.content(report, images=images, trials=settings.trials)
    scores = quality.results()
    metrics = dict(content["metrics"])
    raw, trial_means = {}, {}
    for split, values in content["raw"].items():
        means = [statistics.fmean(t) for t in values["runtime_ms"]]
        trial_means[split] = means
        metrics[f"{split}.runtime_ms"] = statistics.fmean(means)
        metrics[f"{split}.runtime_ms_best"] = min(means)
        for key, value in scores[split]["mean"].items():
            metrics[f"{split}.{key}"] = value
        raw[split] = {"images": values["images"], **{k: scores[split][k] for k in ("psnr_rgb", "psnr_y", "ssim_rgb",
                                                                                  "ssim_y")},
                      "runtime_ms": values["runtime_ms"]}
    card = job.get("card") or content.get("card") or {}
    flags = list(content.get("flags", [])) + [f"{name}: {n}" for n in notes]
    if job.get("card") and content.get("card") and _card_view(content["card"]) != _card_view(job["card"]):
        flags.append(f"{name}: the card at measurement differs from the card found at discovery; "
                     "the discovery card is recorded")
    ckpt = checkpoint_file(job)
    expected_trained = ckpt is None or ckpt.is_file()
    load = content.get("load") or {}
    timing_check = crosscheck.timing(passes, content["raw"])
    params_check = crosscheck.params(card, job.get("zoo"), metrics.get("params"), load.get("buffers"))
    problems = list(timing_check["problems"]) + quality.problems()
    if params_check.get("ok") is False:
        problems.append(params_check["problem"])
    if load.get("trained") != expected_trained:
        problems.append(f"trained: the worker says {load.get('trained')}, the checkpoint "
                        f"{'is' if expected_trained else 'is not'} there")
    worker_prov = {k: v for k, v in (content.get("provenance") or {}).items()
                   if k in ("device", "device_name", "threads", "worker_pid") and isinstance(v, (str, int))}
    ckpt_sha = None
    if ckpt is not None and ckpt.is_file():
        from harness.submissions.checkpoint import sha256_file

        ckpt_sha = sha256_file(ckpt)
    record = {
        "schema": SCHEMA, "entry": name, "status": "ok" if expected_trained else "untrained", "error": None,
        "trained": expected_trained, "key": job.get("key"), "source_hash": job.get("source_hash"),
        "card": card, "metrics": metrics, "raw": raw,
        "complexity": content.get("complexity"),
        "runtime": dict(content.get("runtime") or {}, trial_means_ms=trial_means,
                        stats={s: runtime_stats(v["runtime_ms"]) for s, v in content["raw"].items()}),
        "memory": content.get("memory"), "deploy": content.get("deploy"), "load": load, "flags": flags,
        "settings": job["settings"], "data": job.get("data", {}),
        "quality": quality.placement(),
        "crosscheck": {"ok": not problems, "timing": timing_check, "params": params_check, "problems": problems},
        "provenance": provenance(**worker_prov, checkpoint_sha256=ckpt_sha,
                                 wall_s=round(time.time() - started, 3), **job.get("provenance", {})),
    }
    for key in ("submission", "inference"):
        if key in content:
            record[key] = content[key]
    if problems:
        record.update(status="run_error", error=f"{name}: failed the parent's cross-check: {problems[0]}"
                      + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return record


def _card_view(card: dict) -> dict:
    return {k: v for k, v in card.items() if k not in ("file", "source")}


def _failed(job: dict, status: str, error: str, started: float, log_path, isolation, **extra) -> dict:
    try:
        tail = Path(log_path).read_text(errors="replace")[-4000:] if log_path else ""
    except OSError:
        tail = ""
    return error_record(
        job["entry"], status, error, key=job.get("key"), source_hash=job.get("source_hash"), detail=tail,
        settings=job.get("settings"), data=job.get("data", {}),
        provenance=provenance(wall_s=round(time.time() - started, 3)), isolation=isolation, **extra,
    )
