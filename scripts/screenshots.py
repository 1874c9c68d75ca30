"""The dashboard screenshots of README.md and docs/dashboard.md, from real ``emaboard demo`` runs.

Starts a server in a temporary folder, streams two demo runs to it (seeds 0 and 1), and one
short real training with ema_core that goes wrong on purpose for the health panel (an EMA of
decay 0.9999 after 300 steps, an SWA evaluated without ``update_bn``), then takes the
pictures in headless Chromium (Debian's, light theme, 1440 px wide) with the line charts at
TensorBoard's default smoothing of 0.6:

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


def unhealthy_run(server: LocalServer, run_dir: Path) -> None:
    """A real training whose averaging goes wrong twice: ema_0.9999 (half-life 6,931 steps)
    after 300 steps, and an SWA of a BatchNorm model evaluated without update_bn."""
    import torch
    from torch import nn

    from ema_core import EMA, SWA, Monitor, evaluate_all

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
    ema, swa = EMA(model, decays=(0.9999,)), SWA(model, start_step=150)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(512, 8), torch.randint(0, 2, (512,))

    def accuracy(m: nn.Module) -> dict[str, float]:
        m.eval()
        with torch.no_grad():
            return {"accuracy": float((m(x).argmax(1) == y).float().mean())}

    with Monitor("health-example", "swa-without-update-bn", server.url, run_dir=run_dir,
                 tags=["example"]) as mon:
        mon.watch(ema, swa, stats_every=10)
        for step in range(300):
            batch = torch.randint(0, 512, (32,))
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update(model)
            swa.update(model)
            mon.step(step, {"loss": loss.item()})
            if step % 100 == 99:
                mon.log_eval(step, evaluate_all(model, [ema, swa], accuracy))


def runs_by_name(server: LocalServer) -> dict[str, dict[str, Any]]:
    runs = httpx.get(f"{server.url}/api/runs", timeout=30).json()
    return {run["name"]: run for run in runs}


def ready(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
    page.wait_for_timeout(500)  # let Plotly finish its transitions


def shoot(page: Page, server: LocalServer, runs: dict[str, dict[str, Any]], out: Path) -> None:
    seed0, seed1, unhealthy = (runs[name]["id"] for name in (
        "digits-seed0", "digits-seed1", "swa-without-update-bn"))
    ready(page, f"{server.url}/run.html?id={seed0}")
    page.screenshot(path=out / "dashboard.png", full_page=True)
    page.locator("#sec-scalars").screenshot(path=out / "scalars.png")
    page.locator("#config-search").fill("^(lr|momentum|decays|swa|label_noise)")
    page.locator("#sec-config").screenshot(path=out / "config.png")

    ready(page, f"{server.url}/run.html?id={unhealthy}")
    page.locator("#sec-health").screenshot(path=out / "health.png")

    page.goto(f"{server.url}/?project={PROJECT}")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 2")
    page.locator(".columns-picker summary").click()
    for column in ("config.seed", "config.lr", "config.label_noise"):
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
        unhealthy_run(server, Path(tmp) / "unhealthy")
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
