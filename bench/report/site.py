"""The results site `bench report` writes into `<out>/site/`: static pages that open from `file://` and can be
published as is (GitHub Pages), generated from the same rows as the tables, so the two never disagree.

Pages: one leaderboard per dataset (sortable, filterable, intervals, protocol badges, published numbers beside
ours, did-not-learn rows apart), accuracy vs cost (interactive), one page per paper (reported vs reproduced,
verdicts, the GPU-hours to fill the empty cells), per method (paper, code, the port's ledger, sizes, weights,
recipe, results) and per run (the command that reproduces it, the resolved spec, environment, curves,
confusion, per-class recall, checkpoint path and hash).

Libraries: Jinja2 for the pages (templates in `site_templates/`); Vega-Lite specs built with Altair for the one
interactive chart, rendered by the Vega / Vega-Lite / Vega-Embed bundle that vl-convert ships
(`vl_convert.javascript_bundle()`, written once as `static/vega-bundle.js`, ~0.9 MB), so nothing is fetched at
view time; matplotlib SVG for the static training curves. Table sorting and filtering is ~40 lines of plain
JavaScript (`site_static/site.js`): a table library would weigh more than the pages it sorts.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.registry import METHODS
from bench.report.aggregate import Group
from bench.report.plots import noise_level
from bench.report.robustness import FAMILY_ORDER, severity_curve
from bench.store import StoredRun, atomic_write_text

HERE = Path(__file__).resolve().parent
SELECTION_TEXT = {"last": "the last epoch", "best_on_val": "the best epoch on a validation split",
                  "best_on_test": "the best epoch on the TEST split (optimistic, as the official code does)"}


def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "site_templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)

    def fmt(nd: int):
        def f(x: Any) -> str:
            return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"
        return f

    env.filters.update(f1=fmt(1), f2=fmt(2),
                       num=lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else repr(float(x)))
    return env


def _badges(row: dict, group: Group) -> list[dict]:
    p = group.protocol
    init = p.get("init") or {}
    kind = "random" if "not the method" in str(init.get("label", "")) else \
        "pretrained" if init.get("kind", "scratch") != "scratch" else "scratch"
    options = row["input"].split(" (", 1)[1].rstrip(")") if " (" in row["input"] else ""
    extra = [{"kind": "options", "text": options, "title": f"data options: {options}"}] if options else []
    return extra + [
        {"kind": "protocol", "text": row["protocol"] or "default",
         "title": f"protocol {row['protocol']}: the recipe the run resolved (bench run ... --protocol)"},
        {"kind": f"selection-{row['selection']}", "text": row["selection"],
         "title": f"selection: {SELECTION_TEXT.get(row['selection'], row['selection'])}"},
        {"kind": "views", "text": row["test_views"].split(" (")[0], "title": f"test views: {row['test_views']}"},
        {"kind": "input", "text": row["input"].split(" (")[0], "title": f"frames x size: {row['input']}; sampling "
                                                                          f"{row['sampling']}; {row['epochs']} epochs"},
        {"kind": f"init-{kind}", "text": str(init.get("label") or "scratch"), "title": f"init: {row['init']}"},
    ]


def _score(row: dict) -> float:
    v = row.get("uar_mean")
    return -1.0 if v is None or np.isnan(v) else float(v)


def _leader_row(row: dict, group: Group) -> dict:
    lat = ((group.first.get("profile") or {}).get("latency") or {})
    expected, got = row["n_folds_expected"], [f for f in row["folds"] if f is not None]
    if expected <= 1:
        folds = "single split"
    elif row["complete"]:
        folds = f"{expected} folds"
    else:
        folds = f"fold{'s' if len(got) > 1 else ''} {', '.join(map(str, got))} of {expected}"
    return {**row, "badges": _badges(row, group), "folds_text": folds,
            "latency_ms": lat.get("median_ms"), "latency_key": lat.get("key") or "",
            "reported_source": (row.get("reported_source") or "") + (f" [{row['reported_split']}]"
                                                                     if row.get("reported_split") else "")}


# ----------------------------------------------------------------------------------------------------------
# runs


def reproduce_command(run: StoredRun) -> str:
    """The `bench run` line that gives this run: the method's recipe under the run's protocol, plus a --set for
    every key where the stored spec differs from what that resolves to today."""
    from bench.spec import resolve_spec, semantic_view, with_defaults

    spec = run.get("spec") or {}
    parts = ["bench run", f"-m {run['method']}", f"-d {run['dataset']}"]
    if run.get("fold") is not None:
        parts.append(f"--fold {run['fold']}")
    parts.append(f"--seed {run.get('seed', 0)}")
    proto = run.get("protocol_name")
    try:
        base = resolve_spec(run["method"], run["dataset"], fold=run.get("fold"), seed=run.get("seed", 0),
                            protocol=proto).to_dict()
    except Exception as e:  # a protocol renamed since: say so instead of guessing
        return " ".join(parts) + f"   # protocol {proto!r} no longer resolves ({type(e).__name__}); see the spec below"
    if proto and proto != METHODS.get(run["method"]).recipe.default_protocol:
        parts.append(f"--protocol {proto}")
    have, want = semantic_view(with_defaults(spec)), semantic_view(base)
    for section in ("data", "optim", "reg", "train", "model"):
        a, b = have.get(section) or {}, want.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key):
                continue
            if (section, key) in (("data", "options"), ("model", "kwargs")):
                items = {f"{section}.{key}.{k}": v for k, v in (a.get(key) or {}).items()
                         if (b.get(key) or {}).get(k) != v}
            else:
                items = {f"{section}.{key}": a.get(key)}
            for k, v in items.items():
                flow = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
                parts.append(f"--set {shlex.quote(f'{k}={flow}')}")
    return " ".join(parts)


def _curves_svg(run: StoredRun) -> str:
    if not run.curves:
        return ""
    from bench.report.plots import _new_figure

    ep = [c.get("epoch", i) + 1 for i, c in enumerate(run.curves)]
    loss = [c.get("train_loss") for c in run.curves]
    uar = [100 * (c.get("eval") or {}).get("uar", np.nan) if (c.get("eval") or {}).get("uar") is not None else np.nan
           for c in run.curves]
    fig = _new_figure(6.4, 2.6)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, loss, marker="o", ms=3)
    ax1.set_title("training loss", fontsize=9)
    ax2.plot(ep, uar, marker="o", ms=3, color="#2857c7")
    ax2.set_title("test UAR (%)", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.StringIO()
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _checkpoint(run: StoredRun) -> str:
    d = run.path.parent / "checkpoints"
    for name in ("best.pt", "last.pt"):
        p = d / name
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            return f"{p} (sha256 {h.hexdigest()[:16]}…, {p.stat().st_size / 1e6:.1f} MB)"
    return "not kept here (checkpoints are git-ignored; curated example runs ship without them)"


def _run_page(run: StoredRun) -> dict:
    m = run["metrics"]
    classes = list(m.get("classes") or [])
    cm = np.asarray(m.get("confusion") or [[0]])
    rows = []
    for i, name in enumerate(classes):
        total = cm[i].sum()
        rows.append({"name": name, "recall": f"{100 * cm[i, i] / total:.1f}" if total else "-",
                     "cells": [{"n": int(v), "alpha": round(float(v / total), 3) if total else 0} for v in cm[i]]})
    p = run.get("protocol") or {}
    init = p.get("init") or {}
    ci = m.get("ci") or {}
    ci_text = f" (95% [{100 * ci['uar']['lo']:.1f}, {100 * ci['uar']['hi']:.1f}])" if ci.get("uar") else ""
    env = {k: v for k, v in (run.get("env") or {}).items() if k not in ("data_sources",)}
    return {"method": run["method"], "dataset": run["dataset"], "fold": run.get("fold"), "seed": run.get("seed"),
            "protocol_text": f"{run.get('protocol_name', '')}: {p.get('frames')}x{p.get('size')}, sampler "
                             f"{p.get('sampler')}, {p.get('test_views')} view(s) x {p.get('test_crops')} crop(s), "
                             f"{SELECTION_TEXT.get(p.get('selection'), p.get('selection'))} (epoch "
                             f"{p.get('selected_epoch')} of {p.get('epochs')}), init {init.get('label', 'scratch')}",
            "metrics_text": f"{100 * m['uar']:.2f}{ci_text} / {100 * m['war']:.2f} / "
                            f"{100 * (m.get('macro_f1') or float('nan')):.2f} on {m.get('n_test')} test videos",
            "command": reproduce_command(run), "checkpoint": _checkpoint(run), "path": str(run.path),
            "curves_svg": _curves_svg(run), "classes": classes, "confusion": rows,
            "spec_yaml": yaml.safe_dump(run.get("spec") or {}, sort_keys=False),
            "env_yaml": yaml.safe_dump(env, sort_keys=False)}


# ----------------------------------------------------------------------------------------------------------
# methods, papers, the chart


def _method_page(name: str, rows: list[dict]) -> dict:
    info = METHODS.get(name)
    module = sys.modules.get(info.build.__module__)
    prof = next((r for r in rows if r.get("params_m") is not None), None)
    size = f"{prof['params_m']:.2f} M params, {prof['gmacs']:.2f} GMACs per clip at its run's input" if prof \
        else "not profiled in these results (bench profile -m NAME)"
    recipe = {"default_protocol": info.recipe.default_protocol, "defaults": info.recipe.defaults,
              "datasets": info.recipe.datasets, "protocols": info.recipe.protocols}
    return {"name": name, "paper": info.paper.cite(), "code": info.paper.code, "family": info.family,
            "variant_of": info.variant_of, "input": f"{info.input.frames} x {info.input.size}²", "size": size,
            "starts_from": (f"needs {info.needs_pretrained} (random init is 'not the method')"
                            if info.needs_pretrained else "scratch, or a weights source"),
            "literature": ", ".join(info.literature), "results": rows,
            "weights": [(k, w.description) for k, w in info.weights.items()],
            "default_protocol": info.recipe.default_protocol,
            "recipe": yaml.safe_dump(json.loads(json.dumps(recipe, default=str)), sort_keys=False),
            "doc": (module.__doc__ or "").strip() if module else ""}


def _cost_chart(ds: str, rows: list[dict]) -> dict | None:
    import altair as alt

    from bench.report.plots import pareto_front

    pts = [r for r in rows if r.get("gmacs") and r.get("uar_mean") is not None and not np.isnan(r["uar_mean"])]
    if not pts:
        return None
    data = [{"method": r["method"], "protocol": r["protocol"], "family": r["family"], "GMACs": r["gmacs"],
             "UAR": round(r["uar_mean"], 2), "lo": round(r["uar_lo"], 2) if r.get("uar_lo") is not None else None,
             "hi": round(r["uar_hi"], 2) if r.get("uar_hi") is not None else None,
             "params (M)": round(r["params_m"], 2) if r.get("params_m") else None, "selection": r["selection"],
             "interval": f"[{r['uar_lo']:.1f}, {r['uar_hi']:.1f}]" if r.get("uar_lo") is not None else ""}
            for r in pts]
    honest = [i for i, r in enumerate(pts) if r["selection"] != "best_on_test"]
    front = [honest[k] for k in pareto_front([(pts[i]["gmacs"], pts[i]["uar_mean"]) for i in honest])]
    x = alt.X("GMACs:Q", scale=alt.Scale(type="log", nice=False, padding=24), title="GMACs per clip (fvcore, batch 1)")
    base = alt.Chart(alt.Data(values=data))
    points = base.mark_point(filled=True, size=90, opacity=0.85).encode(
        x=x, y=alt.Y("UAR:Q", title="UAR (%)", scale=alt.Scale(zero=False)),
        color=alt.Color("family:N", legend=alt.Legend(title="family")),
        shape=alt.Shape("selection:N", legend=alt.Legend(title="epoch selection")),
        tooltip=["method:N", "protocol:N", "family:N", "UAR:Q", "interval:N", "GMACs:Q", "params (M):Q",
                 "selection:N"])
    bars = base.mark_rule(opacity=0.5).encode(x=x, y="lo:Q", y2="hi:Q", color="family:N")
    layers = [bars, points]
    if len(front) > 1:
        line = [data[i] for i in sorted(front, key=lambda i: pts[i]["gmacs"])]
        layers.insert(0, alt.Chart(alt.Data(values=line)).mark_line(strokeDash=[6, 4], color="crimson").encode(
            x=x, y="UAR:Q"))
    chart = alt.layer(*layers).properties(width="container", height=360, title=f"{ds}: UAR vs GMACs")
    return {"dataset": ds, "n": len(pts), "spec": json.dumps(chart.to_dict())}


def _robustness_chart(ds: str, rows: list[dict]) -> dict | None:
    """UAR vs severity (0 = clean), one small panel per corruption, one line per method."""
    import altair as alt

    data = []
    for r in rows:
        for name in sorted(r["per_corruption"]):
            data += [{"method": r["method"], "corruption": name, "severity": s, "UAR": round(u, 2)}
                     for s, u in zip(*severity_curve(r, name), strict=True)]
    if not data:
        return None
    chart = alt.Chart(alt.Data(values=data)).mark_line(point=True, strokeWidth=1.5).encode(
        x=alt.X("severity:O", title="severity (0 = clean)"), y=alt.Y("UAR:Q", title="UAR (%)"),
        color=alt.Color("method:N", legend=alt.Legend(title="method", orient="top")),
        tooltip=["method:N", "corruption:N", "severity:O", "UAR:Q"],
    ).properties(width=150, height=110).facet(facet=alt.Facet("corruption:N", title=None), columns=5)
    return {"dataset": ds, "n": len(data), "spec": json.dumps(chart.to_dict())}


def _robustness_tables(robust: dict[str, list[dict]]) -> list[dict]:
    out = []
    for ds, rows in robust.items():
        if not rows:
            continue
        names = sorted({c for r in rows for c in r["per_corruption"]})
        out.append({"dataset": ds, "families": list(FAMILY_ORDER), "corruptions": names,
                    "rows": [{"method": r["method"], "protocol": r["protocol"], "clean": r["clean"], "mce": r["mce"],
                              "rmce": r["rmce"], "family": [(r[f"family_{f}"], r[f"mce_{f}"]) for f in FAMILY_ORDER],
                              "per": [r["per_corruption"].get(c) for c in names],
                              "run_ids": r["run_ids"]} for r in rows],
                    "chart": _robustness_chart(ds, rows)})
    return out


def _paper_pages(groups_by_ds: dict[str, list[Group]], literature: list[dict], results_dir: Path) -> list[dict]:
    from bench.report.papers import COLUMN_LABELS, build_table, load_paper, paper_names

    pages = []
    for name in paper_names():
        paper = load_paper(name)
        gpu = _gpu_hours(name, results_dir)
        tables = []
        for t in paper.tables:
            built = build_table(paper, t, groups_by_ds.get(t.dataset, []), literature)
            cols = [c for c in t.columns]
            rows = []
            for r in built:
                cells = []
                for c in cols:
                    for split in t.splits:
                        cell = r["cells"][c if split == "mean" else f"{c}@{split}"]
                        rep = "" if cell["reported"] is None else f"{cell['reported']:.2f}"
                        ours = cell["label"] or ("" if cell["reproduced"] is None else f"{cell['reproduced']:.2f}" + (
                            f" [{cell['lo']:.1f}, {cell['hi']:.1f}]" if cell.get("lo") is not None else ""))
                        cells.append({"reported": rep or "—", "reproduced": ours,
                                      "delta": "" if cell["delta"] is None else f"{cell['delta']:+.2f}",
                                      "has_verdict": c in ("uar", "war"), "verdict": cell.get("verdict") or ""})
                todo, hours, note = gpu.get((r["method"], t.dataset), (0, None, ""))
                rows.append({"row": r["row"], "method": r["method"], "method_link": r["method"] in METHODS,
                             "cells": cells, "todo": todo or "", "gpu_hours": "" if hours is None else f"{hours:.1f}",
                             "gpu_note": note})
            total = sum(v[1] or 0 for (m, d), v in gpu.items() if d == t.dataset)
            missing = sum(1 for (m, d), v in gpu.items() if d == t.dataset and v[0] and v[1] is None)
            fill = (f"{sum(v[0] for (m, d), v in gpu.items() if d == t.dataset)} runs to fill the empty cells"
                    + (f"; {total:.1f} GPU-hours where a GPU profile exists" if total else "")
                    + (f"; {missing} rows without a GPU profile (bench profile -m NAME --device cuda --train)"
                       if missing else ""))
            tables.append({"title": t.title, "columns": [COLUMN_LABELS[c].replace(" (%)", "") for c in cols
                                                         for _ in t.splits], "rows": rows, "fill": fill})
        meta = paper.meta
        cite = f"{meta.get('authors')}, \"{meta.get('title')}\", {meta.get('venue')} {meta.get('year')}"
        pages.append({"name": paper.name, "cite": cite, "tables": tables})
    return pages


def _gpu_hours(paper: str, results_dir: Path) -> dict[tuple[str, str], tuple[int, float | None, str]]:
    """(method, dataset) -> (runs still to do, their GPU-hours where measured, why not) of a paper's plan."""
    from bench.sweep import make_paper_plan

    out: dict[tuple[str, str], list] = {}
    try:
        plan = make_paper_plan(paper, [0], {}, [], results_dir)
    except Exception:  # a plan that cannot be made (a method's spec no longer resolves) leaves the cells blank
        return {}
    for p in plan:
        key = (p.spec.method, p.spec.dataset)
        acc = out.setdefault(key, [0, 0.0, ""])
        if p.done:
            continue
        acc[0] += 1
        hours = p.extra.get("gpu_hours")
        if hours is None:
            acc[1] = None
            acc[2] = p.extra.get("estimate_note", "")
        elif acc[1] is not None:
            acc[1] += hours
    return {k: (v[0], v[1] if v[0] else None, v[2]) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------------------
# the site


def write_site(site_dir: Path, **pages: Any) -> list[Path]:
    """Every page of the site (see `_write_pages` for the arguments); returns the files written. The site is built
    beside the old one and swapped in only when complete, so a full disk or an interrupted build leaves the
    previous site whole (and pages of runs no longer there do not linger)."""
    site_dir = Path(site_dir)
    build, old = site_dir.with_name(f".{site_dir.name}.building"), site_dir.with_name(f".{site_dir.name}.old")
    for leftover in (build, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        files = _write_pages(build, **pages)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    if site_dir.exists():
        site_dir.rename(old)
    build.rename(site_dir)
    shutil.rmtree(old, ignore_errors=True)
    return [site_dir / f.relative_to(build) for f in files]


def _write_pages(site_dir: Path, *, groups_by_ds: dict[str, list[Group]], rows_by_ds: dict[str, list[dict]],
                 runs: Sequence[StoredRun], literature: list[dict], results_dir: Path, stamp: str,
                 robust: dict[str, list[dict]] | None = None, cross: list[dict] | None = None) -> list[Path]:
    import vl_convert

    env = _env()
    datasets = [ds for ds in rows_by_ds if rows_by_ds[ds]]
    robustness = _robustness_tables(robust or {})
    common = {"datasets": datasets, "has_robustness": bool(robustness or cross), "stamp": stamp, "n_runs": len(runs), "results_dir": str(results_dir)}
    files: list[Path] = []

    def page(rel: str, template: str, **ctx: Any) -> None:
        root = "../" * rel.count("/")
        path = site_dir / rel
        atomic_write_text(path, env.get_template(template).render(root=root, **common, **ctx))
        files.append(path)

    static = site_dir / "static"
    for name in ("site.css", "site.js"):
        atomic_write_text(static / name, (HERE / "site_static" / name).read_text())
        files.append(static / name)
    atomic_write_text(static / "vega-bundle.js", vl_convert.javascript_bundle())
    files.append(static / "vega-bundle.js")

    leader_rows: dict[str, list[dict]] = {}
    charts = []
    for ds in datasets:
        pairs = sorted(zip(rows_by_ds[ds], groups_by_ds[ds], strict=True), key=lambda rg: -_score(rg[0]))
        rows = [_leader_row(r, g) for r, g in pairs]
        noisy = [r for r, (_, g) in zip(rows, pairs, strict=True) if noise_level(g)]
        clean = [r for r in rows if r not in noisy]
        leader_rows[ds] = rows
        # latencies compare only on one machine and thread count: the column sorts those of the most common key;
        # the others show marked, with their machine, and sort last
        keys = [r["latency_key"] for r in rows if r["latency_ms"] is not None]
        latency_ref = max(set(keys), key=keys.count) if keys else ""
        per_method = Counter(r["method"] for r in rows)
        for r in rows:
            r["latency_other"] = r["latency_ms"] is not None and r["latency_key"] != latency_ref
            # a method with rows under several protocols names the protocol beside it: on a phone the protocol
            # column is off screen and two `r18_gru` rows would read alike
            r["name_protocol"] = r["protocol"] if per_method[r["method"]] > 1 else ""
        ci_note = ("95% intervals in brackets: a stratified bootstrap over the test videos for one split; over folds, "
                   "the within-fold sampling plus the between-fold spread (bench/stats.py).")
        page(f"{ds}.html", "leaderboard.html.j2", title=f"{ds} leaderboard", dataset=ds, ci_note=ci_note,
             learned=[r for r in clean if not r["did_not_learn"]], not_learned=[r for r in clean if r["did_not_learn"]],
             noisy=noisy, families=sorted({r["family"] for r in rows}), protocols=sorted({r["protocol"] for r in rows}),
             inits=sorted({r["init"] for r in rows}), latency_ref=latency_ref)
        chart = _cost_chart(ds, [r for r in clean])
        if chart:
            charts.append(chart)
    page("cost.html", "cost.html.j2", title="Accuracy vs cost", charts=charts)
    if robustness or cross:
        page("robustness.html", "robustness.html.j2", title="Robustness: corruptions and cross-corpus",
             tables=robustness, cross=cross or [])
    papers = _paper_pages(groups_by_ds, literature, results_dir)
    page("papers.html", "papers.html.j2", title="Papers", papers=papers)
    for p in papers:
        page(f"papers/{p['name']}.html", "paper.html.j2", title=f"Paper tables: {p['name']}", **p)
    by_method: dict[str, list[dict]] = {}
    for rows in leader_rows.values():
        for r in rows:
            by_method.setdefault(r["method"], []).append(r)
    methods = []
    for name in METHODS.names():
        info = METHODS.get(name)
        if info.family == "test" and name not in by_method:
            continue
        m = _method_page(name, by_method.get(name, []))
        methods.append({"name": name, "family": info.family, "variant_of": info.variant_of, "input": m["input"],
                        "paper": info.paper.cite(), "n_rows": len(by_method.get(name, []))})
        page(f"methods/{name}.html", "method.html.j2", title=f"Method {name}", m=m)
    page("methods.html", "methods.html.j2", title="Methods", methods=methods)
    for run in runs:
        page(f"runs/{run.run_id}.html", "run.html.j2", title=f"Run {run.run_id}", r=_run_page(run))
    page("index.html", "index.html.j2", title="dfer-bench results", counts={ds: len(leader_rows[ds]) for ds in datasets},
         papers=papers, n_methods=len(methods))
    return files


def site_size(site_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(site_dir).rglob("*") if p.is_file())


__all__ = ["write_site", "site_size", "reproduce_command"]
