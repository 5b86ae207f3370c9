"""Leaderboard: shipped rules on hand-made record sets, ties, gates, adjudications, renderers, CLI."""
from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from leaderboard import render
from leaderboard.cli import add_rank_arguments, add_report_arguments, rank_main, report_main
from leaderboard.inputs import from_records, read_csv, read_records
from leaderboard.rank import rank, rank_all
from leaderboard.tracks import TrackError, load_track, parse_spec, shipped

REPO = Path(__file__).resolve().parents[1]


def rec(entry, status="ok", trained=True, error=None, **metrics):
    """A record as ``esr run`` writes it (only the keys the leaderboard reads)."""
    return {"schema": "esr-record/1", "entry": entry, "status": status, "trained": trained,
            "error": error, "metrics": {k.replace("__", "."): v for k, v in metrics.items()}}


def ntire24(entry, params, macs, rv, rt, pv=27.0, pt=27.1, **kw):
    return rec(entry, params=params, macs=macs, valid__runtime_ms=rv, test__runtime_ms=rt,
               valid__psnr_rgb=pv, test__psnr_rgb=pt, **kw)


def score(w, r, f, p, r0, f0, p0):
    """Independent transcription of the README formula (FLOPs in G, params in M, runtime in ms)."""
    return w[0] * math.exp(2 * r / r0) + w[1] * math.exp(2 * f / f0) + w[2] * math.exp(2 * p / p0)


# ---- no torch ----------------------------------------------------------------------------

def test_leaderboard_imports_no_torch():
    code = ("import sys, leaderboard, leaderboard.cli, leaderboard.rank, leaderboard.render, "
            "leaderboard.plot, leaderboard.tracks, leaderboard.inputs; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


# ---- track files ---------------------------------------------------------------------------

def test_shipped_tracks_load_with_sources():
    assert shipped() == ["aim2019", "ntire2022", "ntire2024", "ntire2025", "ntire2026"]
    for name in shipped():
        track = load_track(name)
        assert track.source, name
        assert track.compare == "printed"
    assert [s.id for s in load_track("ntire2024").subtracks] == ["main", "runtime", "flops", "params"]
    track, subs = parse_spec("ntire2022:overall")
    assert [s.id for s in subs] == ["overall"] and subs[0].of == (
        "runtime_ms", "params", "macs_legacy", "activations", "memory_mib")


def test_track_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = "esr-track/1"\n[metrics.x]\nlabel = "x"\ncolour = "red"\n[[tracks]]\nid = "a"\nby = "x"\n')
    with pytest.raises(TrackError, match=r"bad.toml \[metrics.x\]: unknown key\(s\) colour"):
        load_track(bad)
    with pytest.raises(TrackError, match="unknown track 'nope'.*shipped: aim2019"):
        load_track("nope")
    with pytest.raises(TrackError, match="no sub-track 'x'; choose one of main, runtime, flops, params"):
        parse_spec("ntire2024:x")


# ---- NTIRE 2024 / 2026: weighted scores ------------------------------------------------------

def test_ntire2024_scores_against_published_baseline():
    records = [ntire24("a", 200_000, 12e9, 10.0, 8.0), ntire24("b", 300_000, 15e9, 12.0, 9.0),
               ntire24("c", 150_000, 10e9, 20.0, 16.0)]
    r = rank(from_records(records), load_track("ntire2024"), "main")
    w, base = (0.7, 0.15, 0.15), (13.54, 19.67, 0.317)
    expect = {"a": score(w, 9.0, 12, 0.2, *base), "b": score(w, 10.5, 15, 0.3, *base),
              "c": score(w, 18.0, 10, 0.15, *base)}
    got = dict(zip(r.table["entry"], r.table["score"]))
    for entry, value in expect.items():
        assert got[entry] == pytest.approx(value, abs=1e-9)
    assert got["RLFN (published)"] == pytest.approx(math.exp(2), abs=1e-9)
    order = sorted(expect, key=expect.get)
    assert [r.rank_of(e) for e in order] == [1, 2, 3]
    assert r.rank_of("RLFN (published)") is None
    assert r.status_of("RLFN (published)") == "baseline (not ranked)"
    # Sub-track "params" ranks by Score_Params alone: c (0.15 M) first.
    sub = rank(from_records(records), load_track("ntire2024"), "params")
    assert [sub.rank_of(e) for e in ("c", "a", "b")] == [1, 2, 3]
    assert sub.table.loc[sub.table["entry"] == "c", "score_params"].iloc[0] == pytest.approx(
        math.exp(2 * 0.15 / 0.317), abs=1e-9)


def test_ntire2024_measured_baseline_entry_supplies_constants():
    records = [ntire24("a", 200_000, 12e9, 10.0, 8.0),
               ntire24("RLFN", 317_218, 19.7e9, 20.0, 18.0)]
    r = rank(from_records(records), load_track("ntire2024"), "main")
    assert r.baseline["runtime_ms"] == 19.0 and r.baseline_source["runtime_ms"] == "entry RLFN"
    a = r.table.loc[r.table["entry"] == "a", "score"].iloc[0]
    assert a == pytest.approx(score((0.7, 0.15, 0.15), 9.0, 12, 0.2, 19.0, 19.7, 0.317218), abs=1e-9)
    assert r.status_of("RLFN") == "baseline (not ranked)"
    forced = rank(from_records(records), load_track("ntire2024"), "main", baseline_use="values")
    assert forced.baseline["runtime_ms"] == 13.54
    assert forced.status_of("RLFN") == "baseline (not ranked)"
    assert "RLFN (published)" in set(forced.table["entry"])


def test_ntire2026_weights():
    records = [ntire24("a", 100_000, 8e9, 6.0, 5.0)]
    r = rank(from_records(records), load_track("ntire2026"), "main")
    got = r.table.loc[r.table["entry"] == "a", "score"].iloc[0]
    assert got == pytest.approx(score((0.8, 0.1, 0.1), 5.5, 8, 0.1, 7.74, 9.83, 0.151), abs=1e-9)
    assert r.rank_of("a") == 1


def test_psnr_gate_precision_printed_and_exact():
    records = [ntire24("edge", 200_000, 12e9, 10, 8, pv=26.895), ntire24("low", 200_000, 12e9, 10, 8, pv=26.89),
               ntire24("lowtest", 200_000, 12e9, 10, 8, pt=26.984)]
    frame = from_records(records)
    printed = rank(frame, load_track("ntire2024"), "main")
    assert printed.rank_of("edge") == 1
    assert printed.status_of("low") == "valid PSNR 26.89 < 26.90"
    assert printed.status_of("lowtest") == "test PSNR 26.98 < 26.99"
    exact = rank(frame, load_track("ntire2024"), "main", compare="exact")
    assert exact.rank_of("edge") is None
    assert exact.status_of("edge") == "valid PSNR 26.895 < 26.9"


def test_status_training_and_missing_values_are_shown_not_ranked():
    records = [ntire24("ok", 200_000, 12e9, 10, 8),
               rec("broken", status="load_error", error="broken: 12 missing keys"),
               ntire24("fresh", 200_000, 12e9, 10, 8, trained=False),
               rec("validonly", params=2e5, macs=12e9, valid__runtime_ms=10.0,
                   valid__psnr_rgb=27.0, test__psnr_rgb=27.1)]
    r = rank(from_records(records), load_track("ntire2024"), "main")
    assert r.rank_of("ok") == 1
    assert r.status_of("broken") == "load_error: broken: 12 missing keys"
    assert r.status_of("fresh") == "untrained (no checkpoint): not ranked"
    assert r.status_of("validonly") == "no Score (missing test.runtime_ms)"
    assert list(r.table["entry"][:1]) == ["ok"]
    assert r.table["ranked"].tolist() == [True, False, False, False, False]


# ---- NTIRE 2022: rank sums and 1224 ties --------------------------------------------------------

def ntire22(entry, runtime, params, flops, acts, mem, pv=29.05, pt=28.7):
    return rec(entry, valid__runtime_ms=runtime, test__runtime_ms=runtime, params=params, macs_legacy=flops,
               activations=acts, valid__memory_mib=mem, valid__psnr_rgb=pv, test__psnr_rgb=pt)


def test_ntire2022_rank_sums_share_ranks_1224():
    records = [ntire22("a", 20, 280_000, 20e9, 80e6, 200),
               ntire22("b", 25, 250_000, 25e9, 85e6, 300),
               ntire22("c", 30, 300_000, 15e9, 90e6, 100),
               ntire22("d", 35, 400_000, 30e9, 100e6, 400),
               ntire22("slow", 60, 200_000, 10e9, 50e6, 50)]  # slower than IMDN: out of sub-track 1 only
    frame = from_records(records)
    comp = rank(frame, load_track("ntire2022"), "complexity")
    # Among a-d: params b1 a2 c3 d4, FLOPs c1 a2 b3 d4 -> sums a4 b4 c4 d8: three share rank 1, next is 4.
    assert comp.table.set_index("entry").loc[["a", "b", "c", "d"], "key"].tolist() == [4, 4, 4, 8]
    assert [comp.rank_of(e) for e in ("a", "b", "c", "d")] == [1, 1, 1, 4]
    assert comp.status_of("slow") == "Ave. Time 60.00 > baseline 50.86"
    overall = rank(frame, load_track("ntire2022"), "overall")
    sums = overall.table.set_index("entry")["key"].to_dict()
    # runtime a1 b2 c3 d4 slow5; params slow1 b2 a3 c4 d5; FLOPs slow1 c2 a3 b4 d5;
    # acts slow1 a2 b3 c4 d5; memory slow1 c2 a3 b4 d5.
    assert {k: sums[k] for k in ("a", "b", "c", "d", "slow")} == {"a": 12, "b": 15, "c": 15, "d": 24, "slow": 9}
    assert [overall.rank_of(e) for e in ("slow", "a", "b", "c", "d")] == [1, 2, 3, 3, 5]
    main = rank(frame, load_track("ntire2022"), "main")
    assert [main.rank_of(e) for e in ("a", "b", "c", "d", "slow")] == [1, 2, 3, 4, 5]
    low = rank(from_records([ntire22("x", 20, 3e5, 2e10, 8e7, 200, pv=28.994)]), load_track("ntire2022"), "main")
    assert low.status_of("x") == "valid PSNR 28.99 < 29.00"


TIE_TRACK = """
schema = "esr-track/1"
title = "tie test"
source = ["hand-made for the tests"]
[metrics.runtime_ms]
label = "Runtime"
unit = "ms"
[metrics.params]
label = "Params"
scale = 1e6
digits = 3
[metrics.psnr]
label = "PSNR"
direction = "higher"
expr = "valid.psnr_rgb"
[[gates]]
metric = "psnr"
at_least = 30.0
[[tracks]]
id = "competition"
by = "runtime_ms"
[[tracks]]
id = "ordinal"
by = "runtime_ms"
ties = "ordinal"
tie_break = ["params"]
[[adjudications]]
entry = "late"
action = "include"
reason = "PSNR shortfall accepted after review"
[[adjudications]]
entry = "cheat"
action = "exclude"
reason = "trained on the validation images"
tracks = ["competition"]
"""


def tie_frame():
    return from_records([
        rec("p", runtime_ms=10.0, params=3e5, valid__psnr_rgb=31.0),
        rec("q", runtime_ms=10.0, params=2e5, valid__psnr_rgb=31.0),
        rec("r", runtime_ms=12.0, params=1e5, valid__psnr_rgb=31.0),
        rec("s", runtime_ms=10.0, params=2e5, valid__psnr_rgb=31.0),
        rec("late", runtime_ms=11.0, params=1e5, valid__psnr_rgb=29.5),
        rec("cheat", runtime_ms=5.0, params=1e5, valid__psnr_rgb=31.0),
    ])


def test_competition_and_ordinal_ties(tmp_path):
    path = tmp_path / "ties.toml"
    path.write_text(TIE_TRACK)
    track = load_track(path)
    comp = rank(tie_frame(), track, "competition")
    assert {e: comp.rank_of(e) for e in "pqrs"} == {"p": 1, "q": 1, "s": 1, "r": 5}
    assert comp.rank_of("late") == 4
    ordn = rank(tie_frame(), track, "ordinal")
    # cheat 5 ms first; then the 10 ms tie broken by params (q, s at 0.2 M, then by name), p.
    assert [ordn.rank_of(e) for e in ("cheat", "q", "s", "p", "late", "r")] == [1, 2, 3, 4, 5, 6]


def test_adjudications_are_applied_and_shown(tmp_path):
    path = tmp_path / "ties.toml"
    path.write_text(TIE_TRACK)
    comp = rank(tie_frame(), load_track(path), "competition")
    assert comp.rank_of("cheat") is None
    assert comp.status_of("cheat") == "excluded by organizers: trained on the validation images"
    assert comp.status_of("late") == ("admitted by organizers: PSNR shortfall accepted after review "
                                      "(waived: PSNR 29.50 < 30.00)")
    md = render.markdown([comp])
    assert "excluded by organizers: trained on the validation images" in md
    assert "admitted by organizers" in md


# ---- AIM 2019: no worse than the baseline in all three aspects ---------------------------------------

def aim(entry, params, runtime_ms, psnr):
    return rec(entry, params=params, test__runtime_ms_best=runtime_ms, test__psnr_rgb=psnr)


def test_aim2019_constraints_and_ranked_baseline():
    frame = from_records([
        aim("MSRResNet", 1_517_571, 130.0, 28.70),
        aim("small", 400_000, 60.0, 28.72),
        aim("fast", 900_000, 40.0, 28.71),
        aim("sharp", 1_400_000, 120.0, 28.95),
        aim("edge_time", 800_000, 130.4, 28.71),      # prints 0.130 s: passes
        aim("slow", 500_000, 130.6, 28.80),           # prints 0.131 s: fails
        aim("big", 1_517_572, 100.0, 28.90),          # one parameter more: fails
        aim("blurry", 300_000, 30.0, 28.694),         # prints 28.69 dB: fails
    ])
    track = load_track("aim2019")
    t1, t2, t3 = (rank(frame, track, s) for s in ("params", "runtime", "fidelity"))
    assert [t1.rank_of(e) for e in ("small", "edge_time", "fast", "sharp", "MSRResNet")] == [1, 2, 3, 4, 5]
    assert [t2.rank_of(e) for e in ("fast", "small", "sharp", "MSRResNet", "edge_time")] == [1, 2, 3, 4, 5]
    assert [t3.rank_of(e) for e in ("sharp", "small", "fast", "edge_time", "MSRResNet")] == [1, 2, 3, 3, 5]
    assert t1.status_of("slow") == "Runtime 0.131 > baseline 0.130"
    assert t1.status_of("big") == "#Params 1.517572 > baseline 1.517571"
    assert t1.status_of("blurry") == "PSNR 28.69 < baseline 28.70"
    assert t1.table["entry"].iloc[4] == "MSRResNet"   # the baseline is ranked with the others


def test_aim2019_published_csv_reranks():
    """The shipped data file re-ranks under the shipped rule; rows with published ranks must agree
    unless the departure is listed in docs/aim2019_rerank.md (DEPARTURES below)."""
    frame = read_csv(REPO / "leaderboard" / "data" / "aim2019_published.csv")
    assert "MSRResNet" in set(frame["entry"])
    base = frame.set_index("entry").loc["MSRResNet"]
    assert (base["params"], base["test.runtime_ms_best"], base["test.psnr_rgb"]) == (1517571, 130.0, 28.70)
    departures: dict[tuple[str, str], str] = {}
    for sub, col in (("params", "published_rank_t1"), ("runtime", "published_rank_t2"),
                     ("fidelity", "published_rank_t3")):
        r = rank(frame, load_track("aim2019"), sub)
        assert r.rank_of("MSRResNet") is not None
        for _, row in frame.dropna(subset=[col]).iterrows():
            if (row["entry"], sub) not in departures:
                assert r.rank_of(row["entry"]) == int(row[col]), (row["entry"], sub)


# ---- renderers ---------------------------------------------------------------------------

@pytest.fixture
def rankings():
    records = [ntire24("a", 200_000, 12e9, 10.0, 8.0), ntire24("b_net", 300_000, 15e9, 12.0, 9.0),
               ntire24("low", 150_000, 10e9, 20.0, 16.0, pv=26.5),
               rec("crashed_one", status="crashed", error="crashed_one: worker died")]
    return rank_all(from_records(records), load_track("ntire2024"))


def test_latex_structure(rankings):
    tex = render.latex(rankings[:1])
    assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1
    assert tex.count(r"\midrule") == 2          # after the header, and before the unranked block
    assert r"0.200$_{(1)}$" in tex and r"0.300$_{(2)}$" in tex
    assert r"b\_net" in tex and "valid PSNR 26.50 $<$ 26.90" in tex
    body = tex.split(r"\midrule")
    assert "a &" in body[1] and "low" in body[2] and "RLFN (published)" in body[2]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(rankings, tmp_path):
    (tmp_path / "t.tex").write_text(render.standalone(render.latex(rankings)))
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def test_markdown_and_console(rankings):
    md = render.markdown(rankings[:1])
    assert "| Rank | Entry | valid PSNR [dB] | test PSNR [dB] | Runtime [ms] | FLOPs (MACs) [G] | Params [M] | Score | Status |" in md
    assert "| 1 | a | 27.00 (1) |" in md
    assert "| - | crashed_one |" in md and "crashed: crashed_one: worker died" in md
    assert "the challenge's FLOPs are fvcore multiply-accumulates" in md
    text = render.console_text(rankings[:1])
    assert "Main track" in text and "valid PSNR 26.50 < 26.90" in text


def test_csv_and_json_keep_full_precision(rankings):
    back = pd.read_csv(io.StringIO(render.to_csv(rankings)))
    assert len(back) == sum(len(r.table) for r in rankings)
    main = rankings[0].table.set_index("entry")
    got = back[back["subtrack"] == "main"].set_index("entry")
    for entry in ("a", "b_net", "low"):
        assert got.at[entry, "score"] == main.at[entry, "score"]      # bit-exact round trip
    data = json.loads(render.to_json(rankings))
    assert [d["subtrack"] for d in data] == ["main", "runtime", "flops", "params"]
    rows = {r["entry"]: r for r in data[0]["rows"]}
    assert rows["a"]["score"] == main.at["a", "score"] and rows["a"]["rank"] == 1
    assert rows["low"]["rank"] is None and data[0]["baseline"]["values"]["runtime_ms"] == 13.54


def test_png_written(rankings, tmp_path):
    from leaderboard.plot import pareto_front, plot

    assert pareto_front([1, 2, 3, 4], [27.0, 26.9, 27.2, 27.1]) == [0, 2]
    out = plot(rankings[0], tmp_path / "p.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# ---- CLI ---------------------------------------------------------------------------------

def parse(add, argv):
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


def test_rank_cli_formats(tmp_path, capsys):
    csv = tmp_path / "pub.csv"
    csv.write_text("# published\nentry,params,test.runtime_ms_best,test.psnr_rgb\n"
                   "MSRResNet,1517571,130,28.70\nx,400000,60,28.8\n")
    for fmt in ("md", "csv", "json", "tex", "png", "console"):
        out = tmp_path / f"o.{fmt}"
        assert rank_main(parse(add_rank_arguments, [str(csv), "--track", "aim2019:params",
                                                    "--format", fmt, "--out", str(out)])) == 0
        assert out.stat().st_size > 0
    assert rank_main(parse(add_rank_arguments, [str(csv), "--track", "aim2019"])) == 0
    assert "Track 3: fidelity" in capsys.readouterr().out
    assert rank_main(parse(add_rank_arguments, [str(csv), "--track", "nosuch"])) == 2
    assert "unknown track 'nosuch'" in capsys.readouterr().err


def test_report_writes_every_format(tmp_path):
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    for r in [ntire24("a", 2e5, 12e9, 10.0, 8.0), ntire24("b", 3e5, 15e9, 12.0, 9.0)]:
        (run / "records" / f"{r['entry']}.json").write_text(json.dumps(r))
    (run / "run.json").write_text(json.dumps({"schema": "esr-run/1", "tracks": ["ntire2024", "ntire2026:main"]}))
    assert report_main(parse(add_report_arguments, [str(run)])) == 0
    names = sorted(p.name for p in (run / "report").iterdir())
    assert names == sorted(f"{s}.{e}" for s in ("ntire2024", "ntire2026-main")
                           for e in ("md", "csv", "json", "tex", "txt", "png"))
    assert len(read_records(run)) == 2
    # Without run.json tracks: every shipped track whose required metrics are present.
    (run / "run.json").write_text(json.dumps({"schema": "esr-run/1", "tracks": []}))
    shutil.rmtree(run / "report")
    assert report_main(parse(add_report_arguments, [str(run)])) == 0
    stems = {p.stem for p in (run / "report").iterdir()}
    assert stems == {"ntire2024", "ntire2025", "ntire2026"}


def test_huge_scores_print_in_scientific_notation():
    from leaderboard.fmt import text

    assert text(7.799693159954473e290, 4) == "7.7997e+290"
    assert text(26.895, 2) == "26.90"
