"""`esr run` refuses unusable options and data before anything runs: one line, exit 2."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import entry_line, write_entries

from harness.cli import main as esr


@pytest.fixture
def folders(tmp_path):
    models, zoo = tmp_path / "models", tmp_path / "zoo"
    zoo.mkdir()
    write_entries(models, "good", entry_line("good"))
    return models, zoo, tmp_path


def run_args(models, zoo, out, *extra):
    return ["run", "--models", str(models), "--zoo", str(zoo), "--out", str(out), "--quiet", "--device", "cpu", *extra]


CASES = [
    (["--timeout", "0"], "--timeout 0: must be a positive number of seconds"),
    (["--timeout", "-5"], "--timeout -5: must be a positive number of seconds"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
    (["--tile", "0"], "--tile 0: must be a positive LR tile size"),
    (["--input", "3x0x0"], "--input 3x0x0: every dimension must be at least 1"),
    (["--input", "abc"], "--input abc: expected CxHxW"),
    (["--entries", ","], "--entries ',': names no entry"),
    (["--trials", "0"], "--trials 0: must be at least 1"),
    (["--crop-border", "x"], "--crop-border x: give a non-negative integer or 'scale'"),
    (["--device", "tpu"], "--device tpu: unknown device; use cpu, cuda, cuda:N or auto"),
    (["--fp16"], "--fp16: half precision is measured on CUDA only and this run is on the CPU"),
]


@pytest.mark.parametrize("extra,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_invalid_option_is_one_line_and_exit_2(folders, capsys, extra, message):
    models, zoo, root = folders
    out = root / "run"
    assert esr(run_args(models, zoo, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"esr run: {message}"), err
    assert "\n" not in err
    assert not out.exists()  # refused before anything ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_one_error_not_one_per_entry(folders, capsys):
    models, zoo, root = folders
    argv = run_args(models, zoo, root / "run")
    argv[argv.index("--device") + 1] = "cuda"
    assert esr(argv) == 2
    assert capsys.readouterr().err.strip() == ("esr run: --device cuda: no CUDA device on this machine; "
                                               "use --device cpu or another index")


def test_missing_folders_and_unusable_out(folders, capsys):
    models, zoo, root = folders
    assert esr(run_args(models, root / "nozoo", root / "run")) == 2
    assert capsys.readouterr().err.strip() == f"esr run: --zoo {root / 'nozoo'}: does not exist; give the folder of checkpoints"
    assert esr(run_args(root / "nomodels", zoo, root / "run")) == 2
    assert capsys.readouterr().err.strip().startswith(f"esr run: --models {root / 'nomodels'}: does not exist")
    afile = root / "afile"
    afile.write_text("x")
    assert esr(run_args(models, zoo, afile)) == 2
    assert capsys.readouterr().err.strip() == f"esr run: --out {afile}: is a file; give a folder for the run"
    assert esr(run_args(models, zoo, afile / "sub")) == 2
    assert capsys.readouterr().err.strip() == f"esr run: --out {afile / 'sub'}: {afile} is not writable; choose another folder"
    if os.geteuid() != 0:  # root writes anywhere
        locked = root / "locked"
        locked.mkdir(mode=0o500)
        assert esr(run_args(models, zoo, locked / "run")) == 2
        assert "is not writable; choose another folder" in capsys.readouterr().err


def _png(path: Path, size: int) -> None:
    from skimage import io as skio

    rng = np.random.default_rng(0)
    skio.imsave(path, rng.integers(0, 255, (size, size, 3), dtype=np.uint8), check_contrast=False)


@pytest.mark.parametrize("case", ["dangling", "loop", "small"])
def test_bad_data_is_reported_at_data_load_naming_the_file(folders, capsys, case):
    models, zoo, root = folders
    data = root / "data"
    data.mkdir()
    _png(data / "a.png", 64)
    _png(data / "b.png", 48)
    if case == "dangling":
        (data / "c.png").symlink_to(data / "gone.png")
    elif case == "loop":
        (data / "c.png").symlink_to(data / "d.png")
        (data / "d.png").symlink_to(data / "c.png")
    else:
        _png(data / "tiny.png", 16)  # x4, crop 4: 16 - 8 = 8 < 11 (SSIM window)
    out = root / "run"
    code = esr(run_args(models, zoo, out, "--data", str(data)))
    text = " ".join(capsys.readouterr().out.split())
    assert code == 2
    assert not (out / "records").exists()
    if case == "dangling":
        assert f"{data / 'c.png'} (points to {data / 'gone.png'}, which does not exist)" in text
    elif case == "loop":
        assert f"{data / 'c.png'} (symbolic link loop)" in text
    else:
        assert f"{data / 'tiny.png'}: HR 16x16 (LR 4x4) is smaller than 19x19" in text
        assert "too small for PSNR/SSIM with crop_border 4" in text
