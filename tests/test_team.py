"""A team's answers: the score estimate beside the baseline (`esr check --track`), the saved SR
images (`esr run --save-sr`) and the factsheet figures (`esr factsheet`).

Tiny models, the built-in data set, one trial. The estimate's expected score is recomputed here
from the NTIRE 2026 formula written out in the test, not from the track file.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import HEADER, entry_line, write_entries, write_model

from harness.cli import main as esr
from harness.data.splits import load_split
from harness.measure.metrics import psnr, ssim
from harness.running.save_sr import SaveError, save_sr, sr_relpath

REPO = Path(__file__).resolve().parents[1]
FAST = ["--input", "3x32x32", "--trials", "1", "--device", "cpu", "--threads", "1"]


def tiny_weights(seed: int = 0) -> dict:
    ns = {}
    exec(HEADER, ns)
    torch.manual_seed(seed)
    return ns["Tiny"]().state_dict()


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """`esr run --save-sr` on one tiny trained entry."""
    root = tmp_path_factory.mktemp("save")
    models, zoo = root / "models", root / "zoo"
    zoo.mkdir()
    write_entries(models, "team07_Tiny", entry_line("team07_Tiny", checkpoint="team07_Tiny.pth"))
    torch.save(tiny_weights(), zoo / "team07_Tiny.pth")
    out, sr = root / "run", root / "sr"
    code = esr(["run", "--models", str(models), "--zoo", str(zoo), "--out", str(out), "--data", "builtin",
                "--test", "builtin", "--save-sr", str(sr), "--quiet", *FAST])
    record = json.loads((out / "records" / "team07_Tiny.json").read_text())
    return {"root": root, "models": models, "zoo": zoo, "out": out, "sr": sr, "code": code, "record": record}


# ---- --save-sr ------------------------------------------------------------------------------------

def test_saved_sr_images_have_exactly_the_reported_psnr(saved_run):
    rec = saved_run["record"]
    assert saved_run["code"] == 0 and rec["status"] == "ok"
    saved = rec["sr_saved"]
    assert saved["dir"] == str(saved_run["sr"].resolve()) and saved["format"] == "png"
    crop = rec["settings"]["crop_border"]
    for split in ("valid", "test"):
        hr = {p.name: p.hr for p in load_split("builtin", scale=4, split=split).pairs}
        raw = rec["raw"][split]
        assert saved["files"][split] == [f"team07_Tiny/{split}/{name}.png" for name in raw["images"]]
        for i, name in enumerate(raw["images"]):
            path = saved_run["sr"] / "team07_Tiny" / split / f"{name}.png"
            img = np.asarray(Image.open(path))
            assert img.dtype == np.uint8 and img.shape == hr[name].shape
            assert psnr(img, hr[name], crop_border=crop, channel="rgb") == raw["psnr_rgb"][i]
            assert psnr(img, hr[name], crop_border=crop, channel="y") == raw["psnr_y"][i]
            assert ssim(img, hr[name], crop_border=crop, channel="rgb") == pytest.approx(raw["ssim_rgb"][i], abs=1e-12)
        assert np.mean(raw["psnr_rgb"]) == pytest.approx(rec["metrics"][f"{split}.psnr_rgb"], abs=1e-12)


def test_save_sr_to_another_folder_remeasures_and_writes_there(saved_run, capsys):
    other = saved_run["root"] / "sr2"
    out = saved_run["out"]
    args = ["run", "--models", str(saved_run["models"]), "--zoo", str(saved_run["zoo"]), "--out", str(out),
            "--data", "builtin", "--test", "builtin", "--quiet", *FAST]
    assert esr(args) == 0  # no --save-sr: the complete record is kept
    assert "kept complete records from an earlier run: team07_Tiny" in " ".join(capsys.readouterr().out.split())
    assert esr(args + ["--save-sr", str(other)]) == 0  # the images are not in that folder yet: measured again
    assert "kept complete records" not in capsys.readouterr().out
    rec = json.loads((out / "records" / "team07_Tiny.json").read_text())
    assert rec["sr_saved"]["dir"] == str(other.resolve())
    assert sorted(p.name for p in (other / "team07_Tiny" / "valid").iterdir()) == \
        sorted(f"{n}.png" for n in rec["raw"]["valid"]["images"])


@pytest.mark.parametrize("entry, split, image", [("team07_X", "valid", "../escape"), ("a/b", "valid", "x"),
                                                  ("team07_X", "valid", ".hidden"), ("team07_X", "..", "x"),
                                                  ("team07_X", "valid", "")])
def test_save_sr_refuses_names_that_are_not_one_plain_file_name(tmp_path, entry, split, image):
    with pytest.raises(SaveError, match="is not a plain file name"):
        save_sr(tmp_path, entry, split, image, np.zeros((4, 4, 3), np.uint8))
    assert not any(tmp_path.rglob("*.png"))


def test_save_sr_writes_the_exact_array_and_refuses_float(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    rel = save_sr(tmp_path, "team07_X", "valid", "baby", img)
    assert rel == sr_relpath("team07_X", "valid", "baby") == "team07_X/valid/baby.png"
    assert np.array_equal(np.asarray(Image.open(tmp_path / rel)), img)
    with pytest.raises(SaveError, match="expected a uint8 HxWx3 image"):
        save_sr(tmp_path, "team07_X", "valid", "f", img.astype(np.float32))


# ---- esr factsheet ---------------------------------------------------------------------------------

def md_rows(text: str) -> dict:
    rows = {}
    for ln in text.splitlines():
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("figure", "---"):
            rows[cells[0]] = {"value": cells[1], "unit": cells[2], "source": cells[3].strip("`"), "note": cells[4]}
    return rows


def lookup(record: dict, source: str):
    """``metrics.valid.psnr_rgb`` -> record['metrics']['valid.psnr_rgb'] (metric keys hold a dot)."""
    head, _, rest = source.partition(".")
    if head == "metrics":
        return record["metrics"][rest]
    node = record[head]
    for part in rest.split("."):
        node = node[part]
    return node


EXPECTED = {  # figure -> (record metric, divisor, digits, unit)
    "Val PSNR": ("valid.psnr_rgb", 1, 2, "dB"), "Val time per image": ("valid.runtime_ms", 1, 2, "ms"),
    "Params": ("params", 1e6, 3, "M"), "FLOPs": ("macs", 1e9, 2, "G"),
    "FLOPs (NTIRE 2022 counter)": ("macs_legacy", 1e9, 2, "G"), "Acts": ("activations", 1e6, 2, "M"),
    "Conv": ("conv", 1, 0, "count"),
}


def current_record(run) -> dict:
    return json.loads((run["out"] / "records" / "team07_Tiny.json").read_text())


def test_factsheet_every_figure_is_traced_to_the_record(saved_run, capsys):
    rec = current_record(saved_run)
    assert esr(["factsheet", "team07_Tiny", "--run", str(saved_run["out"]), "--format", "md"]) == 0
    text = capsys.readouterr().out
    rows = md_rows(text)
    assert list(rows) == ["Val PSNR", "Val time per image", "Params", "FLOPs", "FLOPs (NTIRE 2022 counter)",
                          "Acts", "GPU memory", "Conv"]
    for label, (key, div, digits, unit) in EXPECTED.items():
        row = rows[label]
        assert row["source"] == f"metrics.{key}"
        assert row["value"] == f"{lookup(rec, row['source']) / div:.{digits}f}" == f"{rec['metrics'][key] / div:.{digits}f}"
        assert row["unit"] == unit
    assert "fvcore" in rows["FLOPs"]["note"] and "1x3x32x32" in rows["FLOPs"]["note"]
    # measured on the CPU: no GPU memory, the line says what was measured instead
    kind = rec["memory"]["valid"]["kind"]
    assert kind == "cpu_peak_rss_growth"
    mem = rows["GPU memory"]
    assert mem["value"] == "-" and mem["source"] == "memory.valid.kind"
    assert mem["note"] == (f"not measured on a GPU; measured instead: {kind} = "
                           f"{rec['metrics']['valid.memory_mib']:.2f} MiB")
    info = rec["data"]["valid"]
    assert f"- Data set: builtin (valid, {info['n']} images, x4), file hash {info['file_hash']}" in text
    assert f"- Device: cpu ({rec['provenance']['device_name']})" in text
    assert f"- Harness: esr-harness {rec['provenance']['harness']} (git {rec['provenance']['git']})" in text
    assert "- Protocol: batch 1, warm-up per input shape, 1 trial(s), clock perf_counter_ns, 1 threads" in text


def test_factsheet_gpu_memory_and_latex(saved_run, tmp_path, capsys):
    rec = current_record(saved_run)
    rec["memory"]["valid"]["kind"] = "cuda_max_memory_allocated"  # as a CUDA run records it
    rec["metrics"]["valid.memory_mib"] = 705.2449
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(rec))
    out = tmp_path / "fs"
    assert esr(["factsheet", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    mem = md_rows(text)["GPU memory"]
    assert (mem["value"], mem["unit"], mem["source"]) == ("705.24", "M", "metrics.valid.memory_mib")
    tex = (out / "team07_Tiny.factsheet.tex").read_text()
    assert tex in text and (out / "team07_Tiny.factsheet.md").read_text() in text
    assert r"GPU memory & 705.24 & M \\" in tex
    assert f"Params & {rec['metrics']['params'] / 1e6:.3f} & M" in tex
    assert f"Val PSNR & {rec['metrics']['valid.psnr_rgb']:.2f} & dB" in tex
    assert r"\begin{tabular}" in tex and r"team07\_Tiny" in tex


def test_factsheet_unknown_entry_exits_2_listing_the_records(saved_run, capsys):
    assert esr(["factsheet", "team99_Nope", "--run", str(saved_run["out"])]) == 2
    err = capsys.readouterr().err
    assert "no record for entry 'team99_Nope'" in err and "holds: team07_Tiny" in err


# ---- esr check --track: the score estimate ------------------------------------------------------------

SUB_MODEL = HEADER + "\n"


def ntire2026_score(rec: dict, base: dict) -> dict:
    """NTIRE 2026: 0.8 exp(2 R/R0) + 0.1 exp(2 F/F0) + 0.1 exp(2 P/P0), R = mean of valid and test runtime."""
    def terms(r):
        m = r["metrics"]
        return (m["valid.runtime_ms"] + m["test.runtime_ms"]) / 2, m["macs"], m["params"]
    (r, f, p), (r0, f0, p0) = terms(rec), terms(base)
    s = {"runtime": math.exp(2 * r / r0), "flops": math.exp(2 * f / f0), "params": math.exp(2 * p / p0)}
    s["main"] = 0.8 * s["runtime"] + 0.1 * s["flops"] + 0.1 * s["params"]
    return s


def check_track(tmp_path, capsys, baseline_zoo) -> tuple[Path, str]:
    """``esr check --track ntire2026`` on a trained ``team07_Tiny`` submission; (its --out folder, its output)."""
    sub = tmp_path / "sub"
    write_model(sub, "team07_Tiny", "")
    (sub / "team07_Tiny.toml").write_text('class = "Tiny"\nscale = 4\ninput_range = 1.0\ncheckpoint = "team07_Tiny.pth"\n')
    torch.save(tiny_weights(1), sub / "team07_Tiny.pth")
    out = tmp_path / "estimate"
    code = esr(["check", str(sub), "--track", "ntire2026", "--models", str(REPO / "models"),
                "--baseline-zoo", str(baseline_zoo), "--out", str(out), "--timeout", "300", *FAST])
    text = capsys.readouterr().out
    assert code == 0, text
    return out, text


def test_check_track_estimates_the_score_beside_the_untrained_baseline(tmp_path, capsys):
    empty_zoo = tmp_path / "no_checkpoints"
    empty_zoo.mkdir()
    out, text = check_track(tmp_path, capsys, empty_zoo)
    team = json.loads((out / "team" / "records" / "team07_Tiny.json").read_text())
    base = json.loads((out / "baseline" / "records" / "span.json").read_text())
    assert team["status"] == "ok" and base["status"] == "untrained"  # the real SPAN entry, no checkpoint given
    assert team["data"]["test"]["file_hash"] == base["data"]["valid"]["file_hash"]  # same data, both splits
    assert team["settings"] == base["settings"]
    expected = ntire2026_score(team, base)
    rows = {re.split(r"\s{2,}", ln.strip())[0]: ln.split()[-2:] for ln in text.splitlines() if ln.startswith("  Score")}
    assert rows["Score"] == [f"{expected['main']:.4f}", f"{math.exp(2):.4f}"]
    assert rows["Score runtime"] == [f"{expected['runtime']:.4f}", f"{math.exp(2):.4f}"]
    assert rows["Score FLOPs"] == [f"{expected['flops']:.4f}", f"{math.exp(2):.4f}"]
    assert rows["Score params"] == [f"{expected['params']:.4f}", f"{math.exp(2):.4f}"]
    verdict = "beats the baseline" if expected["main"] < math.exp(2) else "does NOT beat the baseline"
    assert re.search(rf"^  main: Score {expected['main']:.4f} vs baseline {math.exp(2):.4f} \(lower is better\): "
                     rf"{verdict}", text, re.M)
    assert f"params: Score params {expected['params']:.4f} vs baseline 7.3891 (lower is better): beats the baseline" in text
    assert "CPU runtimes are a relative guide only" in text
    # the PSNR gates: measured, but not judgeable on the built-in set
    for split, threshold in (("valid", "26.90"), ("test", "26.99")):
        gate = [ln for ln in text.splitlines() if ln.strip().startswith(f"{split} PSNR >= {threshold} dB")]
        assert len(gate) == 1 and f"{team['metrics'][f'{split}.psnr_rgb']:.2f} dB here" in gate[0]
        assert (f"CANNOT be judged on this data: {split} measured on the built-in set (six scikit-image photos), "
                f"the threshold is defined on DIV2K_LSDIR_{split}") in gate[0]
    # what the untrained baseline needs, and where its checkpoint is published (from the span card)
    assert (f"baseline span ran UNTRAINED: its checkpoint ntire2026_team00_SPAN.pth was not found at "
            f"{empty_zoo / 'ntire2026_team00_SPAN.pth'}") in text
    assert ("needs: ntire2026_team00_SPAN.pth, published at github.com/Amazingren/NTIRE2026_ESR "
            "(model_zoo/team00_SPAN.pth); put it in a folder and pass --baseline-zoo DIR (or set ESR_ZOO=DIR)") in text


def test_check_track_with_the_trained_baseline_says_nothing_is_missing(tmp_path, capsys, zoo):
    from conftest import zoo_file

    zoo_file("ntire2026_team00_SPAN.pth")
    out, text = check_track(tmp_path, capsys, zoo)
    base = json.loads((out / "baseline" / "records" / "span.json").read_text())
    assert base["status"] == "ok" and base["trained"]
    assert "UNTRAINED" not in text and "needs:" not in text
    valid = [ln.split() for ln in text.splitlines() if ln.startswith("  valid PSNR [dB]")][0]
    assert valid[-1] == f"{base['metrics']['valid.psnr_rgb']:.2f}"


def test_check_track_without_the_baseline_entry_says_what_it_needs(tmp_path, capsys):
    sub = tmp_path / "sub"
    write_model(sub, "team07_Tiny", "")
    (sub / "team07_Tiny.toml").write_text('class = "Tiny"\nscale = 4\ninput_range = 1.0\n')
    empty = tmp_path / "models"
    empty.mkdir()
    code = esr(["check", str(sub), "--track", "ntire2026", "--models", str(empty), "--out", str(tmp_path / "o"),
                *FAST])
    text = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert (f"score estimate under ntire2026: not made: {empty}: none of the ntire2026 baseline entries (span, "
            f"team00_span, ntire2026_team00_span) is declared there; pass --models DIR holding span.py") in text
    assert not (tmp_path / "o").exists()
