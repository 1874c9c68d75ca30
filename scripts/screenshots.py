"""The dashboard screenshots of README.md and docs/dashboard.md, from real ``emaboard demo`` runs.

Starts a server in a temporary folder, streams three demo runs to it (seed 0 and seed 1 for
20 epochs, and one of a single epoch, whose ema_0.999 has a half-life longer than the run:
a real health warning), then takes the pictures in headless Chromium (Debian's, light
theme, 1440 px wide) with the line charts at TensorBoard's default smoothing of 0.6:

    .venv/bin/python scripts/screenshots.py            # writes docs/img/*.png
    .venv/bin/python scripts/screenshots.py --out /tmp/shots --epochs 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from emaboard_server.local_server import LocalServer

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
PROJECT = "emaboard-demo"


def demo(server: LocalServer, run: str, *args: str) -> None:
    """``emaboard demo --server URL``: one real training streamed to ``server``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    subprocess.run([sys.executable, "-m", "emaboard_server", "demo", "--server", server.url,
                    "--no-serve", "--project", PROJECT, "--run", run, *args],
                   env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)


def runs_by_name(server: LocalServer) -> dict[str, dict[str, Any]]:
    runs = httpx.get(f"{server.url}/api/runs", params={"project": PROJECT}, timeout=30).json()
    return {run["name"]: run for run in runs}


def ready(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
    page.wait_for_timeout(500)  # let Plotly finish its transitions


def shoot(page: Page, server: LocalServer, runs: dict[str, dict[str, Any]], out: Path) -> None:
    seed0, seed1, short = (runs[name]["id"] for name in ("digits-seed0", "digits-seed1",
                                                          "digits-1-epoch"))
    ready(page, f"{server.url}/run.html?id={seed0}")
    page.screenshot(path=out / "dashboard.png", full_page=True)
    page.locator("#sec-scalars").screenshot(path=out / "scalars.png")
    page.locator("#config-search").fill("^(lr|momentum|decays|swa|label_noise)")
    page.locator("#sec-config").screenshot(path=out / "config.png")

    ready(page, f"{server.url}/run.html?id={short}")
    page.locator("#sec-health").screenshot(path=out / "health.png")

    page.goto(f"{server.url}/?project={PROJECT}")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 3")
    page.locator(".columns-picker summary").click()
    for column in ("config.epochs", "config.lr", "config.label_noise"):
        page.get_by_label(column, exact=True).check()
    page.locator(".columns-picker summary").click()
    page.screenshot(path=out / "runs.png")

    ready(page, f"{server.url}/compare.html?ids={seed0},{seed1}")
    page.screenshot(path=out / "compare.png", full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, LocalServer(Path(tmp) / "data") as server:
        for seed in (0, 1):
            demo(server, f"digits-seed{seed}", "--seed", str(seed), "--epochs", str(args.epochs))
        demo(server, "digits-1-epoch", "--epochs", "1")
        runs = runs_by_name(server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium,
                                                 args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 900},
                                          color_scheme="light")
            context.add_init_script(  # TensorBoard's default smoothing
                "localStorage.setItem('emaboard-display', JSON.stringify("
                "{smoothing: 0.6, xMode: 'step'}))")
            shoot(context.new_page(), server, runs, args.out)
            browser.close()
    for path in sorted(args.out.glob("*.png")):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


if __name__ == "__main__":
    main()
