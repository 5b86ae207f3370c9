"""Ray backend: entries spread over the GPUs (or CPUs) of one machine or a cluster.

Each entry is a Ray task that owns one whole GPU (``num_gpus=1``) or, on a cluster
without GPUs, ``num_cpus_per_entry`` CPUs. The task calls
:func:`harness.running.execute.execute_job`, exactly like the local backend: the entry is measured
in its own ``python -m harness.running.worker`` subprocess with a time limit and the same record
comes back. The driver gathers records with ``ray.wait`` as they finish and hands each to
``on_record`` (the runner writes it atomically into the run folder).

Data: a job's splits are ``.npz`` cache files in the driver's run folder. Their bytes are
put once into the object store; a task whose node cannot see the path (another machine,
no shared file system) fetches them and writes them into a temporary folder there.
Model files and the checkpoint zoo are *not* shipped: they must be at the same paths on
every node (a shared file system or the same checkout); a task that cannot see them
returns an error record saying so.

Fairness: a small actor per node (:class:`NodeLedger` behind an async actor) records
which entries were active on the same machine at the same time; each record gets
``record["fairness"]``. With ``exclusive_timing`` an entry runs in two phases: a
*quality* phase (complexity, PSNR/SSIM; one timed pass whose numbers are discarded) runs
beside other entries, then a *timing* phase (all trials, no complexity) runs alone on its
machine: the ledger works as a reader-writer lock (quality tasks share a node, a timing
task waits until its node is empty and holds it). The record takes quality and complexity
from the first phase and runtime and memory from the second; both phases' PSNR must agree.

Failures: a task whose Ray worker dies (killed, out of memory, node lost) is resubmitted
up to ``retries`` times, then its entry gets a ``crashed`` (or ``oom``) record; the other
entries go on. Ray is optional: it is imported only here.
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path

from harness.running.locks import pid_alive
from harness.running.records import error_record, provenance
from harness.running.errors import RunError
from harness.running.progress import progress_bar

INSTALL_HINT = 'the ray backend needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")'
# Record fields the timing phase owns in exclusive mode (everything else comes from the quality phase).
TIMING_SECTIONS = ("runtime", "memory")


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RunError(f"{INSTALL_HINT} ({exc})") from None
    return ray


# ---------------------------------------------------------------- node ledger (fairness)

class NodeLedger:
    """Who is active on one machine, and a reader-writer lock for exclusive timing.

    ``shared`` tasks may run together; an ``exclusive`` task runs only when nothing else
    is active and, while it waits, no new shared task starts (writer preference), so a
    timing phase cannot starve. Plain Python: the async actor below wraps it.
    """

    def __init__(self):
        self.active: dict[int, dict] = {}   # token -> {entry, exclusive, pid, others, peak}
        self.waiting_exclusive = 0
        self._next = 0

    def can_enter(self, exclusive: bool) -> bool:
        if exclusive:
            return not self.active
        return self.waiting_exclusive == 0 and not any(t["exclusive"] for t in self.active.values())

    def enter(self, entry: str, exclusive: bool, pid: int | None = None) -> int:
        self._next += 1
        token = self._next
        others = {t["entry"] for t in self.active.values()}
        for t in self.active.values():
            t["others"].add(entry)
            t["peak"] = max(t["peak"], len(self.active) + 1)
        self.active[token] = {"entry": entry, "exclusive": exclusive, "pid": pid,
                              "others": others, "peak": len(self.active) + 1}
        return token

    def leave(self, token: int) -> dict:
        """The fairness summary of the task: entries that overlapped it and the peak count."""
        t = self.active.pop(token, None)
        if t is None:
            return {"concurrent_entries": None, "others_on_node": None}
        return {"concurrent_entries": t["peak"], "others_on_node": sorted(t["others"] - {t["entry"]})}

    def purge_dead(self, alive=None) -> list[str]:
        """Forget tokens whose task process is gone (its Ray worker was killed)."""
        alive = alive or pid_alive
        dead = [k for k, t in self.active.items() if t["pid"] is not None and not alive(t["pid"])]
        return [self.active.pop(k)["entry"] for k in dead]


class _LedgerActor:
    """Async actor around :class:`NodeLedger`, pinned to its node (so it can check pids)."""

    def __init__(self):
        import asyncio

        self.ledger = NodeLedger()
        self.changed = asyncio.Condition()

    async def enter(self, entry: str, exclusive: bool, pid: int) -> int:
        import asyncio

        async with self.changed:
            if exclusive:
                self.ledger.waiting_exclusive += 1
            try:
                while True:
                    self.ledger.purge_dead()
                    if self.ledger.can_enter(exclusive):
                        break
                    try:  # wake up now and then: a killed task never calls leave()
                        await asyncio.wait_for(self.changed.wait(), timeout=1.0)
                    except asyncio.TimeoutError:
                        pass
            finally:
                if exclusive:
                    self.ledger.waiting_exclusive -= 1
            token = self.ledger.enter(entry, exclusive, pid)
            self.changed.notify_all()
            return token

    async def leave(self, token: int) -> dict:
        async with self.changed:
            summary = self.ledger.leave(token)
            self.changed.notify_all()
            return summary


# ---------------------------------------------------------------- data shipping

def file_digest(path: str | Path) -> tuple[int, str]:
    data = Path(path).read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def materialise_splits(job: dict, blobs: dict, folder: str | Path, *, always: bool = False, fetch=None) -> dict:
    """The job with its split caches readable on this node.

    ``blobs`` maps a driver-side cache path to ``{"size", "sha256", "ref"}``; a path that
    does not exist here (or has another size, or ``always``) is fetched with ``fetch(ref)``
    and written into ``folder``. Returns a new job; ``job["shipped"]`` lists the splits
    that travelled through the object store.
    """
    splits, shipped = {}, []
    for split, path in job["splits"].items():
        blob = blobs.get(path)
        here = Path(path)
        if blob is None or (not always and here.is_file() and here.stat().st_size == blob["size"]):
            splits[split] = path
            continue
        data = fetch(blob["ref"])
        if hashlib.sha256(data).hexdigest() != blob["sha256"]:
            raise RuntimeError(f"{job['entry']}: data cache {here.name} arrived corrupted (sha256 mismatch)")
        local = Path(folder) / here.name
        local.write_bytes(data)
        splits[split] = str(local)
        shipped.append(split)
    return dict(job, splits=splits, shipped=shipped)


# ---------------------------------------------------------------- exclusive timing: two phases

def phase_jobs(job: dict) -> tuple[dict, dict]:
    """(quality job, timing job) for exclusive timing.

    The quality phase keeps the complexity counters and needs one pass for PSNR/SSIM
    (quality is taken from the first trial anyway); the timing phase does every trial
    and skips the counters.
    """
    settings = dict(job["settings"])
    quality = dict(job, settings=dict(settings, trials=1), phase="quality")
    timing = dict(job, settings=dict(settings, complexity=False), phase="timing")
    return quality, timing


def is_timing_key(metric: str) -> bool:
    return "runtime_ms" in metric or metric.endswith("memory_mib")


def merge_phases(quality: dict, timing: dict, settings: dict) -> dict:
    """One record: quality/complexity from the shared phase, runtime/memory from the exclusive one.

    A failed quality phase is the record (nothing was timed). A failed timing phase is the
    record, with the quality phase's metrics kept under ``quality_phase``. The PSNR/SSIM of
    both phases must agree exactly, else the entry is flagged (non-deterministic output).
    """
    if quality["status"] not in ("ok", "untrained"):
        return quality
    if timing["status"] not in ("ok", "untrained"):
        return dict(timing, settings=settings, quality_phase={"metrics": quality.get("metrics", {})})
    record = dict(quality)
    timed = {k: v for k, v in timing["metrics"].items() if is_timing_key(k)}
    metrics = {k: timed.get(k, v) for k, v in quality["metrics"].items() if not is_timing_key(k) or k in timed}
    record["metrics"] = dict(metrics, **timed)  # the quality phase's key order, the timing phase's values
    record["raw"] = {split: dict(values, runtime_ms=timing["raw"][split]["runtime_ms"])
                     for split, values in quality.get("raw", {}).items()}
    for section in TIMING_SECTIONS:
        record[section] = timing.get(section)
    record["settings"] = settings
    record["provenance"] = timing.get("provenance")
    if quality.get("crosscheck") and timing.get("crosscheck"):  # timing checked in the phase that timed
        record["crosscheck"] = dict(quality["crosscheck"], timing=timing["crosscheck"]["timing"])
    flags = list(quality.get("flags", []))
    flags += [f for f in timing.get("flags", []) if f not in flags]
    differ = sorted(k for k, v in quality["metrics"].items()
                    if not is_timing_key(k) and k in timing["metrics"] and not _same(v, timing["metrics"][k]))
    if differ:
        flags.append(f"{record['entry']}: {', '.join(differ)} differ between the quality and the timing phase "
                     f"(non-deterministic output?); quality is from the quality phase")
    record["flags"] = flags
    return record


def _same(a, b) -> bool:
    return a == b or (a != a and b != b)  # NaN agrees with NaN


def unseen_checkpoint(job: dict, record: dict, host: str | None) -> dict | None:
    """A ``load_error`` record when the worker found no checkpoint that the driver has.

    Without this, a node that cannot see the zoo would quietly measure random weights
    and write an ``untrained`` record under the key of the trained checkpoint.
    """
    name = (record.get("card") or {}).get("checkpoint")
    if not name or record.get("status") != "untrained":
        return None
    path = Path(job["zoo"]) / name  # the worker refused anything outside the zoo
    if not path.is_file():
        return None
    return error_record(
        job["entry"], "load_error",
        f"{job['entry']}: checkpoint {path} exists on the driver but not on node {host}; put the zoo on a shared "
        f"file system or at the same path on every node",
        key=job.get("key"), settings=job.get("settings"), data=job.get("data", {}), provenance=record.get("provenance"),
    )


# ---------------------------------------------------------------- the task

def _entry_task(job: dict, blobs: dict, ledgers: dict, exclusive: bool, ship_always: bool) -> dict:
    """Runs on a Ray worker: materialise data, take the node ledger, measure, report."""
    import ray

    from harness.running.execute import execute_job

    context = ray.get_runtime_context()
    node = context.get_node_id()
    ledger = ledgers.get(node)
    missing = [p for p in (job["file"],) if not Path(p).exists()]
    fairness = {"node_id": node, "host": socket.gethostname()}
    if missing:
        record = error_record(job["entry"], "import_error",
                              f"{job['entry']}: model file {missing[0]} is not visible on node {socket.gethostname()}; "
                              f"put models/ and the zoo on a shared file system or at the same path on every node",
                              key=job.get("key"), settings=job.get("settings"), data=job.get("data", {}),
                              provenance=provenance())
        return dict(record, fairness=fairness)
    with tempfile.TemporaryDirectory(prefix="esr-ray-") as tmp:
        job = materialise_splits(job, blobs, tmp, always=ship_always, fetch=ray.get)
        token, summary = None, {"concurrent_entries": None, "others_on_node": None}
        if ledger is not None:
            try:
                token = ray.get(ledger.enter.remote(job["entry"], exclusive, os.getpid()))
            except ray.exceptions.RayError as exc:  # measure anyway, and say the count is unknown
                summary["ledger"] = f"unavailable: {type(exc).__name__}"
        else:
            summary["ledger"] = "no ledger on this node (joined after the run started)"
        try:
            record = execute_job(job)
        finally:
            if token is not None:
                summary = ray.get(ledger.leave.remote(token))
    record.setdefault("provenance", {})["data_source"] = "object store" if job["shipped"] else "shared path"
    fairness.update(summary)
    return dict(record, fairness=fairness)


# ---------------------------------------------------------------- the backend

class RayBackend:
    """Entries as Ray tasks; see the module docstring.

    address: Ray cluster address (``auto``, ``ray://host:10001``, ``host:6379``); None
        starts a local instance on this machine unless Ray is already initialised.
    exclusive_timing: time with one entry per machine (two phases, see module docstring).
    retries: resubmissions of a task whose Ray worker died, before a ``crashed`` record.
    num_cpus_per_entry: CPUs an entry declares (its torch thread count on a CPU cluster).
    ship_data: ``auto`` (ship a cache only where its path is missing), ``always``, ``never``.
    """

    def __init__(self, address: str | None = None, exclusive_timing: bool = False, retries: int = 2,
                 num_cpus_per_entry: int = 1, ship_data: str = "auto", init_kwargs: dict | None = None):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if ship_data not in ("auto", "always", "never"):
            raise ValueError(f"ship_data must be auto, always or never, got {ship_data!r}")
        self.address = address
        self.exclusive_timing = bool(exclusive_timing)
        self.retries = int(retries)
        self.num_cpus_per_entry = int(num_cpus_per_entry)
        self.ship_data = ship_data
        self.init_kwargs = dict(init_kwargs or {})

    # -- cluster
    def _connect(self, ray) -> bool:
        """Initialise Ray unless it already is; True when this call started it."""
        if ray.is_initialized():
            return False
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING", **self.init_kwargs)
        except ConnectionError as exc:
            raise RunError(f"cannot reach the Ray cluster at {self.address!r}: {exc}; "
                           f"start it with 'ray start --head' or drop --address to run locally") from exc
        return True

    def resources(self, ray, settings: dict) -> dict:
        """Ray task resources of one entry: a whole GPU when measuring on CUDA, else CPUs."""
        gpus = ray.cluster_resources().get("GPU", 0)
        device = settings.get("device", "auto")
        if device.startswith("cuda") and gpus < 1:
            raise RunError(f"--device {device} but the Ray cluster has no GPU; use --device cpu or add GPU nodes")
        if device != "cpu" and gpus >= 1:
            return {"num_gpus": 1, "num_cpus": self.num_cpus_per_entry}
        return {"num_cpus": self.num_cpus_per_entry}

    def _ledgers(self, ray) -> dict:
        """One ledger actor per alive node, pinned there, owned by this driver."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor = ray.remote(_LedgerActor)
        ledgers = {}
        for node in ray.nodes():
            if node.get("Alive"):
                ledgers[node["NodeID"]] = actor.options(
                    num_cpus=0, max_concurrency=1000,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                ).remote()
        return ledgers

    def _blobs(self, ray, jobs: list[dict]) -> dict:
        if self.ship_data == "never":
            return {}
        blobs = {}
        for job in jobs:
            for path in job["splits"].values():
                if path not in blobs:
                    data = Path(path).read_bytes()
                    blobs[path] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "ref": ray.put(data)}
        return blobs

    # -- run
    def execute(self, jobs: list[dict], *, on_record, console=None, progress: bool = True) -> None:
        if not jobs:
            return
        ray = import_ray()
        started_here = self._connect(ray)
        try:
            self._execute(ray, jobs, on_record, console, progress)
        finally:
            if started_here:
                ray.shutdown()

    def _execute(self, ray, jobs, on_record, console, progress) -> None:
        options = self.resources(ray, jobs[0]["settings"])
        task = ray.remote(_entry_task).options(max_retries=0, **options)  # retries are ours, counted
        ledgers = self._ledgers(ray)
        blobs = self._blobs(ray, jobs)
        ship_always = self.ship_data == "always"
        resources = {"GPU": 1} if "num_gpus" in options else {}
        resources["CPU"] = options["num_cpus"]
        pending: dict = {}   # ObjectRef -> (job, phase, attempt)
        quality: dict = {}   # entry -> quality-phase record (exclusive mode)
        attempts: dict = {}  # entry -> total task attempts
        original = {job["entry"]: job for job in jobs}

        def submit(job: dict, phase: str, attempt: int) -> None:
            attempts[job["entry"]] = attempts.get(job["entry"], 0) + 1
            ref = task.remote(job, blobs, ledgers, phase == "timing", ship_always)
            pending[ref] = (job, phase, attempt)

        for job in jobs:
            if self.exclusive_timing:
                submit(phase_jobs(job)[0], "quality", 0)
            else:
                submit(job, "whole", 0)
        try:
            with progress_bar(len(jobs), console, enabled=progress) as advance:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    job, phase, attempt = pending.pop(ready[0])
                    name = job["entry"]
                    try:
                        record = ray.get(ready[0])
                    except ray.exceptions.RayError as exc:
                        if attempt < self.retries:
                            advance(f"{name}: Ray worker died, retry {attempt + 1}/{self.retries}", done=False)
                            submit(job, phase, attempt + 1)
                            continue
                        record = self.crash_record(original[name], exc, attempt + 1)
                    if phase == "quality" and record["status"] in ("ok", "untrained"):
                        quality[name] = record
                        advance(f"{name}: quality done, waiting for its machine to time it", done=False)
                        submit(phase_jobs(original[name])[1], "timing", 0)
                        continue
                    final = self.finish(original[name], record, quality.pop(name, None), resources, attempts[name])
                    on_record(final)
                    advance(f"{name}: {final['status']}", done=True)
        except BaseException:
            for ref in pending:  # Ctrl-C or a failing on_record: stop what is still running
                ray.cancel(ref, force=True)
            raise

    def finish(self, job: dict, record: dict, quality: dict | None, resources: dict, attempts: int) -> dict:
        """The record to write: phases merged, fairness filled in, an unseen checkpoint caught."""
        timed_on = record.pop("fairness", {}) or {}
        record = unseen_checkpoint(job, record, timed_on.get("host")) or record
        if quality is not None:
            quality_on = quality.pop("fairness", {}) or {}
            record = merge_phases(quality, record, job["settings"])
        else:
            quality_on = None
        fairness = {"backend": "ray", "exclusive_timing": self.exclusive_timing, "resources": resources,
                    "attempts": attempts}
        fairness.update(timed_on)
        if quality_on is not None:
            fairness["quality_phase"] = quality_on
        record["fairness"] = fairness
        return record

    @staticmethod
    def crash_record(job: dict, exc: Exception, attempts: int) -> dict:
        import ray

        kind = type(exc).__name__
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        oom = isinstance(exc, ray.exceptions.OutOfMemoryError)
        return error_record(
            job["entry"], "oom" if oom else "crashed",
            f"{job['entry']}: its Ray worker died {attempts} time(s) ({kind}: {first}); "
            f"gave up after {attempts - 1} retries",
            key=job.get("key"), settings=job.get("settings"), data=job.get("data", {}),
            detail=str(exc)[-4000:], provenance=provenance(),
        )
