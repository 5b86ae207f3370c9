"""Leaderboard: shipped rules on hand-made record sets, tie policies, gates, adjudications, CLI."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from leaderboard_helpers import context, ntire22, ntire24, rank_args, rec, report_args, score

from leaderboard import render
from leaderboard.cli import rank_main, report_main
from leaderboard.inputs import from_records, read_csv, read_records
from leaderboard.rank import rank, rank_all
from leaderboard.tracks import TrackError, load_track, parse_spec, shipped, with_switches

REPO = Path(__file__).resolve().parents[1]


# ---- no torch, no harness ---------------------------------------------------------------------

def test_leaderboard_imports_neither_torch_nor_harness():
    code = ("import sys, leaderboard, leaderboard.cli, leaderboard.rank, leaderboard.render, leaderboard.plot, "
            "leaderboard.tracks, leaderboard.inputs, leaderboard.context, leaderboard.stability, "
            "leaderboard.compute; print('torch' in sys.modules, any(m.split('.')[0] == 'harness' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---- track files ---------------------------------------------------------------------------

def test_shipped_tracks_load_with_sources_and_context():
    assert shipped() == ["aim2019", "ntire2022", "ntire2024", "ntire2025", "ntire2026"]
    for name in shipped():
        track = load_track(name)
        assert track.source, name
        assert track.compare == "printed"
        assert track.context.device and track.context.data, name
    assert [s.id for s in load_track("ntire2024").subtracks] == ["main", "runtime", "flops", "params"]
    track, subs = parse_spec("ntire2022:overall")
    assert [s.id for s in subs] == ["overall"] and subs[0].of == (
        "runtime_ms", "params", "macs_legacy", "activations", "memory_mib")
    assert track.context.data == {"valid": "DIV2K_valid", "test": "DIV2K_test"}
    assert track.is_runtime("runtime_ms") and track.is_memory("memory_mib") and not track.is_runtime("params")
    assert load_track("ntire2024").is_runtime("score") and load_track("ntire2024").splits_of("score") == ["valid", "test"]


def test_ntire2022_defaults_are_the_published_conventions():
    track = load_track("ntire2022")
    gates = [g for g in track.gates if g.switch is None]
    assert [(g.metric, g.at_least) for g in gates] == [("psnr_test", 28.63)]          # inferred separator
    assert all(g.switch == "readme_constraints" for g in track.gates if g.baseline)   # no efficiency gate
    assert track.switches["readme_constraints"][0] is False
    assert all(track.metrics[k].ties == "ordinal" for k in ("runtime_ms", "params", "macs_legacy", "activations"))
    assert track.metrics["params"].tie_break == ("runtime_ms",)
    assert track.metrics["macs_legacy"].tie_break == ("params", "runtime_ms")
    assert [s.ties for s in track.subtracks] == ["competition"] * 3


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
    assert r.gates and all(why == "" for _, why in r.gates)     # RTX 3090 + DIV2K_LSDIR: gates apply
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
    assert not forced.warnings        # same device and data: nothing to warn about


def test_ntire2026_weights_and_readme_subtrack_switch():
    records = [ntire24("a", 100_000, 8e9, 6.0, 5.0, track="ntire2026"),
               ntire24("big", 200_000, 8e9, 4.0, 3.0, track="ntire2026")]
    track = load_track("ntire2026")
    r = rank(from_records(records), track, "main")
    got = r.table.loc[r.table["entry"] == "a", "score"].iloc[0]
    assert got == pytest.approx(score((0.8, 0.1, 0.1), 5.5, 8, 0.1, 7.74, 9.83, 0.151), abs=1e-9)
    assert r.rank_of("a") == 2 and r.rank_of("big") == 1
    # Default (ranking section): the runtime sub-track ranks "big" although it has more params than SPAN.
    assert rank(from_records(records), track, "runtime").rank_of("big") == 1
    strict = with_switches(track, {"readme_subtrack_constraints": True})
    sub = rank(from_records(records), strict, "runtime")
    assert sub.rank_of("big") is None and sub.status_of("big") == "Params 0.200 > baseline 0.151"
    assert sub.rank_of("a") == 1
    with pytest.raises(TrackError, match="no switch 'nope'; switches: readme_subtrack_constraints"):
        with_switches(track, {"nope": True})


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
               rec("broken", status="load_error", error="broken: 12 missing keys", ctx=context("ntire2024")),
               ntire24("fresh", 200_000, 12e9, 10, 8, trained=False),
               rec("validonly", params=2e5, macs=12e9, valid__runtime_ms=10.0,
                   valid__psnr_rgb=27.0, test__psnr_rgb=27.1, ctx=context("ntire2024"))]
    r = rank(from_records(records), load_track("ntire2024"), "main")
    assert r.rank_of("ok") == 1
    assert r.status_of("broken") == "load_error: broken: 12 missing keys"
    assert r.status_of("fresh") == "untrained (no checkpoint): not ranked"
    assert r.status_of("validonly") == "no Score (missing test.runtime_ms)"
    assert list(r.table["entry"][:1]) == ["ok"]
    assert r.table["ranked"].tolist() == [True, False, False, False, False]


# ---- NTIRE 2022: rank sums, ordinal per-metric ranks broken by the main order -------------------

def test_ntire2022_rank_sums_and_ordinal_metric_ranks():
    records = [ntire22("a", 20, 280_000, 20e9, 80e6, 200),
               ntire22("b", 25, 250_000, 25e9, 85e6, 300),
               ntire22("c", 30, 300_000, 15e9, 90e6, 100),
               ntire22("d", 35, 400_000, 30e9, 100e6, 400),
               ntire22("slow", 60, 200_000, 10e9, 50e6, 50)]   # slower than IMDN: no efficiency gate in 2022
    frame = from_records(records)
    comp = rank(frame, load_track("ntire2022"), "complexity")
    # params slow1 b2 a3 c4 d5, FLOPs slow1 c2 a3 b4 d5 -> sums slow2 a6 b6 c6 d10: equal sums share a rank.
    assert comp.table.set_index("entry").loc[["slow", "a", "b", "c", "d"], "key"].tolist() == [2, 6, 6, 6, 10]
    assert [comp.rank_of(e) for e in ("slow", "a", "b", "c", "d")] == [1, 2, 2, 2, 5]
    overall = rank(frame, load_track("ntire2022"), "overall")
    sums = overall.table.set_index("entry")["key"].to_dict()
    # runtime a1 b2 c3 d4 slow5; acts slow1 a2 b3 c4 d5; memory slow1 c2 a3 b4 d5.
    assert {k: sums[k] for k in ("a", "b", "c", "d", "slow")} == {"a": 12, "b": 15, "c": 15, "d": 24, "slow": 9}
    assert [overall.rank_of(e) for e in ("slow", "a", "b", "c", "d")] == [1, 2, 3, 3, 5]
    main = rank(frame, load_track("ntire2022"), "main")
    assert [main.rank_of(e) for e in ("a", "b", "c", "d", "slow")] == [1, 2, 3, 4, 5]
    low = rank(from_records([ntire22("x", 20, 3e5, 2e10, 8e7, 200, pt=28.624)]), load_track("ntire2022"), "main")
    assert low.status_of("x") == "test PSNR 28.62 < 28.63"
    readme = rank(frame, with_switches(load_track("ntire2022"), {"readme_constraints": True}), "complexity")
    assert readme.status_of("slow") == "Ave. Time 60.00 > baseline 50.86"


def test_ntire2022_printed_ties_broken_by_main_order_never_row_order():
    # Equal printed #Params: ranked by runtime (the main-track order); equal FLOPs: by #Params first.
    rows = [ntire22("late_fast", 10, 300_000, 20e9, 80e6, 200), ntire22("early_slow", 40, 300_000, 21e9, 81e6, 201),
            ntire22("small", 30, 200_000, 21e9, 82e6, 202)]
    for order in (rows, rows[::-1], [rows[1], rows[2], rows[0]]):
        r = rank(from_records(order), load_track("ntire2022"), "overall").table.set_index("entry")
        assert r.loc[["small", "late_fast", "early_slow"], "rank.params"].tolist() == [1, 2, 3]
        # FLOPs 21 G tie between early_slow (slower, 0.3 M) and small (0.2 M): #Params first.
        assert r.loc[["late_fast", "small", "early_slow"], "rank.macs_legacy"].tolist() == [1, 2, 3]


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
    # Row order never decides: reversed input, same ranks.
    rev = rank(tie_frame().iloc[::-1].reset_index(drop=True), track, "ordinal")
    assert [rev.rank_of(e) for e in ("cheat", "q", "s", "p", "late", "r")] == [1, 2, 3, 4, 5, 6]


def test_per_metric_tie_policy_is_a_setting(tmp_path):
    text = TIE_TRACK.replace('[metrics.params]\nlabel = "Params"', '[metrics.params]\nlabel = "Params"\n'
                             'ties = "ordinal"\ntie_break = ["runtime_ms"]')
    text = text.replace('id = "competition"\nby = "runtime_ms"', 'id = "competition"\nby = "runtime_ms"\n'
                        'show = ["runtime_ms", "params"]')
    path = tmp_path / "ties.toml"
    path.write_text(text)
    r = rank(tie_frame(), load_track(path), "competition").table.set_index("entry")
    # params 0.1 M: late (11 ms) < r (12 ms); cheat excluded. 0.2 M: q, s (10 ms, then name); 0.3 M: p.
    assert r.loc[["late", "r", "q", "s", "p"], "rank.params"].tolist() == [1, 2, 3, 4, 5]
    shared = rank(tie_frame(), load_track(tmp_path / "ties.toml"), "ordinal")
    assert shared.table.set_index("entry").loc["q", "rank.runtime_ms"] == 2   # runtime stays competition


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


# ---- AIM 2019: no worse than the baseline in all three aspects; ordinal ties -------------------------

def aim(entry, params, runtime_ms, psnr):
    return rec(entry, params=params, test__runtime_ms_best=runtime_ms, test__psnr_rgb=psnr,
               ctx=context("aim2019", splits=("test",)))


def test_aim2019_constraints_ordinal_ties_and_ranked_baseline():
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
    # 28.71 dB tie (fast, edge_time): ordinal, broken by runtime first (declared tie-break).
    assert [t3.rank_of(e) for e in ("sharp", "small", "fast", "edge_time", "MSRResNet")] == [1, 2, 3, 4, 5]
    assert t1.status_of("slow") == "Runtime 0.131 > baseline 0.130"
    assert t1.status_of("big") == "#Params 1.517572 > baseline 1.517571"
    assert t1.status_of("blurry") == "PSNR 28.69 < baseline 28.70"
    assert t1.table["entry"].iloc[4] == "MSRResNet"   # the baseline is ranked with the others
    assert "ordinal, broken by Runtime, then PSNR, then entry name" in render.notes(t1)[0]


def test_aim2019_status_baseline_row_stays_ranked(tmp_path):
    csv = tmp_path / "aim.csv"
    csv.write_text("entry,status,params,test.runtime_ms_best,test.psnr_rgb\n"
                   "MSRResNet x4,baseline,1517571,130,28.70\nx,,400000,60,28.8\n")
    r = rank(read_csv(csv), load_track("aim2019"), "params")
    assert r.rank_of("MSRResNet x4") == 2 and r.rank_of("x") == 1
    assert r.baseline_source["params"] == "entry MSRResNet x4"


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


# ---- CLI ---------------------------------------------------------------------------------

def test_rank_cli_formats(tmp_path, capsys):
    csv = tmp_path / "pub.csv"
    csv.write_text("# published\nentry,params,test.runtime_ms_best,test.psnr_rgb\n"
                   "MSRResNet,1517571,130,28.70\nx,400000,60,28.8\n")
    for fmt in ("md", "csv", "json", "tex", "png", "console"):
        out = tmp_path / f"o.{fmt}"
        assert rank_main(rank_args([str(csv), "--track", "aim2019:params", "--format", fmt, "--out", str(out)])) == 0
        assert out.stat().st_size > 0
    assert rank_main(rank_args([str(csv), "--track", "aim2019"])) == 0
    assert "Track 3: fidelity" in capsys.readouterr().out
    assert rank_main(rank_args([str(csv), "--track", "nosuch"])) == 2
    assert "unknown track 'nosuch'" in capsys.readouterr().err
    assert rank_main(rank_args([str(csv), "--track", "aim2019", "--switch", "x"])) == 2
    assert "aim2019.toml: no switch 'x'; switches: none" in capsys.readouterr().err


def write_run(tmp_path, records, tracks=None):
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    for r in records:
        (run / "records" / f"{r['entry']}.json").write_text(json.dumps(r))
    (run / "run.json").write_text(json.dumps({"schema": "esr-run/1", "tracks": tracks or []}))
    return run


def test_report_uses_the_run_tracks_or_says_how_to_name_one(tmp_path, capsys):
    run = write_run(tmp_path, [ntire24("a", 2e5, 12e9, 10.0, 8.0), ntire24("b", 3e5, 15e9, 12.0, 9.0)],
                    ["ntire2024", "ntire2026:main"])
    assert report_main(report_args([str(run)])) == 0
    names = sorted(p.name for p in (run / "report").iterdir())
    assert names == sorted(f"{s}.{e}" for s in ("ntire2024", "ntire2026-main")
                           for e in ("md", "csv", "json", "tex", "txt", "png"))
    assert len(read_records(run)) == 2
    # No tracks in run.json and none given: exit 2 with how to name one, and which fit.
    (run / "run.json").write_text(json.dumps({"schema": "esr-run/1", "tracks": []}))
    shutil.rmtree(run / "report")
    capsys.readouterr()
    assert report_main(report_args([str(run)])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "run.json records no tracks: name one with --track NAME" in err
    assert "this run's metrics can rank: ntire2024, ntire2025, ntire2026" in err
    assert not (run / "report").exists()
    assert report_main(report_args([str(run), "--track", "ntire2025:runtime"])) == 0
    assert (run / "report" / "ntire2025-runtime.md").is_file()


def test_rank_all_keeps_sub_track_order():
    records = [ntire24("a", 2e5, 12e9, 10.0, 8.0)]
    assert [r.sub.id for r in rank_all(from_records(records), load_track("ntire2024"))] == [
        "main", "runtime", "flops", "params"]
