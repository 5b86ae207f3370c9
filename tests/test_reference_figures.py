"""The official figures, reproduced through the harness's own code paths (`esr run`, `esr profile`).

Targets (issue: reference entries) at a 1x3x256x256 input and on Set5 x4, border 4, HR
modcropped to 4, SR clipped and rounded to uint8, averages over the 5 images.
"""
from __future__ import annotations

import json

import pytest
from conftest import set5_dir, zoo_dir

from harness.cli import main as esr

# entry: params, MACs fvcore (G), MACs legacy (G), activations (M), conv
COMPLEXITY = {
    "imdn": (893_936, 58.4308, 58.5315, 154.1407, 43),
    "fmen": (341_066, 22.2800, 22.2800, 72.0896, 34),
    "rlfn": (317_218, 19.6749, 19.6953, 80.0452, 39),
    "rlfn_ntire2022": (317_218, 19.6749, 19.6953, 80.0452, 39),
    "span": (150_688, 9.8338, 9.8338, 41.6809, 22),
}
# entry: PSNR RGB, SSIM RGB, PSNR Y, SSIM Y
SET5_X4 = {
    "imdn": (30.3343, 0.8659, 32.2260, 0.8948),
    "fmen": (30.1298, 0.8632, 32.0085, 0.8925),
    "rlfn": (30.2058, 0.8636, 32.0749, 0.8927),
    "rlfn_ntire2022": (30.2058, 0.8636, 32.0749, 0.8927),
    "span": (29.8483, 0.8586, 31.7179, 0.8886),
    "bicubic": (26.6921, 0.7731, 28.4164, 0.8101),
}


@pytest.fixture(scope="module")
def set5_run(tmp_path_factory):
    for name in ("ntire2022_imdn_baseline.pth", "ntire2022_team03_fmen.pth", "ntire2022_team04_rlfn.pth",
                 "ntire2024_team00_rlfn.pth", "ntire2026_team00_SPAN.pth"):
        if not (zoo_dir() / name).is_file():
            pytest.skip(f"official checkpoint {name} not found in {zoo_dir()} (set ESR_ZOO or ESR_SHARED)")
    if not (set5_dir() / "HR").is_dir():
        pytest.skip(f"Set5 not found at {set5_dir()} (set ESR_SET5 or ESR_SHARED)")
    out = tmp_path_factory.mktemp("set5")
    code = esr(["run", "--data", str(set5_dir()), "--zoo", str(zoo_dir()), "--out", str(out), "--trials", "1",
                "--device", "cpu", "--quiet", "--strict", "--entries", ",".join(SET5_X4)])
    assert code == 0
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(COMPLEXITY))
def test_complexity_figures(set5_run, name):
    m = set5_run[name]["metrics"]
    params, macs, legacy, acts, conv = COMPLEXITY[name]
    assert m["params"] == params
    assert round(m["macs"] / 1e9, 4) == macs
    assert round(m["macs_legacy"] / 1e9, 4) == legacy
    assert round(m["activations"] / 1e6, 4) == acts
    assert m["conv"] == conv
    assert set5_run[name]["complexity"]["input_shape"] == [1, 3, 256, 256]


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SET5_X4))
def test_set5_figures(set5_run, name):
    rec = set5_run[name]
    assert rec["status"] == "ok" and rec["trained"]
    assert rec["data"]["valid"]["layout"] == "benchmark" and rec["data"]["valid"]["n"] == 5
    m = rec["metrics"]
    got = tuple(round(m[f"valid.{k}"], 4) for k in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"))
    assert got == SET5_X4[name]


@pytest.mark.shared
def test_fmen_record_states_its_deploy_proof(set5_run):
    deploy = set5_run["fmen"]["deploy"]
    assert deploy["method"] == "switch_to_deploy" and deploy["equivalent"] and deploy["max_abs_diff"] < 1e-4


@pytest.mark.shared
def test_profile_command_gives_the_same_counts(capsys):
    if not (zoo_dir() / "ntire2026_team00_SPAN.pth").is_file():
        pytest.skip(f"SPAN checkpoint not found in {zoo_dir()}")
    assert esr(["profile", "span", "--zoo", str(zoo_dir()), "--json"]) == 0
    prof = json.loads(capsys.readouterr().out)
    params, macs, legacy, acts, conv = COMPLEXITY["span"]
    assert prof["params"] == params and round(prof["macs"] / 1e9, 4) == macs
    assert round(prof["macs_legacy"] / 1e9, 4) == legacy
    assert round(prof["activations"] / 1e6, 4) == acts and prof["conv"] == conv
