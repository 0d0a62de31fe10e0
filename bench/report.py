"""`bench report`: tables, plots and a manifest generated from completed runs (never edited by hand).

Why a generated report: every number in a table must be traceable to the `result.json` files it came
from (listed in `manifest.json`), fold aggregation must follow one convention (the unweighted mean and
std of per-fold values, DFEW/MAFW style; see `bench.metrics.aggregate_folds`), and numbers quoted from
papers must sit in their own "reported" columns, never mixed with re-measured ones.

Inputs: `results/runs/**/result.json` (schema_version 1, status completed) with `metrics.jsonl` beside
each, and `results/reference/literature.csv` (percent; see its README). All accuracies in the outputs
are percentages.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics import aggregate_folds

SUPPORTED_SCHEMA_VERSIONS = (1,)
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LITERATURE = REPO_ROOT / "results" / "reference" / "literature.csv"

# our method name -> the literature CSV's "method" string (only where the same model is meant)
LITERATURE_METHODS: dict[str, str] = {
    "r3d18": "3D ResNet-18",
    "r18_lstm": "ResNet18-LSTM",
    "r18_gru": "ResNet18-GRU",
    "r18_vit": "ResNet18-ViT",
    "static_r18": "ResNet-18 (frame-level)",
    "c3d": "C3D",
    "p3d": "P3D",
    "r2plus1d18": "R(2+1)D-18",
    "i3d": "I3D-RGB",
    "vgg13_lstm": "VGG13-LSTM",
    "vgg16_lstm": "VGG16-LSTM",
    "ifdd": "IFDD",
    "former_dfer": "Former-DFER",
    "nr_dfernet": "NR-DFERNet",
    "ec_stfl": "EC-STFL",
    "dpcnet": "DPCNet",
    "logo_former": "LOGO-Former",
    "ial": "IAL",
    "m3dfel": "M3DFEL",
    "mae_dfer": "MAE-DFER",
    "svfap_b": "SVFAP-B",
    "svfap_s": "SVFAP-S",
    "videomae_b": "VideoMAE (ViT-B)",
    "mvitv2_b": "MViTv2-B",
    "dfer_clip": "DFER-CLIP",
    "cliper": "CLIPER",
    "s2d": "S2D",
    "hicmae": "HiCMAE",
    "timesformer": "TimeSformer",
}
# our dataset name -> the literature CSV's "dataset" string
LITERATURE_DATASETS: dict[str, str] = {"dfew": "DFEW", "ferv39k": "FERV39k", "mafw": "MAFW"}
# fold sets when the dataset registry is not importable (the official protocols)
FALLBACK_FOLDS: dict[str, tuple[int | None, ...]] = {
    "dfew": (1, 2, 3, 4, 5), "mafw": (1, 2, 3, 4, 5), "ferv39k": (None,),
}
SELECTION_LABELS = {
    "last": "last epoch",
    "best_on_val": "best on val",
    "best_on_test": "BEST ON TEST (optimistic)",
}
_KIND_RANK = {"paper": 0, "repo": 1, "third-party": 2}


# ----------------------------------------------------------------------------------------------------------
# loading


@dataclass
class Run:
    """One completed run as read from its result.json."""

    path: Path
    data: dict
    curves: list[dict] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def _variant_hash(d: dict) -> str:
    """Hash of the resolved spec without fold/seed (and run-irrelevant keys): runs sharing it form one row."""
    spec = json.loads(json.dumps(d.get("spec") or {}, default=str))
    for k in ("fold", "seed"):
        spec.pop(k, None)
    spec.get("data", {}).pop("root", None)
    spec.get("data", {}).pop("workers", None)
    spec.get("train", {}).pop("device", None)
    if not spec:  # no spec recorded: fall back on what identifies the protocol
        spec = {"method": d.get("method"), "protocol": d.get("protocol"), "name": d.get("protocol_name")}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    warnings.warn(f"{path}: skipping a malformed line", stacklevel=3)
    return rows


def load_runs(results_dir: Path) -> tuple[list[Run], list[dict]]:
    """All completed runs under results_dir/runs (sorted by run id) and the result files skipped (with why)."""
    runs, skipped = [], []
    root = Path(results_dir) / "runs"
    for path in sorted(root.glob("**/result.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            skipped.append({"path": str(path), "reason": f"unreadable: {e}"})
            warnings.warn(f"{path}: unreadable result.json, skipped ({e})", stacklevel=2)
            continue
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            skipped.append({"path": str(path), "reason": f"unknown schema_version {version!r}"})
            warnings.warn(f"{path}: unknown schema_version {version!r}, skipped", stacklevel=2)
            continue
        if data.get("status") != "completed":
            skipped.append({"path": str(path), "reason": f"status {data.get('status')!r}"})
            warnings.warn(f"{path}: status {data.get('status')!r}, skipped", stacklevel=2)
            continue
        log_name = (data.get("artifacts") or {}).get("metrics_log") or "metrics.jsonl"
        runs.append(Run(path=path, data=data, curves=_read_jsonl(path.parent / log_name)))
    ids = [r.run_id for r in runs]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        warnings.warn(f"run ids found more than once (all kept): {sorted(dup)}", stacklevel=2)
    return sorted(runs, key=lambda r: (r.run_id, str(r.path))), skipped


def expected_folds(dataset: str, observed: Iterable[int | None]) -> tuple[int | None, ...]:
    """The dataset's official fold set: from the registry, else the known protocols, else what was run."""
    try:
        from bench.registry import DATASETS

        if dataset in DATASETS:
            return tuple(DATASETS.get(dataset).folds)
    except Exception:  # a broken plug-in must not stop a report
        pass
    if dataset in FALLBACK_FOLDS:
        return FALLBACK_FOLDS[dataset]
    return tuple(sorted(set(observed), key=lambda f: (f is None, f or 0)))


# ----------------------------------------------------------------------------------------------------------
# literature


def _short_source(source: str) -> str:
    s = re.split(r" \(| - |; |, |'", source or "", maxsplit=1)[0].strip()
    m = re.search(r"Table (\d+)", source or "")
    if m and "Table" not in s:
        s += f" T{m.group(1)}"
    return s[:48]


def load_literature(path: Path | None) -> list[dict]:
    """Rows of literature.csv with numbers parsed (None where empty)."""
    import csv

    if path is None or not Path(path).is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f)):
            row: dict[str, Any] = dict(r)
            row["_row"] = i
            for k in ("uar", "war", "params_m", "gflops"):
                v = (r.get(k) or "").strip()
                try:
                    row[k] = float(v) if v else None
                except ValueError:
                    row[k] = None
            rows.append(row)
    return rows


def _split_rank(split: str) -> int:
    s = (split or "").lower()
    if re.fullmatch(r"fold\s*\d+", s):
        return 2  # a single fold of a 5-fold protocol
    if "pooled" in s:
        return 1  # SVFAP pools predictions over folds: not the mean-over-folds convention
    return 0


def reported_for(method: str, dataset: str, literature: list[dict]) -> dict[str, Any]:
    """Published numbers for (our method, our dataset): the best-ranked row with numbers.

    Ranking: whole-protocol rows before pooled and single-fold ones; then source_kind paper, repo,
    third-party; then CSV order. A missing params/GFLOPs value is taken from the next-ranked row of the
    same method and dataset that has it, and its source is listed too.
    """
    lit_method = LITERATURE_METHODS.get(method)
    lit_dataset = LITERATURE_DATASETS.get(dataset, dataset)
    empty = {"reported_uar": None, "reported_war": None, "reported_params_m": None, "reported_gflops": None,
             "reported_split": "", "reported_source": "", "literature_method": lit_method or ""}
    if not lit_method:
        return empty
    cands = [r for r in literature if r["method"] == lit_method and r["dataset"] == lit_dataset
             and any(r[k] is not None for k in ("uar", "war", "params_m", "gflops"))]
    if not cands:
        return empty
    cands.sort(key=lambda r: (_split_rank(r["split"]), _KIND_RANK.get(r["source_kind"], 3), r["_row"]))
    acc = next((r for r in cands if r["uar"] is not None or r["war"] is not None), cands[0])
    out = dict(empty)
    out.update(reported_uar=acc["uar"], reported_war=acc["war"], reported_split=acc["split"])
    sources = [acc]
    for k in ("params_m", "gflops"):
        src = next((r for r in [acc, *cands] if r[k] is not None), None)
        out[f"reported_{k}"] = src[k] if src else None
        if src is not None and src not in sources:
            sources.append(src)
    out["reported_source"] = "; ".join(f"{r['source_kind']}: {_short_source(r['source'])}" for r in sources)
    return out


# ----------------------------------------------------------------------------------------------------------
# aggregation


def _pct(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * float(x)


def _fold_key(f: Any) -> tuple:
    return (f is None, f if f is not None else 0)


@dataclass
class Group:
    """The runs of one table row: one dataset x method x configuration (protocol, selection, init)."""

    dataset: str
    method: str
    variant: str
    runs: list[Run]

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def protocol(self) -> dict:
        return self.first.get("protocol") or {}

    @property
    def selection(self) -> str:
        return str(self.protocol.get("selection", "last"))

    def label(self) -> str:
        return f"{self.method} [{self.first.get('protocol_name', '')}, {self.selection}, {self.variant}]"


def group_runs(runs: Sequence[Run]) -> dict[str, list[Group]]:
    """dataset -> groups (rows), ordered by method then configuration."""
    buckets: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        key = (str(r["dataset"]), str(r["method"]), _variant_hash(r.data))
        buckets.setdefault(key, []).append(r)
    out: dict[str, list[Group]] = {}
    for (ds, m, v), rs in sorted(buckets.items()):
        rs.sort(key=lambda r: (_fold_key(r.get("fold")), r.get("seed", 0), r.run_id))
        out.setdefault(ds, []).append(Group(ds, m, v, rs))
    return out


def _protocol_columns(g: Group) -> dict[str, Any]:
    p = g.protocol
    init = p.get("init") or {}
    init_s = str(init.get("kind", "scratch"))
    if init.get("sha256"):
        init_s += f" ({str(init['sha256'])[:8]})"
    views = f"{p.get('test_temporal', '?')} {p.get('test_views', '?')}x{p.get('test_crops', '?')}"
    if p.get("views_per_video") is not None:
        views += f" ({float(p['views_per_video']):g}/video)"
    return {
        "protocol": g.first.get("protocol_name", ""),
        "input": f"{p.get('frames', '?')}x{p.get('size', '?')}",
        "epochs": p.get("epochs"),
        "sampling": f"{p.get('sampler', '?')}/s{p.get('stride', '?')}",
        "test_views": views,
        "selection": g.selection,
        "init": init_s,
    }


def _profile_of(g: Group) -> dict:
    return next((r.get("profile") for r in g.runs if r.get("profile")), None) or {}


def summarise_group(g: Group, literature: list[dict]) -> dict[str, Any]:
    """One table row (numbers in percent, raw floats): means/stds over folds plus cost and reported values."""
    folds_expected = expected_folds(g.dataset, [r.get("fold") for r in g.runs])
    def num(x: Any) -> float:  # JSON null (an undefined metric) -> NaN, which then shows as empty
        return float("nan") if x is None else float(x)

    rows = [{"fold": r.get("fold"), "uar": num(r["metrics"].get("uar")), "war": num(r["metrics"].get("war"))}
            for r in g.runs]
    agg_u = aggregate_folds(rows, key="uar", expected_folds=folds_expected)
    agg_w = aggregate_folds(rows, key="war", expected_folds=folds_expected)
    seeds = sorted({r.get("seed", 0) for r in g.runs})
    single_split = len(folds_expected) == 1
    if single_split and len(g.runs) > 1:  # one split, several seeds: spread over seeds
        u_vals = [x["uar"] for x in rows]
        w_vals = [x["war"] for x in rows]
        agg_u = {**agg_u, "std": float(np.std(u_vals, ddof=1))}
        agg_w = {**agg_w, "std": float(np.std(w_vals, ddof=1))}
    prof = _profile_of(g)
    row: dict[str, Any] = {
        "dataset": g.dataset,
        "method": g.method,
        "family": g.first.get("family", ""),
        "parent": g.first.get("parent") or "",
        **_protocol_columns(g),
        "variant": g.variant,
        "n_folds": agg_u["n"],
        "n_folds_expected": agg_u["n_expected"],
        "complete": bool(agg_u["complete"]),
        "folds": [f for f in agg_u["folds"]],
        "n_runs": len(g.runs),
        "seeds": seeds,
        "uar_mean": _pct(agg_u["mean"]),
        "uar_std": _pct(agg_u["std"]) if len(g.runs) > 1 else None,
        "war_mean": _pct(agg_w["mean"]),
        "war_std": _pct(agg_w["std"]) if len(g.runs) > 1 else None,
        "std_over": "seeds" if single_split else "folds",
        "params_m": prof["params_total"] / 1e6 if prof.get("params_total") is not None else None,
        "gmacs": prof.get("gmacs"),
        "gmacs_per_video": prof.get("gmacs_per_video"),
        **reported_for(g.method, g.dataset, literature),
        "run_ids": [r.run_id for r in g.runs],
    }
    return row


def per_class_rows(g: Group) -> tuple[list[str], dict[str, Any]]:
    """Per-class recall (percent), mean over folds (seeds averaged within a fold first), NaN-aware."""
    classes: list[str] = []
    for r in g.runs:
        for c in r["metrics"].get("classes") or list((r["metrics"].get("per_class_recall") or {}).keys()):
            if c not in classes:
                classes.append(c)
    by_fold: dict[Any, list[list[float]]] = {}
    for r in g.runs:
        pcr = r["metrics"].get("per_class_recall") or {}
        vec = [np.nan if pcr.get(c) is None else float(pcr[c]) for c in classes]
        by_fold.setdefault(r.get("fold"), []).append(vec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (class never in test) stay NaN
        fold_means = np.array([np.nanmean(np.array(v), axis=0) for v in by_fold.values()])
        mean = np.nanmean(fold_means, axis=0) if len(fold_means) else np.full(len(classes), np.nan)
    row = {c: (None if np.isnan(m) else 100.0 * float(m)) for c, m in zip(classes, mean, strict=True)}
    return classes, row


# ----------------------------------------------------------------------------------------------------------
# formatting


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.{nd}f}"


def _pm(mean: Any, std: Any, tex: bool = False) -> str:
    if mean is None:
        return ""
    if std is None:
        return _fmt(mean)
    return f"{_fmt(mean)} $\\pm$ {_fmt(std)}" if tex else f"{_fmt(mean)} ± {_fmt(std)}"


def _folds_cell(row: dict) -> str:
    n, e = row["n_folds"], row["n_folds_expected"]
    if e <= 1:
        return "single split"
    return f"{n}/{e} folds" + ("" if row["complete"] else " (INCOMPLETE)")


def _display_rows(rows: list[dict], tex: bool = False) -> tuple[list[str], list[list[str]]]:
    header = ["method", "protocol", "frames x size", "epochs", "sampling", "test views", "selection", "init", "folds",
              "runs (seeds)", "UAR (%)", "WAR (%)", "params (M)", "GMACs", "GMACs/video",
              "reported UAR", "reported WAR", "reported params (M)", "reported GFLOPs", "reported source"]
    out = []
    for r in rows:
        name = r["method"] + (f" (variant of {r['parent']})" if r["parent"] else "")
        out.append([
            name, r["protocol"], r["input"], "" if r["epochs"] is None else str(r["epochs"]), r["sampling"],
            r["test_views"],
            SELECTION_LABELS.get(r["selection"], r["selection"]), r["init"], _folds_cell(r),
            f"{r['n_runs']} ({','.join(map(str, r['seeds']))})",
            _pm(r["uar_mean"], r["uar_std"], tex), _pm(r["war_mean"], r["war_std"], tex),
            _fmt(r["params_m"]), _fmt(r["gmacs"]), _fmt(r["gmacs_per_video"]),
            _fmt(r["reported_uar"]), _fmt(r["reported_war"]), _fmt(r["reported_params_m"]),
            _fmt(r["reported_gflops"]),
            r["reported_source"] + (f" [{r['reported_split']}]" if r["reported_split"] else ""),
        ])
    return header, out


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_TEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def tex_escape(s: str) -> str:
    """Escape LaTeX specials (cells that already hold `$\\pm$` are passed pre-escaped by the caller)."""
    return "".join(_TEX_ESC.get(ch, ch) for ch in str(s))


def _tex_table(header: list[str], rows: list[list[str]], caption: str, label: str,
               raw_cols: Sequence[int] = ()) -> str:
    """booktabs table written directly (no jinja2 dependency); `raw_cols` are already LaTeX."""
    lines = [
        "% generated by `bench report`; do not edit (regenerate instead)",
        "\\begin{table*}[t]", "\\centering", "\\scriptsize",
        f"\\caption{{{tex_escape(caption)}}}", f"\\label{{{label}}}",
        "\\resizebox{\\textwidth}{!}{%",
        "\\begin{tabular}{" + "l" * len(header) + "}", "\\toprule",
        " & ".join(tex_escape(h) for h in header) + " \\\\", "\\midrule",
    ]
    for r in rows:
        cells = [c if i in raw_cols else tex_escape(c) for i, c in enumerate(r)]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}", "\\end{table*}", ""]
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    import pandas as pd

    df = pd.DataFrame([{c: _csv_cell(r.get(c)) for c in columns} for r in rows], columns=columns)
    df.to_csv(path, index=False)


def _csv_cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ";".join("" if x is None else str(x) for x in v)
    return v


MAIN_CSV_COLUMNS = [
    "dataset", "method", "family", "parent", "protocol", "input", "epochs", "sampling", "test_views", "selection", "init",
    "variant", "n_folds", "n_folds_expected", "complete", "folds", "n_runs", "seeds", "uar_mean", "uar_std",
    "war_mean", "war_std", "std_over", "params_m", "gmacs", "gmacs_per_video", "reported_uar", "reported_war",
    "reported_params_m", "reported_gflops", "reported_split", "reported_source", "literature_method", "run_ids",
]


# ----------------------------------------------------------------------------------------------------------
# plots (matplotlib Figure objects: no pyplot, no global backend switch; the Agg canvas is used for PNG)


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
    """UAR (top) and WAR (bottom) vs GMACs per clip, one column per dataset, size = params, Pareto front.

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
                    std = r[f"{metric}_std"]
                    if std:
                        ax.errorbar([x], [y], yerr=[std], color="gray", capsize=3, zorder=2, lw=0.8)
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
        fig.savefig(path)
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
    fig.savefig(path)
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
        fig.savefig(path)
    return path


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", s).strip("-") or "x"


# ----------------------------------------------------------------------------------------------------------
# cost: latency / throughput / memory, one table per latency key


def cost_rows(runs: Sequence[Run], results_dir: Path) -> dict[str, list[dict]]:
    """latency key -> one row per (method, input): the newest timed profile from runs and `bench profile` files.

    A latency key names device, threads, torch build and precision; numbers under different keys are never put
    in one table, because they are not comparable."""
    found: list[tuple[str, str, dict]] = []  # (timestamp, source, profile)
    for r in runs:
        if (r.get("profile") or {}).get("latency"):
            found.append((str(r.get("created_at", "")), str(r.path), {**r["profile"], "method": r["method"]}))
    for path in sorted((Path(results_dir) / "profiles").glob("**/*.json")):
        try:
            prof = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if prof.get("latency") and prof.get("method"):
            found.append((datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(), str(path), prof))
    newest: dict[tuple[str, str, str], tuple[str, str, dict]] = {}
    for stamp, source, prof in found:
        lat = prof["latency"]
        key = (str(lat.get("key") or prof.get("latency_key")), prof["method"],
               "x".join(str(d) for d in prof.get("input_shape") or []))
        if key not in newest or stamp >= newest[key][0]:
            newest[key] = (stamp, source, prof)
    out: dict[str, list[dict]] = {}
    for (lkey, method, shape), (_, source, prof) in sorted(newest.items()):
        lat = prof["latency"]
        out.setdefault(lkey, []).append({
            "latency_key": lkey, "method": method, "input": shape,
            "params_m": prof["params_total"] / 1e6 if prof.get("params_total") is not None else None,
            "gmacs": prof.get("gmacs"), "latency_median_ms": lat.get("median_ms"), "latency_p90_ms": lat.get("p90_ms"),
            "throughput_batch": lat.get("throughput_batch"), "throughput_clips_per_s": lat.get("throughput_clips_per_s"),
            "peak_mem_mb": lat.get("peak_mem_mb"), "peak_mem_kind": lat.get("peak_mem_kind"), "source": source,
        })
    return out


def write_cost_tables(rows_by_key: dict[str, list[dict]], tables_dir: Path, stamp: str) -> list[Path]:
    if not rows_by_key:
        return []
    header = ["method", "input (C x T x H x W)", "params (M)", "GMACs", "latency median (ms)", "latency p90 (ms)",
              "throughput (clips/s @ batch)", "peak memory (MB)"]
    parts = [f"<!-- generated by `bench report` at {stamp}; do not edit -->\n\n# cost: latency, throughput, memory\n\n"
             "Latency: batch 1, after warm-up, synchronised; one table per latency key (device, threads, torch "
             "build, precision). Numbers from different keys are not comparable and are never put in one table.\n"]
    for key, rows in rows_by_key.items():
        disp = [[r["method"], r["input"], _fmt(r["params_m"]), _fmt(r["gmacs"]), _fmt(r["latency_median_ms"], 1),
                 _fmt(r["latency_p90_ms"], 1),
                 f"{_fmt(r['throughput_clips_per_s'], 1)} @ {r['throughput_batch']}" if r["throughput_clips_per_s"] else "",
                 _fmt(r["peak_mem_mb"], 1)] for r in rows]
        parts.append(f"\n## `{key}`\n\n" + _md_table(header, disp))
    md = tables_dir / "cost.md"
    md.write_text("".join(parts))
    csv = tables_dir / "cost.csv"
    all_rows = [r for rows in rows_by_key.values() for r in rows]
    _write_csv(csv, all_rows, list(all_rows[0].keys()))
    return [md, csv]


# ----------------------------------------------------------------------------------------------------------
# entry point


def write_report(results_dir: Path = Path("results"), out_dir: Path = Path("reports"),
                 formats: Sequence[str] = ("md", "csv", "tex"), plots: bool = True,
                 literature: Path | None = None) -> dict[str, Any]:
    """Generate tables, plots and manifest.json from every completed run; returns what was written and used.

    `literature` defaults to results_dir/reference/literature.csv, else the repository's copy.
    """
    from bench import __version__

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    formats = tuple(formats)
    unknown = set(formats) - {"md", "csv", "tex"}
    if unknown:
        raise ValueError(f"unknown report formats {sorted(unknown)}; choose from md, csv, tex")
    if literature is None:
        local = results_dir / "reference" / "literature.csv"
        literature = local if local.is_file() else DEFAULT_LITERATURE
    lit_rows = load_literature(literature)

    runs, skipped = load_runs(results_dir)
    groups_by_ds = group_runs(runs)
    tables_dir, plots_dir = out_dir / "tables", out_dir / "plots"
    tables_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows_by_ds: dict[str, list[dict]] = {}
    tables: dict[str, list[dict]] = {}

    for ds, groups in groups_by_ds.items():
        rows = [summarise_group(g, lit_rows) for g in groups]
        rows_by_ds[ds] = rows
        tables[ds] = [{k: r[k] for k in ("method", "protocol", "selection", "variant", "uar_mean", "uar_std",
                                         "war_mean", "war_std", "n_folds", "n_folds_expected", "complete",
                                         "run_ids")} for r in rows]
        caption = (f"{ds}: UAR/WAR (%) as mean $\\pm$ std over folds (unweighted mean of per-fold values), "
                   f"reproduced by dfer-bench {__version__}; reported = published numbers "
                   f"(results/reference/literature.csv). GMACs: fvcore, 1 clip, batch 1.")
        notes = ["UAR/WAR: mean ± std over folds (unweighted mean of per-fold values; seeds averaged within "
                 "a fold); a single split shows mean ± std over seeds, or the value for one run.",
                 "GMACs: fvcore (MAC convention), one clip at batch 1; GMACs/video multiplies by the test views.",
                 "reported: numbers copied from the literature (results/reference/literature.csv); "
                 "never re-measured."]
        if any(r["selection"] == "best_on_test" for r in rows):
            notes.append("BEST ON TEST: the epoch was chosen on the test split (optimistic, as some papers do).")
        if any(not r["complete"] for r in rows):
            notes.append("INCOMPLETE: not all folds of the protocol have a completed run.")
        header, disp = _display_rows(rows)
        if "md" in formats:
            p = tables_dir / f"{ds}.md"
            p.write_text(f"<!-- generated by `bench report` at {stamp}; do not edit -->\n\n# {ds}\n\n"
                         + _md_table(header, disp) + "\n" + "\n".join(f"* {n}" for n in notes) + "\n")
            files.append(p)
        if "csv" in formats:
            p = tables_dir / f"{ds}.csv"
            _write_csv(p, rows, MAIN_CSV_COLUMNS)
            files.append(p)
        if "tex" in formats:
            header_t, disp_t = _display_rows(rows, tex=True)
            p = tables_dir / f"{ds}.tex"
            p.write_text(_tex_table(header_t, disp_t, caption.replace("$\\pm$", "±"), f"tab:{_slug(ds)}",
                                    raw_cols=(header_t.index("UAR (%)"), header_t.index("WAR (%)"))))
            files.append(p)

        # per-class recall
        pc_rows, all_classes = [], []
        for g, r in zip(groups, rows, strict=True):
            classes, rec = per_class_rows(g)
            for c in classes:
                if c not in all_classes:
                    all_classes.append(c)
            pc_rows.append({"method": g.method, "protocol": r["protocol"], "selection": r["selection"],
                            "variant": g.variant, "n_folds": r["n_folds"], **rec, "uar_mean": r["uar_mean"]})
        pc_cols = ["method", "protocol", "selection", "variant", "n_folds", *all_classes, "uar_mean"]
        pc_header = ["method", "protocol", "selection", "cfg", "folds", *all_classes, "UAR"]
        pc_disp = [[r["method"], r["protocol"], SELECTION_LABELS.get(r["selection"], r["selection"]),
                    r["variant"], str(r["n_folds"]), *[_fmt(r.get(c)) for c in all_classes], _fmt(r["uar_mean"])]
                   for r in pc_rows]
        if "md" in formats:
            p = tables_dir / f"{ds}_per_class.md"
            p.write_text(f"<!-- generated by `bench report` at {stamp}; do not edit -->\n\n"
                         f"# {ds}: per-class recall (%), mean over folds\n\n" + _md_table(pc_header, pc_disp))
            files.append(p)
        if "csv" in formats:
            p = tables_dir / f"{ds}_per_class.csv"
            _write_csv(p, pc_rows, pc_cols)
            files.append(p)
        if "tex" in formats:
            p = tables_dir / f"{ds}_per_class.tex"
            p.write_text(_tex_table(pc_header, pc_disp, f"{ds}: per-class recall (%), mean over folds",
                                    f"tab:{_slug(ds)}-per-class"))
            files.append(p)

        # per-run rows (always CSV: the raw material of the table)
        fold_rows = []
        for g in groups:
            for run in g.runs:
                m = run["metrics"]
                fold_rows.append({
                    "run_id": run.run_id, "method": g.method, "protocol": run.get("protocol_name", ""),
                    "variant": g.variant, "fold": run.get("fold"), "seed": run.get("seed"),
                    "uar": _pct(m["uar"]), "war": _pct(m["war"]), "epoch": m.get("epoch"),
                    "selection": (run.get("protocol") or {}).get("selection", ""),
                    "n_test": m.get("n_test"), "config_hash": run.get("config_hash", ""),
                    "result_json": str(run.path),
                })
        p = tables_dir / f"{ds}_folds.csv"
        _write_csv(p, fold_rows, list(fold_rows[0].keys()))
        files.append(p)

    files += write_cost_tables(cost_rows(runs, results_dir), tables_dir, stamp)

    if plots and runs:
        plots_dir.mkdir(parents=True, exist_ok=True)
        p = plot_accuracy_vs_gmacs(rows_by_ds, plots_dir / "accuracy_vs_gmacs.png")
        if p:
            files.append(p)
        for ds, groups in groups_by_ds.items():
            per_method: dict[str, int] = {}
            for g in groups:
                per_method[g.method] = per_method.get(g.method, 0) + 1
            for g in groups:
                cms = [np.asarray(r["metrics"]["confusion"]) for r in g.runs if r["metrics"].get("confusion")]
                shapes = {c.shape for c in cms}
                if not cms or len(shapes) != 1:
                    continue
                classes = list(g.first["metrics"].get("classes") or range(cms[0].shape[0]))
                name = g.method if per_method[g.method] == 1 else f"{g.method}_{_slug(g.first.get('protocol_name', ''))}_{g.selection}_{g.variant}"
                title = f"{ds} / {g.label()}: recall-normalised, summed over {len(cms)} run(s)"
                files.append(plot_confusion(sum(cms), [str(c) for c in classes], title,
                                            plots_dir / f"confusion_{_slug(ds)}_{_slug(name)}.png"))
            p = plot_curves(groups, ds, plots_dir / f"curves_{_slug(ds)}.png")
            if p:
                files.append(p)

    used = [{"run_id": r.run_id, "result_json": str(r.path), "config_hash": r.get("config_hash", ""),
             "dataset": r["dataset"], "method": r["method"], "fold": r.get("fold"), "seed": r.get("seed")}
            for r in runs]
    lit_sha = hashlib.sha256(Path(literature).read_bytes()).hexdigest() if Path(literature).is_file() else None
    manifest = {
        "generated_at": stamp,
        "generator": "bench report",
        "dfer_bench_version": __version__,
        "results_dir": str(results_dir),
        "run_ids": [u["run_id"] for u in used],
        "runs": used,
        "skipped": skipped,
        "literature": {"path": str(literature), "sha256": lit_sha},
        "tables": tables,
        "files": [str(f.relative_to(out_dir)) for f in files],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    mpath = out_dir / "manifest.json"
    mpath.write_text(json.dumps(manifest, indent=2, default=str, allow_nan=False) + "\n")
    files.append(mpath)
    return {
        "out_dir": str(out_dir),
        "files": [str(f) for f in files],
        "runs": [u["run_id"] for u in used],
        "n_runs": len(used),
        "skipped": skipped,
        "datasets": sorted(groups_by_ds),
        "manifest": str(mpath),
    }
