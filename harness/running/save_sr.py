"""``esr run --save-sr DIR``: the uint8 SR images whose PSNR is reported, written as PNG.

Layout: ``DIR/<entry>/<split>/<image name>.png``. The entry, split and image names come from
the run (the catalog and the data set), never from team code, and are validated here anyway:
each must be one plain path component, so no name can write outside ``DIR``. Files are written
to a temporary name beside the target and renamed (atomic), by the parent process: the confined
worker keeps exactly the arrays it scored as raw ``.npy`` files in its job folder
(:func:`stash_sr`), and the parent turns them into PNG files (:func:`publish_sr`).
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


def stash_sr(stash: str | Path, split: str, index: int, sr) -> None:
    """Worker side: keep the scored uint8 image as raw ``.npy`` (no pickle) in its job folder.

    The worker may write only its job folder; the parent reads the arrays back with
    :func:`publish_sr` and writes the PNG files under names it chooses itself.
    """
    folder = Path(stash)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{check_name(split, 'split')}-{int(index)}.npy", np.ascontiguousarray(sr), allow_pickle=False)


def publish_sr(stash: str | Path, entry: str, images: dict[str, list[str]], root: str | Path) -> dict:
    """Parent side: the stashed arrays as ``root/<entry>/<split>/<image>.png``; returns ``sr_saved``.

    ``images`` maps each split to its image names in order, from the parent's own description of
    the data (never from the worker); each array is read with ``allow_pickle=False`` and must be
    uint8 ``H x W x 3``.
    """
    files: dict[str, list[str]] = {}
    for split, names in images.items():
        for index, name in enumerate(names):
            path = Path(stash) / f"{check_name(split, 'split')}-{index}.npy"
            if not path.is_file():
                raise SaveError(f"--save-sr: {entry}: no SR image came back for {split}/{name}")
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise SaveError(f"--save-sr: {entry}: the SR image of {split}/{name} is unreadable ({exc})") from None
            files.setdefault(split, []).append(save_sr(root, entry, split, name, arr))
    return saved_summary(root, files)


def saved_summary(root: str | Path, files: dict[str, list[str]]) -> dict:
    """The record's ``sr_saved`` field: folder, format and the relative file of each image per split."""
    return {"dir": str(Path(root).resolve()), "format": "png", "dtype": "uint8", "channels": "RGB",
            "files": {split: list(paths) for split, paths in files.items()}}
