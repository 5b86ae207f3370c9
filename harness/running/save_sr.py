"""``esr run --save-sr DIR``: the uint8 SR images whose PSNR is reported, written as PNG.

Layout: ``DIR/<entry>/<split>/<image name>.png``. The entry, split and image names come from
the run (the catalog and the data set), never from team code, and are validated here anyway:
each must be one plain path component, so no name can write outside ``DIR``. Files are written
to a temporary name beside the target and renamed (atomic), by the parent process: the uint8
arrays the confined worker sent back are scored and saved by the same sink of the parent's
quality step (``harness.running.quality``), so the file is exactly the image that was scored.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

# One path component: letters, digits and . _ - + ( ) space, not starting with a dot.
_NAME = re.compile(r"^[A-Za-z0-9_+(][A-Za-z0-9 ._+()-]*$")


class SaveError(ValueError):
    pass


def check_name(name: str, what: str) -> str:
    """``name`` when it is one safe path component; SaveError naming it otherwise."""
    text = str(name)
    if not _NAME.match(text) or text in (".", "..") or len(text) > 200:
        raise SaveError(f"--save-sr: {what} name {text!r} is not a plain file name (letters, digits, ._-+() "
                        f"and spaces, not starting with a dot); rename it to save its SR image")
    return text


def sr_relpath(entry: str, split: str, image: str) -> str:
    """``<entry>/<split>/<image>.png`` (POSIX separators), every part validated."""
    return "/".join([check_name(entry, "entry"), check_name(split, "split"), check_name(image, "image") + ".png"])


def save_sr(root: str | Path, entry: str, split: str, image: str, sr) -> str:
    """Write the uint8 ``H x W x 3`` RGB ``sr`` to ``root/<entry>/<split>/<image>.png``; return the relative path."""
    from PIL import Image

    arr = np.asarray(sr)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise SaveError(f"--save-sr: {entry}/{split}/{image}: expected a uint8 HxWx3 image, got "
                        f"{arr.dtype} {arr.shape}")
    rel = sr_relpath(entry, split, image)
    path = Path(root).joinpath(*rel.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sr-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(np.ascontiguousarray(arr)).save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rel


def saved_summary(root: str | Path, files: dict[str, list[str]]) -> dict:
    """The record's ``sr_saved`` field: folder, format and the relative file of each image per split."""
    return {"dir": str(Path(root).resolve()), "format": "png", "dtype": "uint8", "channels": "RGB",
            "files": {split: list(paths) for split, paths in files.items()}}
