"""Hand an SR output from the confined worker to the quality process without pickle.

The worker quantises the model output itself (``metrics_torch.to_uint8``: a fresh uint8
``3 x H x W`` tensor owned by the harness, not by team code) and describes it with a JSON
header:

* on CUDA, ``{"kind": "cuda_ipc", ...}``: the CUDA IPC handle of the tensor's storage, the
  fields ``torch.multiprocessing`` sends when it shares a CUDA tensor, as hex strings (the
  parent never unpickles anything the worker sends). The quality process maps the same device
  memory (no copy through the host) and scores it there (``metrics_torch.quality``); the worker
  keeps the tensor alive until the parent acknowledges it;
* otherwise, or when IPC fails (``reason`` says why), ``{"kind": "host", ...}`` with the raw
  ``H x W x 3`` bytes as the payload: the host copy of the existing protocol.

``where`` in the returned tuple of ``open_output`` is what the record's ``quality.where``
says: ``"cuda-ipc"``, ``"host-copy"`` (CUDA output, copied through the host) or ``"host"``.
"""
from __future__ import annotations

import numpy as np

HEADER_FIELDS = ("device", "handle", "size_bytes", "offset_bytes", "ref_counter_handle", "ref_counter_offset",
                 "event_handle", "event_sync_required")


class ShareError(ValueError):
    """A header that does not describe a valid uint8 3 x H x W output."""


def _hex(v):
    return v.hex() if isinstance(v, (bytes, bytearray)) else v


def share_output(sr, *, allow_ipc: bool = True) -> tuple[dict, bytes | None]:
    """Worker side: ``(header, payload)`` for a uint8 ``3 x H x W`` tensor (see the module docstring)."""
    import torch

    if sr.dtype != torch.uint8 or sr.dim() != 3 or sr.shape[0] != 3:
        raise ShareError(f"share_output: expected a uint8 3xHxW tensor, got {sr.dtype} {tuple(sr.shape)}")
    shape = [int(v) for v in sr.shape]
    reason = None
    if sr.is_cuda and allow_ipc:
        try:
            sr = sr.contiguous()
            torch.cuda.current_stream(sr.device).synchronize()  # the consumer reads finished values
            fields = sr.untyped_storage()._share_cuda_()
            header = {"kind": "cuda_ipc", "shape": shape, "storage_offset": int(sr.storage_offset())}
            header.update({k: _hex(v) for k, v in zip(HEADER_FIELDS, fields)})
            return header, None
        except Exception as exc:  # IPC not available (driver, container, MIG...): fall back, and say so
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    elif sr.is_cuda:
        reason = "CUDA IPC disabled"
    host = sr.permute(1, 2, 0).contiguous().cpu().numpy()
    header = {"kind": "host", "shape": [shape[1], shape[2], 3], "from_cuda": bool(sr.is_cuda)}
    if reason:
        header["reason"] = reason
    return header, host.tobytes()


def open_output(header: dict, payload: bytes | None, *, expect_hw: tuple[int, int], device: str | None = None):
    """Quality-process side: ``(sr, where)``; ``sr`` is a uint8 CUDA tensor ``3 x H x W`` or a numpy ``H x W x 3``.

    ``expect_hw``: the HR's height and width; every size in the header is checked against it
    before anything is mapped or reshaped.
    """
    h, w = (int(v) for v in expect_hw)
    kind = header.get("kind")
    if kind == "host":
        if list(header.get("shape", [])) != [h, w, 3] or payload is None or len(payload) != h * w * 3:
            raise ShareError(f"open_output: host output {header.get('shape')} with {len(payload or b'')} bytes; "
                             f"expected {h}x{w}x3 = {h * w * 3} bytes")
        where = "host-copy" if header.get("from_cuda") else "host"
        return np.frombuffer(payload, dtype=np.uint8).reshape(h, w, 3), where
    if kind != "cuda_ipc":
        raise ShareError(f"open_output: unknown output kind {kind!r}; expected 'cuda_ipc' or 'host'")
    if list(header.get("shape", [])) != [3, h, w]:
        raise ShareError(f"open_output: CUDA output shape {header.get('shape')}; expected [3, {h}, {w}]")
    size, offset = int(header["size_bytes"]), int(header.get("storage_offset", 0))
    if offset < 0 or offset + 3 * h * w > size:
        raise ShareError(f"open_output: storage of {size} bytes cannot hold 3x{h}x{w} at offset {offset}")
    import torch

    args = []
    for key in HEADER_FIELDS:
        v = header[key]
        args.append(bytes.fromhex(v) if key in ("handle", "ref_counter_handle", "event_handle") and v else v)
    storage = torch.UntypedStorage._new_shared_cuda(*args)
    t = torch.empty(0, dtype=torch.uint8, device=storage.device)
    t.set_(storage, offset, (3, h, w), (h * w, w, 1))
    want = torch.device(device) if device is not None else None
    if want is not None and (t.device.type != want.type or (want.index is not None and t.device.index != want.index)):
        raise ShareError(f"open_output: output is on {t.device}, the quality process scores on {device}")
    return t, "cuda-ipc"
