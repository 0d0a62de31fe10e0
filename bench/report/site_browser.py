"""A headless Chromium for looking at the results site (tests, screenshots): Debian's `chromium` (the path in
$DFER_CHROMIUM, else /usr/bin/chromium) driven by Playwright's Python client, which never downloads a browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.errors import BenchError

# the flags a closed network needs: no background connections, no component updates, no sandbox as root
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def chromium_path() -> Path:
    path = Path(os.environ.get("DFER_CHROMIUM", "/usr/bin/chromium"))
    if not path.is_file():
        raise BenchError(f"{path}: no Chromium; install Debian's (apt-get install chromium) or set $DFER_CHROMIUM")
    return path


@contextmanager
def launch() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BenchError("playwright is not installed: pip install -e '.[dev]' (the site's browser tests and "
                         "screenshots drive Chromium through it)") from None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path()), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
