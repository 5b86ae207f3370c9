"""Data layouts, bad input, the built-in set and the decode-once cache (harness.data.splits)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import skimage.io
from PIL import Image

import harness.data.splits as data
from harness.data.bicubic import imresize, modcrop
from harness.data.splits import DataError, describe, load_cache, load_split, save_cache


def image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth-ish uint8 RGB test image (random values blurred a little)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    x = (x + np.roll(x, 1, 0) + np.roll(x, 1, 1)) / 3
    return np.round(x).astype(np.uint8)


def save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, img, check_contrast=False)
    return path


def write_pair(hr_dir: Path, lr_dir: Path, stem: str, *, scale: int = 4, lr_stem: str | None = None,
               size=(24, 20), seed=0) -> tuple[np.ndarray, np.ndarray]:
    hr = image(*size, seed)
    lr = imresize(modcrop(hr, scale), 1 / scale)
    save(hr_dir / f"{stem}.png", hr)
    save(lr_dir / f"{lr_stem if lr_stem is not None else stem + f'x{scale}'}.png", lr)
    return hr, lr


def png16_rgb(path: Path, img: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one): IHDR bit depth 16, colour type 2."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    h, w, _ = img.shape
    rows = b"".join(b"\x00" + img[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def assert_pairs(split, expected: dict[str, tuple[np.ndarray, np.ndarray]], scale: int = 4):
    assert [p.name for p in split.pairs] == sorted(expected)
    for p in split.pairs:
        hr, lr = expected[p.name]
        assert p.hr.dtype == np.uint8 and p.lr.dtype == np.uint8
        np.testing.assert_array_equal(p.hr, modcrop(hr, scale))
        np.testing.assert_array_equal(p.lr, lr)
        assert p.hr.shape == (p.lr.shape[0] * scale, p.lr.shape[1] * scale, 3)


# ---------------------------------------------------------------- layouts

def test_div2k_layout_picks_the_split(tmp_path):
    root = tmp_path / "DIV2K"
    valid = {s: write_pair(root / "DIV2K_valid_HR", root / "DIV2K_valid_LR_bicubic" / "X4", s, seed=i)
             for i, s in enumerate(["0801", "0802"])}
    test = {"0901": write_pair(root / "DIV2K_test_HR", root / "DIV2K_test_LR_bicubic" / "X4", "0901", seed=9)}
    v = load_split(str(root), scale=4, split="valid")
    t = load_split(root, scale=4, split="test")
    assert (v.layout, v.name, v.split, v.scale, v.root) == ("div2k", "DIV2K", "valid", 4, str(root))
    assert (t.layout, t.split) == ("div2k", "test")
    assert_pairs(v, valid)
    assert_pairs(t, test)
    assert v.file_hash != t.file_hash and len(v.file_hash) == 64


def test_div2k_lsdir_layout(tmp_path):
    root = tmp_path / "ntire"
    valid = {s: write_pair(root / "DIV2K_LSDIR_valid_HR", root / "DIV2K_LSDIR_valid_LR", s, seed=i)
             for i, s in enumerate(["000001", "000002", "000003"])}
    test = {"000101": write_pair(root / "DIV2K_LSDIR_test_HR", root / "DIV2K_LSDIR_test_LR", "000101", seed=7)}
    v = load_split(str(root), scale=4, split="valid")
    t = load_split(str(root), scale=4, split="test")
    assert (v.layout, t.layout) == ("div2k_lsdir", "div2k_lsdir")
    assert_pairs(v, valid)
    assert_pairs(t, test)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_benchmark_layout_at_each_scale(tmp_path, scale):
    root = tmp_path / "Set14"
    # 26 x 22 is not a multiple of 3 or 4: the HR is modcropped before the LR is made.
    expected = {s: write_pair(root / "HR", root / "LR_bicubic" / f"X{scale}", s, scale=scale, size=(26, 22), seed=i)
                for i, s in enumerate(["baboon", "comic"])}
    split = load_split(str(root), scale=scale)
    assert (split.layout, split.name) == ("benchmark", "Set14")
    assert_pairs(split, expected, scale)
    cropped = (26 % scale != 0) or (22 % scale != 0)
    assert any("modcrop" in n for n in split.notes) == cropped


def test_pair_spec_and_hr_lr_folder(tmp_path):
    # HR_DIR,LR_DIR with LR stems equal to the HR stems.
    expected = {s: write_pair(tmp_path / "gt", tmp_path / "low", s, lr_stem=s, seed=i) for i, s in enumerate("abc")}
    split = load_split(f"{tmp_path / 'gt'},{tmp_path / 'low'}", scale=4)
    assert (split.layout, split.name) == ("pair", "gt")
    assert_pairs(split, expected)
    # A folder holding exactly HR/ and LR/, LR stems with the x4 suffix: same images, same hash.
    root = tmp_path / "mine"
    for i, s in enumerate("abc"):
        write_pair(root / "HR", root / "LR", s, seed=i)
    folder = load_split(str(root), scale=4)
    assert (folder.layout, folder.name) == ("pair", "mine")
    assert_pairs(folder, expected)
    assert folder.file_hash != split.file_hash  # LR file names differ (a, ax4)


def test_same_files_in_two_layouts_have_the_same_hash(tmp_path):
    for i, s in enumerate(["0801", "0802"]):
        write_pair(tmp_path / "d" / "DIV2K_valid_HR", tmp_path / "d" / "DIV2K_valid_LR_bicubic" / "X4", s, seed=i)
        write_pair(tmp_path / "p" / "HR", tmp_path / "p" / "LR", s, seed=i)
    a = load_split(str(tmp_path / "d"), scale=4)
    b = load_split(str(tmp_path / "p"), scale=4)
    assert (a.layout, b.layout) == ("div2k", "pair")
    assert a.file_hash == b.file_hash


def test_file_hash_definition_and_changes(tmp_path):
    root = tmp_path / "set"
    write_pair(root / "HR", root / "LR", "a", seed=1)
    split = load_split(str(root), scale=4)
    import hashlib
    lines = []
    for role, folder, name in (("hr", root / "HR", "a.png"), ("lr", root / "LR", "ax4.png")):
        raw = (folder / name).read_bytes()
        lines.append(f"{role}/{name}\t{len(raw)}\t{hashlib.sha256(raw).hexdigest()}")
    assert split.file_hash == hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    hr = skimage.io.imread(root / "HR" / "a.png")
    hr[0, 0, 0] ^= 1  # one changed pixel changes the hash
    save(root / "HR" / "a.png", hr)
    assert load_split(str(root), scale=4).file_hash != split.file_hash


def test_root_with_valid_and_test_subfolders(tmp_path):
    root = tmp_path / "bench"
    v = {"v1": write_pair(root / "valid" / "HR", root / "valid" / "LR", "v1", seed=1)}
    t = {"t1": write_pair(root / "test" / "HR", root / "test" / "LR_bicubic" / "X4", "t1", seed=2)}
    (root / "test" / "LR_bicubic" / "X4").rename(root / "test" / "LR_tmp")
    (root / "test" / "LR_bicubic").rmdir()
    (root / "test" / "LR_tmp").rename(root / "test" / "LR")
    vs, ts = load_split(str(root), scale=4, split="valid"), load_split(str(root), scale=4, split="test")
    assert (vs.name, vs.layout, ts.layout) == ("bench", "pair", "pair")
    assert_pairs(vs, v)
    assert_pairs(ts, t)


def test_hr_only_generates_lr_with_imresize_and_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    hrs = {s: save(root / f"{s}.png", image(27, 30, i)) for i, s in enumerate(["p1", "p2"])}
    calls = []

    def counting(img, scale):
        calls.append(img.shape)
        return imresize(img, scale)

    monkeypatch.setattr(data, "imresize", counting)
    first = load_split(str(root), scale=4)
    assert first.layout == "hr_only" and len(calls) == 2
    for p in first.pairs:
        hr = modcrop(skimage.io.imread(hrs[p.name]), 4)
        assert p.hr.shape == (24, 28, 3) and p.lr.shape == (6, 7, 3)
        np.testing.assert_array_equal(p.hr, hr)
        np.testing.assert_array_equal(p.lr, imresize(hr, 1 / 4))
    assert any("LR generated" in n and "2 computed, 0 reused" in n for n in first.notes)
    cached = sorted((tmp_path / "cache" / "lr").glob("*.npy"))
    assert len(cached) == 2
    mtimes = [p.stat().st_mtime_ns for p in cached]
    second = load_split(str(root), scale=4)
    assert len(calls) == 2  # nothing recomputed
    assert [p.stat().st_mtime_ns for p in cached] == mtimes
    assert any("0 computed, 2 reused" in n for n in second.notes)
    assert second.file_hash == first.file_hash
    for a, b in zip(first.pairs, second.pairs):
        np.testing.assert_array_equal(a.lr, b.lr)
    # Another scale is another cache entry; a changed HR file is a new key.
    load_split(str(root), scale=2)
    assert len(calls) == 4
    hr = image(27, 30, 5)
    save(root / "p1.png", hr)
    third = load_split(str(root), scale=4)
    assert len(calls) == 5 and third.file_hash != first.file_hash
    np.testing.assert_array_equal(third.pairs[0].lr, imresize(modcrop(hr, 4), 1 / 4))


def test_hr_folder_without_lr_is_hr_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_CACHE", str(tmp_path / "cache"))
    save(tmp_path / "ds" / "HR" / "x.png", image(16, 16, 3))
    split = load_split(str(tmp_path / "ds"), scale=4)
    assert (split.layout, split.name, [p.lr.shape for p in split.pairs]) == ("hr_only", "ds", [(4, 4, 3)])


# ---------------------------------------------------------------- the built-in set

@pytest.mark.parametrize("scale, hr_side", [(4, 256), (3, 255)])
def test_builtin_set(scale, hr_side):
    split = load_split(None, scale=scale)
    assert (split.name, split.layout, split.root, len(split.pairs)) == ("builtin", "builtin", None, 6)
    assert [p.name for p in split.pairs] == list(data.BUILTIN_IMAGES)
    for p in split.pairs:
        assert p.hr.shape == (hr_side, hr_side, 3) and p.lr.shape == (hr_side // scale, hr_side // scale, 3)
        np.testing.assert_array_equal(p.lr, imresize(p.hr, 1 / scale))
    chelsea = skimage.data.chelsea()  # 300 x 451: centre crop starts at (22, 97)
    np.testing.assert_array_equal(split.pairs[2].hr, chelsea[22:22 + hr_side, 97:97 + hr_side])
    again = load_split("builtin", scale=scale)
    assert again.file_hash == split.file_hash


def test_builtin_hash_depends_on_scale():
    assert load_split(None, scale=4).file_hash != load_split(None, scale=2).file_hash


# ---------------------------------------------------------------- decode once

@pytest.mark.parametrize("mmap", [True, False])
def test_cache_round_trip_is_exact(tmp_path, mmap):
    split = load_split(None, scale=4)
    path = save_cache(split, tmp_path / "cache" / "valid.npz")
    back = load_cache(path, mmap=mmap)
    assert describe(back) == describe(split)
    for a, b in zip(split.pairs, back.pairs):
        assert type(b.hr) is np.ndarray and b.hr.dtype == np.uint8
        np.testing.assert_array_equal(a.hr, b.hr)
        np.testing.assert_array_equal(a.lr, b.lr)
        assert b.hr.flags.writeable is (not mmap)  # memory maps are read-only


def test_cache_of_a_folder_round_trip(tmp_path):
    root = tmp_path / "Set"
    write_pair(root / "HR", root / "LR_bicubic" / "X2", "img", scale=2, size=(13, 9))
    split = load_split(str(root), scale=2)
    back = load_cache(save_cache(split, tmp_path / "c.npz"))
    assert describe(back) == describe(split)
    np.testing.assert_array_equal(back.pairs[0].hr, split.pairs[0].hr)
    assert back.pairs[0].hr.shape == (12, 8, 3)


def test_bad_cache_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz.*delete it"):
        load_cache(bad)


# ---------------------------------------------------------------- bad input

def bench_root(tmp_path: Path, n: int = 2) -> Path:
    root = tmp_path / "Set"
    for i in range(n):
        write_pair(root / "HR", root / "LR_bicubic" / "X4", f"im{i}", seed=i)
    return root


def test_corrupt_image(tmp_path):
    root = bench_root(tmp_path)
    (root / "HR" / "im1.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    with pytest.raises(DataError) as err:
        load_split(str(root), scale=4)
    assert len(err.value.problems) == 1
    assert f"{root / 'HR' / 'im1.png'}: corrupt or unreadable image" in str(err.value)
    assert "re-export or re-download" in str(err.value)


def test_missing_partners_are_reported_together(tmp_path):
    root = bench_root(tmp_path, 3)
    (root / "LR_bicubic" / "X4" / "im0x4.png").unlink()
    (root / "HR" / "im2.png").unlink()
    save(root / "LR_bicubic" / "X4" / "im1x2.png", image(6, 5, 1))  # wrong scale in the name
    with pytest.raises(DataError) as err:
        load_split(str(root), scale=4)
    problems = err.value.problems
    assert len(problems) == 3
    assert f"{root / 'HR' / 'im0.png'}: HR image without an LR partner" in problems[2]
    assert "add the LR image" in problems[2]
    assert f"{root / 'LR_bicubic' / 'X4' / 'im1x2.png'}: LR name says x2 but the scale is 4" in problems[0]
    assert f"{root / 'LR_bicubic' / 'X4' / 'im2x4.png'}: LR image without an HR partner" in problems[1]
    assert str(err.value).startswith(f"data {root} (benchmark layout, valid, x4): 3 problem(s)")


def test_size_mismatch(tmp_path):
    root = bench_root(tmp_path)
    save(root / "LR_bicubic" / "X4" / "im1x4.png", image(12, 10, 1))  # an x2 LR under X4
    with pytest.raises(DataError) as err:
        load_split(str(root), scale=4)
    msg = str(err.value)
    assert f"{root / 'LR_bicubic' / 'X4' / 'im1x4.png'}: LR is 10x12 but HR im1.png is 20x24" in msg
    assert "needs an LR of 5x6 (the sizes suggest x2: check --scale)" in msg


def test_lr_from_uncropped_hr_is_refused(tmp_path):
    root = tmp_path / "Set"
    hr = image(26, 22, 0)
    save(root / "HR" / "a.png", hr)
    save(root / "LR_bicubic" / "X4" / "ax4.png", imresize(hr, 1 / 4))  # 7 x 6 from the uncropped 26 x 22
    with pytest.raises(DataError, match=r"LR is 6x7 but HR a.png is 22x26 \(20x24 after modcrop to x4\), "
                                        r"which needs an LR of 5x6; make the LR from the modcropped HR"):
        load_split(str(root), scale=4)


def test_grayscale_is_replicated_and_noted(tmp_path):
    root = tmp_path / "Set"
    gray = image(24, 20, 0)[:, :, 0]
    lr = imresize(gray, 1 / 4)
    save(root / "HR" / "g.png", gray)
    save(root / "LR_bicubic" / "X4" / "gx4.png", lr)
    split = load_split(str(root), scale=4)
    np.testing.assert_array_equal(split.pairs[0].hr, np.stack([gray] * 3, axis=2))
    np.testing.assert_array_equal(split.pairs[0].lr, np.stack([lr] * 3, axis=2))
    assert "grayscale images converted to RGB by replicating the channel (2): HR g.png, LR gx4.png" in split.notes


def test_opaque_rgba_drops_alpha_transparent_is_refused(tmp_path):
    root = bench_root(tmp_path)
    hr = skimage.io.imread(root / "HR" / "im0.png")
    save(root / "HR" / "im0.png", np.dstack([hr, np.full(hr.shape[:2], 255, np.uint8)]))
    split = load_split(str(root), scale=4)
    np.testing.assert_array_equal(split.pairs[0].hr, hr)
    assert any(n.startswith("fully opaque alpha channels dropped (1): HR im0.png") for n in split.notes)
    alpha = np.full(hr.shape[:2], 255, np.uint8)
    alpha[3, 4] = 128
    save(root / "HR" / "im0.png", np.dstack([hr, alpha]))
    with pytest.raises(DataError, match=r"im0.png: alpha channel with 1 transparent pixel\(s\); flatten it"):
        load_split(str(root), scale=4)


def test_16_bit_images_are_refused(tmp_path):
    root = bench_root(tmp_path, 3)
    hr = skimage.io.imread(root / "HR" / "im0.png").astype(np.uint16) * 257
    png16_rgb(root / "HR" / "im0.png", hr)                      # Pillow would silently keep 8 bits
    Image.fromarray(hr[:, :, 0]).save(root / "HR" / "im1.png")  # 16-bit grayscale PNG
    (root / "HR" / "im2.png").unlink()
    save(root / "HR" / "im2.tif", hr)                          # 16-bit TIFF
    with pytest.raises(DataError) as err:
        load_split(str(root), scale=4)
    assert len(err.value.problems) == 3
    for name in ("im0.png", "im1.png", "im2.tif"):
        assert any(p.startswith(str(root / "HR" / name)) and "16-bit" in p and "convert it to 8-bit RGB" in p
                   for p in err.value.problems), name


def test_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no valid layout recognised; looked for:"):
        load_split(str(tmp_path / "empty"), scale=4)
    root = tmp_path / "Set"
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / "X4").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Set/HR: no HR images"):
        load_split(str(root), scale=4)
    save(root / "HR" / "a.png", image(8, 8, 0))
    with pytest.raises(DataError, match=r"X4: no LR images for the 1 HR images"):
        load_split(str(root), scale=4)


def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    root = tmp_path / "odd"
    (root / "images").mkdir(parents=True)
    (root / "notes.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_split(str(root), scale=4)
    msg = str(err.value)
    for looked in ("DIV2K_LSDIR_valid_HR/", "DIV2K_valid_HR/", "HR/ with LR_bicubic/X4/", "exactly HR/ and LR/",
                   "image files directly in"):
        assert looked in msg
    assert "docs/data.md" in msg


def test_missing_lr_folder_and_missing_scale(tmp_path):
    root = tmp_path / "DIV2K"
    save(root / "DIV2K_valid_HR" / "0801.png", image(8, 8, 0))
    with pytest.raises(DataError, match=r"div2k layout found \(DIV2K_valid_HR/\) but its LR folder is missing"):
        load_split(str(root), scale=4)
    bench = bench_root(tmp_path)
    with pytest.raises(DataError, match=r"no LR_bicubic/X3/ \(it has X4\); check --scale"):
        load_split(str(bench), scale=3)


def test_bad_specs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(str(tmp_path / "nope"), scale=4)
    with pytest.raises(DataError, match=r"LR folder .*nope does not exist"):
        load_split(f"{tmp_path},{tmp_path / 'nope'}", scale=4)
    with pytest.raises(DataError, match="empty data spec"):
        load_split("  ", scale=4)
    with pytest.raises(DataError, match="scale must be a positive integer"):
        load_split(None, scale=0)


def test_test_split_missing_is_explained(tmp_path):
    root = tmp_path / "DIV2K"
    write_pair(root / "DIV2K_valid_HR", root / "DIV2K_valid_LR_bicubic" / "X4", "0801")
    with pytest.raises(DataError, match=r"no test layout recognised \(it holds a valid split only"):
        load_split(str(root), scale=4, split="test")


# ---------------------------------------------------------------- Set5 (shared, MATLAB-made LR)

@pytest.mark.parametrize("scale", [4, 2])
def test_set5_benchmark_layout(set5, scale):
    split = load_split(str(set5), scale=scale)
    assert (split.name, split.layout, len(split.pairs)) == ("Set5", "benchmark", 5)
    assert [p.name for p in split.pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    for p in split.pairs:
        hr = skimage.io.imread(set5 / "HR" / f"{p.name}.png")
        lr = skimage.io.imread(set5 / "LR_bicubic" / f"X{scale}" / f"{p.name}x{scale}.png")
        np.testing.assert_array_equal(p.hr, modcrop(hr, scale))
        np.testing.assert_array_equal(p.lr, lr)
    info = describe(split)
    assert info["n"] == 5 and info["images"] == ["baby", "bird", "butterfly", "head", "woman"]
