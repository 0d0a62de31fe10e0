"""What a person reads without the site: the accuracy-vs-GMACs PNG of the curated examples (no two labels overlap,
none sits on a marker, label-noise runs left out), the compact main table with its row-for-row protocol table, and
`bench list datasets` at 80 columns."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO, bench_cli

EXAMPLES = REPO / "results" / "examples"


@pytest.fixture(scope="module")
def synthetic_rows() -> list[dict]:
    from bench.report import load_all_literature
    from bench.report.aggregate import group_runs, summarise_group
    from bench.report.uncertainty import add_intervals
    from bench.store import load_runs

    runs, _ = load_runs(EXAMPLES)
    groups = [g for g in group_runs(runs)["synthetic"] if g.protocol.get("training", "trained") == "trained"]
    rows = [summarise_group(g, load_all_literature()) for g in groups]
    add_intervals(groups, rows)
    return rows


def test_cost_plot_labels_do_not_overlap_and_leave_out_label_noise(synthetic_rows):
    import matplotlib

    matplotlib.use("Agg")
    from bench.report.plots import accuracy_vs_gmacs_figure, clean_rows

    noisy = [r for r in synthetic_rows if "label_noise=0." in str(r.get("input"))]
    assert noisy, "the curated examples hold label-noise runs (r3d18 / nr_dfernet / ial)"
    fig = accuracy_vs_gmacs_figure({"synthetic": synthetic_rows})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [r for r in clean_rows(synthetic_rows) if r["gmacs"] is not None and r["uar_mean"] is not None]
    assert len(shown) == len(synthetic_rows) - len(noisy)
    for ax in fig.axes[:2]:  # UAR, WAR panels (the last axis is the legend)
        labels = [t for t in ax.texts if t.get_text() and "not shown" not in t.get_text()]
        assert len(labels) == len(shown)
        assert not any("label_noise" in t.get_text() for t in labels)
        boxes = [t.get_window_extent(renderer) for t in labels]
        for i, a in enumerate(boxes):
            for j in range(i + 1, len(boxes)):
                assert not a.overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
        centres = ax.transData.transform([(r["gmacs"], r["uar_mean" if ax is fig.axes[0] else "war_mean"])
                                          for r in shown])
        for t, box in zip(labels, boxes, strict=True):
            inside = [c for c in centres if box.x0 < c[0] < box.x1 and box.y0 < c[1] < box.y1]
            assert not inside, f"label {t.get_text()!r} covers a marker"


@pytest.mark.slow
def test_main_table_is_compact_and_protocol_table_follows_it_row_for_row(tmp_path):
    out = tmp_path / "rep"
    bench_cli(["report", "--results", str(EXAMPLES), "--out", str(out), "--no-plots", "--no-site"], tmp_path,
              check=True)
    main = (out / "tables" / "synthetic.md").read_text().splitlines()
    proto = (out / "tables" / "synthetic_protocol.md").read_text().splitlines()
    main_rows = [ln for ln in main if ln.startswith("| ") and not ln.startswith("| method")]
    proto_rows = [ln for ln in proto if ln.startswith("| ") and not ln.startswith("| method")]
    main_rows, proto_rows = main_rows[1:], proto_rows[1:]  # drop the |---| rule
    assert len(main_rows) == len(proto_rows) > 10
    header = next(ln for ln in main if ln.startswith("| method"))
    assert header.count("|") - 1 <= 12 and "frames x size" not in header
    for m, p in zip(main_rows, proto_rows, strict=True):
        assert m.split("|")[1:3] == p.split("|")[1:3]  # the same method and protocol cells, in the same order
    noise = [ln for ln in main_rows if "label_noise=0.4" in ln]
    assert noise and all(re.search(r"\[\d+\.\d, \d+\.\d\]", ln) for ln in main_rows if "did not" not in ln)


def test_list_datasets_fits_80_columns_with_whole_root_paths(tmp_path):
    long_root = tmp_path / ("a-rather-long-folder-name-for-the-data" * 2) / "DFEW"
    proc = bench_cli(["list", "datasets"], tmp_path, {"COLUMNS": "80", "DFER_DFEW_ROOT": str(long_root)}, check=True)
    lines = proc.stdout.splitlines()
    table = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("roots"))]
    assert max(len(ln) for ln in table) <= 80, max(table, key=len)
    for name in ("dfew", "ferv39k", "mafw", "synthetic"):
        assert sum(ln.split()[:1] == [name] for ln in table) == 1, name
    assert any(str(long_root) in ln for ln in lines), "a root path is printed whole, on one line"


def test_list_methods_fits_80_columns_with_whole_families_and_starting_points(tmp_path):
    """Every line of `bench list methods` at 80 columns fits, and each method's family and starting point
    (scratch, or the pretrained weights it needs) are printed whole (the JSON holds the full values)."""
    rows = json.loads(bench_cli(["list", "methods", "--json"], tmp_path, check=True).stdout)
    lines = bench_cli(["list", "methods"], tmp_path, {"COLUMNS": "80"}, check=True).stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    for r in rows:
        if r["variant_of"] is None:
            (line,) = [ln for ln in lines if ln.split()[:1] == [r["name"]]]
            start = f"needs {r['needs_pretrained']}" if r["needs_pretrained"] else "scratch"
            assert r["family"] in line and start in line and "…" not in line, line
