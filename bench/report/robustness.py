"""Robustness in `bench report`: the corruption benchmark and cross-corpus rows written beside runs by `bench eval
--run RUN --corrupt ...` / `--on DATASET` (bench/robustness.py), never mixed with the in-domain tables.

Mean corruption error, ImageNet-C's adapted to UAR: the error of a model under corruption c at severity s is
E(s, c) = 1 - UAR(s, c); its corruption error CE_c = sum_s E(s, c) / sum_s E_base(s, c), normalised by a named
baseline row (default: the static single-frame control, `static_r18`, where it has results: a model that cannot
use time); mCE = the mean of CE_c over the corruptions both rows have at every severity, in percent (100 = as
robust as the baseline, lower is better). Relative mCE normalises the degradation instead of the error:
rCE_c = sum_s (E(s, c) - E_clean) / sum_s (E_base(s, c) - E_base,clean). Per family (noise, blur, digital,
occlusion, temporal): the mean UAR over its corruptions and severities, and the family's mCE (the mean CE_c over
its corruptions). Several runs of one row (folds, seeds)
are averaged per (corruption, severity).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.report.aggregate import Group
from bench.report.tables import _fmt, write_table
from bench.store import StoredRun

FAMILY_ORDER = ("noise", "blur", "digital", "occlusion", "temporal")
DEFAULT_BASELINE = "static_r18"


def _evals(run: StoredRun, kind: str) -> list[dict]:
    out = []
    for path in sorted((run.path.parent / kind).glob("*/eval.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def corruption_row(g: Group) -> dict[str, Any] | None:
    """UAR (percent) per (corruption, severity) and clean, averaged over the row's runs that have them."""
    table: dict[tuple[str, int], list[float]] = {}
    bands: dict[tuple[str, int], list[tuple[float, float]]] = {}
    families: dict[str, str] = {}
    run_ids = []
    for run in g.runs:
        evals = _evals(run, "corruptions")
        if evals:
            run_ids.append(run.run_id)
        for e in evals:
            key = (e.get("corruption", ""), int(e.get("severity") or 0))
            table.setdefault(key, []).append(100 * float(e["metrics"]["uar"]))
            ci = (e["metrics"].get("ci") or {}).get("uar")
            if ci:
                bands.setdefault(key, []).append((100 * ci["lo"], 100 * ci["hi"]))
            families[key[0]] = e.get("family", "")
    if not any(k[0] != "clean" for k in table):
        return None
    uar = {k: float(np.mean(v)) for k, v in table.items()}
    # the 95% interval of each point where every run of the row stored one (the mean of their ends for several)
    band = {k: tuple(np.mean(v, axis=0)) for k, v in bands.items() if len(v) == len(table[k])}
    return {"method": g.method, "protocol": g.first.get("protocol_name", ""), "group": g, "uar": uar, "band": band,
            "families": families, "clean": uar.get(("clean", 0)), "run_ids": run_ids}


def _complete(row: dict, name: str) -> list[int]:
    return sorted(s for (c, s) in row["uar"] if c == name and s > 0)


def severity_curve(row: dict, name: str) -> tuple[list[int], list[float]]:
    """UAR against severity for one corruption, severity 0 being the clean reference; empty where the row lacks
    either (the PNG and the site's chart draw the same curves)."""
    sev = _complete(row, name)
    if not sev or row["clean"] is None:
        return [], []
    return [0, *sev], [row["clean"], *[row["uar"][(name, s)] for s in sev]]


def severity_band(row: dict, name: str) -> tuple[list[int], list[float], list[float]]:
    """The 95% interval along `severity_curve`; empty where a point of the curve has none."""
    xs, _ = severity_curve(row, name)
    keys = [("clean", 0) if x == 0 else (name, x) for x in xs]
    if not xs or any(k not in row["band"] for k in keys):
        return [], [], []
    return xs, [row["band"][k][0] for k in keys], [row["band"][k][1] for k in keys]


def mce(row: dict, base: dict) -> dict[str, Any]:
    """mCE and relative mCE (percent) of a row against the baseline row, over the corruptions both have at the
    same severities; per corruption CE too."""
    ce, rce = {}, {}
    for name in sorted({c for c, s in row["uar"] if s > 0}):
        sev = _complete(row, name)
        if not sev or sev != _complete(base, name):
            continue
        err = [100 - row["uar"][(name, s)] for s in sev]
        berr = [100 - base["uar"][(name, s)] for s in sev]
        if sum(berr) > 0:
            ce[name] = 100 * sum(err) / sum(berr)
        if row["clean"] is not None and base["clean"] is not None:
            deg = sum(e - (100 - row["clean"]) for e in err)
            bdeg = sum(e - (100 - base["clean"]) for e in berr)
            if bdeg > 0:
                rce[name] = 100 * deg / bdeg
    return {"ce": ce, "mce": float(np.mean(list(ce.values()))) if ce else None,
            "rmce": float(np.mean(list(rce.values()))) if rce else None, "n": len(ce)}


def robustness_rows(groups: Sequence[Group], baseline: str | None = None) -> tuple[list[dict], str | None]:
    rows = [r for r in (corruption_row(g) for g in groups) if r is not None]
    if not rows:
        return [], None
    names = [r["method"] for r in rows]
    # a baseline named by the user is used or, where this dataset has no corruption results for it, nothing is
    # (never another method in its place)
    wanted = baseline or DEFAULT_BASELINE
    base_name = wanted if wanted in names else None
    base = next((r for r in rows if r["method"] == base_name), None)
    for r in rows:
        r.update(mce(r, base) if base is not None else {"ce": {}, "mce": None, "rmce": None, "n": 0})
        for fam in FAMILY_ORDER:
            vals = [v for (c, s), v in r["uar"].items() if s > 0 and r["families"].get(c) == fam]
            r[f"family_{fam}"] = float(np.mean(vals)) if vals else None
            ces = [v for c, v in r["ce"].items() if r["families"].get(c) == fam]
            r[f"mce_{fam}"] = float(np.mean(ces)) if ces else None
        per = {}
        for c in sorted({c for c, s in r["uar"] if s > 0}):
            per[c] = float(np.mean([v for (cc, s), v in r["uar"].items() if cc == c and s > 0]))
        r["per_corruption"] = per
    return rows, base_name


def write_robustness_tables(ds: str, rows: list[dict], base_name: str | None, tables_dir: Path,
                            formats: Sequence[str], stamp: str) -> list[Path]:
    if not rows:
        return []
    header = ["method", "protocol", "clean UAR", *[f"{f} UAR (mCE)" for f in FAMILY_ORDER], "mCE", "relative mCE",
              "corruptions"]

    def family_cell(r: dict, fam: str) -> str:
        uar, ce = _fmt(r[f"family_{fam}"]), r[f"mce_{fam}"]
        return uar if ce is None else f"{uar} ({ce:.0f})"

    disp = [[r["method"], r["protocol"], _fmt(r["clean"]), *[family_cell(r, f) for f in FAMILY_ORDER],
             _fmt(r["mce"], 1), _fmt(r["rmce"], 1), str(len(r["per_corruption"]))] for r in rows]
    flat = [{"method": r["method"], "protocol": r["protocol"], "clean_uar": r["clean"], "mce": r["mce"],
             "relative_mce": r["rmce"], **{f"{f}_uar": r[f"family_{f}"] for f in FAMILY_ORDER},
             **{f"{f}_mce": r[f"mce_{f}"] for f in FAMILY_ORDER},
             **{f"uar_{c}": v for c, v in r["per_corruption"].items()}} for r in rows]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    notes = [f"Corruptions of the test clips (bench/data/corruptions.py), severities 1-5, every method on the same "
             f"corrupted clips; UAR in % averaged over severities. mCE / relative mCE against `{base_name}` "
             f"(= 100), ImageNet-C's definitions with error = 100 - UAR (bench/report/robustness.py); lower is more "
             f"robust; per family: the mean CE over the family's corruptions." if base_name else
             "No corruption results for the mCE baseline here: mCE not computed.",
             "Clean UAR: the same checkpoint through the same evaluation without corruption."]
    files = write_table(tables_dir, f"robustness_{ds}", title=f"{ds}: robustness to test-time corruptions",
                        header=header, display=disp, rows=flat, columns=columns, formats=formats, stamp=stamp,
                        notes=notes)
    names = sorted({c for r in rows for c in r["per_corruption"]})
    per_header = ["method", "protocol", "clean", *names]
    per_disp = [[r["method"], r["protocol"], _fmt(r["clean"], 1), *[_fmt(r["per_corruption"].get(c), 1)
                                                                     for c in names]] for r in rows]
    files += write_table(tables_dir, f"robustness_{ds}_per_corruption",
                         title=f"{ds}: UAR (%) per corruption, mean over severities 1-5", header=per_header,
                         display=per_disp, rows=flat, columns=columns, formats=("md",), stamp=stamp)
    return files


def plot_corruptions(ds: str, rows: list[dict], path: Path) -> Path | None:
    """UAR vs severity (0 = clean) per corruption, one line per method."""
    from bench.report.plots import _new_figure, method_palette
    from bench.store import atomic_savefig

    names = sorted({c for r in rows for c in r["per_corruption"]})
    if not names:
        return None
    cols = 5
    nrows = -(-len(names) // cols)
    fig = _new_figure(3.2 * cols, 2.6 * nrows + 0.6)
    axes = np.atleast_2d(fig.subplots(nrows, cols, squeeze=False))
    palette = method_palette(r["method"] for r in rows)
    for ax, name in zip(axes.ravel(), names, strict=False):
        for r in rows:
            xs, ys = severity_curve(r, name)
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=palette[r["method"]], label=r["method"])
            bx, lo, hi = severity_band(r, name)
            if bx:
                ax.fill_between(bx, lo, hi, color=palette[r["method"]], alpha=0.12, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(6))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.suptitle(f"{ds}: UAR (%) vs corruption severity (0 = clean); bands: 95% bootstrap intervals", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    atomic_savefig(fig, path)
    return path


def cross_target(cross: dict) -> str:
    """A cross-corpus evaluation's target with its data options, e.g. `synthetic (distractor=1.0, seed=1)`."""
    opts = ", ".join(f"{k}={v}" for k, v in sorted((cross.get("options") or {}).items()))
    return str(cross["target"]) + (f" ({opts})" if opts else "")


def cross_rows(runs: Sequence[StoredRun]) -> list[dict]:
    """One row per cross-corpus evaluation: SOURCE -> TARGET, never mixed with in-domain rows."""
    out = []
    for run in runs:
        for e in _evals(run, "cross"):
            c, m = e["cross"], e["metrics"]
            ci = m.get("ci") or {}
            out.append({"pair": f"{c['source']} -> {cross_target(c)}",
                        "method": run["method"], "protocol": run.get("protocol_name", ""), "fold": c.get("fold"),
                        "uar": 100 * m["uar"], "uar_lo": 100 * ci["uar"]["lo"] if ci else None,
                        "uar_hi": 100 * ci["uar"]["hi"] if ci else None, "war": 100 * m["war"],
                        "in_domain_uar": 100 * run["metrics"]["uar"], "n_test": m["n_test"],
                        "excluded": c.get("excluded_clips", 0), "run_id": run.run_id})
    return sorted(out, key=lambda r: (r["pair"], r["method"]))


def write_cross_table(rows: list[dict], tables_dir: Path, formats: Sequence[str], stamp: str) -> list[Path]:
    if not rows:
        return []
    header = ["source -> target", "method", "protocol", "fold", "UAR", "UAR 95% CI", "WAR", "in-domain UAR",
              "test clips", "left out"]
    disp = [[r["pair"], r["method"], r["protocol"], str(r["fold"]), _fmt(r["uar"]),
             "" if r["uar_lo"] is None else f"[{_fmt(r['uar_lo'], 1)}, {_fmt(r['uar_hi'], 1)}]", _fmt(r["war"]),
             _fmt(r["in_domain_uar"]), str(r["n_test"]), str(r["excluded"])] for r in rows]
    notes = ["A model trained on the source evaluated on the target's test split, classes mapped by emotion name "
             "(bench/robustness.py); target clips of classes with no source class are left out (counted). "
             "In-domain UAR: the same run on its own test split."]
    return write_table(tables_dir, "cross_corpus", title="cross-corpus evaluation", header=header, display=disp,
                       rows=rows, columns=list(rows[0].keys()), formats=formats, stamp=stamp, notes=notes)
