"""`bench report --paper NAME`: one paper's tables, in its row order, with the published numbers beside ours.

A paper is a data file, `results/reference/papers/<name>.yaml` (or any path): the paper, and its tables, each
with a dataset, the folds or splits it reports, its columns and its rows in order, each row naming the
registered method that reproduces it (or null). Reported numbers are never typed into the file: they are
looked up in `results/reference/literature.csv` (plus any `--reported` CSV) by row name, dataset, the paper's
`source` and the table's `source_table`. Every cell is filled or labelled: "not run", "not registered",
"not available here; add them with --reported", and a random-init run of a method that needs weights says so.

Reproduced cells come from the completed runs of the method on the dataset whose spec is the method's own
recipe for that dataset (fold and seed aside); when none is, the runs of the most complete other
configuration are used and the protocol column says "non-default config". An ablation table adds, per
variant, the difference to its parent computed on the folds both have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench import stats
from bench.api import RANDOM_INIT_LABEL
from bench.errors import BenchError
from bench.registry import DATASETS, METHODS
from bench.report.aggregate import Group, group_runs, variant_hash
from bench.report.literature import LITERATURE_DATASETS, REPO_ROOT, _split_rank
from bench.report.tables import _fmt, write_table
from bench.spec import RunSpec, resolve_spec, semantic_view
from bench.store import atomic_savefig

PAPERS_DIR = REPO_ROOT / "results" / "reference" / "papers"
NOT_RUN, NOT_REGISTERED = "not run", "not registered"
NOT_AVAILABLE = "not available here; add them with --reported"
NOT_IN_TABLE = "— (not in the source)"
NO_PUBLISHED = "— (embedded dataset: no published numbers)"
COLUMN_LABELS = {"uar": "UAR (%)", "war": "WAR (%)", "macro_f1": "macro-F1 (%)", "params_m": "params (M)",
                 "gflops": "GFLOPs"}
METRIC_COLUMNS = ("uar", "war", "macro_f1")


@dataclass
class PaperTable:
    id: str
    title: str
    dataset: str
    rows: list[dict]
    columns: list[str]
    splits: list[str] = field(default_factory=lambda: ["mean"])
    folds: list[int] | None = None
    source_table: str = ""
    kind: str = "comparison"
    parent: str | None = None


@dataclass
class Paper:
    name: str
    meta: dict
    source: str
    tables: list[PaperTable]
    path: Path


def paper_names() -> list[str]:
    return sorted(p.stem for p in PAPERS_DIR.glob("*.yaml"))


def load_paper(name_or_path: str | Path) -> Paper:
    """A shipped paper by name, or a user's paper file by path; one-line errors naming the file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PAPERS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise BenchError(f"{path}: no such paper file; shipped papers: {', '.join(paper_names())}, or give a path")
    try:
        blob = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise BenchError(f"{path}: not valid YAML ({type(e).__name__}); fix the file") from None
    try:
        meta = dict(blob["paper"])
        tables = []
        for t in blob["tables"]:
            rows = t["rows"]
            if rows == "registered":
                rows = [{"row": None, "method": n} for n in METHODS.names() if METHODS.get(n).family != "test"]
            if t["dataset"] not in DATASETS:
                raise BenchError(f"{path}: table {t['id']}: unknown dataset {t['dataset']!r}")
            tables.append(PaperTable(
                id=str(t["id"]), title=str(t.get("title", t["id"])), dataset=str(t["dataset"]),
                rows=[dict(r) for r in rows], columns=list(t.get("columns", ["uar", "war"])),
                splits=list(t.get("splits", ["mean"])), folds=t.get("folds"), source_table=str(t.get("source_table", "")),
                kind=str(t.get("kind", "comparison")), parent=t.get("parent")))
    except (KeyError, TypeError) as e:
        raise BenchError(f"{path}: missing or malformed key {e} (see results/reference/papers/svfap.yaml)") from None
    for col in (c for t in tables for c in t.columns):
        if col not in COLUMN_LABELS:
            raise BenchError(f"{path}: unknown column {col!r}; use {', '.join(COLUMN_LABELS)}")
    return Paper(name=str(meta.get("name", path.stem)), meta=meta, source=str(blob.get("source", "any")),
                 tables=tables, path=path)


# ----------------------------------------------------------------------------------------------------------
# reported numbers


def _split_matches(split: str, wanted: str) -> bool:
    s = (split or "").strip().lower()
    if wanted.startswith("fold"):
        return s.replace(" ", "") == wanted
    return _split_rank(s) != 2  # "mean": anything that is not a single fold


def reported_cell(literature: list[dict], paper: Paper, table: PaperTable, row_name: str | None, method: str | None,
                  column: str, split: str) -> float | None:
    """The published number of one cell, or None. With source 'any' (the zoo) the best-ranked row of the
    method's literature names is used, as `bench report` does."""
    names = [row_name] if row_name else list(METHODS.get(method).literature if method in METHODS else [])
    dataset = LITERATURE_DATASETS.get(table.dataset, table.dataset)
    cands = [r for r in literature if r["method"] in names and r["dataset"] == dataset
             and _split_matches(r["split"], split)]
    if paper.source != "any":
        cands = [r for r in cands if paper.source in r["source"] and table.source_table in r["source"]]
    cands.sort(key=lambda r: (_split_rank(r["split"]), {"paper": 0, "repo": 1}.get(r["source_kind"], 2), r["_row"]))
    key = "gflops" if column == "gflops" else column
    return next((r[key] for r in cands if r.get(key) is not None), None)


# ----------------------------------------------------------------------------------------------------------
# reproduced numbers


def _config_key(spec_dict: dict) -> str | None:
    """A stored spec re-read with today's defaults (keys added since are filled in), fold and seed aside."""
    try:
        spec = RunSpec.from_dict(spec_dict)
    except (BenchError, KeyError, TypeError):
        return None
    return variant_hash({"spec": semantic_view(spec.to_dict())})


def pick_group(groups: list[Group], method: str, dataset: str) -> tuple[Group | None, bool]:
    """The runs of `method` on `dataset` at its own recipe (True), else the most complete other config (False)."""
    mine = [g for g in groups if g.method == method]
    if not mine:
        return None, False
    try:
        default = _config_key(resolve_spec(method, dataset).to_dict())
    except BenchError:
        default = None
    exact = [g for g in mine if default is not None and _config_key(g.first.get("spec") or {}) == default]
    if exact:
        return exact[0], True
    return max(mine, key=lambda g: (len({r.get("fold") for r in g.runs}), len(g.runs))), False


def _fold_values(g: Group, key: str, folds: list[int | None] | None) -> dict[Any, float]:
    """fold -> value (percent; seeds averaged within a fold) of a metric."""
    by: dict[Any, list[float]] = {}
    for r in g.runs:
        if folds is not None and r.get("fold") not in folds:
            continue
        v = (r.get("metrics") or {}).get(key)
        if v is not None:
            by.setdefault(r.get("fold"), []).append(100.0 * float(v))
    return {f: float(np.mean(v)) for f, v in by.items()}


def reproduced_cell(g: Group, table: PaperTable, column: str, split: str) -> tuple[float | None, float | None, str]:
    """(mean, std over folds, flag) of one cell; the flag says '3/5 folds' when the fold set is incomplete."""
    if column == "params_m":
        p = next((r.get("profile") for r in g.runs if r.get("profile")), {}) or {}
        return (p["params_total"] / 1e6 if p.get("params_total") is not None else None), None, ""
    if column == "gflops":
        p = next((r.get("profile") for r in g.runs if r.get("profile")), {}) or {}
        return p.get("gmacs"), None, ""
    expected = list(table.folds) if table.folds else list(DATASETS.get(table.dataset).folds)
    if split.startswith("fold"):
        values = _fold_values(g, column, [int(split[4:])])
        return (next(iter(values.values())) if values else None), None, ""
    values = _fold_values(g, column, expected)
    if not values:
        return None, None, ""
    arr = np.array(list(values.values()))
    flag = "" if len(values) >= len(expected) else f"{len(values)}/{len(expected)} folds"
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None), flag


def interval_of(g: Group, table: PaperTable, column: str, split: str) -> dict[str, Any]:
    """The reproduced cell's interval (percent) over the folds it averages (bench/report/uncertainty.py)."""
    from bench.report.uncertainty import group_interval

    folds = [int(split[4:])] if split.startswith("fold") else \
        list(table.folds) if table.folds else list(DATASETS.get(table.dataset).folds)
    runs = [r for r in g.runs if r.get("fold") in folds]
    if not runs:
        return {}
    iv = group_interval(Group(g.dataset, g.method, g.variant, runs))
    return {"lo": (iv.get(column) or {}).get("lo"), "hi": (iv.get(column) or {}).get("hi"),
            "ci_source": iv.get("source", "")}


def verdict(mean: float, reported: float | None, lo: float | None, hi: float | None) -> str:
    """`reproduced` when the published number lies inside the reproduced interval, else how far below or above
    it the reproduction is, with the interval of that difference (reproduced - published)."""
    if reported is None or lo is None or hi is None:
        return ""
    if stats.published_inside(lo, hi, reported):
        return "reproduced"
    side = "below" if mean < reported else "above"
    d_lo, d_hi = sorted((abs(lo - reported), abs(hi - reported)))
    return f"{side} by {abs(mean - reported):.2f} [{d_lo:.2f}, {d_hi:.2f}]"


def _protocol_text(g: Group, default: bool) -> str:
    p = g.protocol
    init = p.get("init") or {}
    views = f"{p.get('test_temporal', '?')} {p.get('test_views', '?')}x{p.get('test_crops', '?')}"
    name = g.first.get("protocol_name") or ""
    text = (f"{name + ': ' if name else ''}{p.get('frames', '?')}x{p.get('size', '?')}, {views}, "
            f"{p.get('selection', '?')}, {init.get('label') or init.get('kind', 'scratch')}")
    return text if default else text + ", non-default config"


# ----------------------------------------------------------------------------------------------------------
# tables


def _pm(mean: float | None, std: float | None, tex: bool) -> str:
    if mean is None:
        return ""
    if std is None:
        return _fmt(mean)
    return f"{_fmt(mean)} $\\pm$ {_fmt(std)}" if tex else f"{_fmt(mean)} ± {_fmt(std)}"


def build_table(paper: Paper, table: PaperTable, groups: list[Group], literature: list[dict]) -> list[dict]:
    """One row dict per paper row: per column and split the reported, reproduced and Δ values and their cells."""
    out = []
    parent_group = None
    if table.kind == "ablation" and table.parent:
        parent_group, _ = pick_group(groups, table.parent, table.dataset)
    for spec_row in table.rows:
        method, name = spec_row.get("method"), spec_row.get("row")
        row: dict[str, Any] = {"row": name or method, "method": method or "", "protocol": "", "cells": {}}
        registered = bool(method) and method in METHODS
        group, default = pick_group(groups, method, table.dataset) if registered else (None, False)
        needs_weights = registered and bool(METHODS.get(method).needs_pretrained)
        if group is not None:
            row["protocol"] = _protocol_text(group, default)
        for column in table.columns:
            for split in table.splits:
                key = column if split == "mean" else f"{column}@{split}"
                reported = reported_cell(literature, paper, table, name, method, column, split)
                cell: dict[str, Any] = {"reported": reported, "reproduced": None, "std": None, "delta": None,
                                        "flag": "", "label": ""}
                if not registered:
                    cell["label"] = NOT_REGISTERED
                elif group is None:
                    cell["label"] = NOT_RUN
                else:
                    mean, std, flag = reproduced_cell(group, table, column, split)
                    cell.update(reproduced=mean, std=std, flag=flag, label="" if mean is not None else NOT_RUN)
                    if column in METRIC_COLUMNS and mean is not None:
                        cell.update(interval_of(group, table, column, split))
                        cell["verdict"] = verdict(mean, reported, cell.get("lo"), cell.get("hi"))
                    init = (group.protocol.get("init") or {})
                    if needs_weights and init.get("kind") == "scratch" and column in METRIC_COLUMNS:
                        cell["flag"] = (cell["flag"] + "; " if cell["flag"] else "") + RANDOM_INIT_LABEL
                    if mean is not None and reported is not None:
                        cell["delta"] = mean - reported
                    if parent_group is not None and column in METRIC_COLUMNS and method != table.parent:
                        cell["vs_parent"] = _delta_vs_parent(group, parent_group, column, table, split)
                row["cells"][key] = cell
        row["has_reported"] = any(c["reported"] is not None for c in row["cells"].values())
        out.append(row)
    return out


def _delta_vs_parent(g: Group, parent: Group, column: str, table: PaperTable, split: str) -> float | None:
    folds = [int(split[4:])] if split.startswith("fold") else None
    mine, theirs = _fold_values(g, column, folds), _fold_values(parent, column, folds)
    shared = sorted(set(mine) & set(theirs), key=lambda f: (f is None, f or 0))
    if not shared:
        return None
    return float(np.mean([mine[f] for f in shared]) - np.mean([theirs[f] for f in shared]))


def _cell_texts(cell: dict, tex: bool, reported_missing: str) -> tuple[str, str, str]:
    rep = _fmt(cell["reported"]) if cell["reported"] is not None else reported_missing
    if cell["label"]:
        ours = cell["label"]
    else:
        ours = _pm(cell["reproduced"], cell["std"], tex) + (f" ({cell['flag']})" if cell["flag"] else "")
        if cell.get("lo") is not None and cell.get("hi") is not None:
            ours += f" [{_fmt(cell['lo'], 1)}, {_fmt(cell['hi'], 1)}]"
    delta = f"{cell['delta']:+.2f}" if cell["delta"] is not None else "n/a"
    return rep, ours, delta


def write_paper_tables(paper: Paper, built: dict[str, list[dict]], out_dir: Path, stamp: str,
                       formats: tuple[str, ...] = ("md", "csv", "tex")) -> list[Path]:
    files: list[Path] = []
    for table in paper.tables:
        rows = built[table.id]
        header = ["row", "method"]
        keys = [(c, s) for c in table.columns for s in table.splits]
        for c, s in keys:
            lab = COLUMN_LABELS[c] + ("" if s == "mean" else f" {s}")
            header += [f"reported {lab}", f"reproduced {lab}", f"Δ {lab}"]
            if c in METRIC_COLUMNS:
                header.append(f"verdict {lab}")
            if table.kind == "ablation" and c in METRIC_COLUMNS:
                header.append(f"Δ vs {table.parent} {lab}")
        header.append("protocol (name: frames x size, test views, selection, init)")
        display, tex_display, flat = [], [], []
        for r in rows:
            line, tex_line = [r["row"], r["method"] or NOT_REGISTERED], [r["row"], r["method"] or NOT_REGISTERED]
            flat_row: dict[str, Any] = {"row": r["row"], "method": r["method"], "protocol": r["protocol"]}
            # a row the source has numbers for leaves a cell it does not report as "not in the source"; a row
            # with none at all (IFDD's unreadable table) says where they would come from
            missing = NOT_IN_TABLE if r["has_reported"] else \
                NO_PUBLISHED if DATASETS.get(table.dataset).generated else NOT_AVAILABLE
            for c, s in keys:
                cell = r["cells"][c if s == "mean" else f"{c}@{s}"]
                rep, ours, delta = _cell_texts(cell, False, missing)
                _, ours_t, _ = _cell_texts(cell, True, missing)
                line += [rep, ours, delta]
                tex_line += [rep, ours_t, delta]
                if c in METRIC_COLUMNS:
                    line.append(cell.get("verdict") or "-")
                    tex_line.append(cell.get("verdict") or "-")
                suffix = c if s == "mean" else f"{c}_{s}"
                flat_row.update({f"reported_{suffix}": cell["reported"], f"reproduced_{suffix}": cell["reproduced"],
                                 f"std_{suffix}": cell["std"], f"delta_{suffix}": cell["delta"],
                                 f"lo_{suffix}": cell.get("lo"), f"hi_{suffix}": cell.get("hi"),
                                 f"verdict_{suffix}": cell.get("verdict", ""),
                                 f"note_{suffix}": cell["label"] or cell["flag"]})
                if table.kind == "ablation" and c in METRIC_COLUMNS:
                    vp = cell.get("vs_parent")
                    text = f"{vp:+.2f}" if vp is not None else ("parent" if r["method"] == table.parent else "n/a")
                    line.append(text)
                    tex_line.append(text)
                    flat_row[f"vs_parent_{suffix}"] = vp
            line.append(r["protocol"] or "-")
            tex_line.append(r["protocol"] or "-")
            display.append(line)
            tex_display.append(tex_line)
            flat.append(flat_row)
        notes = [f"Paper: {paper.meta.get('authors')}, \"{paper.meta.get('title')}\", {paper.meta.get('venue')} "
                 f"{paper.meta.get('year')}" + (f", arXiv {paper.meta['arxiv']}" if paper.meta.get("arxiv") else ""),
                 f"Reported: results/reference/literature.csv (source: {paper.source}"
                 + (f", {table.source_table}" if table.source_table else "") + "), never re-measured.",
                 "Reproduced: mean ± std over folds of completed dfer-bench runs at the method's own recipe, with "
                 "its 95% interval in brackets (bench/stats.py: a stratified bootstrap over the test videos of one "
                 "fold; over several folds, each fold's bootstrap variance plus the between-fold variance, t on k-1 "
                 "df); Δ = reproduced − reported. GFLOPs reproduced = fvcore GMACs of one clip (the field's "
                 "convention).",
                 "Verdict: 'reproduced' when the published number lies inside the reproduced interval; otherwise "
                 "'below by Δ [lo, hi]' or 'above by Δ [lo, hi]', [lo, hi] the interval of |reproduced − published|."]
        computed = sum("predictions.npz" in (cell.get("ci_source") or "")
                       for r in rows for cell in r["cells"].values())
        if computed:
            notes.append(f"{computed} reproduced cell(s) come from runs written before intervals were stored: their "
                         "intervals are computed from the runs' predictions.npz at report time.")
        raw = [i for i, h in enumerate(header) if h.startswith("reproduced ")]
        files += write_table(out_dir, table.id, title=f"{paper.name}: {table.title}", header=header, display=display,
                             rows=flat, columns=list(flat[0].keys()) if flat else ["row"], formats=formats,
                             stamp=stamp, notes=notes, caption=f"{table.title} ({paper.name})",
                             tex_display=tex_display, raw_cols=raw)
    return files


def plot_paper(paper: Paper, built: dict[str, list[dict]], path: Path) -> Path:
    """Reproduced vs reported, one point per row and dataset (UAR filled, WAR hollow), with the y = x line."""
    from bench.report.plots import _new_figure

    fig = _new_figure(6.0, 6.0)
    ax = fig.subplots()
    pts = []
    for table in paper.tables:
        for r in built[table.id]:
            for metric, marker in (("uar", "o"), ("war", "s")):
                cell = r["cells"].get(metric)
                if cell and cell["reported"] is not None and cell["reproduced"] is not None:
                    pts.append((cell["reported"], cell["reproduced"]))
                    if cell.get("lo") is not None and cell.get("hi") is not None:  # the reproduced 95% interval
                        ax.errorbar([cell["reported"]], [cell["reproduced"]], fmt="none", ecolor="grey", lw=1,
                                    yerr=[[cell["reproduced"] - cell["lo"]], [cell["hi"] - cell["reproduced"]]])
                        pts.append((cell["reported"], cell["lo"]))
                        pts.append((cell["reported"], cell["hi"]))
                    ax.scatter([cell["reported"]], [cell["reproduced"]], marker=marker,
                               facecolors="none" if metric == "war" else None, edgecolors="black", zorder=3)
                    ax.annotate(f"{r['row']} ({table.dataset})", (cell["reported"], cell["reproduced"]), fontsize=7,
                                textcoords="offset points", xytext=(4, 4))
    lo, hi = (min(min(p) for p in pts) - 5, max(max(p) for p in pts) + 5) if pts else (0, 100)
    ax.plot([lo, hi], [lo, hi], "--", color="crimson", lw=1, label="y = x (reproduced = reported)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("reported (%)")
    ax.set_ylabel("reproduced by dfer-bench (%)")
    title = f"{paper.name}: reproduced vs reported (UAR filled, WAR hollow; bars: 95% interval)"
    if not pts:
        title += "\nno row has both a reported and a reproduced number yet"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path)
    return path


def write_paper_report(paper_arg: str | Path, runs: list, literature: list[dict], out_dir: Path, stamp: str,
                       formats: tuple[str, ...] = ("md", "csv", "tex"), plots: bool = True) -> dict[str, Any]:
    paper = load_paper(paper_arg)
    groups_by_ds = group_runs(runs)
    built = {t.id: build_table(paper, t, groups_by_ds.get(t.dataset, []), literature) for t in paper.tables}
    target = out_dir / "papers" / paper.name
    target.mkdir(parents=True, exist_ok=True)
    files = write_paper_tables(paper, built, target, stamp, formats)
    if plots:
        files.append(plot_paper(paper, built, target / "reproduced_vs_reported.png"))
    used = sorted({r.run_id for ds in groups_by_ds.values() for g in ds for r in g.runs
                   if any(g.method == row["method"] for t in paper.tables for row in built[t.id])})
    return {"paper": paper.name, "path": str(paper.path), "files": files, "tables": built, "runs": used}


def planned_specs(paper: Paper, seeds: list[int]) -> list[tuple[str, str, int | None, int]]:
    """(method, dataset, fold, seed) of every run the paper's tables need (registered rows only)."""
    out = []
    for table in paper.tables:
        folds = table.folds or list(DATASETS.get(table.dataset).folds)
        for row in table.rows:
            method = row.get("method")
            if not method or method not in METHODS:
                continue
            for f in folds:
                for s in seeds:
                    key = (method, table.dataset, f, s)
                    if key not in out:
                        out.append(key)
    return out
