"""A track's metrics from the input columns, over rows (1-D) or resamples x rows (2-D).

One function serves the table (each row once) and the bootstrap (each resample of the runtimes),
so a score that mixes runtime with other terms is resampled through its runtime term exactly as
it is computed for the table.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from leaderboard import expr as expressions
from leaderboard.tracks import Track


def at(values: np.ndarray, index: int):
    """The value of one row: a float (1-D) or a column of resamples, shape (B, 1) (2-D)."""
    if values.ndim == 2:
        return values[:, index:index + 1]
    return float(values[index])


def compute_metrics(track: Track, column: Callable[[str], np.ndarray | None], n_rows: int, *,
                    given: dict[str, np.ndarray], base_idx: int | None, synthetic: bool,
                    published: dict[str, float]) -> tuple[dict[str, np.ndarray], dict]:
    """Every track metric, in file order.

    ``column(name)`` returns an input column (shape (N,) or (B, N)) or None when absent.
    ``given``: track metrics supplied as input columns (NaN where a row gives none): used as
    given, never recomputed. ``base_idx``: the baseline row; its value of each metric is
    ``baseline.<metric>`` in later expressions. ``synthetic``: that row is the track's published
    baseline, whose metric values are the published ones. ``published``: per-metric fallbacks
    where the baseline row has no value (already filtered for applicability by the caller).
    Returns (values per metric, baseline value per metric: float or (B, 1) array).
    """
    values: dict[str, np.ndarray] = {}
    baseline: dict = {}
    nan = np.full(n_rows, math.nan)

    def resolve(name: str):
        if name.startswith("baseline."):
            return baseline.get(name[len("baseline."):], math.nan)
        if name in values:
            return values[name]
        got = column(name)
        return nan if got is None else got

    for key, metric in track.metrics.items():
        raw = resolve(key) if metric.expr is None else expressions.evaluate(metric.expr, resolve)
        v = np.array(np.broadcast_to(np.asarray(raw, dtype=float), np.shape(raw) if np.ndim(raw) else (n_rows,)),
                     dtype=float, copy=True)
        if key in given:
            v = np.where(np.isnan(given[key]), v, given[key])
        if synthetic and base_idx is not None and key in published:
            if v.ndim == 2:
                v[:, base_idx] = published[key]
            else:
                v[base_idx] = published[key]
        values[key] = v
        if base_idx is not None and not np.all(np.isnan(v[..., base_idx])):
            baseline[key] = at(v, base_idx)
        elif key in published:
            baseline[key] = float(published[key])
    return values, baseline
