"""Confined subprocesses for team code: no network, read-only filesystem, memory limit, one kill.

Every process that imports or runs a team's file (the worker, discovery, ``esr check``,
``esr profile``, the converter's tracing) is started through :class:`Confined`. On Linux it
uses namespaces via util-linux ``unshare`` (no extra package), stacked like this::

    sh: join the entry's memory cgroup          (cgroup v1 or v2, when the harness may create one)
     -> unshare -m -p -f -n --mount-proc --kill-child
          new mount, PID and network namespaces; the child is PID 1 of its namespace
     -> sh: bind the scratch folder onto itself (stays writable), remount every other mount
          read-only, mask the hidden folders with an empty read-only tmpfs, give /dev/shm a
          small private tmpfs
     -> unshare -r -m: a user namespace (root inside, no capability outside) and a mount
          namespace owned by it, so the kernel locks the read-only mounts: team code cannot
          remount, unmount or write them, nor leave its cgroup (/sys is read-only)
     -> the command (PID 1 of the namespace)

The network namespace holds only a loopback that is down: every connection fails, the host's
127.0.0.1 included. When PID 1 dies the kernel kills every process of the namespace (children
that called ``setsid`` too), and ``unshare`` returns only after all are gone, so "the process
ended" means "the whole tree is gone". The memory cgroup limits the whole tree; its OOM kill
is read back from the cgroup (``oom_kill`` events) and reported as :attr:`Outcome.oom`.

``mode``: ``auto`` confines when the machine allows it and otherwise runs unconfined, saying
so in :meth:`Confined.isolation`; ``required`` raises :class:`SandboxUnavailable` instead;
``off`` never confines (a process group and, where possible, the memory cgroup still apply).

Bottom layer: standard library only, no torch.
"""
from __future__ import annotations

import functools
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("auto", "required", "off")
MECHANISM = "namespaces (util-linux unshare: mount, pid, net, user)"
SHM_MIB = 64
FAIL_CODE = 97  # the confinement script itself failed (a mount): never a team's exit code by design
_counter = itertools.count()


class SandboxUnavailable(RuntimeError):
    """``--sandbox required`` on a machine where confinement cannot be set up."""


@dataclass(frozen=True)
class Support:
    """What this machine offers; see :func:`detect`."""

    namespaces: bool
    namespaces_reason: str
    cgroup: str | None         # "v1" or "v2": where a per-entry memory cgroup can be made
    cgroup_parent: str | None  # folder under which entry cgroups are created
    cgroup_reason: str

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class Outcome:
    """How a confined process ended."""

    returncode: int | None  # None: killed by the time limit
    timed_out: bool
    oom: bool               # the memory cgroup's OOM killer fired (only the entry died)
    seconds: float
    stdout: str = ""
    stderr: str = ""
    isolation: dict = field(default_factory=dict)

    @property
    def signal(self) -> str | None:
        """Name of the signal that ended the process (``SIGKILL``, ...), or None."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"--sandbox {mode!r}: use one of {', '.join(MODES)}")
    return mode


def mem_total_mib() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def default_memory_limit_mib() -> int | None:
    """75 % of the machine's RAM (the driver and the OS keep the rest), or None if unknown."""
    total = mem_total_mib()
    return int(total * 0.75) if total else None


def check_memory_limit(value) -> int | None:
    """``--memory-limit`` in MiB: a positive integer, 0 or None for none."""
    if value in (None, "", "none", 0, "0"):
        return None
    try:
        mib = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--memory-limit {value!r}: give MiB as a positive integer (0 for no limit)") from None
    if mib < 64:
        raise ValueError(f"--memory-limit {mib}: at least 64 MiB (Python and torch alone need more); 0 for no limit")
    return mib


# ---------------------------------------------------------------------------------------- detection

def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path for ``controller`` (v1) or the unified one (``None``)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if controller is None and parts[0] == "0" and parts[1] == "":
            return parts[2]
        if controller and controller in parts[1].split(","):
            return parts[2]
    return None


def _probe_cgroup() -> tuple[str | None, str | None, str]:
    root = Path("/sys/fs/cgroup")
    v1 = root / "memory"
    if (v1 / "memory.limit_in_bytes").exists() or (v1 / "cgroup.procs").exists() and (v1 / "memory.usage_in_bytes").exists():
        own = _own_cgroup("memory")
        parent = v1 / own.lstrip("/") if own else v1
        if not parent.is_dir():
            parent = v1
        return _try_mkdir("v1", parent)
    if (root / "cgroup.controllers").exists():
        own = _own_cgroup(None) or "/"
        parent = root / own.lstrip("/")
        try:
            controllers = (parent / "cgroup.subtree_control").read_text().split()
        except OSError:
            controllers = []
        if "memory" not in controllers:
            return None, None, f"cgroup v2: the memory controller is not enabled for children of {parent}"
        return _try_mkdir("v2", parent)
    return None, None, "no memory cgroup is mounted at /sys/fs/cgroup"


def _try_mkdir(kind: str, parent: Path) -> tuple[str | None, str | None, str]:
    probe = parent / f"esr-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return None, None, f"cgroup {kind}: cannot create a cgroup under {parent} ({exc.strerror})"
    return kind, str(parent), f"cgroup {kind} under {parent}"


def _probe_namespaces() -> tuple[bool, str]:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False, "util-linux 'unshare'/'mount' not found"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="esr-sbx-probe-") as tmp:
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        outside = Path(tmp) / "outside"
        cmd = _confine_argv(["sh", "-c", f"echo ok > {shlex.quote(str(scratch / 'ok'))}; "
                                         f"echo bad > {shlex.quote(str(outside))} 2>/dev/null; exit 0"],
                            scratch=scratch, hide=(), cgroup_procs=None)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"unshare probe failed: {exc}"
        if proc.returncode != 0 or not (scratch / "ok").exists():
            why = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            return False, f"unshare probe failed: {why[0]}"
        if outside.exists():
            return False, "unshare probe: the read-only remount did not hold"
    return True, "mount, pid, net and user namespaces via util-linux unshare"


@functools.lru_cache(maxsize=1)
def detect() -> Support:
    """Probe the machine once per process (about 0.1 s): namespaces and a memory cgroup."""
    ns, ns_reason = _probe_namespaces() if os.name == "posix" and Path("/proc/self/mountinfo").exists() else (False, "not Linux")
    kind, parent, cg_reason = _probe_cgroup() if os.name == "posix" else (None, None, "not Linux")
    return Support(ns, ns_reason, kind, parent, cg_reason)


def require(mode: str, memory_limit_mib: int | None = None) -> Support:
    """Raise :class:`SandboxUnavailable` when ``mode`` is ``required`` and the machine cannot confine."""
    check_mode(mode)
    support = detect()
    if mode == "required" and not support.namespaces:
        raise SandboxUnavailable(f"--sandbox required, but this machine cannot confine team code: "
                                 f"{support.namespaces_reason}; use --sandbox auto to run unconfined (recorded)")
    if mode == "required" and memory_limit_mib and not support.cgroup:
        raise SandboxUnavailable(f"--sandbox required with --memory-limit {memory_limit_mib}, but no memory "
                                 f"cgroup can be created: {support.cgroup_reason}; use --memory-limit 0 or --sandbox auto")
    return support


# ------------------------------------------------------------------------------------ command line

KEEP_FLAGS = ("nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime")


def _mounts() -> list[tuple[str, bool, str]]:
    """(mount point, is read-write, flags to keep) for every mount of this namespace, outermost first.

    The flags are kept on the read-only remount: a user namespace may not drop them."""
    out, seen = [], set()
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040 is a space
        if point in seen:
            continue
        seen.add(point)
        opts = fields[5].split(",")
        out.append((point, "rw" in opts, ",".join(o for o in opts if o in KEEP_FLAGS)))
    return out


def _setup_script(scratch: Path, hide) -> str:
    q = shlex.quote
    lines = ["set -u", f"die() {{ echo \"esr-sandbox: $1\" >&2; exit {FAIL_CODE}; }}",
             f"mount --bind {q(str(scratch))} {q(str(scratch))} || die 'cannot bind the scratch folder'"]
    for point, rw, flags in _mounts():
        if point == "/proc" or point.startswith("/proc/") or not rw:
            continue
        opts = "remount,bind,ro" + ("," + flags if flags else "")
        lines.append(f"mount -o {opts} {q(point)} 2>/dev/null || "
                     f"[ ! -e {q(point)} ] || die {q('cannot make ' + point + ' read-only')}")
    for path in hide:
        if Path(path).is_dir():
            lines.append(f"mount -t tmpfs -o ro,size=4k,mode=0555 esr-hidden {q(str(path))} || die {q('cannot hide ' + str(path))}")
    if Path("/dev/shm").is_dir():
        lines.append(f"mount -t tmpfs -o rw,nosuid,nodev,size={SHM_MIB}m esr-shm /dev/shm 2>/dev/null || true")
    lines.append('exec unshare -r -m "$@"')
    return "\n".join(lines)


# PID 1 of the namespace: runs the command as its child, reaps orphans, and reports the
# command's wait status on a pipe (the team's code never holds that pipe), because the exit
# status of ``unshare`` cannot tell "killed by SIGKILL" from "exit(137)".
_INIT = """import os, sys
fd = int(sys.argv[1]); cmd = sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.close(fd)
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
code = 1
while True:
    try:
        done, status = os.wait()
    except ChildProcessError:
        break
    if done == pid:
        code = os.waitstatus_to_exitcode(status)
        break
os.write(fd, str(code).encode())
sys.exit(code if code >= 0 else 128 - code)
"""


def _confine_argv(cmd: list[str], *, scratch: Path, hide, cgroup_procs: str | None, status_fd: int | None = None) -> list[str]:
    if status_fd is not None:
        cmd = [sys.executable, "-I", "-S", "-c", _INIT, str(status_fd), *cmd]
    user = ["-r"] if os.geteuid() != 0 else []  # not root: a user namespace first, to be allowed to mount
    argv = ["unshare", *user, "-m", "-p", "-f", "-n", "--mount-proc", "--kill-child",
            "sh", "-c", _setup_script(Path(scratch).resolve(), hide), "esr-sandbox", *cmd]
    if cgroup_procs:
        argv = ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "esr-cgroup", cgroup_procs, *argv]
    return argv


# ------------------------------------------------------------------------------------------ cgroup

class _Cgroup:
    def __init__(self, kind: str, parent: str, limit_mib: int):
        self.kind = kind
        self.path = Path(parent) / f"esr-{os.getpid()}-{next(_counter)}"
        self.path.mkdir()
        limit = str(limit_mib * 1024 * 1024)
        if kind == "v1":
            (self.path / "memory.limit_in_bytes").write_text(limit)
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no escape into swap
                try:
                    memsw.write_text(limit)
                except OSError:
                    pass
        else:
            (self.path / "memory.max").write_text(limit)
            try:
                (self.path / "memory.swap.max").write_text("0")
            except OSError:
                pass
        self.procs = str(self.path / "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in Path(self.procs).read_text().split()]
        except (OSError, ValueError):
            return []

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.kind == "v1" else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self) -> None:
        if self.kind == "v2" and (self.path / "cgroup.kill").exists():
            try:
                (self.path / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self, wait_s: float = 5.0) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            self.kill_all()
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)


# ----------------------------------------------------------------------------------------- running

def _libc():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True)
    except (OSError, AttributeError):
        return None


class Confined:
    """One confined process tree. Use as a context manager; leaving it kills what is left.

    ``cmd``: the command; ``scratch``: the one writable folder (created if missing);
    ``hide``: folders replaced by an empty read-only folder for the process (for example the
    run folder or the data with the ground truth; the scratch folder must not lie inside one,
    and what the process needs from a hidden folder must be put into the scratch folder first);
    ``memory_limit_mib``: limit of the whole tree (None: none). ``stdout``/``stderr``/``env``/
    ``cwd``/``pass_fds`` as for :class:`subprocess.Popen` (the caller closes its own ``pass_fds``).
    """

    def __init__(self, cmd, *, scratch, mode: str = "auto", memory_limit_mib: int | None = None, hide=(),
                 env: dict | None = None, cwd=None, stdout=None, stderr=None, stdin=subprocess.DEVNULL,
                 pass_fds=()):
        check_mode(mode)
        self.scratch = Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.memory_limit_mib = memory_limit_mib
        self.hide = [str(Path(h).resolve()) for h in hide]
        support = require(mode, memory_limit_mib)
        self.confined = mode != "off" and support.namespaces
        self.cgroup = None
        self.rlimit = False
        if memory_limit_mib:
            if support.cgroup:
                try:
                    self.cgroup = _Cgroup(support.cgroup, support.cgroup_parent, memory_limit_mib)
                except OSError:
                    self.cgroup = None
            if self.cgroup is None and mode == "required":
                raise SandboxUnavailable(f"--sandbox required with --memory-limit {memory_limit_mib}: "
                                         f"the memory cgroup could not be created under {support.cgroup_parent}")
            self.rlimit = self.cgroup is None
        run_env = dict(os.environ if env is None else env)
        run_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        for var in ("TMPDIR", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "MPLCONFIGDIR"):
            run_env[var] = str(self.scratch)
        if self.confined:
            run_env["ESR_SANDBOXED"] = "1"  # the parent is the namespace's PID 1, not a dead driver
        argv = list(cmd)
        self._status_r = None
        extra_fds = pass_fds  # the caller's (a worker's message pipes): inherited, closed by the caller
        pass_fds = ()
        if self.confined:
            self._status_r, status_w = os.pipe()
            pass_fds = (status_w,)
            argv = _confine_argv(argv, scratch=self.scratch, hide=self.hide,
                                 cgroup_procs=self.cgroup.procs if self.cgroup else None, status_fd=status_w)
        elif self.cgroup:
            argv = ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "esr-cgroup", self.cgroup.procs, *argv]
        limit = memory_limit_mib * 1024 * 1024 if self.rlimit else None
        libc = _libc()

        def preexec():
            if libc is not None:  # the tree dies with the driver: PR_SET_PDEATHSIG(SIGKILL), kept across exec
                libc.prctl(1, signal.SIGKILL)
            if limit:  # no cgroup: an address-space limit, so an allocation beyond it raises MemoryError
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(argv, env=run_env, cwd=cwd, stdout=stdout, stderr=stderr, stdin=stdin,
                                         start_new_session=True, preexec_fn=preexec,
                                         pass_fds=tuple(pass_fds) + tuple(extra_fds))
        except BaseException:
            if self.cgroup:
                self.cgroup.remove()
            if self._status_r is not None:
                os.close(self._status_r)
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        self._ended = False
        self._code = None

    @property
    def returncode(self) -> int | None:
        """The command's own exit status, ``-N`` when signal N killed it (as :class:`subprocess.Popen`)."""
        if self.proc.poll() is None:
            return None
        if self._status_r is not None:
            os.set_blocking(self._status_r, False)
            try:
                data = os.read(self._status_r, 64)
                if data:
                    self._code = int(data)
            except (OSError, ValueError):
                pass
            os.close(self._status_r)
            self._status_r = None
            if self._code is None:  # PID 1 itself was killed (time limit, memory limit, from outside)
                self._code = -signal.SIGKILL
        if self._code is None:
            self._code = self.proc.returncode
        return self._code

    def isolation(self) -> dict:
        """What applied to this process: the record's ``isolation`` field."""
        support = detect()
        memory = "cgroup-" + self.cgroup.kind if self.cgroup else ("rlimit-as" if self.rlimit else None)
        info = {
            "mode": self.mode,
            "mechanism": MECHANISM if self.confined else "none",
            "network": "none" if self.confined else "host",
            "read_only": self.confined,
            "writable": ["scratch"] if self.confined else ["everything the user may write"],
            "hidden": list(self.hide) if self.confined else [],
            "pid_namespace": self.confined,
            "memory_limit_mib": self.memory_limit_mib if memory else None,
            "memory_mechanism": memory,
        }
        if not self.confined:
            info["reason"] = ("--sandbox off" if self.mode == "off" else
                              f"unconfined: {support.namespaces_reason}")
        if self.memory_limit_mib and not memory:
            info["memory_reason"] = support.cgroup_reason
        return info

    def _ns_init(self) -> int | None:
        """PID (outside) of the namespace's PID 1: the child of ``unshare``."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            return int(text[0]) if text else None
        except (OSError, ValueError):
            pass
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    return int(stat.parent.name)
            except (OSError, ValueError, IndexError):
                continue
        return None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process; raises :class:`subprocess.TimeoutExpired` (nothing is killed then)."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Kill the whole tree and return only once every process of it is gone."""
        if self.confined:
            init = self._ns_init()
            if init:
                try:
                    os.kill(init, signal.SIGKILL)  # PID 1 dies: the kernel kills the namespace
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout=10)  # unshare returns once the namespace is empty
                except subprocess.TimeoutExpired:
                    pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.cgroup:
            self.cgroup.kill_all()

    def close(self) -> None:
        """End whatever is left (children of a finished process included) and free the cgroup."""
        if self._ended:
            return
        self._ended = True
        if self.proc.poll() is None:
            self.kill()
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # unconfined: leftovers of the process group
            except OSError:
                pass
        if self.cgroup:
            self.cgroup.remove()
        self.returncode  # noqa: B018 (reads and closes the status pipe)

    def oom(self) -> bool:
        return bool(self.cgroup and self.cgroup.oom_kills() > 0)

    def __enter__(self) -> "Confined":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_confined(cmd, *, scratch, timeout_s: float | None, mode: str = "auto", memory_limit_mib: int | None = None,
                 hide=(), env: dict | None = None, cwd=None, capture: bool = True, log_path=None) -> Outcome:
    """Run ``cmd`` confined to the end (or the time limit) and report how it ended.

    Output goes to ``log_path`` when given, else is captured (``capture``) or inherited.
    Whatever happens, every process of the tree is gone when this returns.
    """
    log = open(log_path, "w") if log_path else None
    try:
        out = log if log else (subprocess.PIPE if capture else None)
        err = subprocess.STDOUT if log else (subprocess.PIPE if capture else None)
        with Confined(cmd, scratch=scratch, mode=mode, memory_limit_mib=memory_limit_mib, hide=hide, env=env,
                      cwd=cwd, stdout=out, stderr=err) as box:
            timed_out = False
            try:
                stdout, stderr = box.proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                box.kill()
                stdout, stderr = box.proc.communicate()
            code = None if timed_out else box.returncode
            oom = box.oom()
            isolation = box.isolation()
            seconds = time.monotonic() - box.started
    finally:
        if log:
            log.close()
    return Outcome(returncode=code, timed_out=timed_out, oom=oom, seconds=round(seconds, 3),
                   stdout=_text(stdout), stderr=_text(stderr), isolation=isolation)


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
