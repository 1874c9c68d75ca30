"""Screenshots of a real ``emaboard demo`` run for the README and docs/dashboard.md.

Usage: ``.venv/bin/python scripts/demo_screenshots.py [--out docs/img]``. Starts a server
(a temporary data folder), runs ``emaboard demo --no-serve --server URL`` against it (the
default 20 epochs, seed 0), prints the demo's terminal output, then opens the run page in
headless Chromium (Debian's ``/usr/bin/chromium``) and saves ``dashboard.png`` (the whole
page) and ``whatif.png`` (the What-if decay panel).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from emaboard_server.local_server import LocalServer

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory() as folder,
          LocalServer(data_dir=Path(folder) / "data") as server):
        started = time.perf_counter()
        demo = subprocess.run(
            [sys.executable, "-m", "emaboard_server", "demo", "--no-serve", "--server",
             server.url, "--run", "digits-seed0"],
            cwd=folder, capture_output=True, text=True, check=True,
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "110"},
        )
        print(demo.stdout)
        print(f"(demo: {time.perf_counter() - started:.1f} s wall)")
        (run,) = httpx.get(f"{server.url}/api/runs").json()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{server.url}/run.html?id={run['id']}")
            page.wait_for_function("document.body.dataset.state === 'ready'")
            page.wait_for_function("document.getElementById('chart-whatif').dataset.points")
            page.wait_for_timeout(800)  # Plotly transitions
            page.screenshot(path=args.out / "dashboard.png", full_page=True)
            page.locator("#sec-whatif").screenshot(path=args.out / "whatif.png")
            browser.close()
    print(f"wrote {args.out / 'dashboard.png'} and {args.out / 'whatif.png'}")


if __name__ == "__main__":
    main()
