"""Data sets: layouts, validated HR/LR pairs, the built-in default set, a decode-once cache.

Every image in a ``Split`` is ``numpy.uint8`` ``H x W x 3`` RGB. The HR is modcropped to the
scale (bottom/right cropped to a multiple of it) and the LR is exactly ``HR / scale`` in size.
``load_split`` reads and checks every file before returning, and collects every problem of a
folder into one ``DataError``, so a bad pair fails the data set before any model runs.
``docs/data.md`` documents the layouts, the spec forms, the conversions and the hash.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.bicubic import imresize, modcrop
from harness.data.cache import read_arrays, write_arrays
from harness.data.layouts import Layout, LayoutError, find_layout, match_pairs

BUILTIN_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
BUILTIN_CROP = 256  # centre crop (pixels, per side at most) that keeps the default demo fast on a CPU
# Names the LR generator in file hashes and cache keys; change it when the resize changes.
LR_METHOD = "harness.data.bicubic.imresize/matlab-bicubic/1"


@dataclass(eq=False)
class Pair:
    """One image: HR (modcropped to the scale) and LR (exactly HR / scale), uint8 HxWx3 RGB."""
    name: str
    hr: np.ndarray
    lr: np.ndarray
    file: str | None = None   # the HR file (None for the built-in set and caches)


@dataclass(eq=False)
class Split:
    """A validated data set for one split (``valid`` or ``test``) at one scale."""
    name: str                 # data set name ("builtin", "Set5", "DIV2K", ...)
    split: str                # valid | test
    scale: int
    pairs: list[Pair]
    file_hash: str            # sha256 hex, see ``docs/data.md``
    notes: list[str] = field(default_factory=list)
    layout: str = "builtin"   # builtin | div2k | div2k_lsdir | benchmark | pair | hr_only
    root: str | None = None   # the folder read (None for the built-in set)
    # sha256 of the arrays (``content_sha256``) when it is known to hold: set by ``load_cache``
    # after checking it. Data derived from the HR (prepared for scoring) is shared by this key.
    content_sha256: str | None = None


class DataError(ValueError):
    """The data cannot be used; the message names every bad file and the fix."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


def cache_dir() -> Path:
    """Folder of generated LR images: ``$ESR_CACHE`` or ``~/.cache/esr``."""
    return Path(os.environ.get("ESR_CACHE") or Path.home() / ".cache" / "esr")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- reading one image

@dataclass
class Decoded:
    image: np.ndarray         # uint8 HxWx3 RGB
    sha256: str               # of the file's bytes
    size: int                 # bytes
    conversion: str | None    # None, "grayscale" or "opaque alpha"


def _png_bit_depth(data: bytes) -> int | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 24:
        return data[24]
    return None


def decode_image(path: Path) -> Decoded:
    """Read one image file as uint8 RGB; raise ``DataError`` naming the file and the fix.

    Grayscale is replicated to 3 channels; an alpha channel is dropped only when every pixel
    is fully opaque (255); 16-bit and other non-8-bit images are refused.
    """
    from skimage import io as skio

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); check the file and its permissions") from exc
    if _png_bit_depth(data) == 16:
        # Pillow silently drops the low byte of 16-bit RGB PNGs, so refuse before decoding.
        raise DataError(f"{path}: 16-bit PNG; convert it to 8-bit RGB (the challenges use 8-bit PNG)")
    try:
        # From the path, not the bytes: the extension picks the plugin (tifffile keeps 16 bits).
        img = np.asarray(skio.imread(path))
    except Exception as exc:  # any decoder failure means a corrupt or unsupported file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: corrupt or unreadable image ({msg}); re-export or re-download it") from exc
    if img.dtype != np.uint8:
        bits = img.dtype.itemsize * 8
        kind = f"{bits}-bit" if img.dtype.kind in "ui" else f"{img.dtype} ({'1-bit' if img.dtype == bool else 'float'})"
        raise DataError(f"{path}: {kind} image; convert it to 8-bit RGB (the challenges use 8-bit PNG)")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise DataError(f"{path}: image of shape {img.shape} (several frames?); save a single 8-bit RGB frame")
    channels = img.shape[2]
    conversion = None
    if channels in (2, 4):
        alpha = img[:, :, -1]
        if not np.all(alpha == 255):
            n = int(np.count_nonzero(alpha != 255))
            raise DataError(f"{path}: alpha channel with {n} transparent pixel(s); flatten it onto a background "
                            "and save it as RGB (the harness will not guess the background)")
        img = img[:, :, :-1]
        conversion = "opaque alpha"
        channels -= 1
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
        conversion = "grayscale" if conversion is None else "grayscale, opaque alpha"
    elif channels != 3:
        raise DataError(f"{path}: {channels} channels; save it as 8-bit RGB")
    return Decoded(np.ascontiguousarray(img), sha256_bytes(data), len(data), conversion)


def _parallel(fn, items: list) -> list:
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # decoders and numpy release the GIL
        return list(pool.map(fn, items))


def _decode_all(paths: list[Path]) -> list[Decoded | DataError]:
    def one(p):
        try:
            return decode_image(p)
        except DataError as exc:
            return exc

    return _parallel(one, paths)


# ---------------------------------------------------------------- hashing

def hash_lines(lines: list[str]) -> str:
    """sha256 of the sorted lines joined by newlines."""
    return sha256_bytes("\n".join(sorted(lines)).encode())


def file_line(role: str, folder: Path, path: Path, decoded: Decoded) -> str:
    """``<role>/<name relative to its folder>\\t<size>\\t<sha256 of the bytes>``."""
    return f"{role}/{path.relative_to(folder).as_posix()}\t{decoded.size}\t{decoded.sha256}"


def array_sha256(img: np.ndarray) -> str:
    img = np.ascontiguousarray(img)
    return sha256_bytes(f"{img.dtype.str}{img.shape}".encode() + img.tobytes())


# ---------------------------------------------------------------- LR generation

def generated_lr(hr: np.ndarray, *, scale: int, key: str, use_cache: bool = True) -> tuple[np.ndarray, bool]:
    """``imresize(hr, 1/scale)`` for a modcropped uint8 HR, cached on disk by ``key``.

    key: the HR file's sha256. Returns ``(lr, from_cache)``. A cache that cannot be written
    is skipped silently (the LR is still correct, only slower next time).
    """
    want = (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    name = sha256_bytes(f"{LR_METHOD}|x{scale}|{key}".encode())[:40]
    path = cache_dir() / "lr" / f"{name}.npy"
    if use_cache:
        try:
            lr = np.load(path, allow_pickle=False)
            if lr.shape == want and lr.dtype == np.uint8:
                return lr, True
        except (OSError, ValueError):
            pass
    lr = imresize(hr, 1 / scale)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, lr)
            os.replace(tmp, path)
        except OSError:
            pass
    return lr, False


# ---------------------------------------------------------------- the built-in set

def builtin_split(*, scale: int, split: str = "valid") -> Split:
    """The built-in set: six colour images of ``skimage.data``, no download needed.

    Each is centre-cropped to at most ``BUILTIN_CROP`` x ``BUILTIN_CROP`` (top-left corner at
    ``((H - h) // 2, (W - w) // 2)``), modcropped to ``scale``; LR = ``imresize(hr, 1/scale)``.
    """
    import skimage
    import skimage.data

    pairs, lines = [], []
    for name in BUILTIN_IMAGES:
        img = getattr(skimage.data, name)()
        h, w = min(BUILTIN_CROP, img.shape[0]), min(BUILTIN_CROP, img.shape[1])
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        hr = np.ascontiguousarray(modcrop(img[top:top + h, left:left + w, :3], scale))
        lr = imresize(hr, 1 / scale)
        pairs.append(Pair(name, hr, lr))
        lines.append(f"builtin/{name}\t{array_sha256(hr)}\t{array_sha256(lr)}")
    notes = [f"built-in set: {len(pairs)} colour images of scikit-image {skimage.__version__} (skimage.data), "
             f"centre-cropped to at most {BUILTIN_CROP}x{BUILTIN_CROP}, modcropped to x{scale}; "
             f"LR made with MATLAB-compatible bicubic ({LR_METHOD})"]
    return Split("builtin", split, scale, pairs, hash_lines(lines), notes, "builtin", None)


# ---------------------------------------------------------------- folders

def _size_problem(hr_path: Path, lr_path: Path, hr: np.ndarray, lr: np.ndarray, scale: int) -> str:
    H, W = hr.shape[:2]
    Hc, Wc = H - H % scale, W - W % scale
    h, w = lr.shape[:2]
    hint = ""
    if h and w and Hc % h == 0 and Wc % w == 0 and Hc // h == Wc // w and Hc // h != scale:
        hint = f" (the sizes suggest x{Hc // h}: check --scale)"
    return (f"{lr_path}: LR is {w}x{h} but HR {hr_path.name} is {W}x{H} ({Wc}x{Hc} after modcrop to x{scale}), "
            f"which needs an LR of {Wc // scale}x{Hc // scale}{hint}; make the LR from the modcropped HR")


def _conversion_notes(converted: dict[str, list[str]]) -> list[str]:
    text = {
        "grayscale": "grayscale images converted to RGB by replicating the channel",
        "opaque alpha": "fully opaque alpha channels dropped",
        "grayscale, opaque alpha": "grayscale images with a fully opaque alpha: alpha dropped, channel replicated",
    }
    return [f"{text[kind]} ({len(names)}): {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
            for kind, names in sorted(converted.items())]


def load_folder(layout: Layout, *, scale: int, split: str) -> Split:
    """Read, convert and check every file of ``layout``; one ``DataError`` lists all problems."""
    try:
        files, problems, notes = match_pairs(layout, scale=scale)
    except LayoutError as exc:
        raise DataError(str(exc)) from exc
    hr_dec = _decode_all([f.hr for f in files])
    lr_dec = _decode_all([f.lr for f in files]) if layout.lr_dir is not None else [None] * len(files)
    pairs, lines, converted, cropped = [], [], {}, 0
    to_generate = []  # (pair index, HR sha256) of HR-only pairs
    for f, hd, ld in zip(files, hr_dec, lr_dec):
        bad = [d for d in (hd, ld) if isinstance(d, DataError)]
        problems.extend(str(d) for d in bad)
        if bad:
            continue
        for role, d, path in (("HR", hd, f.hr), ("LR", ld, f.lr)):
            if d is not None and d.conversion:
                converted.setdefault(d.conversion, []).append(f"{role} {path.name}")
        hr = modcrop(hd.image, scale)
        cropped += hr.shape != hd.image.shape
        hr = np.ascontiguousarray(hr)
        lines.append(file_line("hr", layout.hr_dir, f.hr, hd))
        if ld is None:
            if min(hr.shape[:2]) < scale:
                problems.append(f"{f.hr}: HR is {hd.image.shape[1]}x{hd.image.shape[0]}, smaller than the scale "
                                f"{scale}; remove it")
                continue
            lr = None
            to_generate.append((len(pairs), hd.sha256))
        else:
            lr = ld.image
            if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
                problems.append(_size_problem(f.hr, f.lr, hd.image, lr, scale))
                continue
            lines.append(file_line("lr", layout.lr_dir, f.lr, ld))
        pairs.append(Pair(f.stem, hr, lr, str(f.hr)))
    if problems:
        where = f"{layout.root} ({layout.name} layout, {split}, x{scale})"
        raise DataError(f"data {where}: {len(problems)} problem(s); fix them and run again:\n"
                        + "\n".join(f"  - {p}" for p in problems), problems)
    made = _parallel(lambda job: generated_lr(pairs[job[0]].hr, scale=scale, key=job[1]), to_generate)
    for (index, _), (lr, _) in zip(to_generate, made):
        pairs[index].lr = lr
    reused = sum(hit for _, hit in made)
    generated = len(made) - reused
    notes = list(layout.notes) + notes
    if layout.lr_dir is None:
        lines.append(f"lr/generated\t{LR_METHOD}\tx{scale}")
        notes.append(f"LR generated from the HR with MATLAB-compatible bicubic: imresize(modcrop(HR, {scale}), "
                     f"1/{scale}) ({LR_METHOD}); cached in {cache_dir() / 'lr'} "
                     f"({generated} computed, {reused} reused)")
    else:
        notes.append(f"HR from {layout.hr_dir}, LR from {layout.lr_dir}")
    if cropped:
        notes.append(f"modcrop to x{scale} cropped {cropped} of {len(pairs)} HR images")
    notes.extend(_conversion_notes(converted))
    return Split(layout.dataset, split, scale, pairs, hash_lines(lines), notes, layout.name, str(layout.root))


def load_split(spec: str | os.PathLike | None, *, scale: int, split: str = "valid") -> Split:
    """Load and validate one split.

    spec: ``None`` or ``"builtin"`` (the built-in set), a folder (layout recognised by its
    contents), or ``"HR_DIR,LR_DIR"``. scale: integer upscaling factor. split: ``valid`` or
    ``test`` (picks the sub-layout of a root that holds both).
    Raises ``DataError`` naming every bad file and the fix.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise DataError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "builtin"):
        return builtin_split(scale=scale, split=split)
    if not str(os.fspath(spec)).strip():
        raise DataError("empty data spec; give 'builtin', a folder, or HR_DIR,LR_DIR")
    try:
        layout = find_layout(spec, scale=scale, split=split)
    except LayoutError as exc:
        raise DataError(str(exc)) from exc
    return load_folder(layout, scale=scale, split=split)


CACHE_SCHEMA = "esr-data-cache/2"


class CacheMismatch(DataError):
    """A decoded-data cache whose arrays no longer match their content hash."""


def content_sha256(split: Split, *, roles: tuple = ("hr", "lr")) -> str:
    """sha256 over the decoded arrays (image names, roles, dtypes, shapes, bytes), in order.

    This is what a cache must hold; it is computed from the freshly decoded data by the
    parent and checked whenever a cache is read, so a modified cache is never trusted.
    """
    digest = hashlib.sha256()
    for pair in split.pairs:
        for role in roles:
            img = np.ascontiguousarray(getattr(pair, role))
            digest.update(f"{pair.name}|{role}|{img.dtype.str}|{img.shape}|".encode())
            digest.update(memoryview(img).cast("B"))
    return digest.hexdigest()


def save_cache(split: Split, path: str | Path, *, roles: tuple = ("hr", "lr")) -> Path:
    """Write a decoded split to ``path`` (one uncompressed ``.npz``, atomically); returns it.

    roles: ``("hr", "lr")`` for the parent's cache, ``("lr",)`` for the LR-only file that a
    worker (team code) is given. The meta holds ``content_sha256`` of what was written.
    """
    meta = {"schema": CACHE_SCHEMA, "name": split.name, "split": split.split, "scale": split.scale,
            "file_hash": split.file_hash, "notes": split.notes, "layout": split.layout, "root": split.root,
            "images": [p.name for p in split.pairs], "roles": list(roles),
            "content_sha256": content_sha256(split, roles=roles)}
    arrays = {}
    for i, pair in enumerate(split.pairs):
        for role in roles:
            arrays[f"{role}{i:05d}"] = np.ascontiguousarray(getattr(pair, role))
    write_arrays(path, meta, arrays)
    return Path(path)


def load_cache(path: str | Path, *, mmap: bool = True, expect: str | None = None) -> Split:
    """A split written by ``save_cache``; images are read-only memory maps when ``mmap``.

    The arrays are hashed and compared with ``expect`` (the hash the caller holds, from the
    decoded source) or, without it, with the hash in the file; a difference raises
    ``CacheMismatch``. An LR-only cache gives pairs whose ``hr`` is None.
    """
    try:
        meta, arrays = read_arrays(path, mmap=mmap)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read the decoded-data cache ({exc}); delete it and run again") from exc
    if meta.get("schema") != CACHE_SCHEMA:
        raise CacheMismatch(f"{path}: cache schema {meta.get('schema')!r}, expected {CACHE_SCHEMA!r}; "
                            "delete it and run again")
    roles = tuple(meta.get("roles") or ("hr", "lr"))
    try:
        pairs = [Pair(name, arrays.get(f"hr{i:05d}"), arrays[f"lr{i:05d}"]) for i, name in enumerate(meta["images"])]
    except KeyError as exc:
        raise CacheMismatch(f"{path}: cache lacks array {exc}; it was modified") from None
    if "hr" in roles and any(p.hr is None for p in pairs):
        raise CacheMismatch(f"{path}: cache lacks HR arrays; it was modified")
    split = Split(meta["name"], meta["split"], meta["scale"], pairs, meta["file_hash"], meta["notes"],
                  meta["layout"], meta["root"])
    want = expect or meta.get("content_sha256")
    got = content_sha256(split, roles=roles)
    if got != want:
        raise CacheMismatch(f"{path}: decoded-data cache does not match its content hash "
                            f"({got[:12]}... instead of {str(want)[:12]}...): it was modified")
    if tuple(roles) == ("hr", "lr"):
        split.content_sha256 = got
    return split


def ensure_cache(split: Split, path: str | Path, *, roles: tuple = ("hr", "lr")) -> tuple[str, str | None]:
    """Make ``path`` hold exactly ``split``'s arrays; returns ``(content_sha256, note)``.

    An existing file is reused only when its arrays hash to the decoded data's hash; otherwise
    it is rewritten and the note says so (a cache is never trusted by its file name).
    """
    want = content_sha256(split, roles=roles)
    note = None
    if Path(path).exists():
        try:
            load_cache(path, expect=want)
            return want, None
        except DataError as exc:
            note = f"rebuilt {Path(path).name}: {exc}"
    save_cache(split, path, roles=roles)
    return want, note


def check_sizes(split: Split, *, crop_border: int, window: int) -> None:
    """Refuse images too small to score at this scale: after cropping ``crop_border`` pixels
    from every side the HR must keep at least the SSIM window (``window`` x ``window``; the
    caller passes ``harness.measure.metrics.SSIM_WINDOW``). One ``DataError`` names every such file."""
    SSIM_WINDOW = window
    need = SSIM_WINDOW + 2 * crop_border
    small = [p for p in split.pairs if min(p.hr.shape[:2]) < need]
    if small:
        lines = [f"{p.file or p.name}: HR {p.hr.shape[1]}x{p.hr.shape[0]} (LR {p.lr.shape[1]}x{p.lr.shape[0]}) "
                 f"is smaller than {need}x{need}" for p in small]
        raise DataError(f"data {split.root or split.name} ({split.split}, x{split.scale}): {len(small)} image(s) too "
                        f"small for PSNR/SSIM with crop_border {crop_border} and the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM "
                        f"window: " + "; ".join(lines) + "; remove them or lower --crop-border", lines)


def describe(split: Split) -> dict:
    """The record's view of a split (``record["data"][split]``)."""
    return {
        "name": split.name, "split": split.split, "scale": split.scale, "layout": split.layout,
        "root": split.root, "n": len(split.pairs), "file_hash": split.file_hash, "notes": list(split.notes),
        "images": [p.name for p in split.pairs],
    }
