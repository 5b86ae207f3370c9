"""Report-ready outputs: LaTeX that fits a single-column article, a plot legible with 45 entries."""
from __future__ import annotations

import io
import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from leaderboard_helpers import ntire24, rec

from leaderboard import render
from leaderboard.inputs import from_records, read_csv
from leaderboard.rank import rank, rank_all
from leaderboard.tracks import load_track

NAMES = ["ByteESR", "NJU_Jet", "NEESR", "Super", "MegSR", "rainbow", "VMCL_Taobao", "Bilibili AI", "NKU-ESR",
         "NJUST_RESTORARION", "TOVBU", "Alpan Team", "Dragon", "TieGuoDun Team", "HiImageTeam", "xilinxSR",
         "cipher", "NJU_MCG", "IMGWLH", "imglhl", "whu_sigma", "Aselsan Research", "Drinktea", "GDUT_SR",
         "Giantpandacv", "neptune", "XPixel", "NJUST_ESR", "TeamInception", "cceNBgdd", "ZLZ", "Express",
         "Just Try", "ncepu_explorers", "mju_mnu", "Virtual_Reality Team", "NTU607QCO-ESR", "Strong Tiger", "VAP",
         "Multicog", "Set5baby Team", "NWPU_SweetDreamLab", "SSL"]


def table_45(tmp_path) -> pd.DataFrame:
    """A 45-row table in the shape of the NTIRE 2022 results (made up here, dense around the cut)."""
    rng = np.random.default_rng(2022)
    lines = ["entry,status,valid.psnr_rgb,test.psnr_rgb,runtime_ms,params,macs_legacy,activations,valid.memory_mib"]
    for i, name in enumerate(NAMES):
        runtime = float(np.round(25 * np.exp(rng.uniform(0, 2.6)), 2)) if i < 35 else float(rng.choice([24, 39, 2231]))
        test = round(float(rng.uniform(28.64, 28.83)), 2) if i < 35 else round(float(rng.uniform(27.2, 28.6)), 2)
        params = int(rng.uniform(0.15, 0.85) * 1e6)
        lines.append(f"{name},,{test + 0.3:.2f},{test:.2f},{runtime},{params},{params * 62000},"
                     f"{int(rng.uniform(50, 500) * 1e6)},{rng.uniform(200, 1500):.2f}")
    lines.append("IMDN_baseline,baseline,29.13,28.78,50.86,893936,58530000000,154140000,471.76")
    lines.append("RFDN AIM2020 Winner,reference,29.04,28.75,41.97,433000,27100000000,112030000,788.13")
    path = tmp_path / "t45.csv"
    path.write_text("\n".join(lines) + "\n")
    return read_csv(path)


def long_statuses():
    records = [ntire24("a", 2e5, 12e9, 10.0, 8.0), ntire24("b_net", 3e5, 15e9, 12.0, 9.0),
               ntire24("low", 150_000, 10e9, 20.0, 16.0, pv=26.5),
               rec("crashed_one_with_a_rather_long_team_name", status="load_error",
                   error="crashed_one_with_a_rather_long_team_name: checkpoint has 12 missing keys "
                         "(body.0.conv1.weight, body.0.conv1.bias, ...); is this the deploy-mode checkpoint?")]
    return rank_all(from_records(records), load_track("ntire2024"))


# ---- LaTeX --------------------------------------------------------------------------------

def test_latex_structure_and_precision():
    rankings = long_statuses()
    tex = render.latex(rankings[:1])
    assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1
    assert tex.count(r"\midrule") == 2          # after the header, and before the unranked block
    assert r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}" in tex
    body = tex.split(r"\midrule")
    assert "a &" in body[1] and "low" in body[2] and "RLFN (published)" in body[2]
    assert r"b\_net" in tex and "valid PSNR 26.50 $<$ 26.90" in tex
    # Rank subscripts only on ranked metrics: the score, not PSNR, runtime, FLOPs or params here.
    row_a = next(line for line in tex.splitlines() if line.startswith("1 & a &"))
    assert row_a.count("$_{") == 1 and row_a.split(" & ")[2] == "27.00"
    assert r"$_{1}$" in row_a.split(" & ")[-2]
    # Scores to four significant digits, scientific notation beyond 10^4.
    assert render.value_text(rankings[0], "score", 3.683054938483609) == "3.683"
    assert render.value_text(rankings[0], "score", 37094.2) == "3.709e+04"
    huge = render.latex([rank(from_records([ntire24("slow", 2e5, 12e9, 200.0, 160.0)]),
                              load_track("ntire2024"), "main")])
    assert r"$2.466{\times}10^{11}{}_{1}$" in huge and "e+" not in huge.split(r"\midrule")[1]


def compile_tex(tmp_path, tex: str):
    (tmp_path / "t.tex").write_text(render.standalone(tex))
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    log = (tmp_path / "t.log").read_text(errors="replace")
    return out, log


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_fits_a_single_column_article(tmp_path):
    tables = render.latex(rank_all(table_45(tmp_path), load_track("ntire2022")) + long_statuses())
    out, log = compile_tex(tmp_path, tables)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "Overfull \\hbox" not in log, [line for line in log.splitlines() if "Overfull" in line]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


# ---- plot ---------------------------------------------------------------------------------

def test_plot_of_45_entries_is_legible(tmp_path):
    from leaderboard.plot import draw, overlapping_labels, pareto_front, save

    assert pareto_front([1, 2, 3, 4], [27.0, 26.9, 27.2, 27.1]) == [0, 2]
    r = rank(table_45(tmp_path), load_track("ntire2022"), "main")
    assert len(r.table) == 45
    fig, texts = draw(r)
    ax = fig.axes[0]
    assert len(texts) == 45
    assert overlapping_labels(fig, texts) == []
    assert ax.get_xscale() == "log"                       # 25 ms to 2231 ms: decades
    lines = [line for line in ax.get_lines() if line.get_color() == "tab:red"]
    markers = ax.collections
    assert lines and all(line.get_zorder() > c.get_zorder() for line in lines for c in markers)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "baseline IMDN (B)" in legend and "off scale (value in key)" in legend
    assert "B" in [t.get_text() for t in texts]
    # Labels stay inside the axes.
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    for t in texts:
        e = t.get_window_extent(renderer)
        assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1 and box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, t.get_text()
    out = save(fig, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_shows_statistical_ties(tmp_path):
    from leaderboard.plot import draw

    from test_leaderboard_stability import RUNTIME_TRACK, records

    text = RUNTIME_TRACK.format(seed=123) + '[metrics.psnr]\nlabel = "PSNR"\ndirection = "higher"\n' \
        'expr = "valid.psnr_rgb"\n[plot]\nx = "runtime_ms"\ny = "psnr"\nsize = "params"\n'
    path = tmp_path / "t.toml"
    path.write_text(text)
    rows = records()
    for i, r in enumerate(rows):
        r["metrics"]["valid.psnr_rgb"] = 30.0 + 0.1 * i
    ranking = rank(from_records(rows), load_track(path), "runtime")
    fig, texts = draw(ranking)
    ax = fig.axes[0]
    assert any(line.get_linestyle() == "--" and line.get_color() == "tab:orange" for line in ax.get_lines())
    assert "statistical tie (bootstrap)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_xscale() == "linear"                    # 10 to 26 ms: no decade


def test_csv_and_json_keep_full_precision():
    rankings = long_statuses()
    back = pd.read_csv(io.StringIO(render.to_csv(rankings)))
    assert len(back) == sum(len(r.table) for r in rankings)
    main = rankings[0].table.set_index("entry")
    got = back[back["subtrack"] == "main"].set_index("entry")
    for entry in ("a", "b_net", "low"):
        assert got.at[entry, "score"] == main.at[entry, "score"]      # bit-exact round trip
    assert {"context.data", "context.device", "context.protocol", "context.harness"} <= set(back.columns)
    data = json.loads(render.to_json(rankings))
    assert [d["subtrack"] for d in data] == ["main", "runtime", "flops", "params"]
    rows = {r["entry"]: r for r in data[0]["rows"]}
    assert rows["a"]["score"] == main.at["a", "score"] and rows["a"]["rank"] == 1
    assert rows["low"]["rank"] is None and data[0]["baseline"]["values"]["runtime_ms"] == 13.54
    assert math.isclose(rows["a"]["runtime_ms"], 9.0)


def test_markdown_and_console():
    rankings = long_statuses()
    md = render.markdown(rankings[:1])
    assert ("| Rank | Entry | valid PSNR [dB] | test PSNR [dB] | Runtime [ms] | FLOPs (MACs) [G] | Params [M] | "
            "Score | Status |") in md
    assert "| 1 | a | 27.00 | 27.10 | 9.00 | 12.00 | 0.200 | 3.683 (1) | ranked |" in md
    assert "the challenge's FLOPs are fvcore multiply-accumulates" in md
    assert "Measured on: data valid = DIV2K_LSDIR_valid (sha256 validhash012)" in md
    text = render.console_text(rankings[:1])
    assert "Main track" in text and "valid PSNR 26.50 < 26.90" in text and "Harness version: 0.1.0" in text
