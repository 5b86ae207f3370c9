"""Recognise a data folder's layout and match its HR and LR files by name.

Layouts (``docs/data.md`` shows a tree of each):

- ``div2k``: ``DIV2K_{split}_HR/0801.png`` with ``DIV2K_{split}_LR_bicubic/X4/0801x4.png``;
- ``div2k_lsdir`` (NTIRE 2024-2026): ``DIV2K_LSDIR_{split}_HR/000001.png`` with
  ``DIV2K_LSDIR_{split}_LR/000001x4.png``;
- ``benchmark`` (Set5, Set14, ...): ``HR/baby.png`` with ``LR_bicubic/X4/babyx4.png``;
- ``pair``: ``HR_DIR,LR_DIR`` or a folder holding exactly ``HR/`` and ``LR/``;
- ``hr_only``: a folder of HR images; the LR is generated (``harness.data.splits``).

A root holding sub-layouts of several splits (``DIV2K_valid_HR`` and ``DIV2K_test_HR``, or
``valid/`` and ``test/`` sub-folders) gives the one that matches ``split``.
LR file stems are the HR stem, optionally followed by ``x<scale>`` (``0801x4``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
# Sub-folder names accepted for a split inside a root that holds several splits.
SPLIT_FOLDERS = {"valid": ("valid", "val", "validation"), "test": ("test",)}


class LayoutError(ValueError):
    """The folder matches no layout, or its files cannot be paired (message lists why)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass
class Layout:
    """Where one split's images live. ``lr_dir`` is None for ``hr_only``."""
    name: str              # div2k | div2k_lsdir | benchmark | pair | hr_only
    dataset: str           # data set name for the record (the root folder's name)
    root: Path             # the folder the user named (for pairs: the common parent)
    hr_dir: Path
    lr_dir: Path | None
    notes: list[str] = field(default_factory=list)


@dataclass
class FilePair:
    stem: str
    hr: Path
    lr: Path | None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in ("Thumbs.db", "desktop.ini")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other visible files) directly inside ``folder``, sorted by name."""
    images, other, broken = [], [], []
    for p in sorted(folder.iterdir()):
        if p.is_symlink() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS:
            try:
                p.resolve(strict=True)
            except RuntimeError:  # Python < 3.13 reports a loop this way
                broken.append(f"{p} (symbolic link loop)")
                continue
            except OSError as exc:
                why = "symbolic link loop" if exc.errno == 40 else f"points to {os.readlink(p)}, which does not exist"
                broken.append(f"{p} ({why})")
                continue
        if not p.is_file() or not _visible(p):
            continue
        (images if p.suffix.lower() in IMAGE_EXTENSIONS else other).append(p)
    if broken:
        raise LayoutError(f"{folder}: {len(broken)} broken image link(s): {'; '.join(broken)}; "
                          "fix the link targets or remove the links", broken)
    return images, other


def _dataset_name(folder: Path) -> str:
    """The folder's name, or its parent's where the name is a generic split/role name."""
    generic = {"hr", "lr", "valid", "val", "validation", "test", "images"}
    folder = folder.resolve()
    while folder.name.lower() in generic and folder.parent != folder:
        folder = folder.parent
    return folder.name or str(folder)


def _need_dir(path: Path, layout: str, hr_dir: Path, alternatives: list[Path] | None = None) -> Path:
    for candidate in [path, *(alternatives or [])]:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(p) for p in [path, *(alternatives or [])])
    raise LayoutError(
        f"{hr_dir.parent}: {layout} layout found ({hr_dir.name}/) but its LR folder is missing "
        f"(looked for {tried}); add the LR images there, or pass the HR folder {hr_dir} alone "
        "to generate the LR with MATLAB-compatible bicubic")


def _detect(root: Path, *, scale: int, split: str, looked: list[str], depth: int = 0) -> Layout | None:
    name = _dataset_name(root)
    hr = root / f"DIV2K_LSDIR_{split}_HR"
    looked.append(f"{hr}/ with DIV2K_LSDIR_{split}_LR/ (div2k_lsdir)")
    if hr.is_dir():
        lr = _need_dir(root / f"DIV2K_LSDIR_{split}_LR", "div2k_lsdir", hr,
                       [root / f"DIV2K_LSDIR_{split}_LR_bicubic" / f"X{scale}"])
        return Layout("div2k_lsdir", name, root, hr, lr)
    hr = root / f"DIV2K_{split}_HR"
    looked.append(f"{hr}/ with DIV2K_{split}_LR_bicubic/X{scale}/ (div2k)")
    if hr.is_dir():
        lr = _need_dir(root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}", "div2k", hr)
        return Layout("div2k", name, root, hr, lr)
    looked.append(f"{root}/HR/ with LR_bicubic/X{scale}/ (benchmark)")
    if (root / "HR").is_dir() and (root / "LR_bicubic").is_dir():
        lr = root / "LR_bicubic" / f"X{scale}"
        if not lr.is_dir():
            have = ", ".join(p.name for p in _subdirs(root / "LR_bicubic")) or "nothing"
            raise LayoutError(f"{root}: benchmark layout has no LR_bicubic/X{scale}/ (it has {have}); "
                              f"check --scale, or add LR_bicubic/X{scale}/")
        return Layout("benchmark", name, root, root / "HR", lr)
    subdirs = _subdirs(root)
    looked.append(f"{root} holding exactly HR/ and LR/ (pair)")
    if sorted(p.name for p in subdirs) == ["HR", "LR"]:
        return Layout("pair", name, root, root / "HR", root / "LR")
    for sub in SPLIT_FOLDERS.get(split, (split,)):
        looked.append(f"{root / sub}/ holding one of these layouts ({split} split)")
        if depth == 0 and (root / sub).is_dir():
            found = _detect(root / sub, scale=scale, split=split, looked=looked, depth=1)
            if found is not None:
                found.dataset = name
                return found
    images, _ = list_images(root)
    looked.append(f"image files directly in {root} (hr_only)")
    if images:
        notes = [f"ignored sub-folders of the HR-only folder: {', '.join(p.name for p in subdirs)}"] if subdirs else []
        return Layout("hr_only", name, root, root, None, notes)
    if [p.name for p in subdirs] == ["HR"]:
        return Layout("hr_only", name, root, root / "HR", None, ["no LR folder beside HR/: LR generated"])
    return None


def find_layout(spec: str | os.PathLike, *, scale: int, split: str) -> Layout:
    """The layout of ``spec`` (a folder, or ``HR_DIR,LR_DIR``) for ``split`` at ``scale``."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if "," in text and not path.exists():
        parts = [Path(p.strip()).expanduser() for p in text.split(",")]
        if len(parts) != 2 or not all(str(p) for p in parts):
            raise LayoutError(f"data spec {text!r}: expected HR_DIR,LR_DIR (two folders)")
        for role, p in zip(("HR", "LR"), parts):
            if not p.is_dir():
                raise LayoutError(f"data spec {text!r}: {role} folder {p} does not exist; fix the path")
        hr, lr = parts
        common = Path(os.path.commonpath([hr.resolve(), lr.resolve()]))
        return Layout("pair", _dataset_name(hr), common, hr, lr)
    if not path.exists():
        raise LayoutError(f"data folder {path} does not exist; give a folder, HR_DIR,LR_DIR, or 'builtin'")
    if not path.is_dir():
        raise LayoutError(f"data {path} is a file; give a folder, HR_DIR,LR_DIR, or 'builtin'")
    looked: list[str] = []
    layout = _detect(path, scale=scale, split=split, looked=looked)
    if layout is None:
        other = "test" if split != "test" else "valid"
        hint = ""
        if any(path.glob(f"*_{other}_HR")):
            hint = f" (it holds a {other} split only: pass it with {'--test' if other == 'test' else '--data'})"
        raise LayoutError(f"data folder {path}: no {split} layout recognised{hint}; looked for:\n"
                          + "\n".join(f"  - {item}" for item in looked)
                          + "\nsee docs/data.md for the layouts")
    return layout


_SUFFIX = re.compile(r"^(.*?)[xX](\d+)$")


def _by_stem(files: list[Path], role: str, folder: Path, problems: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            problems.append(f"{p}: two {role} files with the stem {p.stem!r} ({out[p.stem].name}, {p.name}) "
                            f"in {folder}; keep one")
            continue
        out[p.stem] = p
    return out


def _ignored_note(folder: Path, others: list[Path]) -> str:
    names = ", ".join(p.name for p in others[:5]) + (" ..." if len(others) > 5 else "")
    return f"ignored non-image files in {folder.name}/: {names}"


def match_pairs(layout: Layout, *, scale: int) -> tuple[list[FilePair], list[str], list[str]]:
    """Pair HR and LR files by stem: ``(pairs sorted by stem, problems, notes)``.

    An LR stem matches the HR stem itself or the HR stem followed by ``x<scale>``.
    Every unpaired file is one problem (message names the file and the fix).
    """
    problems: list[str] = []
    notes: list[str] = []
    hr_files, hr_other = list_images(layout.hr_dir)
    if hr_other:
        notes.append(_ignored_note(layout.hr_dir, hr_other))
    if not hr_files:
        raise LayoutError(f"{layout.hr_dir}: no HR images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}); "
                          "put the HR images there or fix the path")
    hr = _by_stem(hr_files, "HR", layout.hr_dir, problems)
    if layout.lr_dir is None:
        return [FilePair(s, p, None) for s, p in sorted(hr.items())], problems, notes
    lr_files, lr_other = list_images(layout.lr_dir)
    if lr_other:
        notes.append(_ignored_note(layout.lr_dir, lr_other))
    if not lr_files:
        raise LayoutError(f"{layout.lr_dir}: no LR images for the {len(hr)} HR images in {layout.hr_dir}; "
                          f"add the LR images (named <stem>x{scale}.png), or pass {layout.hr_dir} alone "
                          "to generate them")
    partner: dict[str, Path] = {}
    wrong_scale: set[str] = set()
    for p in lr_files:
        m = _SUFFIX.match(p.stem)
        if p.stem in hr:
            key = p.stem
        elif m and m.group(1) in hr and int(m.group(2)) == scale:
            key = m.group(1)
        elif m and m.group(1) in hr:
            problems.append(f"{p}: LR name says x{m.group(2)} but the scale is {scale}; "
                            f"run with --scale {m.group(2)}, or use the x{scale} LR images")
            wrong_scale.add(m.group(1))
            continue
        else:
            problems.append(f"{p}: LR image without an HR partner (looked for {layout.hr_dir}/"
                            f"{m.group(1) if m else p.stem}.*); add the HR image or remove this file")
            continue
        if key in partner:
            problems.append(f"{p}: a second LR image for HR {key!r} (also {partner[key].name}); keep one")
            continue
        partner[key] = p
    pairs = []
    for stem, hr_path in sorted(hr.items()):
        if stem not in partner:
            if stem in wrong_scale:
                continue  # already reported with the LR file
            problems.append(f"{hr_path}: HR image without an LR partner (looked for {layout.lr_dir}/"
                            f"{stem}x{scale}.* or {stem}.*); add the LR image or remove this file")
            continue
        pairs.append(FilePair(stem, hr_path, partner[stem]))
    return pairs, problems, notes
