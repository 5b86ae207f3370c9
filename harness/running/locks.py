"""A run-folder lock: two drivers never measure into (and write) the same run folder.

``OUT/.esr-run.lock`` holds the holder's pid, host and start time as JSON. The lock itself
is an exclusive ``fcntl.flock`` on that file, which the kernel releases when the holder
dies (kill -9, node reboot), so a crashed driver never leaves a stale lock behind: the
next driver simply takes it. Where ``flock`` is not supported (some network file
systems), it falls back to creating ``OUT/.esr-run.lock.excl`` with ``O_CREAT | O_EXCL``;
a leftover file is broken only when it names this host and a process that no longer
exists (or the same pid with a different start time, i.e. a reused pid).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".esr-run.lock"


class LockHeld(RuntimeError):
    """Another live driver holds the run folder."""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True while ``pid`` runs: a zombie (killed, not yet reaped) counts as dead, and so does a
    reused pid whose start time differs from ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields is None:
        return True
    if fields[0] == "Z":
        return False
    return start is None or len(fields) <= 19 or fields[19] == start


def holder_info() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _proc_start(pid),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _describe(info: dict | None) -> str:
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} (since {info.get('since')})"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None


class RunLock:
    """Exclusive lock on a run folder; use as a context manager.

    ``RunLock(out).acquire()`` raises :class:`LockHeld` naming the holder when another
    live driver has the folder. ``release()`` is idempotent.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._excl: Path | None = None

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (ImportError, OSError) as exc:
            os.close(fd)
            if isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LockHeld(self._held_message(_read(self.path))) from None
            return self._acquire_excl()  # flock unsupported here
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder_info()).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def _acquire_excl(self) -> "RunLock":
        path = self.path.with_name(LOCK_NAME + ".excl")
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = _read(path)
                stale = (info and info.get("host") == socket.gethostname()
                         and not pid_alive(int(info.get("pid", 0)), info.get("start")))
                if not stale:
                    raise LockHeld(self._held_message(info, path)) from None
                os.unlink(path)  # the holder on this host is gone
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(holder_info(), fh)
            self._excl = path
            return self
        raise LockHeld(self._held_message(_read(path), path))

    def _held_message(self, info: dict | None, path: Path | None = None) -> str:
        hint = (f"; if that driver is gone (another host cannot be checked from here), delete {path}"
                if path else "")
        return (f"run folder {self.folder} is in use by {_describe(info)}: wait for it to finish or use "
                f"another --out{hint}")

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # closing drops the flock
                self._fd = None
        if self._excl is not None:
            try:
                os.unlink(self._excl)
            except FileNotFoundError:
                pass
            self._excl = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._excl is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
