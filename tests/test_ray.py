"""Ray backend and run-folder lock.

The end-to-end tests start one local Ray instance with 2 CPUs for the module, run tiny
entries through the Ray backend and through the local backend, and compare the records
field for field except timings, memory and provenance.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny import entry_line, write_entries

from harness.running.locks import LOCK_NAME, LockHeld, RunLock
from harness.running.ray_backend import NodeLedger, materialise_splits, merge_phases, phase_jobs
from harness.running.settings import RunSettings

# ---------------------------------------------------------------- locks (no Ray needed)


def test_second_driver_is_refused_until_the_first_releases(tmp_path):
    first = RunLock(tmp_path).acquire()
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(LockHeld) as info:
        RunLock(tmp_path).acquire()
    assert f"pid {os.getpid()}" in str(info.value) and str(tmp_path) in str(info.value)
    first.release()
    with RunLock(tmp_path) as again:
        assert again.held
    assert not again.held


def test_lock_of_a_killed_driver_is_taken_over(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from harness.running.locks import RunLock
        RunLock({str(tmp_path)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with RunLock(tmp_path) as lock:  # the kernel dropped the dead driver's lock
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_exclusive_file_fallback_breaks_only_stale_locks(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / (LOCK_NAME + ".excl")
    import socket

    stale.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "start": "1"}))
    lock = RunLock(tmp_path)._acquire_excl()
    assert json.loads(stale.read_text())["pid"] == os.getpid()
    with pytest.raises(LockHeld, match="delete"):  # held by a live process (this one)
        RunLock(tmp_path)._acquire_excl()
    lock.release()
    assert not stale.exists()
    stale.write_text(json.dumps({"pid": 1, "host": "another-host"}))
    with pytest.raises(LockHeld, match="another-host"):  # another host cannot be checked
        RunLock(tmp_path)._acquire_excl()


def test_run_refuses_a_run_folder_held_by_another_driver(tmp_path):
    from harness.running.runner import RunConfig, RunError, run

    with RunLock(tmp_path / "out"):
        with pytest.raises(RunError, match=f"in use by pid {os.getpid()}"):
            run(RunConfig(out=tmp_path / "out", models=tmp_path / "models"), progress=False)
    assert not (tmp_path / "out" / "records").exists()


# ---------------------------------------------------------------- pure pieces of the backend


def test_ledger_counts_overlaps_and_locks_for_timing():
    ledger = NodeLedger()
    a = ledger.enter("a", exclusive=False)
    b = ledger.enter("b", exclusive=False)
    assert not ledger.can_enter(exclusive=True)
    ledger.waiting_exclusive = 1  # a timing task is waiting: no new shared task starts
    assert not ledger.can_enter(exclusive=False)
    assert ledger.leave(a) == {"concurrent_entries": 2, "others_on_node": ["b"]}
    c = ledger.enter("c", exclusive=False)  # (forced in; the actor would have waited)
    assert ledger.leave(b) == {"concurrent_entries": 2, "others_on_node": ["a", "c"]}
    assert ledger.leave(c) == {"concurrent_entries": 2, "others_on_node": ["b"]}
    ledger.waiting_exclusive = 0
    assert ledger.can_enter(exclusive=True)
    t = ledger.enter("t", exclusive=True)
    assert not ledger.can_enter(exclusive=False) and not ledger.can_enter(exclusive=True)
    assert ledger.leave(t) == {"concurrent_entries": 1, "others_on_node": []}


def test_ledger_forgets_tasks_whose_process_died():
    ledger = NodeLedger()
    ledger.enter("killed", exclusive=False, pid=11)
    ledger.enter("alive", exclusive=False, pid=12)
    assert ledger.purge_dead(alive=lambda pid: pid == 12) == ["killed"]
    assert [t["entry"] for t in ledger.active.values()] == ["alive"]


def test_materialise_ships_only_missing_caches(tmp_path):
    present = tmp_path / "valid.npz"
    present.write_bytes(b"12345")
    import hashlib

    blobs = {
        str(present): {"size": 5, "sha256": hashlib.sha256(b"12345").hexdigest(), "ref": "r1"},
        "/nowhere/test.npz": {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest(), "ref": "r2"},
    }
    store = {"r1": b"12345", "r2": b"abc"}
    job = {"entry": "e", "splits": {"valid": str(present), "test": "/nowhere/test.npz"}}
    (tmp_path / "w").mkdir()
    out = materialise_splits(job, blobs, tmp_path / "w", fetch=store.__getitem__)
    assert out["splits"]["valid"] == str(present)
    assert out["splits"]["test"] == str(tmp_path / "w" / "test.npz")
    assert (tmp_path / "w" / "test.npz").read_bytes() == b"abc" and out["shipped"] == ["test"]
    always = materialise_splits(job, blobs, tmp_path / "w", always=True, fetch=store.__getitem__)
    assert always["shipped"] == ["valid", "test"] and job["splits"]["test"] == "/nowhere/test.npz"
    store["r2"] = b"abd"
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        materialise_splits(job, blobs, tmp_path / "w", fetch=store.__getitem__)


def test_phases_and_merge():
    job = {"entry": "e", "settings": {"trials": 3, "complexity": True}, "key": "k"}
    quality_job, timing_job = phase_jobs(job)
    assert quality_job["settings"] == {"trials": 1, "complexity": True}
    assert timing_job["settings"] == {"trials": 3, "complexity": False}
    quality = {"entry": "e", "status": "ok", "flags": ["f1"], "complexity": {"macs": 7},
               "metrics": {"params": 5, "macs": 7, "valid.psnr_y": 30.0, "valid.runtime_ms": 9.0,
                           "valid.memory_mib": 1.0},
               "raw": {"valid": {"psnr_y": [30.0], "runtime_ms": [[9.0]]}}, "runtime": {"t": 1},
               "memory": {"m": 1}, "provenance": {"p": 1}, "settings": quality_job["settings"]}
    timing = {"entry": "e", "status": "ok", "flags": ["f1", "f2"], "complexity": None,
              "metrics": {"params": 5, "valid.psnr_y": 30.0, "valid.runtime_ms": 2.0, "valid.runtime_ms_best": 1.5,
                          "valid.memory_mib": 4.0},
              "raw": {"valid": {"psnr_y": [30.0], "runtime_ms": [[2.0], [2.5], [1.5]]}},
              "runtime": {"t": 3}, "memory": {"m": 3}, "provenance": {"p": 3}}
    merged = merge_phases(quality, timing, job["settings"])
    assert merged["metrics"] == {"params": 5, "macs": 7, "valid.psnr_y": 30.0, "valid.runtime_ms": 2.0,
                                 "valid.runtime_ms_best": 1.5, "valid.memory_mib": 4.0}
    assert merged["raw"] == {"valid": {"psnr_y": [30.0], "runtime_ms": [[2.0], [2.5], [1.5]]}}
    assert (merged["runtime"], merged["memory"], merged["provenance"]) == ({"t": 3}, {"m": 3}, {"p": 3})
    assert merged["complexity"] == {"macs": 7} and merged["settings"] == job["settings"]
    assert merged["flags"] == ["f1", "f2"]
    timing["metrics"]["valid.psnr_y"] = 29.0
    assert "valid.psnr_y differ" in merge_phases(quality, timing, job["settings"])["flags"][-1]
    failed = {"entry": "e", "status": "timeout", "metrics": {}}
    assert merge_phases(quality, failed, job["settings"])["status"] == "timeout"
    assert merge_phases(dict(quality, status="run_error"), timing, job["settings"])["status"] == "run_error"


def test_checkpoint_the_worker_did_not_see_is_a_load_error(tmp_path):
    from harness.running.ray_backend import unseen_checkpoint

    (tmp_path / "w.pth").write_bytes(b"x")
    job = {"entry": "e", "zoo": str(tmp_path), "key": "k", "settings": {}, "data": {}}
    record = {"entry": "e", "status": "untrained", "card": {"checkpoint": "w.pth"}}
    error = unseen_checkpoint(job, record, "node7")
    assert error["status"] == "load_error" and error["key"] == "k"
    assert f"checkpoint {tmp_path / 'w.pth'} exists on the driver but not on node node7" in error["error"]
    assert unseen_checkpoint(job, dict(record, status="ok"), "node7") is None
    assert unseen_checkpoint(job, dict(record, card={"checkpoint": "absent.pth"}), "node7") is None


def test_missing_ray_names_the_extra(monkeypatch):
    from harness.running.ray_backend import RayBackend
    from harness.running.runner import RunError

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RunError, match=r'pip install -e "\.\[ray\]"'):
        RayBackend().execute([{"entry": "x"}], on_record=print)


# ---------------------------------------------------------------- end to end on a local Ray instance

# Timings, memory, provenance and fairness differ between runs and backends by design.
VOLATILE = {"runtime", "memory", "provenance", "fairness", "detail", "quality", "crosscheck", "isolation"}


def comparable(record: dict) -> dict:
    record = {k: v for k, v in copy.deepcopy(record).items() if k not in VOLATILE}
    record["metrics"] = {k: v for k, v in record.get("metrics", {}).items()
                         if "runtime" not in k and "memory" not in k}
    for values in record.get("raw", {}).values():
        values.pop("runtime_ms", None)
    return record


KILL_RAY_WORKER = """
class KillsParent(Tiny):
    def forward(self, x):
        os.kill(os.getppid(), 9)  # unconfined: the Ray worker; confined: the sandbox's init, which survives
        time.sleep(3)
"""

# Every entry has a checkpoint: an entry without one has random weights, different in every run.
LOCAL_ENTRIES = ["alpha", "beta", "exits"]


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    pytest.importorskip("harness.data.splits", reason="harness.data.splits not written yet")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    models, zoo = root / "models", root / "zoo"
    write_entries(models, "entries", entry_line("alpha", checkpoint="alpha.pth"), entry_line("beta", checkpoint="beta.pth"),
                  entry_line("exits", mode="exit"))
    (models / "killer.py").write_text(
        (models / "entries.py").read_text().split("ENTRIES")[0] + textwrap.dedent(KILL_RAY_WORKER)
        + "\nENTRIES = [Entry(name='killer', model=KillsParent, scale=4, input_range=1.0)]\n")
    zoo.mkdir()
    save_tiny(zoo / "alpha.pth", seed=2)
    save_tiny(zoo / "beta.pth", seed=0)
    return root, models, zoo


def save_tiny(path, seed: int) -> None:
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 48, 3, padding=1)
    torch.save({"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach() * 0.1}, path)


def config(out, models, zoo, entries, backend="local", trials=2, **extra):
    from harness.running.runner import RunConfig

    return RunConfig(out=out, models=models, zoo=zoo, entries=entries, backend=backend, extra=extra,
                     settings=RunSettings(trials=trials, input_shape=(1, 3, 32, 32), threads=1, timeout_s=120))


@pytest.fixture(scope="module")
def local(folders) -> dict:
    """The local backend's records for LOCAL_ENTRIES (the reference)."""
    from harness.running.runner import run

    root, models, zoo = folders
    return {r["entry"]: r for r in run(config(root / "local", models, zoo, LOCAL_ENTRIES), progress=False).records}


@pytest.mark.ray
def test_ray_matches_local_survives_a_killed_worker_and_resumes(ray_instance, folders, local):
    from harness.running.runner import load_records, run

    root, models, zoo = folders
    ray_out = root / "ray"
    first = run(config(ray_out, models, zoo, LOCAL_ENTRIES + ["killer"], backend="ray", retries=1), progress=False)
    by_name = {r["entry"]: r for r in first.records}
    assert sorted(first.measured) == sorted(LOCAL_ENTRIES + ["killer"])
    for ref in local.values():
        assert comparable(by_name[ref["entry"]]) == comparable(ref), ref["entry"]
    assert [by_name[n]["status"] for n in LOCAL_ENTRIES] == ["ok", "ok", "crashed"]
    killer = by_name["killer"]
    assert killer["status"] not in ("ok", "untrained") and killer["key"]
    if killer.get("isolation", {}).get("pid_namespace"):  # confined: the Ray worker was out of its reach
        assert killer["fairness"]["attempts"] == 1 and "Ray worker died" not in killer["error"]
    else:  # unconfined: the Ray worker died and was retried
        assert "Ray worker died 2 time(s)" in killer["error"] and killer["fairness"]["attempts"] == 2
    fair = by_name["alpha"]["fairness"]
    assert fair["backend"] == "ray" and fair["exclusive_timing"] is False and fair["resources"] == {"CPU": 1}
    assert fair["attempts"] == 1 and set(fair["others_on_node"]) <= set(LOCAL_ENTRIES + ["killer"]) - {"alpha"}
    # 2 CPUs: at most one other live task; a killed worker may still be counted until its ledger notices
    assert 1 <= fair["concurrent_entries"] <= 1 + len(fair["others_on_node"])

    before = {r["entry"]: r for r in load_records(ray_out)}
    second = run(config(ray_out, models, zoo, LOCAL_ENTRIES + ["killer"], backend="ray", retries=1), progress=False)
    assert second.measured == [] and sorted(second.reused) == sorted(LOCAL_ENTRIES + ["killer"])
    assert {r["entry"]: r for r in load_records(ray_out)} == before

    save_tiny(zoo / "beta.pth", seed=1)  # a changed checkpoint is re-measured, nothing else
    third = run(config(ray_out, models, zoo, LOCAL_ENTRIES + ["killer"], backend="ray", retries=1), progress=False)
    assert third.measured == ["beta"]
    beta = {r["entry"]: r for r in third.records}["beta"]
    assert beta["key"] != before["beta"]["key"]
    assert beta["metrics"]["valid.psnr_rgb"] != before["beta"]["metrics"]["valid.psnr_rgb"]
    save_tiny(zoo / "beta.pth", seed=0)


@pytest.mark.ray
def test_exclusive_timing_with_shipped_data_matches_local(ray_instance, folders, local):
    from harness.running.runner import run

    root, models, zoo = folders
    save_tiny(zoo / "beta.pth", seed=0)
    outcome = run(config(root / "exclusive", models, zoo, ["alpha", "beta"], backend="ray",
                         exclusive_timing=True, ship_data="always"), progress=False)
    for record in outcome.records:
        name = record["entry"]
        # exclusive timing is another measurement protocol, so it is part of the record key
        assert record["key"] != local[name]["key"]
        assert {**comparable(record), "key": None} == {**comparable(local[name]), "key": None}, name
        fair = record["fairness"]
        assert fair["exclusive_timing"] is True and fair["attempts"] == 2
        assert fair["concurrent_entries"] == 1 and fair["others_on_node"] == []  # timed alone
        assert set(fair["quality_phase"]) >= {"node_id", "concurrent_entries", "others_on_node"}
        # quality phase: one pass; timing phase: both trials, recorded with the run's settings
        assert record["settings"]["trials"] == 2 and len(record["raw"]["valid"]["runtime_ms"]) == 2
        assert record["provenance"]["data_source"] == "object store"
        assert record["complexity"] == local[name]["complexity"]
