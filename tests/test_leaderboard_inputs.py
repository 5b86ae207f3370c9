"""Leaderboard inputs: the CSV contract, bad input (never a table: one line, exit 2), honest context."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from leaderboard_helpers import context, ntire22, ntire24, rank_args, rec

from leaderboard import render
from leaderboard.cli import rank_main
from leaderboard.inputs import from_records, read_csv
from leaderboard.rank import rank
from leaderboard.tracks import load_track

AIM_HEADER = "entry,params,test.runtime_ms_best,test.psnr_rgb"


def run_rank(tmp_path, capsys, csv_text: str | None, track="aim2019", name="pub.csv", extra=()):
    """Exit code and stderr of ``esr rank`` on a CSV written from ``csv_text`` (None: no file)."""
    path = tmp_path / name
    if csv_text is not None:
        path.write_text(csv_text)
    out = tmp_path / "out.md"
    code = rank_main(rank_args([str(path), "--track", track, "--format", "md", "--out", str(out), *extra]))
    err = capsys.readouterr().err.strip()
    return code, err, out


# Each bad CSV: the text, and what the one-line message must say (file, line, column and the problem).
BAD_CSV = {
    "non-numeric": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,abc,60,28.8\n",
                    "pub.csv line 3 (entry 'x'), column params: 'abc' is not a number"),
    "nan": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,400000,NaN,28.8\n",
            "pub.csv line 3 (entry 'x'), column test.runtime_ms_best: 'NaN' is not a number"),
    "inf": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,400000,60,inf\n",
            "pub.csv line 3 (entry 'x'), column test.psnr_rgb: 'inf' is infinite"),
    "minus inf": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,400000,-inf,28.8\n",
                  "pub.csv line 3 (entry 'x'), column test.runtime_ms_best: '-inf' is infinite"),
    "negative runtime": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,400000,-60,28.8\n",
                         "pub.csv line 3 (entry 'x'), column test.runtime_ms_best: -60 is negative"),
    "negative params": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,-4,60,28.8\n",
                        "pub.csv line 3 (entry 'x'), column params: -4 is negative"),
    "negative macs": (f"{AIM_HEADER},macs\nMSRResNet,1517571,130,28.70,1e9\nx,4,60,28.8,-1e9\n",
                      "pub.csv line 3 (entry 'x'), column macs: -1e9 is negative"),
    "empty name": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\n ,400000,60,28.8\n",
                   "pub.csv line 3, column entry: empty entry name"),
    "duplicate name": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,400000,60,28.8\nX,1,60,28.8\n",
                       "pub.csv line 4, column entry: duplicate entry 'X' (first on line 3)"),
    "ragged short": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70\nx,400000,60\n",
                     "pub.csv line 3: 3 fields, the header has 4"),
    "ragged long": (f"{AIM_HEADER}\nMSRResNet,1517571,130,28.70,9\nx,400000,60,28.8\n",
                    "pub.csv line 2: 5 fields, the header has 4"),
    "missing metric column": ("entry,params,test.runtime_ms_best\nMSRResNet,1517571,130\nx,400000,60\n",
                              "pub.csv: no values for test.psnr_rgb, needed for PSNR in aim2019:params"),
    "empty file": ("", "pub.csv: empty file: no header line"),
    "comments only": ("# nothing here\n", "pub.csv: empty file: no header line"),
    "header only": (f"{AIM_HEADER}\n", "pub.csv: no rows after the header line 1"),
    "no entry column": ("name,params\nx,1\n", "pub.csv line 1: needs an 'entry' column"),
    "bad status": (f"entry,status,params,test.runtime_ms_best,test.psnr_rgb\nMSRResNet,base,1517571,130,28.70\n",
                   "pub.csv line 2 (entry 'MSRResNet'), column status: 'base' is not a status"),
    "thousands separator": (f'{AIM_HEADER}\nMSRResNet,"1,517,571",130,28.70\n',
                            "pub.csv line 2 (entry 'MSRResNet'), column params: '1,517,571' is not a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_never_yields_a_table(tmp_path, capsys, case):
    text, message = BAD_CSV[case]
    code, err, out = run_rank(tmp_path, capsys, text, track="aim2019:params")
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert message in err, err
    assert str(tmp_path / "pub.csv").split("/")[-1] in err
    assert not out.exists()


def test_missing_file_and_unknown_track(tmp_path, capsys):
    code, err, _ = run_rank(tmp_path, capsys, None)
    assert code == 2 and err == f"esr rank: {tmp_path / 'pub.csv'}: no such file"
    code, err, _ = run_rank(tmp_path, capsys, f"{AIM_HEADER}\nx,1,2,3\n", track="ntire2023")
    assert code == 2 and "unknown track 'ntire2023': not a TOML file and not shipped" in err
    assert "(did you mean ntire2026, " in err


GIVEN = "entry,status,runtime_ms,params,macs_legacy,activations,valid.memory_mib,valid.psnr_rgb,test.psnr_rgb\n"


@pytest.mark.parametrize("cell,message", [("fast", "'fast' is not a number"), ("inf", "'inf' is infinite"),
                                          ("-3", "-3 is negative; a Ave. Time cannot be")])
def test_bad_given_metric_column(tmp_path, capsys, cell, message):
    text = GIVEN + f"a,,20,3e5,2e10,8e7,200,29.0,28.7\nb,,{cell},3e5,2e10,8e7,200,29.0,28.7\n"
    code, err, _ = run_rank(tmp_path, capsys, text, track="ntire2022")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"pub.csv line 3 (entry 'b'), column runtime_ms: {message}" in err


# ---- malformed track files --------------------------------------------------------------------

GOOD_TRACK = """schema = "esr-track/1"
title = "t"
[metrics.runtime_ms]
label = "Runtime"
expr = "test.runtime_ms_best"
[metrics.params]
label = "Params"
scale = 1e6
[[gates]]
metric = "params"
at_most = 1.0
[[tracks]]
id = "main"
by = "runtime_ms"
"""

BAD_TRACKS = {
    "missing id": (GOOD_TRACK.replace('id = "main"\n', ""), "tracks[0]: needs 'id'"),
    "missing by": (GOOD_TRACK.replace('by = "runtime_ms"\n', ""), "tracks[0]: rule 'sort' needs 'by'"),
    "gate without metric": (GOOD_TRACK.replace('metric = "params"\n', ""), "gates[0]: needs 'metric'"),
    "scale zero": (GOOD_TRACK.replace("scale = 1e6", "scale = 0"), "[metrics.params] scale must be > 0, not 0"),
    "quoted number": (GOOD_TRACK.replace("scale = 1e6", 'scale = "1e6"'),
                      "[metrics.params] scale must be a number, not str '1e6' (remove the quotes)"),
    "quoted threshold": (GOOD_TRACK.replace("at_most = 1.0", 'at_most = "1.0"'),
                         "gates[0] at_most must be a number, not str '1.0'"),
    "expression typo": (GOOD_TRACK.replace('expr = "test.runtime_ms_best"', 'expr = "test.runtme_ms_best"'),
                        "uses unknown metric 'test.runtme_ms_best'"),
    "baseline typo": (GOOD_TRACK.replace('expr = "test.runtime_ms_best"', 'expr = "2 * baseline.runtim_ms"'),
                      "uses 'baseline.runtim_ms', but 'runtim_ms' is not a metric of this track"),
    "bare typo": (GOOD_TRACK.replace('expr = "test.runtime_ms_best"', 'expr = "exp(2 * parms)"'),
                  "uses unknown metric 'parms'"),
    "unknown gate metric": (GOOD_TRACK.replace('metric = "params"', 'metric = "flops"'),
                            "gates[0].metric names metric 'flops', which is not in [metrics]"),
    "wrong type": (GOOD_TRACK.replace('title = "t"', "title = 3"), "title must be a string, not int 3"),
    "bad direction": (GOOD_TRACK.replace('label = "Params"', 'label = "Params"\ndirection = "up"'),
                      "[metrics.params] direction must be one of 'lower', 'higher', not 'up'"),
    "unknown key": (GOOD_TRACK.replace('label = "Params"', 'label = "Params"\ncolour = "red"'),
                    "[metrics.params]: unknown key(s) colour"),
    "invalid toml": (GOOD_TRACK + "[[tracks\n", "invalid TOML"),
    "no schema": (GOOD_TRACK.replace('schema = "esr-track/1"\n', ""), "schema must be 'esr-track/1'"),
    "tracks not array": (GOOD_TRACK.replace("[[tracks]]\nid = \"main\"\nby = \"runtime_ms\"\n", "")
                         .replace('title = "t"', 'title = "t"\ntracks = "main"'),
                         "tracks must be an array of tables"),
    "unknown switch": (GOOD_TRACK.replace("at_most = 1.0", 'at_most = 1.0\nswitch = "x"'),
                       "gates[0]: switch 'x' is not declared in [settings.switches]"),
    "later metric": (GOOD_TRACK.replace('expr = "test.runtime_ms_best"', 'expr = "params * 2"'),
                     "uses 'params', which is defined after 'runtime_ms'"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRACKS))
def test_malformed_track_file(tmp_path, capsys, case):
    text, message = BAD_TRACKS[case]
    track = tmp_path / "bad.toml"
    track.write_text(text)
    code, err, out = run_rank(tmp_path, capsys, f"{AIM_HEADER}\nx,1,2,3\n", track=str(track))
    assert code == 2, err
    assert len(err.splitlines()) == 1
    assert "bad.toml" in err and message in err, err
    assert not out.exists()


def test_missing_track_file(tmp_path, capsys):
    code, err, _ = run_rank(tmp_path, capsys, f"{AIM_HEADER}\nx,1,2,3\n", track=str(tmp_path / "nope.toml"))
    assert code == 2 and err.endswith("nope.toml: no such track file")


# ---- bad records ----------------------------------------------------------------------------

@pytest.mark.parametrize("content,message", [
    ("{\"entry\": \"a\", ", "not valid JSON"),
    (json.dumps({"metrics": {}}), "not an esr record (no 'entry' key)"),
    (json.dumps(rec("a", valid__runtime_ms=-1.0)), "metrics.valid.runtime_ms = -1.0: a negative runtime_ms is impossible"),
    (json.dumps(rec("a", params=float("inf"))), "metrics.params = inf: an infinite params is impossible"),
])
def test_bad_records(tmp_path, capsys, content, message):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "a.json").write_text(content)
    code = rank_main(rank_args([str(tmp_path), "--track", "ntire2024"]))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "a.json" in err and message in err, err


def test_records_missing_a_split_everywhere_is_an_error(tmp_path, capsys):
    (tmp_path / "records").mkdir()
    r = rec("a", params=2e5, macs=1e10, valid__runtime_ms=5.0, valid__psnr_rgb=27.0, ctx=context("ntire2024"))
    (tmp_path / "records" / "a.json").write_text(json.dumps(r))
    assert rank_main(rank_args([str(tmp_path), "--track", "ntire2024:main"])) == 2
    err = capsys.readouterr().err
    assert "no values for test.runtime_ms" in err and "ntire2024:main" in err


# ---- the CSV contract ------------------------------------------------------------------------

PUBLISHED_2026 = """# an NTIRE 2026-style results table, mapped to the contract
entry,status,valid.psnr_rgb,test.psnr_rgb,runtime_ms,params,macs,published_rank,source
00_SPAN,baseline,26.94,27.01,7.74,151000,9.83e9,,organizers
TeamA,,26.95,27.02,5.117,120000,8.0e9,1,report
TeamB,,26.92,27.00,6.40,100000,7.0e9,2,report
TeamC,,26.80,26.95,3.00,90000,6.0e9,,report
Old winner,reference,27.00,27.05,9.00,200000,12e9,,report
"""


def test_published_table_baseline_row_given_runtime_and_unknown_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(PUBLISHED_2026)
    r = rank(read_csv(path), load_track("ntire2026"), "main")
    assert "SPAN (published)" not in set(r.table["entry"])          # the 00_SPAN row is the baseline
    assert r.status_of("00_SPAN") == "baseline (not ranked)"
    assert r.baseline_source["runtime_ms"] == "entry 00_SPAN" and r.baseline["runtime_ms"] == 7.74
    runtime = r.table.set_index("entry")["runtime_ms"]
    assert runtime["TeamA"] == 5.117                                  # as given, never recomputed
    expect = 0.8 * math.exp(2 * 5.117 / 7.74) + 0.1 * math.exp(2 * 8.0 / 9.83) + 0.1 * math.exp(2 * 0.12 / 0.151)
    assert r.table.set_index("entry").at["TeamA", "score"] == pytest.approx(expect, rel=1e-12)
    assert r.rank_of("TeamA") == 1 and r.rank_of("TeamB") == 2
    assert r.status_of("TeamC") == "valid PSNR 26.80 < 26.90; test PSNR 26.95 < 26.99"
    assert r.status_of("Old winner") == "reference (listed, not ranked)"
    assert list(r.table["entry"])[-2:] == ["00_SPAN", "Old winner"]   # baseline, then references, last
    md = render.markdown([r])
    assert "Runtime: taken as given from the input column 'runtime_ms' for 5 of 5 rows" in md
    assert "Columns not used (not record metrics, not metrics of ntire2026): published_rank" in md
    assert "device NVIDIA RTX A6000 (as published: the table names none, so the track's own are assumed)" in md


def test_published_table_with_its_own_data_and_device(tmp_path):
    text = PUBLISHED_2026.replace("source\n", "source,dataset,device\n", 1)
    text = "\n".join(line + ",Set5,cpu" if line and not line.startswith(("#", "entry")) else line
                     for line in text.splitlines()) + "\n"
    path = tmp_path / "t.csv"
    path.write_text(text)
    r = rank(read_csv(path), load_track("ntire2026"), "main")
    assert r.rank_of("TeamC") == 1                                    # PSNR gates do not apply on Set5
    assert all("NOT APPLIED: measured on Set5, defined on DIV2K_LSDIR" in render.gate_lines(r)[0] for _ in [0])
    assert render.headers(r)[4] == "Runtime [ms, CPU]"


# ---- honest context ---------------------------------------------------------------------------

def cpu_set5(entry, **kw):
    return ntire24(entry, ctx=context(name="Set5", layout="benchmark", device="cpu"), **kw)


def test_cpu_set5_run_gates_not_applied_and_labels(tmp_path):
    records = [cpu_set5("a", params=2e5, macs=12e9, rv=300.0, rt=280.0, pv=30.0, pt=26.0),
               cpu_set5("RLFN", params=317_218, macs=19.7e9, rv=400.0, rt=380.0)]
    r = rank(from_records(records), load_track("ntire2024"), "main")
    assert r.rank_of("a") == 1                                         # 26.0 dB test: gate not applicable on Set5
    assert r.baseline_source["runtime_ms"] == "entry RLFN"            # measured alongside: used
    gates = render.gate_lines(r)[0]
    assert "valid PSNR >= 26.90 dB (on DIV2K_LSDIR_valid) [NOT APPLIED: measured on Set5, defined on " \
           "DIV2K_LSDIR_valid (2 entries)]" in gates
    assert render.headers(r)[4] == "Runtime [ms, CPU]"
    md = render.markdown([r])
    assert "Measured on: data valid = Set5 (sha256 validhash012); test = Set5 (sha256 testhash0123); " \
           "device CPU (Test CPU)." in md
    assert "Harness version: 0.1.0." in md and "perf_counter_ns clock" in md
    # CSV, JSON and LaTeX say the same.
    csv = render.to_csv([r])
    assert "context.device" in csv.splitlines()[0] and "CPU (Test CPU)" in csv and "validhash012" in csv
    data = json.loads(render.to_json([r]))[0]
    assert data["context"]["devices"] == ["CPU (Test CPU)"] and data["gates"][0]["applied"] is False
    tex = render.latex([r])
    assert "device CPU (Test CPU)" in tex and "harness 0.1.0" in tex and "Set5" in tex


def test_memory_is_labelled_with_its_kind():
    cpu = context("ntire2022", device="cpu")
    rows = [ntire22("a", 20, 3e5, 2e10, 8e7, 200, ctx=cpu), ntire22("b", 25, 3e5, 2e10, 8e7, 300, ctx=cpu)]
    r = rank(from_records(rows), load_track("ntire2022"), "overall")
    assert "CPU mem. (RSS growth) [MiB]" in render.headers(r)
    assert "Ave. Time [ms, CPU]" in render.headers(r)
    assert any("CPU, growth of the process's peak resident set size (not GPU memory)" in n for n in render.notes(r))
    gpu = rank(from_records([ntire22("a", 20, 3e5, 2e10, 8e7, 200)]), load_track("ntire2022"), "overall")
    assert "GPU Mem. [MiB]" in render.headers(gpu)


def test_failed_baseline_never_silently_takes_the_published_gpu_runtime(tmp_path, capsys):
    records = [cpu_set5("a", params=2e5, macs=12e9, rv=300.0, rt=280.0),
               rec("RLFN", status="load_error", error="RLFN: 3 missing keys",
                   ctx=context(name="Set5", layout="benchmark", device="cpu"))]
    r = rank(from_records(records), load_track("ntire2024"), "main")
    assert "runtime_ms" not in r.baseline                             # RTX 3090 figure not used on a CPU
    assert r.baseline["params"] == 0.317e6                            # counts do not depend on the device
    assert r.status_of("a") == "no Score (missing baseline Runtime)"
    assert any("the baseline entry RLFN did not run (load_error)" in w for w in r.warnings)
    assert any("The published RLFN Runtime is not used (measured on Set5, defined on DIV2K_LSDIR_valid)" in n
               for n in r.notes)
    forced = rank(from_records(records), load_track("ntire2024"), "main", baseline_use="values")
    assert forced.baseline["runtime_ms"] == 13.54 and forced.rank_of("a") == 1
    assert any(w.startswith("WARNING: the published RLFN Runtime (measured on Set5") for w in forced.warnings)
    md = render.markdown([forced])
    assert "- WARNING: the published RLFN Runtime" in md
    assert r"\textbf{WARNING: the published RLFN Runtime" in render.latex([forced])
