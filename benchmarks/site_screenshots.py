"""Screenshots of the results site at desktop and phone widths, through Debian's Chromium driven by Playwright.

    .venv/bin/python benchmarks/site_screenshots.py [reports/site] [--out reports/screenshots]

Writes <page>-desktop.png (1366 px wide) and <page>-phone.png (390 px) for the index, every leaderboard, the cost
chart, one paper, one method and one run page, so a person can look at what the site shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report.site_browser import launch  # noqa: E402

WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}


def pages(site: Path) -> list[Path]:
    picks = [site / "index.html", site / "cost.html", *sorted(site.glob("*.html"))]
    for folder in ("papers", "methods", "runs"):
        found = sorted((site / folder).glob("*.html"))
        picks += found[:1]
    out, seen = [], set()
    for p in picks:
        if p not in seen and p.name not in ("methods.html", "papers.html"):
            out.append(p)
            seen.add(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("site", nargs="?", type=Path, default=Path("reports/site"))
    ap.add_argument("--out", type=Path, default=Path("reports/screenshots"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with launch() as browser:
        for name, (w, h) in WIDTHS.items():
            page = browser.new_page(viewport={"width": w, "height": h})
            for p in pages(args.site):
                page.goto(p.resolve().as_uri())
                page.wait_for_timeout(800 if p.name in ("cost.html", "robustness.html") else 100)
                shot = args.out / f"{p.parent.name + '-' if p.parent != args.site else ''}{p.stem}-{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                print(shot)
            page.close()


if __name__ == "__main__":
    main()
