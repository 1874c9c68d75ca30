"""Screenshots of real ``emaboard demo`` runs for the README and docs/dashboard.md.

Usage: ``.venv/bin/python scripts/demo_screenshots.py [--out docs/img]``. Starts a server
(a temporary data folder), runs ``emaboard demo --no-serve --server URL`` against it twice
(the default 20 epochs, seeds 0 and 1; the first one's terminal output is printed), and one
short real training with ema_core that goes wrong on purpose for the health panel (an EMA of
decay 0.9999 after 300 steps, an SWA of a BatchNorm model evaluated without ``update_bn``).
Then it opens the pages in headless Chromium (Debian's ``/usr/bin/chromium``, light theme,
1440 px wide, the line charts at TensorBoard's default smoothing of 0.6) and saves
``dashboard.png`` (the whole run page), ``whatif.png``, ``scalars.png``, ``config.png``,
``health.png`` (sections of the run page), ``runs.png`` (the runs page with config columns)
and ``compare.png`` (the two demo runs compared).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from emaboard_server.local_server import LocalServer

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
PROJECT = "emaboard-demo"
# TensorBoard's default smoothing, set before the pages load.
SMOOTHING = ("localStorage.setItem('emaboard-display', "
             "JSON.stringify({smoothing: 0.6, xMode: 'step'}))")


def demo(server: LocalServer, folder: str, seed: int) -> str:
    """One ``emaboard demo`` streamed to ``server``; its terminal output."""
    result = subprocess.run(
        [sys.executable, "-m", "emaboard_server", "demo", "--no-serve", "--server",
         server.url, "--run", f"digits-seed{seed}", "--seed", str(seed)],
        cwd=folder, capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "110"},
    )
    return result.stdout


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


def ready(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
    page.wait_for_timeout(800)  # Plotly transitions


def shoot(page: Page, server: LocalServer, runs: dict[str, dict[str, Any]], out: Path) -> None:
    seed0, seed1, unhealthy = (runs[name]["id"] for name in (
        "digits-seed0", "digits-seed1", "swa-without-update-bn"))
    ready(page, f"{server.url}/run.html?id={seed0}")
    page.wait_for_function("document.getElementById('chart-whatif').dataset.points")
    page.screenshot(path=out / "dashboard.png", full_page=True)
    page.locator("#sec-whatif").screenshot(path=out / "whatif.png")
    page.locator("#sec-scalars").screenshot(path=out / "scalars.png")
    page.locator("#config-search").fill("^(lr|momentum|decays|swa|label_noise|posthoc)")
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
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory() as folder,
          LocalServer(data_dir=Path(folder) / "data") as server):
        started = time.perf_counter()
        print(demo(server, folder, 0))
        print(f"(demo: {time.perf_counter() - started:.1f} s wall)")
        demo(server, folder, 1)
        unhealthy_run(server, Path(folder) / "unhealthy")
        runs = {run["name"]: run for run in httpx.get(f"{server.url}/api/runs").json()}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 900},
                                          color_scheme="light")
            context.add_init_script(SMOOTHING)
            shoot(context.new_page(), server, runs, args.out)
            browser.close()
    print("wrote", ", ".join(str(path) for path in sorted(args.out.glob("*.png"))))


if __name__ == "__main__":
    main()
