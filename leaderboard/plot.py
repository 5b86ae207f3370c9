"""Quality against runtime, one PNG per track (matplotlib, Agg backend: no display needed).

Legible with 45 entries: each point carries a short number (the rank for ranked entries, then
continuing numbers for the others) placed next to it by adjustText and checked for overlaps in
window coordinates; a key beside the plot maps numbers to names. Marker area grows with the
parameter count; ranked entries are filled, unranked ones hollow, reference rows grey squares;
the baseline is a black star. The Pareto front of the ranked entries (no other ranked entry both
faster and better) is a red step line drawn above the markers. The x axis is logarithmic when
the values span more than a decade; points far outside the ranked entries' range are pinned to
the axis edge with a triangle and their value in the key, so outliers do not squash the cluster.
Statistical ties (bootstrap, see ``stability``) join the two entries with a dashed orange line.
The context (data, device, protocol) is printed under the plot.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from leaderboard import context as ctx  # noqa: E402
from leaderboard.rank import Ranking  # noqa: E402

LABEL_FONTSIZE = 7


def pareto_front(x, y) -> list[int]:
    """Indices of points not dominated (lower x and higher y better), sorted by x."""
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], -math.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def _range(values, log: bool, pad: float = 0.06):
    lo, hi = min(values), max(values)
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    span = (hi - lo) or (abs(hi) * 0.05 or 1.0)
    lo, hi = lo - pad * span, hi + pad * span
    return (10 ** lo, 10 ** hi) if log else (lo, hi)


def overlapping_labels(fig, texts) -> list[tuple[str, str]]:
    """Pairs of label texts whose window extents overlap (after a draw)."""
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    out = []
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            if boxes[a][1].overlaps(boxes[b][1]):
                out.append((boxes[a][0], boxes[b][0]))
    return out


def _separate(fig, ax, texts, xs, ys, radii) -> None:
    """Move labels until none overlaps another label or a marker: adjustText first, then a
    deterministic spiral search (window coordinates) for any label still touching something,
    with a thin leader line to its point when it lands away from it. ``radii``: marker radius of
    each point in pixels."""
    from adjustText import adjust_text

    adjust_text(texts, x=xs, y=ys, ax=ax, expand=(1.2, 1.4), ensure_inside_axes=True, iter_lim=300)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inv = ax.transData.inverted()
    axes_box = ax.get_window_extent(renderer)
    centres = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    markers = [matplotlib.transforms.Bbox.from_bounds(cx - r, cy - r, 2 * r, 2 * r)
               for (cx, cy), r in zip(centres, radii)]
    placed: list = []
    for t, (px, py), r in zip(texts, centres, radii):
        t.set_visible(True)
        box = t.get_window_extent(renderer).padded(1)
        near = np.hypot((box.x0 + box.x1) / 2 - px, (box.y0 + box.y1) / 2 - py)
        inside = axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
        if inside and near < r + 25 and not any(box.overlaps(p) for p in placed + markers):
            placed.append(box)
            continue
        w, h = box.width, box.height
        spot = None
        for radius in np.arange(r + 2, 600, 3):
            for angle in np.linspace(0, 2 * np.pi, 32, endpoint=False):
                cx = px + (radius + w / 2) * np.cos(angle)
                cy = py + (radius + h / 2) * np.sin(angle)
                cand = matplotlib.transforms.Bbox.from_bounds(cx - w / 2, cy - h / 2, w, h)
                if (cand.x0 < axes_box.x0 or cand.x1 > axes_box.x1 or cand.y0 < axes_box.y0
                        or cand.y1 > axes_box.y1 or any(cand.overlaps(p) for p in placed + markers)):
                    continue
                spot = (cx, cy, cand, radius)
                break
            if spot:
                break
        if spot is None:
            placed.append(box)
            continue
        cx, cy, cand, radius = spot
        t.set_position(inv.transform((cx, cy)))
        t.set_ha("center")
        t.set_va("center")
        if radius > r + 10:
            ax.annotate("", xy=inv.transform((px, py)), xytext=inv.transform((cx, cy)),
                        arrowprops=dict(arrowstyle="-", color="0.55", lw=0.5, shrinkA=2, shrinkB=r * 0.6), zorder=2)
        placed.append(cand)
    for child in list(ax.get_children()):   # adjustText's own arrows, if any, are replaced by ours
        if getattr(child, "_adjusttext_arrow", False):
            child.remove()


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ..."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(97 + r) + out
    return out


def draw(ranking: Ranking):
    """The figure for ``ranking`` and its label artists (numbers next to the points)."""
    track = ranking.track
    xk = track.plot.get("x", "runtime_ms")
    yk = track.plot.get("y")
    sk = track.plot.get("size", "params")
    if yk is None or xk not in track.metrics or yk not in track.metrics:
        raise ValueError(f"{track.path.name}: [plot] needs x and y metrics to draw quality against runtime")
    mx, my = track.metrics[xk], track.metrics[yk]
    ms = track.metrics.get(sk)
    t = ranking.table
    ok = t[xk].notna() & t[yk].notna() & np.isfinite(t[yk].astype(float)) & (t[xk].astype(float) > 0)
    t = t[ok].reset_index(drop=True)
    x = (t[xk].astype(float) / mx.scale).to_numpy()
    y = (t[yk].astype(float) / my.scale).to_numpy()
    sizes = t[sk].astype(float).to_numpy() if ms is not None and sk in t.columns else None

    # Labels: the rank for ranked entries, "B" for the baseline, letters for the others.
    numbers, letter = [], 0
    for _, row in t.iterrows():
        if row["ranked"]:
            numbers.append(str(int(row["rank"])))
        elif row["kind"] == "baseline":
            numbers.append("B")
        else:
            numbers.append(_letters(letter))
            letter += 1

    fig = plt.figure(figsize=(11, 7.2), dpi=150)
    ax = fig.add_axes([0.07, 0.17, 0.62, 0.74])
    key_ax = fig.add_axes([0.71, 0.17, 0.28, 0.74])
    key_ax.axis("off")
    texts = []
    if not len(t):
        ax.text(0.5, 0.5, "no entry has both values", ha="center", va="center", transform=ax.transAxes)
    else:
        focus = [i for i in range(len(t)) if t.at[i, "ranked"] or t.at[i, "kind"] in ("baseline", "reference")]
        focus = focus or list(range(len(t)))
        log_x = bool(track.plot.get("log_x", max(x) / min(x) > 10))
        # The view covers the ranked entries, the baseline and the references; points far outside
        # are pinned to the edge (triangles) so one outlier does not squash the cluster.
        fx_lo, fx_hi = _range(list(x[focus]), log_x)
        fy_lo, fy_hi = _range(list(y[focus]), False, pad=0.12)
        all_x_lo, all_x_hi = _range(list(x), log_x)
        all_y_lo, all_y_hi = _range(list(y), False, pad=0.12)
        x_lo, x_hi = (all_x_lo, all_x_hi) if (math.log10(all_x_hi / all_x_lo) if log_x else all_x_hi - all_x_lo) <= \
            1.6 * (math.log10(fx_hi / fx_lo) if log_x else fx_hi - fx_lo) else (fx_lo, fx_hi)
        y_lo, y_hi = (all_y_lo, all_y_hi) if all_y_hi - all_y_lo <= 1.6 * (fy_hi - fy_lo) else (fy_lo, fy_hi)
        px = np.clip(x, x_lo, x_hi)
        py = np.clip(y, y_lo, y_hi)
        pinned = (px != x) | (py != y)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        smax = float(np.nanmax(sizes)) if sizes is not None and np.isfinite(sizes).any() else 1.0

        def area(v):
            return 25 + 300 * (float(v) / smax) if v == v and smax > 0 else 40

        for i in range(len(t)):
            a = area(sizes[i]) if sizes is not None else 40
            kind, ranked = t.at[i, "kind"], bool(t.at[i, "ranked"])
            if pinned[i]:
                marker = "v" if py[i] != y[i] and y[i] < y_lo else "^" if py[i] != y[i] else \
                    ("<" if x[i] < x_lo else ">")
                ax.scatter(px[i], py[i], s=60, marker=marker, color="tab:gray", zorder=3, clip_on=False)
            elif kind == "baseline":
                ax.scatter(px[i], py[i], s=max(a * 1.4, 120), marker="*", color="black", zorder=4)
            elif kind == "reference":
                ax.scatter(px[i], py[i], s=a, marker="s", facecolor="none", edgecolor="0.45", zorder=3)
            elif ranked:
                ax.scatter(px[i], py[i], s=a, color="tab:blue", alpha=0.6, edgecolor="white", lw=0.5, zorder=3)
            else:
                ax.scatter(px[i], py[i], s=a, facecolor="none", edgecolor="tab:gray", zorder=3)
        ranked_idx = [i for i in range(len(t)) if t.at[i, "ranked"]]
        if ranked_idx:
            front = [ranked_idx[k] for k in pareto_front([x[i] for i in ranked_idx], [y[i] for i in ranked_idx])]
            ax.step(px[front], py[front], where="post", color="tab:red", lw=1.6, alpha=0.9, zorder=5)
        # Statistical ties: dashed line between the two entries.
        by_entry = {t.at[i, "entry"]: i for i in range(len(t))}
        s = ranking.stability
        n_ties = 0
        if s is not None and not s.omitted:
            for pair in s.ties:
                a_i, b_i = by_entry.get(pair["upper"]), by_entry.get(pair["lower"])
                if a_i is not None and b_i is not None:
                    ax.plot([px[a_i], px[b_i]], [py[a_i], py[b_i]], ls="--", color="tab:orange", lw=1.0, zorder=4.5)
                    n_ties += 1
        for i in range(len(t)):
            color = "black" if t.at[i, "ranked"] or t.at[i, "kind"] == "baseline" else "dimgray"
            texts.append(ax.text(px[i], py[i], numbers[i],
                                 fontsize=LABEL_FONTSIZE, color=color, zorder=6,
                                 fontweight="bold" if t.at[i, "kind"] == "baseline" else "normal"))
        ax.grid(True, which="both", alpha=0.25)
        radii = []
        for i in range(len(t)):
            a = 60 if pinned[i] else (max(area(sizes[i]) * 1.4, 120) if t.at[i, "kind"] == "baseline"
                                       else area(sizes[i]) if sizes is not None else 40)
            radii.append(math.sqrt(a) / 2 * fig.dpi / 72)
        _separate(fig, ax, texts, list(px), list(py), radii)

        # Key: number -> entry (value for pinned points), in columns that fit the panel.
        lines = []
        for i in range(len(t)):
            name = str(t.at[i, "entry"])
            name = name if len(name) <= 22 else name[:21] + "."
            extra = f" ({y[i]:.2f} {my.unit}, {x[i]:.4g} {mx.unit})" if pinned[i] else ""
            lines.append(f"{numbers[i]:>3} {name}{extra}")
        per_col = 48
        cols = [lines[k:k + per_col] for k in range(0, len(lines), per_col)]
        for c, chunk in enumerate(cols):
            key_ax.text(c / len(cols), 1.0, "\n".join(chunk), va="top", ha="left", family="monospace",
                        fontsize=6.5 if len(cols) == 1 else 5.5, transform=key_ax.transAxes)
        handles = [
            plt.Line2D([], [], color="tab:red", lw=1.6, label="Pareto front (ranked)"),
            plt.Line2D([], [], ls="", marker="o", color="tab:blue", alpha=0.6, label="ranked (number = rank)"),
        ]
        if ((~t["ranked"]) & (t["kind"] == "entry")).any():
            handles.append(plt.Line2D([], [], ls="", marker="o", mfc="none", mec="tab:gray", label="not ranked (letters)"))
        if (t["kind"] == "baseline").any():
            handles.append(plt.Line2D([], [], ls="", marker="*", color="black", ms=10,
                                      label=f"baseline {track.baseline.name} (B)"))
        if (t["kind"] == "reference").any():
            handles.append(plt.Line2D([], [], ls="", marker="s", mfc="none", mec="0.45", label="reference"))
        if pinned.any():
            handles.append(plt.Line2D([], [], ls="", marker="v", color="tab:gray", label="off scale (value in key)"))
        if n_ties:
            handles.append(plt.Line2D([], [], ls="--", color="tab:orange", label="statistical tie (bootstrap)"))
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.9)
    ax.set_xlabel(ctx.header(track, xk, ranking.context) + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(ctx.header(track, yk, ranking.context))
    ax.set_title(f"{track.title} - {ranking.sub.title}: {my.label} vs {mx.label}"
                 + (f" (marker area ~ {ms.label})" if ms is not None else ""), fontsize=9.5)
    caption = " ".join(ranking.context.lines(track)[:2])
    fig.text(0.07, 0.015, "\n".join(textwrap.wrap(caption, 170)), fontsize=6.5, va="bottom", ha="left", color="0.25")
    fig.canvas.draw()
    return fig, texts


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically (temporary file, then rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot(ranking: Ranking, path: str | Path) -> Path:
    """Write the PNG for ``ranking`` (its ranked/unranked split) to ``path``; returns the path."""
    fig, _ = draw(ranking)
    return save(fig, path)
