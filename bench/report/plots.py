"""Plots as matplotlib Figure objects (no pyplot, no global backend switch; the Agg canvas writes PNG)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.report.aggregate import Group
from bench.store import atomic_savefig


def _new_figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def method_palette(methods: Iterable[str]) -> dict[str, Any]:
    """One colour per method, the same in every plot of a report (sorted names -> tab10)."""
    import seaborn as sns

    names = sorted(set(methods))
    return dict(zip(names, sns.color_palette("tab10", n_colors=max(len(names), 1)), strict=False))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (lower x = cost, higher y = accuracy), in order of cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


_NOISE = re.compile(r"label_noise=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def clean_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows trained on clean labels and clips: a label-noise run (input column `label_noise=0.2`) or a corrupted
    one has its own plot (robustness_<ds>.png) and, beside the clean run of the same method, reads as a second
    configuration."""
    out = []
    for r in rows:
        shown = str(r.get("input") or "")
        m = _NOISE.search(shown)
        if (m and float(m.group(1)) > 0) or "corrupt" in shown:
            continue
        out.append(r)
    return out


def point_labels(rows: Sequence[dict]) -> list[str]:
    """The method name, with the protocol (then the selection, then the configuration hash) added only where a
    method has several points, and a dagger for a row that did not learn (one class predicted)."""
    def key(r: dict, depth: int) -> tuple:
        return (r["method"], r.get("protocol", ""), r.get("selection", ""), r.get("variant", ""))[:depth]

    labels = []
    for r in rows:
        depth = 1
        while depth < 4 and sum(key(o, depth) == key(r, depth) for o in rows) > 1:
            depth += 1
        extra = [str(x) for x in key(r, depth)[1:] if x]
        labels.append(r["method"] + (f" [{', '.join(extra)}]" if extra else "") + ("†" if r.get("did_not_learn") else ""))
    return labels


def _nice(x: float) -> float:
    """x rounded down to 1, 2 or 5 times a power of ten (size-legend values)."""
    p = 10 ** math.floor(math.log10(x))
    return max(m * p for m in (1, 2, 5) if m * p <= x)


def _marker_size(params_m: float | None, pmax: float) -> float:
    return 40 + 560 * ((params_m or 0) / pmax)


_LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}


def _marker_boxes(ax: Any, pts: Sequence[tuple[float, float]], sizes: Sequence[float]) -> list[Any]:
    """Each scatter marker's box in data coordinates (adjustText's obstacle format): the centre +- the marker
    radius, `s` being the area in points^2."""
    from matplotlib.transforms import Bbox

    to_px, to_data = ax.transData, ax.transData.inverted()
    boxes = []
    for (x, y), s in zip(pts, sizes, strict=True):
        r = math.sqrt(s) / 2 * ax.figure.dpi / 72
        cx, cy = to_px.transform((x, y))
        boxes.append(Bbox(to_data.transform([(cx - r, cy - r), (cx + r, cy + r)])))
    return boxes


def accuracy_vs_gmacs_figure(rows_by_ds: dict[str, list[dict]]) -> Any | None:
    """The figure of `plot_accuracy_vs_gmacs` (None when no clean row has GMACs): kept apart so tests can read
    its labels and their boxes."""
    import seaborn as sns
    from adjustText import adjust_text
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown = {ds: [r for r in clean_rows(rows) if r["gmacs"] is not None and r["uar_mean"] is not None]
             for ds, rows in rows_by_ds.items()}
    left_out = {ds: len(rows_by_ds[ds]) - len(clean_rows(rows_by_ds[ds])) for ds in rows_by_ds}
    datasets = [d for d, rows in shown.items() if rows]
    if not datasets:
        return None
    all_rows = [r for d in datasets for r in shown[d]]
    families = sorted({r.get("family") or "?" for r in all_rows})
    colours = dict(zip(families, sns.color_palette("tab10" if len(families) <= 10 else "tab20", len(families)),
                       strict=True))
    pmax = max(r["params_m"] or 0 for r in all_rows) or 1.0
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.95):
        fig = _new_figure(7.5 * len(datasets) + 3.2, 11.0)
        grid = fig.add_gridspec(2, len(datasets) + 1, width_ratios=[7.5] * len(datasets) + [3.2])
        placed = []
        for j, ds in enumerate(datasets):
            rows = shown[ds]
            labels = point_labels(rows)
            for i, metric in enumerate(("uar", "war")):
                ax = fig.add_subplot(grid[i, j])
                pts = [(r["gmacs"], r[f"{metric}_mean"]) for r in rows]
                for r, (x, y) in zip(rows, pts, strict=True):
                    lo, hi = r.get(f"{metric}_lo"), r.get(f"{metric}_hi")
                    if lo is not None and hi is not None:  # the row's 95% interval (bench/stats.py)
                        ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], color="0.55", capsize=3, zorder=2, lw=0.9)
                    colour = colours[r.get("family") or "?"]
                    ax.scatter([x], [y], s=_marker_size(r["params_m"], pmax), zorder=3, alpha=0.85,
                               marker="X" if r["selection"] == "best_on_test" else "o",
                               facecolor=colour if r["complete"] else "white",
                               edgecolor="black" if r["complete"] else colour, linewidth=0.6 if r["complete"] else 2.0)
                # the front ignores rows whose epoch was chosen on the test split (optimistic numbers)
                honest = [k for k, r in enumerate(rows) if r["selection"] != "best_on_test"]
                front = [honest[k] for k in pareto_front([pts[k] for k in honest])]
                if front:
                    ax.plot([pts[k][0] for k in front], [pts[k][1] for k in front], "--", color="crimson", lw=1.4,
                            zorder=1)
                xs = [p[0] for p in pts]
                if min(xs) > 0 and max(xs) / min(xs) > 4:  # a log axis spreads the cheap cluster
                    ax.set_xscale("log")
                    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                    ax.xaxis.set_minor_formatter(NullFormatter())
                ax.margins(x=0.12, y=0.1)
                ax.set_xlabel("GMACs per clip (fvcore, batch 1)")
                ax.set_ylabel(f"{metric.upper()} (%)")
                n_out = left_out.get(ds, 0)
                ax.set_title(f"{ds}: {metric.upper()} vs cost", fontweight="bold")
                texts = [ax.text(x, y, lab, fontsize=9.5, zorder=4, bbox=_LABEL_BOX) for (x, y), lab in zip(pts, labels, strict=True)]
                sizes = [_marker_size(r["params_m"], pmax) for r in rows]
                placed.append((ax, texts, pts, sizes))
                if n_out and i == 0:
                    ax.annotate(f"{n_out} label-noise row(s) not shown (robustness_{_slug(ds)}.png)",
                                (0.0, 1.0), xycoords="axes fraction", xytext=(0, 18), textcoords="offset points",
                                fontsize=8.5, color="0.35", va="bottom")
        handles: list[Any] = [Line2D([], [], ls="none", label="family (colour)")]
        handles += [Line2D([], [], ls="none", marker="o", ms=9, markerfacecolor=colours[f], markeredgecolor="black",
                           label=f) for f in families]
        handles += [Line2D([], [], ls="none", label=""), Line2D([], [], ls="none", label="marker")]
        handles += [Line2D([], [], ls="none", marker="o", ms=9, markerfacecolor="0.6", markeredgecolor="black",
                           label="all folds of the protocol run"),
                    Line2D([], [], ls="none", marker="o", ms=9, markerfacecolor="white", markeredgecolor="0.4",
                           markeredgewidth=2.0, label="hollow: fewer folds run\n(incomplete; see table 'folds')")]
        if any(r["selection"] == "best_on_test" for r in all_rows):
            handles.append(Line2D([], [], ls="none", marker="X", ms=9, markerfacecolor="0.6", markeredgecolor="black",
                                  label="X: epoch chosen on test\n(optimistic; not on the front)"))
        handles += [Line2D([], [], color="0.55", marker="|", ms=10, label="error bar: 95% CI"),
                    Line2D([], [], color="crimson", ls="--", label="Pareto front")]
        if any(r.get("did_not_learn") for r in all_rows):
            handles.append(Line2D([], [], ls="none", label="†: did not learn\n(one class predicted)"))
        handles += [Line2D([], [], ls="none", label=""), Line2D([], [], ls="none", label="size (params)")]
        for v in sorted({_nice(pmax), _nice(pmax / 4)}):
            handles.append(Line2D([], [], ls="none", marker="o", markerfacecolor="0.85", markeredgecolor="0.4",
                                  ms=math.sqrt(_marker_size(v, pmax)), label=f"{v:g} M"))
        lax = fig.add_subplot(grid[:, -1])
        lax.axis("off")
        legend = lax.legend(handles=handles, loc="upper left", frameon=False, fontsize=10, borderaxespad=0,
                            labelspacing=0.9, handletextpad=0.8)
        headers = {"family (colour)", "marker", "size (params)"}
        for text in legend.get_texts():
            if text.get_text() in headers:
                text.set_fontweight("bold")
        fig.tight_layout()
        for ax, texts, pts, sizes in placed:  # after the layout: adjustText works in the final pixel geometry
            # the markers' boxes are obstacles too (not only their centres), so no label sits on a circle;
            # iter_lim, not the default time limit: the same inputs give the same picture on any machine
            adjust_text(texts, x=[p[0] for p in pts], y=[p[1] for p in pts], objects=_marker_boxes(ax, pts, sizes),
                        ax=ax, iter_lim=500, expand=(1.15, 1.4), force_text=(0.5, 1.0), force_static=(1.0, 2.0),
                        arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.7})
    return fig


def plot_accuracy_vs_gmacs(rows_by_ds: dict[str, list[dict]], path: Path) -> Path | None:
    """UAR (top) and WAR (bottom) vs GMACs per clip, one column per dataset: one point per clean table row
    (label-noise runs have their own plot), colour = family, size = params, hollow = incomplete fold set,
    X = epoch chosen on test (left out of the Pareto front), error bars = the rows' 95% intervals, labels
    placed apart by adjustText with leader lines."""
    fig = accuracy_vs_gmacs_figure(rows_by_ds)
    if fig is None:
        return None
    atomic_savefig(fig, path)
    return path


def plot_confusion(cm: np.ndarray, classes: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (recall on the diagonal), counts summed over folds."""
    import seaborn as sns

    cm = np.asarray(cm, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    n = len(classes)
    fig = _new_figure(1.0 + 0.75 * n, 0.6 + 0.65 * n)
    ax = fig.subplots()
    sns.heatmap(np.nan_to_num(norm), annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, square=True,
                xticklabels=classes, yticklabels=classes, ax=ax, cbar_kws={"shrink": 0.7}, annot_kws={"size": 8})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelrotation=45)
    ax.tick_params(axis="y", labelrotation=0)
    fig.tight_layout()
    atomic_savefig(fig, path)
    return path


def plot_curves(groups: list[Group], title: str, path: Path) -> Path | None:
    """Train loss and eval UAR per epoch, one thin line per run; colour = method (as in the cost plot), line
    style = configuration when a method has several table rows."""
    import seaborn as sns

    if not any(r.curves for g in groups for r in g.runs):
        return None
    with sns.axes_style("whitegrid"):
        fig = _new_figure(12, 4.5)
        ax_loss, ax_uar = fig.subplots(1, 2)
        palette = method_palette(g.method for g in groups)
        seen: Counter = Counter()
        for g in groups:
            color, style = palette[g.method], ("-", "--", ":", "-.")[seen[g.method] % 4]
            seen[g.method] += 1
            first = True
            for r in g.runs:
                ep = [c["epoch"] for c in r.curves if c.get("train_loss") is not None]
                loss = [c["train_loss"] for c in r.curves if c.get("train_loss") is not None]
                ev = [(c["epoch"], 100 * c["eval"]["uar"]) for c in r.curves
                      if c.get("eval") and c["eval"].get("uar") is not None]
                label = g.label() if first else None
                if ep:
                    ax_loss.plot(ep, loss, color=color, ls=style, lw=1.0, alpha=0.8, label=label)
                if ev:
                    ax_uar.plot([e for e, _ in ev], [u for _, u in ev], color=color, ls=style, lw=1.0, alpha=0.8,
                                marker=".", label=label)
                first = False
        from matplotlib.ticker import MaxNLocator

        for ax in (ax_loss, ax_uar):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("train loss")
        ax_loss.set_title(f"{title}: training loss")
        ax_uar.set_xlabel("epoch")
        ax_uar.set_ylabel("eval UAR (%)")
        ax_uar.set_title(f"{title}: eval UAR (split as logged)")
        ax_uar.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        atomic_savefig(fig, path)
    return path


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", s).strip("-") or "x"


def noise_level(row_or_group: Any) -> float | None:
    """The synthetic `label_noise` knob of a group's runs (None when the dataset has no such knob)."""
    spec = row_or_group.first.get("spec") or {}
    options = (spec.get("data") or {}).get("options") or {}
    return float(options.get("label_noise", 0.0)) if row_or_group.dataset == "synthetic" else None


def plot_robustness(groups: list[Group], rows: list[dict], path: Path) -> Path | None:
    """Test UAR vs the fraction of flipped training labels (synthetic `label_noise`), one line per method and
    protocol (two protocols of one method are two lines, never joined), for those run at two or more noise
    levels; error bars are each point's 95% interval (bench/stats.py)."""
    import seaborn as sns

    by_line: dict[str, list[tuple[float, float, float, float]]] = {}
    protocols: dict[str, set[str]] = {}
    for g in groups:
        protocols.setdefault(g.method, set()).add(g.first.get("protocol_name", ""))
    for g, r in zip(groups, rows, strict=True):
        level = noise_level(g)
        if level is None or r["uar_mean"] is None:
            continue
        name = g.first.get("protocol_name", "")
        label = f"{g.method} [{name}]" if len(protocols[g.method]) > 1 and name else g.method
        lo, hi = r.get("uar_lo"), r.get("uar_hi")
        err = (r["uar_mean"] - lo, hi - r["uar_mean"]) if lo is not None and hi is not None else (0.0, 0.0)
        by_line.setdefault(label, []).append((level, r["uar_mean"], *err))
    by_line = {m: sorted(v) for m, v in by_line.items() if len({x[0] for x in v}) >= 2}
    if not by_line:
        return None
    with sns.axes_style("whitegrid"):
        fig = _new_figure(7.0, 4.5)
        ax = fig.subplots()
        palette = method_palette(by_line)
        for m, pts in sorted(by_line.items()):
            xs, ys, lo, hi = zip(*pts, strict=True)
            ax.errorbar([100 * x for x in xs], ys, yerr=[lo, hi], color=palette[m], marker="o", capsize=3,
                        label=m)
        ax.axhline(100 / 7, color="gray", ls=":", lw=1, label="chance (7 classes)")
        ax.set_xlabel("training labels flipped (%)  [synthetic label_noise; test labels clean]")
        ax.set_ylabel("test UAR (%)")
        ax.set_title("synthetic: robustness to label noise")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic_savefig(fig, path)
    return path
