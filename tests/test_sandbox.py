"""harness.core.sandbox: the confinement primitives, without torch (each case < 2 s)."""
from __future__ import annotations

import socket
import sys
import textwrap

import pytest

from harness.core import sandbox

SUPPORT = sandbox.detect()
needs_ns = pytest.mark.skipif(not SUPPORT.namespaces, reason=f"no namespaces here: {SUPPORT.namespaces_reason}")
needs_cg = pytest.mark.skipif(not SUPPORT.cgroup, reason=f"no memory cgroup here: {SUPPORT.cgroup_reason}")


def run(code: str, tmp_path, **kw):
    scratch = tmp_path / "scratch"
    kw.setdefault("timeout_s", 30)
    return sandbox.run_confined([sys.executable, "-c", textwrap.dedent(code)], scratch=scratch, **kw)


def alive_with(token: str) -> list[int]:
    """PIDs whose command line carries ``token`` (processes a test started, found from outside)."""
    from pathlib import Path

    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (cmdline.parent / "stat").read_text()
        except OSError:
            continue
        if token in text and ") Z" not in stat:
            found.append(int(cmdline.parent.name))
    return found


@needs_ns
def test_writes_only_in_scratch_and_no_network(tmp_path):
    outside = tmp_path / "outside.txt"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    out = run(f"""
        import socket
        open("{tmp_path / 'scratch' / 'ok'}", "w").write("x")
        for path in ("{outside}", "{sandbox.__file__}"):
            try:
                open(path, "a").write("x"); print("WROTE", path)
            except OSError as exc:
                print("refused", exc.errno)
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2); print("CONNECTED")
        except OSError as exc:
            print("no network", exc.errno)
    """, tmp_path)
    server.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["refused 30", "refused 30", "no network 101"]  # EROFS, ENETUNREACH
    assert (tmp_path / "scratch" / "ok").read_text() == "x" and not outside.exists()
    iso = out.isolation
    assert iso["network"] == "none" and iso["read_only"] and iso["pid_namespace"] and iso["mechanism"] == sandbox.MECHANISM


@needs_ns
def test_cannot_remount_or_unhide(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "hr.png").write_text("ground truth")
    out = run(f"""
        import os, subprocess
        print(os.listdir("{secret}"))
        for cmd in (["mount", "-o", "remount,rw", "/"], ["umount", "{secret}"], ["mount", "-o", "remount,bind,rw", "{tmp_path}"]):
            print(subprocess.run(cmd, capture_output=True).returncode != 0)
    """, tmp_path, hide=[secret])
    assert out.stdout.split() == ["[]", "True", "True", "True"], out.stdout + out.stderr
    assert out.isolation["hidden"] == [str(secret.resolve())]


@needs_ns
@pytest.mark.parametrize("variant", ["timeout", "normal_end", "exit"])
def test_whole_tree_is_gone(tmp_path, variant):
    token = f"esr-orphan-{variant}-{tmp_path.name}"
    tail = {"timeout": "time.sleep(60)", "normal_end": "pass", "exit": "os._exit(3)"}[variant]
    out = run(f"""
        import os, subprocess, sys, time
        child = "import os, time\\nif os.fork() == 0:\\n    os.setsid(); time.sleep(60)\\ntime.sleep(60)  # {token}"
        subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
        time.sleep(0.5)
        {tail}
    """, tmp_path, timeout_s=4)
    assert alive_with(token) == []
    assert out.timed_out == (variant == "timeout")
    assert out.returncode == {"timeout": None, "normal_end": 0, "exit": 3}[variant]


@needs_ns
def test_signal_is_reported(tmp_path):
    out = run("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", tmp_path)
    assert out.returncode == -11 and out.signal == "SIGSEGV" and not out.oom


@needs_cg
@pytest.mark.parametrize("mode", ["auto", "off"])
def test_memory_limit_kills_only_the_entry(tmp_path, mode):
    out = run("""
        blocks = []
        while True:
            blocks.append(bytearray(32 << 20))
    """, tmp_path, memory_limit_mib=200, mode=mode)
    assert out.oom and out.returncode == -9 and out.signal == "SIGKILL"
    assert out.isolation["memory_limit_mib"] == 200 and out.isolation["memory_mechanism"] == f"cgroup-{SUPPORT.cgroup}"


def test_off_says_so(tmp_path):
    out = run("print('hi')", tmp_path, mode="off")
    assert out.stdout == "hi\n"
    assert out.isolation["mechanism"] == "none" and out.isolation["reason"] == "--sandbox off"
    assert out.isolation["network"] == "host" and not out.isolation["pid_namespace"]


def test_required_refuses_without_namespaces(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "detect", lambda: sandbox.Support(False, "no unshare", None, None, "none"))
    with pytest.raises(sandbox.SandboxUnavailable, match="--sandbox required"):
        run("pass", tmp_path, mode="required")
    out = run("print('ran')", tmp_path, mode="auto")
    assert out.stdout == "ran\n" and out.isolation["reason"] == "unconfined: no unshare"


def test_option_values():
    assert sandbox.check_memory_limit("0") is None and sandbox.check_memory_limit(512) == 512
    for bad in ("-1", "abc", 10):
        with pytest.raises(ValueError, match="--memory-limit"):
            sandbox.check_memory_limit(bad)
    with pytest.raises(ValueError, match="--sandbox 'maybe'"):
        sandbox.check_mode("maybe")
