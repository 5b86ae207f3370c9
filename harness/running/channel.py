"""Messages between a worker (which runs team code) and its parent (which never does).

Two pipes, one each way. A frame is a 4-byte big-endian length, a UTF-8 JSON object (the
header), then ``header["nbytes"]`` raw bytes when the header names them (an SR image:
``uint8`` ``H x W x 3`` RGB, C order). Nothing is ever pickled or unpickled, so a hostile
worker can send wrong data but cannot make the parent run code. The parent bounds every
length it reads (``MAX_HEADER``, ``MAX_PAYLOAD``) and waits with a deadline.
"""
from __future__ import annotations

import json
import os
import select
import struct
import time

MAX_HEADER = 64 << 20    # a record with a per-operator complexity breakdown stays far below this
MAX_PAYLOAD = 4 << 30    # one SR image (8K x 8K x 3 is 192 MiB)


class ChannelError(RuntimeError):
    """The other side sent something that is not a frame of this protocol."""


class ChannelTimeout(TimeoutError):
    pass


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send(fd: int, header: dict, payload=None) -> None:
    """Write one frame; ``payload`` (bytes-like) sets ``header["nbytes"]``."""
    if payload is not None:
        payload = memoryview(payload)
        if not payload.c_contiguous:
            raise ValueError("channel payload must be C-contiguous")
        header = dict(header, nbytes=payload.nbytes)
    blob = json.dumps(header, separators=(",", ":")).encode()
    _write_all(fd, struct.pack(">I", len(blob)) + blob)
    if payload is not None:
        _write_all(fd, payload)


class Reader:
    """Reads frames from a pipe with a deadline (``time.monotonic`` seconds, or None)."""

    def __init__(self, fd: int):
        self.fd = fd

    def _read_exact(self, n: int, deadline: float | None, *, eof_ok: bool = False) -> bytes | None:
        chunks, got = [], 0
        while got < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout("deadline passed")
                ready, _, _ = select.select([self.fd], [], [], left)
                if not ready:
                    raise ChannelTimeout("deadline passed")
            chunk = os.read(self.fd, min(n - got, 1 << 20))
            if not chunk:
                if eof_ok and got == 0:
                    return None
                raise ChannelError(f"pipe closed in the middle of a frame ({got} of {n} bytes)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def ready(self, timeout: float) -> bool:
        """Whether a frame (or the end of the stream) can be read within ``timeout`` seconds."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return bool(ready)

    def read(self, deadline: float | None = None) -> tuple[dict, bytes | None] | None:
        """The next ``(header, payload)``; None at end of stream."""
        raw = self._read_exact(4, deadline, eof_ok=True)
        if raw is None:
            return None
        (size,) = struct.unpack(">I", raw)
        if size > MAX_HEADER:
            raise ChannelError(f"frame header of {size} bytes (limit {MAX_HEADER})")
        try:
            header = json.loads(self._read_exact(size, deadline))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ChannelError(f"frame header is not JSON ({exc})") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ChannelError("frame header is not an object with a 'type'")
        payload = None
        if "nbytes" in header:
            nbytes = header["nbytes"]
            if not isinstance(nbytes, int) or isinstance(nbytes, bool) or not 0 <= nbytes <= MAX_PAYLOAD:
                raise ChannelError(f"frame payload size {nbytes!r} is not an integer in [0, {MAX_PAYLOAD}]")
            payload = self._read_exact(nbytes, deadline)
        return header, payload


class WorkerLink:
    """The worker's end: send messages, wait for the parent's acknowledgements."""

    def __init__(self, out_fd: int, in_fd: int):
        self.out_fd, self.in_fd = out_fd, in_fd
        self._reader = Reader(in_fd)

    def send(self, header: dict, payload=None) -> None:
        send(self.out_fd, header, payload)

    def request(self, header: dict, payload=None) -> dict:
        """Send and block until the parent answers (the parent works while this process waits)."""
        self.send(header, payload)
        reply = self._reader.read(None)
        if reply is None:
            raise ChannelError("the parent closed the channel")
        return reply[0]
