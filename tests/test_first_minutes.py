"""The first minutes of a new user: tables that read at 80 columns, a run that says what it left out,
progress lines with an ETA when the output is not a terminal, and run-time warnings."""
from __future__ import annotations

import io
import re

import pytest
import torch
from rich.console import Console
from tiny import HEADER, write_model

from harness.cli import main as esr
from harness.running.progress import Eta, clock, progress_bar
from harness.running.summary import layout_for, rich_table

FAST = ["--data", "builtin", "--input", "3x32x32", "--trials", "1", "--device", "cpu", "--threads", "1", "--quiet"]


def record(name, status="ok", trained=True, **metrics):
    base = {"params": 893_936, "macs": 58_430_800_000, "macs_legacy": 58_531_500_000, "activations": 154_140_700,
            "conv": 43, "valid.runtime_ms": 123.456, "valid.memory_mib": 120.5, "valid.psnr_rgb": 30.3312,
            "valid.psnr_y": 32.2234, "valid.ssim_rgb": 0.8659, "valid.ssim_y": 0.8948,
            "test.runtime_ms": 130.0, "test.psnr_y": 31.0}
    base.update(metrics)
    return {"entry": name, "status": status, "trained": trained, "metrics": base, "flags": [], "error": None}


def render(table, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.export_text()


NAMES = ["team15_AFDN", "team23_ByteESR_LongName", "ntire2022_team04_rlfn", "bicubic"]


@pytest.mark.parametrize("width", [80, 100, 120])
def test_run_table_keeps_every_name_and_the_main_figures_at_narrow_widths(width):
    records = [record(n) for n in NAMES] + [record("imdn_untrained", status="untrained", trained=False)]
    text = render(rich_table(records, title="esr run", width=width), width)
    assert max(len(line) for line in text.splitlines()) <= width
    for name in NAMES + ["imdn_untrained"]:
        assert name in text, f"{name} cut at width {width}:\n{text}"
    assert "…" not in text
    assert "0.894" in text and "58.43" in text  # params (M) and MACs (G)
    assert "32.22" in text and "0.8948" in text  # PSNR-Y and SSIM-Y of the valid split
    untrained_row = next(line for line in text.splitlines() if line.strip().startswith("imdn_untrained"))
    assert "32.22" not in untrained_row and "-" in untrained_row


def test_layout_is_chosen_by_width():
    assert layout_for(80) == "narrow" and layout_for(120) == "medium" and layout_for(200) == "full"
    one_split = record("imdn")
    del one_split["metrics"]["test.runtime_ms"], one_split["metrics"]["test.psnr_y"]
    wide = render(rich_table([one_split], width=200), 200)
    assert "PSNR RGB (dB)" in wide and "30.3312" in wide  # full precision in the wide layout


def test_untrained_quality_is_a_dash_with_the_reason_in_the_notes():
    from harness.running.summary import markdown

    text = markdown([record("imdn", status="untrained", trained=False)])
    row = next(line for line in text.splitlines() if line.startswith("| imdn |"))
    assert "30.33" not in row and "32.22" not in row
    assert "no trained checkpoint found in the zoo" in text and "ESR_ZOO" in text


def test_progress_lines_with_eta_when_not_a_terminal():
    now = [0.0]
    stream = io.StringIO()
    bar = progress_bar(3, stream=stream)
    bar.eta = Eta(3, now=lambda: now[0])
    with bar as advance:
        now[0] = 10.0
        advance("imdn", done=False)
        advance("imdn: ok", done=True)
        now[0] = 20.0
        advance("rlfn: ok", done=True)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/3] imdn ...  (elapsed 0:10, ETA ?)"
    assert lines[1] == "[1/3] imdn: ok  (elapsed 0:10, ETA 0:20)"   # 10 s per entry, 2 left
    assert lines[2] == "[2/3] rlfn: ok  (elapsed 0:20, ETA 0:10)"
    assert clock(3725) == "1:02:05"


SCALE2 = HEADER + "\nENTRIES = [Entry(name='x2only', model=Tiny, kwargs={'scale': 2}, scale=2)]\n"


def test_an_entry_at_another_scale_is_listed_and_a_run_that_measures_nothing_fails(tmp_path, capsys):
    models = tmp_path / "models"
    write_model(models, "x2only", SCALE2, header=False)
    code = esr(["run", "--models", str(models), "--zoo", str(tmp_path), "--out", str(tmp_path / "out"), *FAST])
    out = capsys.readouterr().out
    assert code == 1
    assert "x2only: not measured: its card says scale 2, the run is at scale 4 (run with --scale 2)" in out
    assert "nothing was measured" in out


BIAS_MODEL = HEADER + '''
class Brighten(nn.Module):
    """Nearest upsampling plus a learned offset of 10 grey levels: trained on [0, 255]."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(1))
        self.up = nn.Upsample(scale_factor=4, mode="nearest")

    def forward(self, x):
        return self.up(x) + self.offset


ENTRIES = [Entry(name="wrong_range", model=Brighten, scale=4, input_range=1.0, checkpoint="brighten.pth"),
           Entry(name="right_range", model=Brighten, scale=4, input_range=255.0, checkpoint="brighten.pth")]
'''


def test_the_run_warns_about_an_implausible_input_range_and_notes_helper_files(tmp_path, capsys):
    models, zoo = tmp_path / "models", tmp_path / "zoo"
    zoo.mkdir()
    torch.save({"offset": torch.tensor([10.0])}, zoo / "brighten.pth")
    write_model(models, "brighten", "import blocks\n" + BIAS_MODEL, header=False)
    write_model(models, "blocks", "def helper():\n    return 1\n", header=False)
    code = esr(["run", "--models", str(models), "--zoo", str(zoo), "--out", str(tmp_path / "out"), *FAST,
                "--no-complexity"])
    out = capsys.readouterr().out
    assert code == 0
    warnings = [line for line in out.splitlines() if "looks wrong" in line]
    assert len(warnings) == 1 and "wrong_range: input range 1 looks wrong" in warnings[0]
    assert "with input_range = 255" in warnings[0]
    assert "blocks.py: helper imported by brighten.py; not an entry" in out
    assert not re.search(r"^\s*blocks\s", out, re.M)  # no table row for the helper


RANK_CSV = """entry,status,valid.psnr_rgb,test.psnr_rgb,runtime_ms,params,macs_legacy,activations,valid.memory_mib,conv
IMDN_baseline,baseline,29.13,28.78,50.86,893936,58530000000,154140000,471.76,43
team_AlphaLongTeamName,,29.01,28.72,27.11,317000,19700000000,80050000,377.91,39
team_Beta,,29.00,28.69,28.07,341000,22280000000,72090000,204.60,34
team_Gamma_Too_Slow_For_Gate,,28.50,28.40,20.00,300000,18000000000,70000000,300.00,30
"""


def test_rank_table_at_80_columns_keeps_every_name_and_the_ranked_figures(tmp_path, capsys, monkeypatch):
    csv = tmp_path / "published.csv"
    csv.write_text(RANK_CSV)
    monkeypatch.setenv("COLUMNS", "80")
    assert esr(["rank", str(csv), "--track", "ntire2022"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for name in ("IMDN_baseline", "team_AlphaLongTeamName", "team_Beta", "team_Gamma_Too_Slow_For_Gate"):
        assert name in out, name
    assert "27.11" in out and "28.07" in out  # the ranked metric, Ave. Time
    assert "team_Gamma_Too_Slow_For_Gate: " in out  # an unranked entry's reason moves to the notes
