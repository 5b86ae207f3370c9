"""Decode-once storage: named uint8 arrays plus JSON metadata in one uncompressed ``.npz``.

The run decodes the images once and writes them here; each entry's subprocess maps the
arrays back with ``numpy.memmap`` (no decoding, no copy: pages are shared through the OS
cache). An uncompressed ``.npz`` is a zip whose members are ``.npy`` files stored as is, so
each array sits at a fixed offset in the file.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

META_KEY = "__meta__"


def write_arrays(path: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and ``meta`` (JSON-able) to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{META_KEY: np.array(json.dumps(meta))}, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _member_offsets(path: Path) -> dict[str, tuple[int, tuple, np.dtype, bool]]:
    """For each stored ``.npy`` member: (data offset, shape, dtype, fortran order)."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{path}: member {info.filename} is compressed")
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: bad local header for {info.filename}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[version]
            shape, fortran, dtype = read_header(fh)
            out[info.filename[:-4]] = (fh.tell(), shape, dtype, fortran)
    return out


def read_arrays(path: str | Path, *, mmap: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` from a file of ``write_arrays``; arrays are read-only memory maps
    when ``mmap`` (falls back to reading them when the file is not laid out for it)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz[META_KEY]))
        if not mmap:
            return meta, {k: npz[k] for k in npz.files if k != META_KEY}
    try:
        offsets = _member_offsets(path)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile):
        return read_arrays(path, mmap=False)
    arrays = {}
    for name, (offset, shape, dtype, fortran) in offsets.items():
        if name == META_KEY:
            continue
        if dtype.hasobject or 0 in shape:
            return read_arrays(path, mmap=False)
        mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
        arrays[name] = np.asarray(mm)  # a plain ndarray view over the map
    return meta, arrays
