"""Hostile submissions against the confinement (issue 14, part 1): each attack is built in a
temporary folder, run through `esr run` beside honest entries, and must be contained: the honest
figures equal a run without the hostile files, and the hostile entry is refused, failed or flagged
with the reason. Each attack has more than one variant (at import and in forward, other targets).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import HEADER, entry_line, write_entries, write_model

from harness.cli import main as esr
from harness.core import sandbox
from harness.data.splits import load_cache
from harness.running.errors import RunError
from harness.running.runner import read_catalog

SUPPORT = sandbox.detect()
pytestmark = pytest.mark.skipif(not (SUPPORT.namespaces and SUPPORT.cgroup),
                                reason=f"needs namespaces and a memory cgroup: {SUPPORT.namespaces_reason}; "
                                       f"{SUPPORT.cgroup_reason}")
FAST = ["--data", "builtin", "--input", "3x32x32", "--trials", "1", "--device", "cpu", "--threads", "1", "--quiet",
        "--timeout", "120", "--memory-limit", "1500", "--sandbox", "required", "--no-complexity"]
TOKEN = "esr-hostile-orphan"

# What every attack tries, from the model's own process; `where` says when (import or forward).
ATTACK = """
import json, os, socket, subprocess, sys, time
import torch


def attack(where, port, outside):
    job = json.load(open(sys.argv[1])) if len(sys.argv) > 1 and sys.argv[1].endswith(".json") else None
    targets = [outside + "-" + where]
    if job:
        splits = job.get("splits") or job.get("lr_splits") or {"x": "/nowhere/x/x"}  # LR-only now, in its scratch
        run = os.path.dirname(os.path.dirname(list(splits.values())[0]))
        targets += [os.path.join(run, "records", "good.json"), os.path.join(run, "run.json"),
                    os.path.join(run, "records", "zz_planted.json"), list(splits.values())[0],
                    os.path.join(os.path.dirname(job["file"]), "good.py")]
    for path in targets:
        try:
            with open(path, "r+b" if os.path.exists(path) else "wb") as fh:
                fh.write(b"PWNED")
        except OSError:
            pass
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).sendall(b"PWNED " + where.encode())
    except OSError:
        pass
    code = "import time\\ntime.sleep(300)  # " + TOKEN
    subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    if os.fork() == 0:  # a double-forked daemon in its own session
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", code])
        os._exit(0)
"""


def hostile_file(folder: Path, stem: str, body: str, port: int, outside: Path) -> None:
    prelude = ATTACK.replace("TOKEN", repr(TOKEN)) + f"\nPORT, OUTSIDE = {port}, {str(outside)!r}\n"
    write_model(folder, stem, prelude + textwrap.dedent(body))


def build(root: Path, port: int, hostile: bool) -> tuple[Path, Path]:
    models, zoo = root / "models", root / "zoo"
    zoo.mkdir(parents=True)
    write_entries(models, "good", entry_line("good", checkpoint="good.pth"))
    write_entries(models, "plain", entry_line("plain"))
    ns: dict = {}
    exec(HEADER, ns)
    torch.manual_seed(0)
    torch.save(ns["Tiny"]().state_dict(), zoo / "good.pth")
    if not hostile:
        return models, zoo
    outside = root / "outside"
    # writes, network, orphans and a thread-count change at import (runs in discovery and in the worker)
    hostile_file(models, "zz_import_attack", """
        attack("import", PORT, OUTSIDE)
        torch.set_num_threads(2)
        ENTRIES = [Entry(name="zz_import_attack", model=Tiny, scale=4)]
    """, port, outside)
    # the same from inside forward, plus backend flags changed while being timed
    hostile_file(models, "zz_forward_attack", """
        class Attacker(Tiny):
            done = False

            def forward(self, x):
                if not Attacker.done:
                    Attacker.done = True
                    attack("forward", PORT, OUTSIDE)
                    torch.backends.mkldnn.enabled = False
                    torch.set_flush_denormal(True)
                return super().forward(x)

        ENTRIES = [Entry(name="zz_forward_attack", model=Attacker, scale=4)]
    """, port, outside)
    # memory growth beyond --memory-limit: only this entry dies, as oom
    write_model(models, "zz_memory_hog", """
        class Hog(Tiny):
            def forward(self, x):
                blocks = []
                while True:
                    blocks.append(torch.ones(64 << 20, dtype=torch.uint8))
        ENTRIES = [Entry(name="zz_memory_hog", model=Hog, scale=4)]
    """)
    # os.chdir at import: its own entry and every later one still work
    write_model(models, "aa_chdir", """
        os.chdir("/")
        ENTRIES = [Entry(name="aa_chdir", model=Tiny, scale=4)]
    """)
    # exits at import, two ways: only their own entries fail
    write_model(models, "zz_exit0", "import os\nos._exit(0)\n", header=False)
    write_model(models, "zz_sigkill", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", header=False)
    # names with path parts, inline and in a sidecar
    write_model(models, "zz_badname", "ENTRIES = [Entry(name='x/../good', model=Tiny, scale=4)]\n")
    write_model(models, "zz_sidecar_name", "")
    (models / "zz_sidecar_name.toml").write_text('name = "../../records/good"\nclass = "Tiny"\nscale = 4\n')
    # class naming a function, two ways
    write_model(models, "zz_os_system", "")
    (models / "zz_os_system.toml").write_text(f'class = "os.system"\nscale = 4\nargs = ["touch {outside}-os"]\n')
    write_model(models, "zz_system", "from os import system\n")
    (models / "zz_system.toml").write_text(f'class = "system"\nscale = 4\nargs = ["touch {outside}-system"]\n')
    # checkpoints outside the zoo: relative escape, absolute path, a link out of the zoo
    secret = root / "secret.pth"
    torch.save(ns["Tiny"]().state_dict(), secret)
    write_entries(models, "zz_ckpt_rel", entry_line("zz_ckpt_rel", checkpoint="../secret.pth"))
    write_entries(models, "zz_ckpt_abs", entry_line("zz_ckpt_abs", checkpoint=str(secret)))
    (zoo / "link.pth").symlink_to(secret)
    write_entries(models, "zz_ckpt_link", entry_line("zz_ckpt_link", checkpoint="link.pth"))
    # deploy naming something that is not a method: a dunder (card) and a submodule (at run time)
    write_entries(models, "zz_deploy_dunder", entry_line("zz_deploy_dunder", deploy="__init__"))
    write_entries(models, "zz_deploy_module", entry_line("zz_deploy_module", deploy="conv"))
    return models, zoo


def alive_with(token: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (cmdline.parent / "stat").read_text()
        except OSError:
            continue
        if token in text and ") Z" not in stat and "pytest" not in text:
            found.append(int(cmdline.parent.name))
    return found


def run(root: Path, port: int, hostile: bool) -> dict:
    models, zoo = build(root, port, hostile)
    out = root / "run"
    code = esr(["run", "--models", str(models), "--zoo", str(zoo), "--out", str(out), *FAST])
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    return {"code": code, "records": records, "out": out, "root": root, "models": models}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    baseline = run(tmp_path_factory.mktemp("honest"), port, hostile=False)
    hostile = run(tmp_path_factory.mktemp("hostile"), port, hostile=True)
    try:
        listener.accept()
        connected = True
    except BlockingIOError:
        connected = False
    listener.close()
    return {"baseline": baseline, "hostile": hostile, "connected": connected}


QUALITY = ("valid.psnr_rgb", "valid.psnr_y", "valid.ssim_rgb", "valid.ssim_y", "params")


def test_honest_figures_equal_a_run_without_the_hostile_files(runs):
    base, hostile = runs["baseline"]["records"], runs["hostile"]["records"]
    assert runs["hostile"]["code"] == 0
    for name in ("good", "plain"):
        assert hostile[name]["status"] == base[name]["status"] == "ok"
        assert {k: hostile[name]["metrics"][k] for k in QUALITY} == {k: base[name]["metrics"][k] for k in QUALITY}
        assert hostile[name]["raw"]["valid"]["psnr_rgb"] == base[name]["raw"]["valid"]["psnr_rgb"]
        assert hostile[name].get("flags") == base[name].get("flags")
    iso = hostile["good"]["isolation"]
    assert (iso["network"], iso["read_only"], iso["pid_namespace"], iso["memory_limit_mib"]) == ("none", True, True, 1500)


def test_writes_are_refused_everywhere(runs):
    root, out = runs["hostile"]["root"], runs["hostile"]["out"]
    assert sorted(p.name for p in root.iterdir()) == ["models", "run", "secret.pth", "zoo"]  # no outside-* file
    assert not (out / "records" / "zz_planted.json").exists()
    assert "PWNED" not in (runs["hostile"]["models"] / "good.py").read_text()
    assert "PWNED" not in (out / "run.json").read_text()
    good = json.loads((out / "records" / "good.json").read_text())
    base_good = runs["baseline"]["records"]["good"]
    assert good["status"] == "ok" and good["metrics"]["valid.psnr_rgb"] == base_good["metrics"]["valid.psnr_rgb"]
    base_cache = load_cache(next((runs["baseline"]["out"] / "cache").glob("*.npz")))
    cache = load_cache(next((out / "cache").glob("*.npz")))
    assert all(np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr) for a, b in zip(base_cache.pairs, cache.pairs))


def test_no_connection_reached_the_loopback_listener(runs):
    assert runs["connected"] is False


def test_no_orphan_survives(runs):
    assert alive_with(TOKEN) == []


def test_attackers_themselves_are_measured_and_flagged(runs):
    recs = runs["hostile"]["records"]
    imp, fwd = recs["zz_import_attack"], recs["zz_forward_attack"]
    assert imp["status"] == fwd["status"] == "ok"  # contained attacks leave a plain measurement
    assert any("thread count (1 -> 2)" in f and "reset before timing" in f for f in imp["flags"])
    assert imp["provenance"]["threads"] == 1
    assert any("mkldnn.enabled (True -> False)" in f and "while being timed" in f for f in fwd["flags"])


def test_memory_growth_kills_only_that_entry(runs):
    rec = runs["hostile"]["records"]["zz_memory_hog"]
    assert rec["status"] == "oom" and "memory limit (1500 MiB" in rec["error"]


def test_import_time_exits_and_chdir_fail_only_their_own_entries(runs):
    recs = runs["hostile"]["records"]
    assert recs["aa_chdir"]["status"] == "ok" and recs["aa_chdir"]["metrics"]["valid.psnr_rgb"] > 5
    assert recs["zz_exit0"]["status"] == "import_error" and "exit code 0" in recs["zz_exit0"]["error"]
    assert recs["zz_sigkill"]["status"] == "import_error" and "signal 9" in recs["zz_sigkill"]["error"]


@pytest.mark.parametrize("stem, status, words", [
    ("zz_badname", "card_error", "field 'name' 'x/../good'"),
    ("zz_sidecar_name", "card_error", "field 'name' '../../records/good'"),
    ("zz_os_system", "card_error", "field 'class': no class 'os.system'"),
    ("zz_system", "card_error", "field 'class': 'system' is not an nn.Module subclass"),
    ("zz_ckpt_rel", "card_error", "field 'checkpoint' '../secret.pth' must be a path inside the zoo"),
    ("zz_ckpt_abs", "card_error", "must be a path inside the zoo"),
    ("zz_ckpt_link", "load_error", "field 'checkpoint' 'link.pth' resolves to"),
    ("zz_deploy_dunder", "card_error", "field 'deploy' '__init__' must name a method"),
    ("zz_deploy_module", "deploy_error", "field 'deploy' 'conv': the model has no such method"),
])
def test_cards_are_refused_naming_the_field(runs, stem, status, words):
    rec = runs["hostile"]["records"][stem]
    assert rec["status"] == status and words in rec["error"], rec["error"]
    assert not list(runs["hostile"]["root"].glob("outside-*"))  # os.system was never called


def test_hang_at_import_fails_only_its_file(tmp_path):
    models = tmp_path / "models"
    write_entries(models, "good", entry_line("good"))
    write_model(models, "hangs", "import time\ntime.sleep(300)\n", header=False)
    write_model(models, "spins", "while True:\n    pass\n", header=False)
    catalog = read_catalog(models, timeout_s=2, sandbox="required", memory_limit_mib=1500)
    assert list(catalog["entries"]) == ["good"]
    errors = {p["name"]: p["error"] for p in catalog["problems"]}
    assert set(errors) == {"hangs", "spins"} and all("did not finish within 2 s" in e for e in errors.values())


@pytest.mark.parametrize("names", [("Good", "good"), ("team01_A", "TEAM01_a")])
def test_names_unique_after_case_folding(tmp_path, names):
    models = tmp_path / "models"
    write_entries(models, "one", entry_line(names[0]))
    write_entries(models, "two", entry_line(names[1]))
    with pytest.raises(RunError, match="duplicate \\(ignoring case\\) entry name"):
        read_catalog(models, timeout_s=60, sandbox="required")


def test_sandbox_required_refuses_without_support(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "detect", lambda: sandbox.Support(False, "no unshare here", None, None, "none"))
    models = tmp_path / "models"
    write_entries(models, "good", entry_line("good"))
    code = esr(["run", "--models", str(models), "--zoo", str(tmp_path), "--out", str(tmp_path / "run"), *FAST])
    assert code == 2 and "--sandbox required, but this machine cannot confine team code: no unshare here" in capsys.readouterr().out
    assert not (tmp_path / "run" / "records").exists()


def test_sandbox_off_says_so_in_record_and_table(tmp_path):
    models = tmp_path / "models"
    write_entries(models, "plain", entry_line("plain"))
    out = tmp_path / "run"
    args = [a for a in FAST if a != "required"]
    args[args.index("--sandbox") + 1] = "off"
    assert esr(["run", "--models", str(models), "--zoo", str(tmp_path), "--out", str(out), *args]) == 0
    iso = json.loads((out / "records" / "plain.json").read_text())["isolation"]
    assert (iso["mechanism"], iso["network"], iso["pid_namespace"], iso["reason"]) == ("none", "host", False, "--sandbox off")
    assert "UNCONFINED: team code of plain ran without the sandbox (--sandbox off)" in (out / "leaderboard.md").read_text()
