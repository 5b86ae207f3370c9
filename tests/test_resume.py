"""Resume that never keeps a stale result, statuses that tell the truth, kill -9 at every stage."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import HEADER, entry_line, write_entries, write_model

from harness.cli import main as esr
from harness.running.hooks import KILL_ENV
from harness.running.records import source_hash

FAST = ["--data", "builtin", "--input", "3x32x32", "--trials", "1", "--device", "cpu", "--threads", "1", "--quiet"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def records(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def run_in_process(models, zoo, out, *extra, capsys=None):
    code = esr(["run", "--models", str(models), "--zoo", str(zoo), "--out", str(out), *FAST, *extra])
    text = " ".join(capsys.readouterr().out.split()) if capsys else ""
    return code, text


# ---------------------------------------------------------------- statuses and redo rules

STATUS_MODELS = """
import signal
import numpy as np

class CpuAlloc(Tiny):
    def forward(self, x):
        return torch.empty(2 ** 45, dtype=torch.uint8)

class NumpyAlloc(Tiny):
    def forward(self, x):
        return np.empty(2 ** 45, dtype=np.uint8)

class KilledFromOutside(Tiny):
    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)

ENTRIES = [Entry(name="cpu_oom", model=CpuAlloc, scale=4), Entry(name="np_oom", model=NumpyAlloc, scale=4),
           Entry(name="killed", model=KilledFromOutside, scale=4)]
"""


@pytest.fixture(scope="module")
def status_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    models, zoo = root / "models", root / "zoo"
    zoo.mkdir()
    (models / "good.py").parent.mkdir(parents=True)
    (models / "_blocks.py").write_text("WIDTH = 3\n")
    write_model(models, "good", "import _blocks\nENTRIES = [%s]\n" % entry_line("good", checkpoint="good.pth"))
    write_model(models, "statuses", STATUS_MODELS)
    ns = {}
    exec(HEADER, ns)
    torch.manual_seed(0)
    torch.save(ns["Tiny"]().state_dict(), zoo / "good.pth")
    out = root / "run"
    code, _ = run_in_process(models, zoo, out, "--timeout", "300")
    assert code == 0
    return {"models": models, "zoo": zoo, "out": out, "records": records(out)}


def test_allocation_failures_are_oom_with_the_size_asked_for(status_run):
    recs = status_run["records"]
    for name in ("cpu_oom", "np_oom"):
        rec = recs[name]
        assert rec["status"] == "oom", rec["error"]
        assert rec["oom"] == {"requested_bytes": 2 ** 45, "source": "allocator"}
        assert rec["error"].startswith(f"{name}: out of memory: tried to allocate 32768.00 GiB (")


def test_external_kill_is_crashed_with_the_signal(status_run):
    rec = status_run["records"]["killed"]
    assert rec["status"] == "crashed"
    assert rec["error"] == "killed: worker killed by SIGKILL"


def test_cpu_memory_figure_leaves_out_the_output_work(status_run):
    rec = status_run["records"]["good"]
    mem = rec["memory"]["valid"]
    assert mem["kind"] == "cpu_peak_rss_growth" and mem["excluded_windows"] == 6  # one per SR output sent
    assert rec["quality"]["process"] == "parent (no team code)"
    assert rec["crosscheck"]["params"] == {"applies": True, "ok": True, "reported": 1344, "checkpoint": 1344,
                                           "rule": rec["crosscheck"]["params"]["rule"]}


def test_run_json_keeps_each_records_content_hash(status_run):
    run = json.loads((status_run["out"] / "run.json").read_text())
    for name in ("good", "cpu_oom", "np_oom", "killed"):
        assert run["records"][name] == {"sha256": sha(status_run["out"] / "records" / f"{name}.json")}
    assert records(status_run["out"])["good"]["schema"] == "esr-record/2"


def test_resume_rules(status_run, capsys, tmp_path):
    import shutil

    models, zoo = tmp_path / "models", status_run["zoo"]
    shutil.copytree(status_run["models"], models)
    out = tmp_path / "run"
    shutil.copytree(status_run["out"], out)
    # the copy lives elsewhere: same sources, same key (paths are relative to the models folder)
    code, text = run_in_process(models, zoo, out, "--timeout", "300", capsys=capsys)
    assert code == 0 and "redone" not in text
    assert "kept complete records from an earlier run: cpu_oom, good, killed, np_oom" in text
    # spelling the models folder another way changes nothing
    code, text = run_in_process(Path(str(models) + "/../models"), zoo, out, "--timeout", "300", capsys=capsys)
    assert "redone" not in text and "kept complete records from an earlier run: cpu_oom, good, killed, np_oom" in text
    # editing the model file re-measures it
    stamp = sha(out / "records" / "good.json")
    with open(models / "good.py", "a") as fh:
        fh.write("\n# edited\n")
    code, text = run_in_process(models, zoo, out, "--timeout", "300", capsys=capsys)
    assert "redone good: inputs changed (model source, card, checkpoint, data, settings or harness version): " \
           "re-measured" in text
    assert sha(out / "records" / "good.json") != stamp
    # editing a helper it imports re-measures it too
    (models / "_blocks.py").write_text("WIDTH = 4\n")
    code, text = run_in_process(models, zoo, out, "--timeout", "300", "--entries", "good", capsys=capsys)
    assert "redone good: inputs changed" in text
    # a record edited by hand is detected and re-measured
    path = out / "records" / "good.json"
    rec = json.loads(path.read_text())
    true_psnr = rec["metrics"]["valid.psnr_rgb"]
    rec["metrics"]["valid.psnr_rgb"] = 40.0
    path.write_text(json.dumps(rec, indent=1) + "\n")
    code, text = run_in_process(models, zoo, out, "--timeout", "300", "--entries", "good", capsys=capsys)
    assert "redone good: record content does not match its hash in run.json (edited by hand?): re-measured" in text
    assert json.loads(path.read_text())["metrics"]["valid.psnr_rgb"] == true_psnr
    # a version 1 record is re-measured
    rec = json.loads(path.read_text())
    rec["schema"] = "esr-record/1"
    path.write_text(json.dumps(rec, indent=1) + "\n")
    code, text = run_in_process(models, zoo, out, "--timeout", "300", "--entries", "good", capsys=capsys)
    assert "redone good: record schema 'esr-record/1', now 'esr-record/2': re-measured" in text
    # failures are kept until asked: --retry-failed redoes each with the reason
    code, text = run_in_process(models, zoo, out, "--timeout", "300", "--retry-failed", capsys=capsys)
    for name, status in (("cpu_oom", "oom"), ("np_oom", "oom"), ("killed", "crashed")):
        assert f"redone {name}: {status} record redone (--retry-failed)" in text
    assert "kept complete records from an earlier run: good" in text


def test_package_folder_source_hash_covers_every_file(tmp_path):
    models = tmp_path / "models"
    pkg = models / "team05_Pkg"
    (pkg / "blocks").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .net import Net\n")
    (pkg / "net.py").write_text("class Net: pass\n")
    (pkg / "blocks" / "conv.py").write_text("K = 3\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"cache")
    first = source_hash(pkg / "__init__.py", models)
    assert source_hash(pkg / "net.py", models) == first  # any module of the folder: the whole folder
    (pkg / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"other cache")
    assert source_hash(pkg / "__init__.py", models) == first
    (pkg / "blocks" / "conv.py").write_text("K = 5\n")
    assert source_hash(pkg / "__init__.py", models) != first
    # resolved paths: another spelling of the same folder gives the same hash
    assert source_hash(pkg / "__init__.py", Path(str(models) + "/../models")) == source_hash(pkg / "__init__.py", models)


def test_raising_the_timeout_redoes_a_timed_out_entry(tmp_path, capsys, monkeypatch):
    models, zoo, out = tmp_path / "models", tmp_path / "zoo", tmp_path / "run"
    zoo.mkdir()
    write_entries(models, "hangs", entry_line("hangs", "sleep"))
    monkeypatch.setenv("ESR_TEST_SLEEP", "120")
    _, text = run_in_process(models, zoo, out, "--timeout", "3", capsys=capsys)
    assert records(out)["hangs"]["status"] == "timeout"
    _, text = run_in_process(models, zoo, out, "--timeout", "4", capsys=capsys)
    assert "redone hangs: timeout under timeout_s=3.0, now 4.0: redone" in text
    assert records(out)["hangs"]["error"].startswith("hangs: did not finish within 4 s")
    _, text = run_in_process(models, zoo, out, "--timeout", "4", capsys=capsys)
    assert "redone" not in text and "kept complete records from an earlier run: hangs" in text


# ---------------------------------------------------------------- kill -9 at every stage

def esr_subprocess(models, zoo, out, *extra, kill=None):
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill:
        env[KILL_ENV] = kill
    cmd = [sys.executable, "-m", "harness.cli", "run", "--models", str(models), "--zoo", str(zoo), "--out", str(out),
           *FAST, "--timeout", "300", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def no_leftovers(out: Path) -> None:
    assert not [p for p in out.rglob("*.tmp")], "half-written files left behind"


def test_kill_9_at_every_stage_loses_nothing_and_keeps_nothing_stale(tmp_path):
    from harness.running.runner import RunConfig, run
    from harness.running.settings import RunSettings

    models, zoo, out = tmp_path / "models", tmp_path / "zoo", tmp_path / "run"
    zoo.mkdir()
    write_entries(models, "a_first", entry_line("a_first"))
    write_entries(models, "b_second", entry_line("b_second"))
    rec_a, rec_b = out / "records" / "a_first.json", out / "records" / "b_second.json"

    # 1. during b_second's timed pass: a_first is kept and confirmed, b_second has nothing
    proc = esr_subprocess(models, zoo, out, kill="timed_pass:b_second")
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_doc = json.loads((out / "run.json").read_text())
    assert run_doc["records"]["a_first"] == {"sha256": sha(rec_a)}
    assert not rec_b.exists() and "b_second" not in run_doc["records"]
    no_leftovers(out)
    # 2. between writing b_second's record and confirming it in run.json
    proc = esr_subprocess(models, zoo, out, kill="record_written:b_second")
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_doc = json.loads((out / "run.json").read_text())
    assert run_doc["records"]["b_second"] == {"pending": sha(rec_b)}
    no_leftovers(out)
    stamps = {p: p.stat().st_mtime_ns for p in (rec_a, rec_b)}
    # 3. during discovery
    proc = esr_subprocess(models, zoo, out, kill="discovery")
    assert proc.returncode == -9
    assert {p: p.stat().st_mtime_ns for p in (rec_a, rec_b)} == stamps
    # 4. announced in run.json, record not yet written (a --force re-measure of a_first)
    old_a = sha(rec_a)
    proc = esr_subprocess(models, zoo, out, "--force", "--entries", "a_first", kill="run_json_pending:a_first")
    assert proc.returncode == -9, proc.stderr[-2000:]
    slot = json.loads((out / "run.json").read_text())["records"]["a_first"]
    assert slot["sha256"] == old_a == sha(rec_a) and slot["pending"] != old_a
    no_leftovers(out)
    # the same command without the hook: nothing finished is redone, nothing is lost or stale
    config = RunConfig(out=out, models=models, zoo=zoo, data="builtin",
                       settings=RunSettings(device="cpu", trials=1, threads=1, input_shape=(1, 3, 32, 32), timeout_s=300))
    outcome = run(config, progress=False)
    assert outcome.measured == [] and sorted(outcome.reused) == ["a_first", "b_second"]
    assert outcome.redone == {}
    assert {r["entry"]: r["status"] for r in outcome.records} == {"a_first": "ok", "b_second": "ok"}
    run_doc = json.loads((out / "run.json").read_text())
    assert run_doc["records"] == {"a_first": {"sha256": sha(rec_a)}, "b_second": {"sha256": sha(rec_b)}}
    assert {p: p.stat().st_mtime_ns for p in (rec_a, rec_b)} == stamps
    no_leftovers(out)
