"""Screenshot dsr HTML reports with headless Chromium (on demand, not part of CI).

Usage::

    python tests/browser/screenshot.py results/sub-01/report.html results/cohort/report.html \
        --out screenshots/

Needs the Debian package ``chromium`` (``apt-get install -y chromium``) or ``$CHROMIUM``. Writes
``<out>/<parent>_<name>.png`` per page (full page height up to ``--height`` pixels) and exits
non-zero if a page fails to render.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str:
    """Path of a Chromium-family browser: ``$CHROMIUM`` or the first one on PATH."""
    for name in (os.environ.get("CHROMIUM"), *CANDIDATES):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("no Chromium found: apt-get install -y chromium, or set CHROMIUM=/path/to/browser")


def screenshot(browser: str, page: Path, png: Path, width: int, height: int) -> None:
    """Render ``page`` (a local HTML file) to ``png`` at ``width`` x ``height`` pixels."""
    png.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--screenshot={png.resolve()}",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not png.is_file():
        sys.exit(f"{page}: chromium failed ({proc.returncode}): {proc.stderr[-1000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="+", type=Path, help="HTML files")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=6000)
    args = parser.parse_args(argv)
    browser = find_browser()
    for page in args.pages:
        png = args.out / f"{page.parent.name}_{page.stem}.png"
        screenshot(browser, page, png, args.width, args.height)
        print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
