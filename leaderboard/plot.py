"""PSNR against runtime, one PNG per track (matplotlib, Agg backend: no display needed).

Marker area grows with the parameter count; ranked entries are filled, unranked ones hollow;
the baseline is a star; the Pareto front (no other entry both faster and better) is a step line.
Axes come from the track's ``[plot]`` table (x, y, size: track metric keys).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from leaderboard.rank import Ranking  # noqa: E402


def pareto_front(x, y) -> list[int]:
    """Indices of points not dominated (lower x and higher y better), sorted by x."""
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], -math.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def plot(ranking: Ranking, path: str | Path) -> Path:
    """Write the PNG for ``ranking`` (its ranked/unranked split) to ``path``; returns the path."""
    track = ranking.track
    xk = track.plot.get("x", "runtime_ms")
    yk = track.plot.get("y")
    sk = track.plot.get("size", "params")
    if yk is None or xk not in track.metrics or yk not in track.metrics:
        raise ValueError(f"{track.path.name}: [plot] needs x and y metrics to draw PSNR against runtime")
    mx, my = track.metrics[xk], track.metrics[yk]
    ms = track.metrics.get(sk)
    t = ranking.table
    ok = t[xk].notna() & t[yk].notna() & np.isfinite(t[yk].astype(float))
    t = t[ok].reset_index(drop=True)
    x = (t[xk].astype(float) / mx.scale).tolist()
    y = (t[yk].astype(float) / my.scale).tolist()
    sizes = t[sk].astype(float) if ms is not None else None

    fig, ax = plt.subplots(figsize=(9, 6), dpi=150)
    if not len(t):
        ax.text(0.5, 0.5, "no entry has both values", ha="center", va="center", transform=ax.transAxes)
    else:
        smax = float(np.nanmax(sizes)) if sizes is not None and sizes.notna().any() else 1.0

        def area(v):
            return 40 + 460 * (float(v) / smax) if v == v and smax > 0 else 60

        # The front is drawn over ranked entries and the baseline: those the rule admits.
        admitted = [i for i in range(len(t)) if t.at[i, "ranked"] or t.at[i, "kind"] == "baseline"]
        front = [admitted[k] for k in pareto_front([x[i] for i in admitted], [y[i] for i in admitted])]
        fx, fy = [x[i] for i in front], [y[i] for i in front]
        ax.step(fx, fy, where="post", color="tab:red", lw=1.2, alpha=0.8, zorder=1,
                label="Pareto front of ranked entries")
        for i, row in t.iterrows():
            a = area(sizes.iat[i]) if sizes is not None else 60
            if row["kind"] == "baseline":
                ax.scatter(x[i], y[i], s=a * 1.6, marker="*", color="black", zorder=4)
            elif row["ranked"]:
                ax.scatter(x[i], y[i], s=a, color="tab:blue", alpha=0.75, edgecolor="white", zorder=3)
            else:
                ax.scatter(x[i], y[i], s=a, facecolor="none", edgecolor="tab:gray", zorder=2)
        # Labels alternate above/below along x so neighbours do not print on top of each other.
        for n, i in enumerate(sorted(range(len(t)), key=lambda k: x[k])):
            name = str(t.at[i, "entry"]) + (" (baseline)" if t.at[i, "kind"] == "baseline"
                                             and "(published)" not in str(t.at[i, "entry"]) else "")
            dy = 7 if n % 2 == 0 else -12
            dx = 9 if t.at[i, "kind"] == "baseline" else 5
            ax.annotate(name, (x[i], y[i]), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                        color="black" if t.at[i, "ranked"] or t.at[i, "kind"] == "baseline" else "dimgray")
        if max(x) > 0 and min(x) > 0 and max(x) / min(x) > 8:
            ax.set_xscale("log")
        ax.margins(x=0.12, y=0.15)
        # Legend: marker kinds and three reference sizes.
        handles = [
            plt.Line2D([], [], color="tab:red", lw=1.2, label="Pareto front (ranked + baseline)"),
            plt.scatter([], [], s=80, color="tab:blue", alpha=0.75, label="ranked"),
            plt.scatter([], [], s=80, facecolor="none", edgecolor="tab:gray", label="not ranked"),
            plt.scatter([], [], s=120, marker="*", color="black", label="baseline"),
        ]
        if sizes is not None and sizes.notna().any() and ms is not None:
            for frac in (0.25, 1.0):
                v = smax * frac
                handles.append(plt.scatter([], [], s=area(v), color="lightgray",
                                           label=f"{v / ms.scale:.3g} {ms.unit} {ms.label}".strip()))
        ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9, labelspacing=1.2)
    ax.set_xlabel(f"{mx.label} [{mx.unit}]" if mx.unit else mx.label)
    ax.set_ylabel(f"{my.label} [{my.unit}]" if my.unit else my.label)
    ax.set_title(f"{track.title}: {my.label} vs {mx.label}" +
                 (f" (marker area ~ {ms.label})" if ms is not None else ""), fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
