"""`bench report`: tables, plots and a manifest generated from completed runs (never edited by hand).

Why a generated report: every number in a table must be traceable to the `result.json` files it came
from (listed in `manifest.json`), fold aggregation must follow one convention (the unweighted mean and
std of per-fold values, DFEW/MAFW style; see `bench.metrics.aggregate_folds`), and numbers quoted from
papers must sit in their own "reported" columns, never mixed with re-measured ones.

Inputs: `results/runs/**/result.json` (read through `bench.store.load_runs`) with `metrics.jsonl` beside
each, and `results/reference/literature.csv` (percent; see its README). All accuracies in the outputs
are percentages. Modules: `aggregate` (rows), `literature` (reported numbers), `tables` (one md/csv/tex
writer), `plots`, `cost` (latency/throughput/memory per latency key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, UnknownNameError
from bench.report.aggregate import SELECTION_LABELS, Group, _pct, group_runs, per_class_rows, summarise_group
from bench.report.cost import cost_rows, write_cost_tables
from bench.report.literature import (
    DEFAULT_LITERATURE,
    REPO_ROOT,
    load_all_literature,
    load_literature,
    load_reported,
)
from bench.report.plots import (
    _slug,
    pareto_front,
    plot_accuracy_vs_gmacs,
    plot_confusion,
    plot_curves,
    plot_robustness,
)
from bench.report.robustness import (
    cross_rows,
    plot_corruptions,
    robustness_rows,
    write_cross_table,
    write_robustness_tables,
)
from bench.report.tables import (
    MAIN_CSV_COLUMNS,
    PROTOCOL_CSV_COLUMNS,
    _display_rows,
    _fmt,
    _protocol_display_rows,
    _write_csv,
    write_table,
)
from bench.report.uncertainty import COMPUTED, add_intervals
from bench.store import atomic_write_text, load_runs, writable_dir

__all__ = ["REPO_ROOT", "pareto_front", "write_report"]

FORMATS = ("md", "csv", "tex")


def _main_notes(rows: list[dict]) -> list[str]:
    notes = ["UAR/WAR: mean ± std over folds (unweighted mean of per-fold values; seeds averaged within "
             "a fold), then the 95% CI in brackets; a row run on one split (a single-split dataset, or one fold "
             "of a folded one) shows mean ± std over seeds, or the value for one run.",
             "95% CI: one split (or one fold) = a bootstrap over its test videos, stratified by class, 2,000 "
             "resamples, percentile interval (seeds: the seed-averaged metric on the same resampled videos); several "
             "folds = each fold's bootstrap variance plus the between-fold variance (DerSimonian-Laird), t on k-1 "
             "degrees of freedom (bench/stats.py). seed sd: the spread over seeds, never inside the interval.",
             "vs best: a paired approximate randomisation test of ΔUAR against the row of highest UAR on the same test "
             "videos (lowest seed per fold), p Holm-adjusted over the rows tested (one family per table, so a "
             "'tied' row is not significantly worse at 5% after correcting for the number of comparisons); empty "
             "where the rows do not share their test videos.",
             "GMACs: fvcore (MAC convention), one clip at batch 1; GMACs/video multiplies by the test views.",
             "reported: numbers copied from the literature (results/reference/literature.csv); "
             "never re-measured. reported source: a short tag; the full source, split, params and GFLOPs are in "
             "the protocol table.",
             "protocol: the protocol's name, with what changes the reading of a row (data options such as "
             "label_noise, BEST ON TEST, a random init standing in for the method's weights); frames x size, "
             "epochs, sampling, test views, selection, init, runs (seeds), seed sd, trainable params and GMACs/video "
             "are in the protocol table (<dataset>_protocol.md, same rows in the same order; 'cfg' = the "
             "configuration hash), every column in the CSV."]
    if any(r["selection"] == "best_on_test" for r in rows):
        notes.append("BEST ON TEST: the epoch was chosen on the test split (optimistic, as some papers do).")
    if any(not r["complete"] for r in rows):
        notes.append("INCOMPLETE: not all folds of the protocol have a completed run.")
    computed = sum(COMPUTED in (r.get("ci_source") or "") for r in rows)
    if computed:
        notes.append(f"{computed} row(s) hold runs written before intervals were stored: their intervals are "
                     "computed from the runs' predictions.npz at report time.")
    return notes


def _protocol_notes() -> list[str]:
    return ["Rows in the order of the main table; method and protocol read as there, cfg = the configuration hash "
            "(the spec without fold and seed).",
            "test views: temporal sampling, clips x crops (views per video); sampling: sampler/stride.",
            "seed sd: the spread of UAR over seeds (within a fold), never inside the interval.",
            "GMACs/video: GMACs per clip (fvcore, batch 1) times the test views.",
            "reported source: every literature row used, [split] of the accuracy row."]


def _dataset_tables(ds: str, groups: list[Group], rows: list[dict], tables_dir: Path, formats: Sequence[str],
                    stamp: str) -> list[Path]:
    """The main table (compact md/tex, every column in its CSV), the protocol table, the per-class table and the
    per-run CSV of one dataset."""
    from bench import __version__

    header, disp = _display_rows(rows)
    header_t, disp_t = _display_rows(rows, tex=True)
    caption = (f"{ds}: UAR/WAR (%) as mean ± std over folds (unweighted mean of per-fold values) [95% CI], "
               f"reproduced by dfer-bench {__version__}; reported = published numbers (results/reference/literature.csv). "
               f"GMACs: fvcore, 1 clip, batch 1. Training and test protocol of each row: table {ds}_protocol.")
    files = write_table(tables_dir, ds, title=ds, header=header, display=disp, rows=rows, columns=MAIN_CSV_COLUMNS,
                        formats=formats, stamp=stamp, notes=_main_notes(rows), caption=caption, tex_display=disp_t,
                        raw_cols=tuple(header_t.index(h) for h in ("UAR (%)", "WAR (%)", "macro-F1 (%)")))
    header_p, disp_p = _protocol_display_rows(rows)  # the detail the main table leaves out, row for row
    files += write_table(tables_dir, f"{ds}_protocol", title=f"{ds}: protocol of each row of {ds}.md",
                         header=header_p, display=disp_p, rows=rows, columns=PROTOCOL_CSV_COLUMNS, formats=formats,
                         stamp=stamp, notes=_protocol_notes(), caption=f"{ds}: training and test protocol per row.")

    pc_rows, all_classes = [], []
    for g, r in zip(groups, rows, strict=True):
        classes, rec = per_class_rows(g)
        all_classes += [c for c in classes if c not in all_classes]
        pc_rows.append({"method": g.method, "protocol": r["protocol"], "selection": r["selection"],
                        "variant": g.variant, "n_folds": r["n_folds"], **rec, "uar_mean": r["uar_mean"]})
    pc_disp = [[r["method"], r["protocol"], SELECTION_LABELS.get(r["selection"], r["selection"]), r["variant"],
                str(r["n_folds"]), *[_fmt(r.get(c)) for c in all_classes], _fmt(r["uar_mean"])] for r in pc_rows]
    files += write_table(tables_dir, f"{ds}_per_class", title=f"{ds}: per-class recall (%), mean over folds",
                         header=["method", "protocol", "selection", "cfg", "folds", *all_classes, "UAR"],
                         display=pc_disp, rows=pc_rows,
                         columns=["method", "protocol", "selection", "variant", "n_folds", *all_classes, "uar_mean"],
                         formats=formats, stamp=stamp)

    fold_rows = []  # per-run rows (always CSV: the raw material of the table)
    for g in groups:
        for run in g.runs:
            m = run["metrics"]
            fold_rows.append({
                "run_id": run.run_id, "method": g.method, "protocol": run.get("protocol_name", ""),
                "variant": g.variant, "fold": run.get("fold"), "seed": run.get("seed"),
                "uar": _pct(m["uar"]), "war": _pct(m["war"]), "epoch": m.get("epoch"),
                "selection": (run.get("protocol") or {}).get("selection", ""),
                "n_test": m.get("n_test"), "config_hash": run.get("config_hash", ""), "result_json": str(run.path),
            })
    p = tables_dir / f"{ds}_folds.csv"
    _write_csv(p, fold_rows, list(fold_rows[0].keys()))
    return [*files, p]


APART_NOTES = {
    "zero-shot": "ZERO-SHOT: evaluated with no training (text-prompted label matching); a row without weights is "
                 "labelled 'random init (not the method)' and measures nothing.",
    "fused": "FUSED: late fusion of the per-video probabilities of the named source runs on the same test split "
             "(mean, or MHPF weights fitted on the training split only); GMACs/params are the sources' sums.",
}


def _apart_table(ds: str, kind: str, groups: list[Group], rows: list[dict], tables_dir: Path, formats: Sequence[str],
                 stamp: str) -> list[Path]:
    """Zero-shot and fused rows: their own table beside the dataset's main one, with each row's weights in an
    `init` column (for a row that is not trained, the weights are what it measures)."""
    def with_init(header: list[str], disp: list[list[str]]) -> tuple[list[str], list[list[str]]]:
        return (header[:2] + ["init"] + header[2:],
                [d[:2] + [str(r["init"])] + d[2:] for d, r in zip(disp, rows, strict=True)])

    header, disp = with_init(*_display_rows(rows))
    header_t, disp_t = with_init(*_display_rows(rows, tex=True))
    stem = f"{ds}_{kind.replace('-', '_')}"
    return write_table(tables_dir, stem, title=f"{ds}: {kind}", header=header, display=disp, rows=rows,
                       columns=MAIN_CSV_COLUMNS, formats=formats, stamp=stamp,
                       notes=[APART_NOTES.get(kind, kind), *_main_notes(rows)[:1]], tex_display=disp_t,
                       raw_cols=tuple(header_t.index(h) for h in ("UAR (%)", "WAR (%)", "macro-F1 (%)")))


def _dataset_plots(ds: str, groups: list[Group], plots_dir: Path) -> list[Path]:
    files = []
    per_method: dict[str, int] = {}
    for g in groups:
        per_method[g.method] = per_method.get(g.method, 0) + 1
    for g in groups:
        cms = [np.asarray(r["metrics"]["confusion"]) for r in g.runs if r["metrics"].get("confusion")]
        if not cms or len({c.shape for c in cms}) != 1:
            continue
        classes = list(g.first["metrics"].get("classes") or range(cms[0].shape[0]))
        name = g.method if per_method[g.method] == 1 else \
            f"{g.method}_{_slug(g.first.get('protocol_name', ''))}_{g.selection}_{g.variant}"
        title = f"{ds} / {g.label()}: recall-normalised, summed over {len(cms)} run(s)"
        files.append(plot_confusion(sum(cms), [str(c) for c in classes], title,
                                    plots_dir / f"confusion_{_slug(ds)}_{_slug(name)}.png"))
    p = plot_curves(groups, ds, plots_dir / f"curves_{_slug(ds)}.png")
    return files + ([p] if p else [])


def write_report(results_dir: Path = Path("results"), out_dir: Path = Path("reports"),
                 formats: Sequence[str] = FORMATS, plots: bool = True, literature: Path | None = None,
                 paper: str | Path | None = None, reported: Sequence[Path] = (),
                 mce_baseline: str | None = None, site: bool = True) -> dict[str, Any]:
    """Generate tables, plots and manifest.json from every completed run; returns what was written and used.

    `literature` defaults to results_dir/reference/literature.csv, else the repository's copy; `reported` CSVs
    (same columns) add a user's own published numbers. With `paper` (a shipped paper name or a paper file),
    only that paper's tables and figure are written, under out_dir/papers/<name>/.
    """
    from bench import __version__

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise BenchError(f"{results_dir}: results directory not found; pass --results DIR (a folder holding runs/, "
                         "e.g. results or results/examples)")
    writable_dir(out_dir, flag="--out")  # a read-only or foreign --out: one line before the report is computed
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise BenchError(f"unknown report formats {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    if literature is None:
        local = results_dir / "reference" / "literature.csv"
        literature = local if local.is_file() else DEFAULT_LITERATURE
    lit_rows = load_all_literature(literature) if Path(literature) == DEFAULT_LITERATURE else \
        load_literature(literature)
    lit_rows += [{**r, "_row": len(lit_rows) + i} for i, r in enumerate(load_reported(reported))]

    runs, skipped = load_runs(results_dir)
    if paper is not None:
        from bench.report.papers import write_paper_report

        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        res = write_paper_report(paper, runs, lit_rows, out_dir, stamp, formats, plots)
        mpath = out_dir / "papers" / res["paper"] / "manifest.json"
        atomic_write_text(mpath, json.dumps({
            "generated_at": stamp, "generator": "bench report --paper", "paper": res["paper"], "paper_file": res["path"],
            "results_dir": str(results_dir), "run_ids": res["runs"],
            "literature": [str(literature), *map(str, reported)]}, indent=2) + "\n")
        return {"out_dir": str(out_dir), "files": [str(f) for f in res["files"]] + [str(mpath)], "runs": res["runs"],
                "n_runs": len(res["runs"]), "skipped": skipped, "paper": res["paper"], "manifest": str(mpath)}
    groups_by_ds = group_runs(runs)
    methods = {g.method for groups in groups_by_ds.values() for g in groups}
    if mce_baseline is not None and mce_baseline not in methods:
        raise UnknownNameError("--mce-baseline method (a method with runs in these results)", mce_baseline, methods)
    tables_dir, plots_dir = out_dir / "tables", out_dir / "plots"
    tables_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows_by_ds: dict[str, list[dict]] = {}
    tables: dict[str, list[dict]] = {}
    for ds, all_groups in groups_by_ds.items():
        kinds: dict[str, list[Group]] = {}
        for g in all_groups:  # zero-shot evaluations and fused predictions are reported apart from trained runs
            kinds.setdefault(str(g.protocol.get("training", "trained")), []).append(g)
        groups_by_ds[ds] = kinds.pop("trained", [])
        rows = [summarise_group(g, lit_rows) for g in groups_by_ds[ds]]
        add_intervals(groups_by_ds[ds], rows)
        rows_by_ds[ds] = rows
        tables[ds] = [{k: r[k] for k in ("method", "protocol", "selection", "variant", "uar_mean", "uar_std",
                                         "uar_lo", "uar_hi", "war_mean", "war_std", "war_lo", "war_hi", "ci_source",
                                         "vs_best", "n_folds", "n_folds_expected", "complete", "run_ids")}
                      for r in rows]
        if rows:
            files += _dataset_tables(ds, groups_by_ds[ds], rows, tables_dir, formats, stamp)
        for kind, groups in kinds.items():
            apart = [summarise_group(g, lit_rows) for g in groups]
            add_intervals(groups, apart)
            files += _apart_table(ds, kind, groups, apart, tables_dir, formats, stamp)
    files += write_cost_tables(cost_rows(runs, results_dir), tables_dir, stamp)
    robust: dict[str, list[dict]] = {}
    for ds, groups in groups_by_ds.items():  # test-time corruptions, beside the runs (bench eval --corrupt)
        rrows, base_name = robustness_rows(groups, mce_baseline)
        robust[ds] = rrows
        files += write_robustness_tables(ds, rrows, base_name, tables_dir, formats, stamp)
    cross = cross_rows(runs)
    files += write_cross_table(cross, tables_dir, formats, stamp)

    if plots and runs:
        plots_dir.mkdir(parents=True, exist_ok=True)
        p = plot_accuracy_vs_gmacs(rows_by_ds, plots_dir / "accuracy_vs_gmacs.png")
        files += [p] if p else []
        for ds, groups in groups_by_ds.items():
            files += _dataset_plots(ds, groups, plots_dir)
            p = plot_robustness(groups, rows_by_ds[ds], plots_dir / f"robustness_{_slug(ds)}.png")
            files += [p] if p else []
            p = plot_corruptions(ds, robust.get(ds, []), plots_dir / f"corruptions_{_slug(ds)}.png")
            files += [p] if p else []

    if site:
        from bench.report.site import write_site

        files += write_site(out_dir / "site", groups_by_ds=groups_by_ds, rows_by_ds=rows_by_ds, runs=runs,
                            literature=lit_rows, results_dir=results_dir, stamp=stamp, robust=robust, cross=cross)
    used = [{"run_id": r.run_id, "result_json": str(r.path), "config_hash": r.get("config_hash", ""),
             "dataset": r["dataset"], "method": r["method"], "fold": r.get("fold"), "seed": r.get("seed")}
            for r in runs]
    lit_sha = hashlib.sha256(Path(literature).read_bytes()).hexdigest() if Path(literature).is_file() else None
    manifest = {
        "generated_at": stamp, "generator": "bench report", "dfer_bench_version": __version__,
        "results_dir": str(results_dir), "run_ids": [u["run_id"] for u in used], "runs": used, "skipped": skipped,
        "literature": {"path": str(literature), "sha256": lit_sha}, "tables": tables,
        "files": [str(f.relative_to(out_dir)) for f in files],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    mpath = out_dir / "manifest.json"
    atomic_write_text(mpath, json.dumps(manifest, indent=2, default=str, allow_nan=False) + "\n")
    files.append(mpath)
    return {"out_dir": str(out_dir), "files": [str(f) for f in files], "runs": [u["run_id"] for u in used],
            "n_runs": len(used), "skipped": skipped, "datasets": sorted(groups_by_ds), "manifest": str(mpath)}
