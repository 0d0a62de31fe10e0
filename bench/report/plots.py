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


def plot_accuracy_vs_gmacs(rows_by_ds: dict[str, list[dict]], path: Path) -> Path | None:
    """UAR (top) and WAR (bottom) vs GMACs per clip, one column per dataset, size = params, Pareto front; error
    bars are the rows' 95% intervals.

    best_on_test rows are drawn as X and left out of the front (their numbers are optimistic).
    """
    import seaborn as sns

    datasets = [d for d, rows in rows_by_ds.items() if any(r["gmacs"] is not None for r in rows)]
    if not datasets:
        return None
    with sns.axes_style("whitegrid"):
        fig = _new_figure(5.2 * len(datasets), 8.0)
        axes = fig.subplots(2, len(datasets), squeeze=False)
        palette = method_palette(r["method"] for d in datasets for r in rows_by_ds[d])
        all_params = [r["params_m"] or 0 for d in datasets for r in rows_by_ds[d]]
        pmax = max(all_params) or 1.0
        for j, ds in enumerate(datasets):
            rows = [r for r in rows_by_ds[ds] if r["gmacs"] is not None]
            for i, metric in enumerate(("uar", "war")):
                ax = axes[i][j]
                pts = [(r["gmacs"], r[f"{metric}_mean"]) for r in rows]
                for r, (x, y) in zip(rows, pts, strict=True):
                    size = 40 + 560 * ((r["params_m"] or 0) / pmax)
                    marker = "X" if r["selection"] == "best_on_test" else "o"
                    ax.scatter([x], [y], s=size, color=palette[r["method"]], alpha=0.75, marker=marker,
                               edgecolor="black", linewidth=0.6, zorder=3)
                    lo, hi = r.get(f"{metric}_lo"), r.get(f"{metric}_hi")
                    if lo is not None and hi is not None:  # the row's 95% interval (bench/stats.py)
                        ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], color="gray", capsize=3, zorder=2, lw=0.8)
                    tag = r["method"] + ("" if r["complete"] else f" ({r['n_folds']}/{r['n_folds_expected']})")
                    ax.annotate(tag, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
                # the front ignores rows whose epoch was chosen on the test split (optimistic numbers)
                honest = [k for k, r in enumerate(rows) if r["selection"] != "best_on_test"]
                front = [honest[k] for k in pareto_front([pts[k] for k in honest])]
                if len(front) >= 1:
                    ax.plot([pts[k][0] for k in front], [pts[k][1] for k in front], "--", color="crimson",
                            lw=1.4, zorder=1, label="Pareto front (non-dominated)")
                if any(r["selection"] == "best_on_test" for r in rows):
                    ax.scatter([], [], marker="X", color="gray", label="epoch chosen on test")
                ax.legend(loc="best", fontsize=8)
                xs = [p[0] for p in pts]
                if min(xs) > 0 and max(xs) / min(xs) > 10:
                    ax.set_xscale("log")
                ax.margins(x=0.15, y=0.12)
                ax.set_xlabel("GMACs per clip (fvcore, batch 1)")
                ax.set_ylabel(f"{metric.upper()} (%)")
                ax.set_title(f"{ds}: {metric.upper()} vs cost (size = params)")
        fig.tight_layout()
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
    """Test UAR vs the fraction of flipped training labels (synthetic `label_noise`), one line per method, for
    methods run at two or more noise levels; error bars are the std over folds/seeds where there are several."""
    import seaborn as sns

    by_method: dict[str, list[tuple[float, float, float | None]]] = {}
    for g, r in zip(groups, rows, strict=True):
        level = noise_level(g)
        if level is None or r["uar_mean"] is None:
            continue
        by_method.setdefault(g.method, []).append((level, r["uar_mean"], r["uar_std"]))
    by_method = {m: sorted(v) for m, v in by_method.items() if len({x[0] for x in v}) >= 2}
    if not by_method:
        return None
    with sns.axes_style("whitegrid"):
        fig = _new_figure(7.0, 4.5)
        ax = fig.subplots()
        palette = method_palette(by_method)
        for m, pts in sorted(by_method.items()):
            xs, ys, es = zip(*pts, strict=True)
            ax.errorbar([100 * x for x in xs], ys, yerr=[e or 0 for e in es], color=palette[m], marker="o", capsize=3,
                        label=m)
        ax.axhline(100 / 7, color="gray", ls=":", lw=1, label="chance (7 classes)")
        ax.set_xlabel("training labels flipped (%)  [synthetic label_noise; test labels clean]")
        ax.set_ylabel("test UAR (%)")
        ax.set_title("synthetic: robustness to label noise")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic_savefig(fig, path)
    return path
