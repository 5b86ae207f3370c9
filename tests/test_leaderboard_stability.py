"""Runtime rank stability: paired bootstrap over per-image times, ties marked in every format, trial CV."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from leaderboard_helpers import context, rec

from leaderboard import render
from leaderboard.inputs import from_records, runtime_cv
from leaderboard.rank import rank
from leaderboard.tracks import load_track

RUNTIME_TRACK = """
schema = "esr-track/1"
title = "runtime test"
source = ["hand-made for the tests"]
[settings.bootstrap]
resamples = 2000
seed = {seed}
[metrics.runtime_ms]
label = "Runtime"
unit = "ms"
expr = "valid.runtime_ms"
[metrics.params]
label = "Params"
[metrics.score]
label = "Score"
significant = 4
expr = "exp(2 * runtime_ms / 10) + params / 1e6"
[[tracks]]
id = "runtime"
by = "runtime_ms"
show = ["runtime_ms"]
[[tracks]]
id = "score"
by = "score"
show = ["runtime_ms", "score"]
[[tracks]]
id = "params"
by = "params"
"""

N_IMAGES, N_TRIALS = 20, 3
SIZES = np.random.default_rng(7).uniform(0.5, 2.0, N_IMAGES)     # image difficulty, shared by all entries


def timed(entry: str, mean_ms: float, noise: float, seed: int, trials: int = N_TRIALS, params=1e5, **extra):
    """A record whose per-image times are ``mean_ms x size x (1 + noise x N(0, 1))`` per trial."""
    rng = np.random.default_rng(seed)
    times = [[float(mean_ms * s * (1 + noise * rng.standard_normal())) for s in SIZES / SIZES.mean()]
             for _ in range(trials)]
    trial_means = [float(np.mean(t)) for t in times]
    r = rec(entry, params=params, valid__runtime_ms=float(np.mean(trial_means)), ctx=context(splits=("valid",)))
    r["raw"] = {"valid": {"images": [f"im{i}" for i in range(N_IMAGES)], "runtime_ms": times}}
    r["runtime"]["trial_means_ms"] = {"valid": trial_means}
    r.update(extra)
    return r


def records():
    return [timed("near_a", 10.0, 0.10, 1), timed("near_b", 10.1, 0.10, 2),      # 1% apart, 10% noise
            timed("far_c", 20.0, 0.01, 3), timed("far_d", 26.0, 0.01, 4)]        # 30% apart, 1% noise


@pytest.fixture
def track(tmp_path):
    path = tmp_path / "runtime.toml"
    path.write_text(RUNTIME_TRACK.format(seed=123))
    return load_track(path)


def pair(ranking, upper, lower):
    for p in ranking.stability.pairs:
        if {p["upper"], p["lower"]} == {upper, lower}:
            return p
    raise AssertionError(f"no pair {upper}/{lower} in {ranking.stability.pairs}")


def test_close_noisy_entries_tie_distant_quiet_ones_do_not(track):
    r = rank(from_records(records()), track, "runtime")
    assert [p["upper"] for p in r.stability.pairs][:1] in (["near_a"], ["near_b"])
    near, far = pair(r, "near_a", "near_b"), pair(r, "far_c", "far_d")
    assert near["tie"] and 0.5 <= near["p"] < 0.95
    assert not far["tie"] and far["p"] == 1.0
    between = pair(r, r.table["entry"].iloc[1], "far_c")         # 10 ms vs 20 ms: certain
    assert between["p"] == 1.0 and not between["tie"]
    assert r.stability.resamples == 2000 and r.stability.seed == 123
    table = r.table.set_index("entry")
    lower_near = r.table["entry"].iloc[1]
    assert bool(table.at[lower_near, "stat_tie"]) and not bool(table.at["far_d", "stat_tie"])


def test_fixed_seed_reproduces_and_is_recorded(track, tmp_path):
    a = rank(from_records(records()), track, "runtime").stability.pairs
    b = rank(from_records(records()), track, "runtime").stability.pairs
    assert a == b
    other = tmp_path / "other.toml"
    other.write_text(RUNTIME_TRACK.format(seed=124))
    c = rank(from_records(records()), load_track(other), "runtime").stability.pairs
    assert [p["p"] for p in c] != [p["p"] for p in a]            # the seed matters ...
    assert [p["tie"] for p in c] == [p["tie"] for p in a]        # ... but not the verdicts here


def test_score_mixing_runtime_is_resampled_through_its_runtime_term(track):
    r = rank(from_records(records()), track, "score")
    assert r.stability is not None and not r.stability.omitted
    assert pair(r, "near_a", "near_b")["tie"] and not pair(r, "far_c", "far_d")["tie"]
    assert rank(from_records(records()), track, "params").stability is None      # params: no runtime


def test_ties_marked_in_every_format(track):
    r = rank(from_records(records()), track, "runtime")
    lower_near = r.table["entry"].iloc[1]
    p = pair(r, "near_a", "near_b")["p"]
    md = render.markdown([r])
    assert "| vs. above |" in md and f"tie {p:.2f}" in md
    assert "Rank stability: paired bootstrap over images (trials resampled within each image), 2000 resamples, " \
           "seed 123" in md
    assert f"tie {p:.2f}" in render.console_text([r])
    back = pd.read_csv(io.StringIO(render.to_csv([r]))).set_index("entry")
    assert bool(back.at[lower_near, "stat_tie"]) and back.at[lower_near, "p_above"] == pytest.approx(p)
    data = json.loads(render.to_json([r]))[0]
    assert data["stability"]["seed"] == 123 and any(q["tie"] for q in data["stability"]["pairs"])
    assert {row["entry"]: row["stat_tie"] for row in data["rows"]}[lower_near] is True
    tex = render.latex([r])
    assert r"2$^\dagger$" in tex and r"$\dagger$: statistical tie with the entry above" in tex


def test_trial_cv_from_raw_or_from_the_record_and_flagged():
    noisy = timed("noisy", 10.0, 0.0, 5)
    noisy["raw"]["valid"]["runtime_ms"] = [[10.0] * N_IMAGES, [13.0] * N_IMAGES, [10.0] * N_IMAGES]
    noisy["runtime"].pop("trial_means_ms")
    cv, source = runtime_cv(noisy)
    assert cv == pytest.approx(np.std([10, 13, 10], ddof=1) / 11) and source == "computed from trial means"
    stated = timed("stated", 10.0, 0.0, 6)
    stated["runtime"]["stats"] = {"valid": {"cv": 0.02}}
    assert runtime_cv(stated) == (0.02, "record")
    single = timed("single", 10.0, 0.1, 7, trials=1)
    assert runtime_cv(single) == (None, "")
    track = load_track("ntire2024")
    rows = [timed(n, m, 0.0, s, params=2e5) for n, m, s in (("a", 10.0, 1), ("b", 11.0, 2))]
    rows[0]["raw"]["valid"]["runtime_ms"][1] = [13.0] * N_IMAGES
    for r in rows:
        r["metrics"].update({"macs": 1e10, "test.runtime_ms": 10.0, "valid.psnr_rgb": 27.0, "test.psnr_rgb": 27.1})
        r["raw"]["test"] = r["raw"]["valid"]
        r.update({k: v for k, v in context("ntire2024").items() if k != "runtime"})
    ranking = rank(from_records(rows), track, "runtime")
    cells = dict(zip(ranking.table["entry"], render.rows(ranking)))
    assert cells["a"][-2].endswith("(!)") and not cells["b"][-2].endswith("(!)")
    assert "Trial CV" in render.headers(ranking)


def test_published_figures_omit_stability(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("entry,runtime_ms,params,macs_legacy,activations,valid.memory_mib,valid.psnr_rgb,test.psnr_rgb\n"
                    "a,20,3e5,2e10,8e7,200,29.0,28.7\nb,21,3e5,2e10,8e7,200,29.0,28.7\n")
    from leaderboard.inputs import read_csv

    r = rank(read_csv(path), load_track("ntire2022"), "main")
    assert r.stability.omitted == "Ave. Time is a published figure without per-image times"
    assert "vs. above" not in render.headers(r)
    assert "Rank stability: not assessed (Ave. Time is a published figure without per-image times)." in \
        render.markdown([r])
