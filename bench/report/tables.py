"""Formatting: one table writer for md / csv / tex (booktabs, ready to paste), cell formatting."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report.aggregate import SELECTION_LABELS
from bench.store import atomic_write_text


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
    cell = "single split" if e <= 1 else f"{n}/{e} folds" + ("" if row["complete"] else " (INCOMPLETE)")
    # one class predicted for every test clip in every run: the numbers are the class prior, not a result
    return cell + ("; did not learn in this budget (one class predicted)" if row.get("did_not_learn") else "")


def ci_cell(row: dict, metric: str) -> str:
    """'[lo, hi]' of a row's interval (percent), '' without one."""
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    return "" if lo is None or hi is None else f"[{_fmt(lo, 1)}, {_fmt(hi, 1)}]"


def vs_best_cell(row: dict) -> str:
    mark, p = row.get("vs_best", ""), row.get("p_vs_best")
    return mark if p is None else f"{mark} (p={p:.2g})"


def _stat_cell(row: dict, metric: str, tex: bool = False) -> str:
    """'mean ± std [lo, hi]': the spread over folds and the row's 95% interval in one cell."""
    cell, ci = _pm(row[f"{metric}_mean"], row[f"{metric}_std"], tex), ci_cell(row, metric)
    return f"{cell} {ci}" if cell and ci else cell


def source_tag(row: dict) -> str:
    """A short tag for the source of the reported accuracy ('SVFAP paper T8', 'DFER-CLIP repo'); the full source
    list is in the protocol table and the CSV. A pooled or single-fold number says so."""
    first = (row.get("reported_source") or "").split("; ")[0]
    kind, _, text = first.partition(": ")
    if not text:
        return ""
    if text.startswith("github "):
        text = text.split("/", 1)[-1].split("@")[0] + " " + kind
    split = (row.get("reported_split") or "").lower()
    flag = " (pooled)" if "pooled" in split else f" ({split})" if re.fullmatch(r"fold\s*\d+", split) else ""
    return (text if len(text) <= 28 else text[:27] + "…") + flag


def protocol_cell(row: dict, rows: Sequence[dict]) -> str:
    """The protocol name, plus what a reader must not miss (test-split selection, a random init standing in for
    the method's weights, data options such as label noise) and, where rows would still read the same, the
    configuration hash of the protocol table's 'cfg' column."""
    def base(r: dict) -> str:
        parts = [r["protocol"]]
        options = re.search(r"\((.*)\)$", str(r.get("input") or ""))
        if options:
            parts.append(options.group(1))
        if r["selection"] == "best_on_test":
            parts.append(SELECTION_LABELS["best_on_test"])
        if "not the method" in str(r.get("init") or ""):
            parts.append(str(r["init"]))
        return "; ".join(p for p in parts if p)

    cell = base(row)
    twins = [r for r in rows if r["method"] == row["method"] and base(r) == cell]
    return cell + (f"; cfg {row['variant']}" if len(twins) > 1 else "")


def _method_cell(row: dict) -> str:
    return row["method"] + (f" (variant of {row['parent']})" if row["parent"] else "")


def _display_rows(rows: list[dict], tex: bool = False) -> tuple[list[str], list[list[str]]]:
    """The main table: what a reader compares (accuracy with its spread and interval, cost, the published
    numbers); the protocol detail is in `_protocol_display_rows` and every number in the CSV."""
    header = ["method", "protocol", "folds", "UAR (%)", "WAR (%)", "macro-F1 (%)", "vs best", "params (M)", "GMACs",
              "reported UAR", "reported WAR", "reported source"]
    out = [[_method_cell(r), protocol_cell(r, rows), _folds_cell(r), _stat_cell(r, "uar", tex),
            _stat_cell(r, "war", tex), _pm(r["macro_f1_mean"], r["macro_f1_std"], tex), vs_best_cell(r),
            _fmt(r["params_m"]), _fmt(r["gmacs"]), _fmt(r["reported_uar"]), _fmt(r["reported_war"]), source_tag(r)]
           for r in rows]
    return header, out


def _protocol_display_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The protocol table: how each main-table row (same order, same method/protocol cells) was trained and
    measured, and the full reported source."""
    header = ["method", "protocol", "cfg", "frames x size", "epochs", "sampling", "test views", "selection", "init",
              "runs (seeds)", "seed sd (UAR)", "trainable (M)", "GMACs/video", "reported params (M)",
              "reported GFLOPs", "reported source"]
    out = [[_method_cell(r), protocol_cell(r, rows), r["variant"], r["input"],
            "" if r["epochs"] is None else str(r["epochs"]), r["sampling"], r["test_views"],
            SELECTION_LABELS.get(r["selection"], r["selection"]), r["init"],
            f"{r['n_runs']} ({','.join(map(str, r['seeds']))})", _fmt(r.get("uar_seed_sd")),
            _fmt(r["params_trainable_m"]), _fmt(r["gmacs_per_video"]), _fmt(r["reported_params_m"]),
            _fmt(r["reported_gflops"]),
            r["reported_source"] + (f" [{r['reported_split']}]" if r["reported_split"] else "")]
           for r in rows]
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
    atomic_write_text(path, df.to_csv(index=False))


def _csv_cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ";".join("" if x is None else str(x) for x in v)
    return v


MAIN_CSV_COLUMNS = [
    "dataset", "method", "family", "parent", "protocol", "input", "epochs", "sampling", "test_views", "selection", "init",
    "variant", "n_folds", "n_folds_expected", "complete", "did_not_learn", "folds", "n_runs", "seeds", "uar_mean", "uar_std",
    "war_mean", "war_std", "macro_f1_mean", "macro_f1_std", "std_over", "uar_lo", "uar_hi", "war_lo", "war_hi",
    "macro_f1_lo", "macro_f1_hi", "ci_kind", "ci_source", "uar_seed_sd", "war_seed_sd", "vs_best", "p_vs_best", "params_m", "params_trainable_m", "gmacs", "gmacs_per_video", "reported_uar", "reported_war",
    "reported_params_m", "reported_gflops", "reported_split", "reported_source", "literature_method", "run_ids",
]
# the protocol table's CSV: what the md protocol table shows, as raw values (the main CSV has them too)
PROTOCOL_CSV_COLUMNS = [
    "dataset", "method", "parent", "protocol", "variant", "input", "epochs", "sampling", "test_views", "selection",
    "init", "n_runs", "seeds", "uar_seed_sd", "war_seed_sd", "params_trainable_m", "gmacs_per_video",
    "reported_params_m", "reported_gflops", "reported_split", "reported_source", "literature_method", "run_ids",
]


# ----------------------------------------------------------------------------------------------------------
# plots (matplotlib Figure objects: no pyplot, no global backend switch; the Agg canvas is used for PNG)


def write_table(tables_dir: Path, stem: str, *, title: str, header: list[str], display: list[list[str]],
                rows: list[dict], columns: list[str], formats: Sequence[str], stamp: str, notes: Sequence[str] = (),
                caption: str = "", tex_display: list[list[str]] | None = None, raw_cols: Sequence[int] = ()
                ) -> list[Path]:
    """One table in every requested format: md (display cells + notes), csv (raw numbers of `rows` in
    `columns`), tex (booktabs; `tex_display` cells where they differ from md, `raw_cols` already LaTeX)."""
    written: list[Path] = []
    if "md" in formats:
        p = tables_dir / f"{stem}.md"
        atomic_write_text(p, f"<!-- generated by `bench report` at {stamp}; do not edit -->\n\n# {title}\n\n"
                          + _md_table(header, display)
                          + ("\n" + "\n".join(f"* {n}" for n in notes) + "\n" if notes else ""))
        written.append(p)
    if "csv" in formats:
        p = tables_dir / f"{stem}.csv"
        _write_csv(p, rows, columns)
        written.append(p)
    if "tex" in formats:
        p = tables_dir / f"{stem}.tex"
        label = "tab:" + "".join(c if c.isalnum() or c in "._" else "-" for c in stem)
        atomic_write_text(p, _tex_table(header, tex_display or display, caption or title, label, raw_cols=raw_cols))
        written.append(p)
    return written
