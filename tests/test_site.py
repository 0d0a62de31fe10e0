"""The results site in a real browser: Debian's Chromium driven by Playwright over the site `bench report` writes
from the curated examples. Every page loads with no console error and no request leaving the machine, every
internal link resolves, sorting and filtering the leaderboard work, and the accuracy-vs-cost chart draws its points
and names a method on hover. Run locally with `.venv/bin/python -m pytest tests/test_site.py` after
`apt-get install chromium` (CI installs it); skipped without Chromium, except under CI."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bench.report.site_browser import chromium_path
from tests.conftest import REPO, bench_cli

pytestmark = pytest.mark.slow


def _have_browser() -> bool:
    try:
        chromium_path()
        import playwright  # noqa: F401
    except Exception:
        return False
    return True


if not _have_browser():
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Chromium and playwright for tests/test_site.py (.ci/run installs them)")
    pytest.skip("no Chromium / playwright here (apt-get install chromium; pip install -e '.[dev]')",
                allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rep")
    bench_cli(["report", "--results", str(REPO / "results" / "examples"), "--out", str(out)], out, check=True)
    return out / "site"


@pytest.fixture(scope="module")
def browser():
    from bench.report.site_browser import launch

    with launch() as b:
        yield b


def _open(browser, path: Path, problems: list[str]):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.on("console", lambda m: problems.append(f"{path.name}: console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"{path.name}: page error {e}"))
    page.on("request", lambda r: problems.append(f"{path.name}: request {r.url}")
            if not r.url.startswith(("file://", "data:", "about:")) else None)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page


def test_every_page_loads_offline_and_every_link_resolves(site, browser):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 30 and (site / "index.html").is_file()
    problems: list[str] = []
    broken = []
    for path in pages:
        page = _open(browser, path, problems)
        if path.name == "cost.html":
            page.wait_for_selector(".chart svg")
        for href in page.eval_on_selector_all("a[href], link[href], script[src]",
                                              "els => els.map(e => e.href || e.src)"):
            url = urlparse(href)
            if url.scheme != "file":
                broken.append(f"{path.name}: leaves the site: {href}")
            elif not Path(unquote(url.path)).is_file():
                broken.append(f"{path.name}: {href}")
        page.close()
    assert not problems, problems[:10]
    assert not broken, broken[:10]
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert size < 8_000_000, size


def _uar_column(page) -> list[float]:
    heads = page.eval_on_selector_all("#leader thead th", "ths => ths.map(th => th.textContent.trim())")
    cells = page.eval_on_selector_all(f"#leader tbody tr:not([hidden]) td:nth-child({heads.index('UAR %') + 1})",
                                      "tds => tds.map(td => td.getAttribute('data-v'))")
    return [float(v) for v in cells if v]


def test_leaderboard_sorts_and_filters(site, browser):
    problems: list[str] = []
    page = _open(browser, site / "synthetic.html", problems)
    header = page.locator("#leader th", has_text="UAR %")
    header.click()
    desc = _uar_column(page)
    assert len(desc) > 5 and desc == sorted(desc, reverse=True)
    header.click()
    assert _uar_column(page) == sorted(desc)
    families = page.eval_on_selector_all("#leader tbody tr", "rows => rows.map(r => r.dataset.family)")
    page.select_option("select[data-filter=family][data-table=leader]", "3D CNN")
    shown = page.eval_on_selector_all("#leader tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.family)")
    assert shown and set(shown) == {"3D CNN"} and len(shown) == families.count("3D CNN") < len(families)
    page.select_option("select[data-filter=family][data-table=leader]", "")
    assert len(page.eval_on_selector_all("#leader tbody tr:not([hidden])", "r => r")) == len(families)
    # every other filter hides exactly the rows whose attribute differs, on both tables (learned / did not learn)
    rows_of = "rows => rows.map(r => [r.dataset.protocol, r.dataset.init, r.dataset.learned])"
    every = page.eval_on_selector_all("#leader tbody tr, #apart tbody tr", rows_of)
    for name, index in (("protocol", 0), ("init", 1), ("learned", 2)):
        values = sorted({row[index] for row in every})
        assert len(values) > 1, (name, values)
        for value in values:
            page.select_option(f"select[data-filter={name}]", value)
            shown = page.eval_on_selector_all("#leader tbody tr:not([hidden]), #apart tbody tr:not([hidden])",
                                              rows_of)
            assert [r[index] for r in shown] == [value] * sum(r[index] == value for r in every), (name, value)
        page.select_option(f"select[data-filter={name}]", "")
    assert page.eval_on_selector_all("#apart tbody tr", "rs => rs.map(r => r.dataset.learned)") and \
        set(page.eval_on_selector_all("#apart tbody tr", "rs => rs.map(r => r.dataset.learned)")) == {"no"}
    badge = page.locator("#leader .badge.selection-last").first
    assert "selection: the last epoch" in badge.get_attribute("title")
    assert not problems, problems


def test_cost_chart_draws_points_and_names_a_method_on_hover(site, browser):
    problems: list[str] = []
    page = _open(browser, site / "cost.html", problems)
    chart = page.locator(".chart").first
    page.wait_for_selector(".chart svg .mark-symbol.role-mark path")
    points = page.locator(".chart").first.locator(".mark-symbol.role-mark path")  # the points, not the legend symbols
    assert points.count() == int(chart.get_attribute("data-points")) > 5
    points.first.hover(force=True)
    tip = page.wait_for_selector("#vg-tooltip-element", state="visible")
    text = tip.inner_text()
    methods = {p.stem for p in (site / "methods").glob("*.html")}
    assert any(re.search(rf"\b{re.escape(m)}\b", text) for m in methods), text
    assert not problems, problems


def test_robustness_page_matches_the_runs_and_draws_every_severity(site, browser):
    """The corruption table's clean UAR is each run's own clean evaluation (corruptions/clean*/eval.json), the
    family columns agree with the report's CSV, and the chart draws one point per (method, corruption, severity)."""
    import csv
    import json

    problems: list[str] = []
    page = _open(browser, site / "index.html", problems)
    assert page.locator("header nav a", has_text="robustness").count() == 1
    page = _open(browser, site / "robustness.html", problems)
    heads = page.eval_on_selector_all("#robust-synthetic thead th", "ths => ths.map(th => th.textContent.trim())")
    rows = page.eval_on_selector_all(
        "#robust-synthetic tbody tr",
        "trs => trs.map(tr => [...tr.querySelectorAll('td')].map(td => [td.textContent.trim(), td.getAttribute('data-v')]))")
    assert len(rows) >= 4
    with open(site.parent / "tables" / "robustness_synthetic.csv", newline="") as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    examples = REPO / "results" / "examples" / "runs" / "synthetic" / "fold1"
    for cells in rows:
        method = cells[0][0]
        clean = float(cells[heads.index("clean UAR %")][1])
        evals = [json.loads(p.read_text()) for p in examples.glob(f"{method}/*/corruptions/clean*/eval.json")]
        assert evals, method
        assert abs(clean - 100 * sum(e["metrics"]["uar"] for e in evals) / len(evals)) < 1e-6
        assert abs(float(cells[heads.index("temporal")][1]) - float(table[method]["temporal_uar"])) < 1e-6
        assert abs(float(cells[heads.index("mCE")][1]) - float(table[method]["mce"])) < 1e-6
    chart = page.locator("#chart-robust-synthetic")
    page.wait_for_selector("#chart-robust-synthetic svg .mark-symbol.role-mark path")
    n_points = page.locator("#chart-robust-synthetic .mark-symbol.role-mark path").count()
    assert n_points == int(chart.get_attribute("data-points")) == len(rows) * 15 * 6
    assert page.locator("#cross tbody tr").count() >= 1
    assert not problems, problems
