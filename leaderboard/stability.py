"""How sure is a runtime-based rank? A paired bootstrap over the per-image times of the records.

Statistic: an entry's runtime on a split is the mean over images of the per-image time (each
image's time is the mean over trials); ``*.runtime_ms_best`` is the smallest per-trial mean.
Resampling: the images of a split are drawn with replacement, the same draw for every entry
(paired: all entries were timed on the same images); with several trials, each drawn image's
trials are drawn with replacement too, independently per entry. Each resample recomputes the
sub-track's key through the track's own formulas (a score that mixes runtime with other terms
varies through its runtime term; a rank sum through its runtime rank). For each pair of
adjacent ranked entries, ``p`` is the fraction of resamples in which the upper one stays ahead
(an exact tie counts half); ``p`` below the level (0.95) marks a statistical tie.
The resample count, seed and level come from the track's ``[settings.bootstrap]`` and are
printed with every table, so the figures can be reproduced exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leaderboard.compute import compute_metrics
from leaderboard.inputs import RAW_COLUMN
from leaderboard.tracks import RUNTIME_METRICS, base_name

CV_FLAG = 0.10      # trial-to-trial coefficient of variation above this is flagged (a noisy machine)


@dataclass
class Assessment:
    keys: list[str]                     # runtime-based metrics of the sub-track
    resamples: int
    seed: int
    level: float
    pairs: list[dict] = field(default_factory=list)   # {"upper", "lower", "p", "tie"}
    omitted: str | None = None          # why it could not be assessed

    @property
    def ties(self) -> list[dict]:
        return [p for p in self.pairs if p["tie"]]

    def text(self) -> str:
        if self.omitted:
            return f"Rank stability: not assessed ({self.omitted})."
        return (f"Rank stability: paired bootstrap over images (trials resampled within each image), "
                f"{self.resamples} resamples, seed {self.seed}; 'vs. above' is the fraction of resamples in which "
                f"the entry ranked just above stays ahead, 'tie' when below {self.level:.0%} "
                f"({len(self.ties)} of {len(self.pairs)} adjacent pairs).")


def runtime_keys(ranking) -> list[str]:
    track, sub = ranking.track, ranking.sub
    keys = [sub.by] if sub.rule == "sort" else list(sub.of)
    return [k for k in keys if track.is_runtime(k)]


def _resample_mean(trials: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) resampled means: ``trials`` is (T, n) per-image times, ``idx`` (B, n) image draws."""
    per_image = trials.T[idx]                                   # (B, n, T)
    if trials.shape[0] > 1:
        pick = rng.integers(0, trials.shape[0], size=per_image.shape)
        per_image = np.take_along_axis(per_image, pick, axis=2)
    return per_image.mean(axis=2).mean(axis=1)


def _resample_best(trials: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B,) resampled best-of-trials: the smallest per-trial mean over the drawn images."""
    return trials[:, idx].mean(axis=2).min(axis=0)


def assess(ranking, prep) -> Assessment | None:
    """Stability of the adjacent ranks of ``ranking``; None when its ranks do not use runtime."""
    track, sub = ranking.track, ranking.sub
    keys = runtime_keys(ranking)
    if not keys:
        return None
    boot = track.bootstrap
    out = Assessment(keys=keys, resamples=boot.resamples, seed=boot.seed, level=boot.level)
    table = ranking.table
    ranking.table["p_above"] = np.nan
    ranking.table["stat_tie"] = False
    ranked = table[table["ranked"]]
    if len(ranked) < 2:
        out.omitted = "fewer than two ranked entries"
        return out
    given = [k for k in track.chain(keys) if k in prep.given and track.is_runtime(k)]
    if given:
        out.omitted = f"{track.metrics[given[0]].label} is a published figure without per-image times"
        return out

    ptable = prep.table
    index_of = {e: i for i, e in ptable["entry"].items()}
    rows = [index_of[e] for e in ranked["entry"]]
    if prep.base_idx is not None and not prep.synthetic and prep.base_idx not in rows:
        rows.append(prep.base_idx)
    inputs = [n for n in track.inputs(keys) if base_name(n) in RUNTIME_METRICS and "." in n]
    if not inputs:
        out.omitted = "the runtime is not a per-split record metric"
        return out
    raws = {}
    for i in rows:
        raw = ptable.at[i, RAW_COLUMN] if RAW_COLUMN in ptable.columns else None
        for name in inputs:
            split = name.partition(".")[0]
            entry = ptable.at[i, "entry"]
            if not isinstance(raw, dict) or split not in raw:
                out.omitted = f"no per-image times for {entry} on {split}"
                return out
            times = raw[split]["runtime_ms"]
            try:
                arr = np.asarray(times, dtype=float)
            except ValueError:
                out.omitted = f"{entry}: trials of {split} have different image counts"
                return out
            if arr.ndim != 2 or arr.size == 0 or not np.all(np.isfinite(arr)):
                out.omitted = f"{entry}: per-image times of {split} are not a trials x images table"
                return out
            raws[(i, split)] = (arr, list(raw[split].get("images") or []))
    splits = list(dict.fromkeys(n.partition(".")[0] for n in inputs))
    for split in splits:
        shapes = {raws[(i, split)][0].shape[1] for i in rows}
        names = {tuple(raws[(i, split)][1]) for i in rows}
        if len(shapes) > 1 or len(names) > 1:
            out.omitted = f"entries were timed on different images of {split}: no pairing"
            return out

    rng = np.random.default_rng(boot.seed)
    B, N = boot.resamples, len(ptable)
    draws = {s: rng.integers(0, raws[(rows[0], s)][0].shape[1], size=(B, raws[(rows[0], s)][0].shape[1]))
             for s in splits}
    columns = {}
    for name in inputs:
        split, metric = name.partition(".")[0], base_name(name)
        values = np.full((B, N), np.nan)
        for i in rows:
            arr = raws[(i, split)][0]
            values[:, i] = (_resample_best(arr, draws[split]) if metric == "runtime_ms_best"
                            else _resample_mean(arr, draws[split], rng))
        columns[name] = values

    def column(name: str):
        if name in columns:
            return columns[name]
        if name in ptable.columns and name not in prep.given:
            return pd.to_numeric(ptable[name], errors="coerce").to_numpy(dtype=float)
        return None

    values, _ = compute_metrics(track, column, N, given=prep.given, base_idx=prep.base_idx,
                                synthetic=prep.synthetic, published=prep.published)
    ranked_rows = [index_of[e] for e in ranked["entry"]]
    if sub.rule == "sort":
        key = np.broadcast_to(values[sub.by], (B, N))[:, ranked_rows]
        lower_better = track.metrics[sub.by].direction == "lower"
    else:
        key = np.zeros((B, len(ranked_rows)))
        for k in sub.of:
            if k in keys:
                v = np.broadcast_to(values[k], (B, N))[:, ranked_rows]
                v = v if track.metrics[k].direction == "lower" else -v
                key += np.argsort(np.argsort(v, axis=1, kind="stable"), axis=1) + 1
            else:
                key += ranked[f"rank.{k}"].to_numpy(dtype=float)
        lower_better = True
    ranks = ranked["rank"].to_numpy(dtype=float)
    positions = list(ranked.index)
    for a in range(len(ranked_rows) - 1):
        b = a + 1
        if ranks[a] == ranks[b]:
            continue      # a shared rank is already a tie
        ka, kb = key[:, a], key[:, b]
        ahead = (ka < kb) if lower_better else (ka > kb)
        p = float(ahead.mean() + 0.5 * (ka == kb).mean())
        tie = p < boot.level
        out.pairs.append({"upper": ranked["entry"].iloc[a], "lower": ranked["entry"].iloc[b], "p": p, "tie": tie})
        ranking.table.at[positions[b], "p_above"] = p
        ranking.table.at[positions[b], "stat_tie"] = tie
    return out
