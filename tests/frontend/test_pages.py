"""The pages' HTML: run.html preloads exactly the run page's module graph (one round trip
instead of one per import level), the first requests' modules first, and Plotly, which the
page loads itself."""

from __future__ import annotations

import re
from pathlib import Path

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
IMPORT = re.compile(r'^import [^;]*?from "(\.[^"]+)";', re.MULTILINE | re.DOTALL)


def module_graph(entry: Path) -> set[str]:
    """Every module ``entry`` imports, directly or not, as /js/... paths (entry included)."""
    seen: set[Path] = set()
    stack = [entry.resolve()]
    while stack:
        module = stack.pop()
        if module in seen:
            continue
        seen.add(module)
        stack += [(module.parent / target).resolve()
                  for target in IMPORT.findall(module.read_text())]
    return {"/" + str(path.relative_to(FRONTEND)) for path in seen}


def test_run_page_preloads_its_whole_module_graph() -> None:
    html = (FRONTEND / "run.html").read_text()
    links = re.findall(r'<link rel="modulepreload" href="([^"]+)"', html)
    scripts = re.findall(r'<script type="module"[^>]* src="([^"]+)"', html)
    assert scripts == ["/js/first_load.js", "/js/run_page.js"]
    graph = module_graph(FRONTEND / "js" / "run_page.js")
    assert set(links) == graph - set(scripts)
    assert '<link rel="preload" href="/vendor/plotly.min.js" as="script">' in html
    assert '<script src="/vendor/plotly.min.js">' not in html  # loaded by js/plotly.js


def test_first_requests_load_first() -> None:
    # first_load.js sends the data requests: it runs as soon as its own imports are in
    # (async), and those are asked for before the other modules, Plotly.js and the CSS.
    html = (FRONTEND / "run.html").read_text()
    # The rest come at a low priority, so that they do not take the browser's 6
    # connections to the server before the data requests (sent at a high priority).
    assert re.search(r'<script type="module" async src="/js/first_load.js"[^>]*>', html)
    first = module_graph(FRONTEND / "js" / "first_load.js") - {"/js/first_load.js"}
    links = re.findall(r'<link rel="([^"]*preload)" href="([^"]+)"(?: fetchpriority="(\w+)")?', html)
    assert {(rel, href, priority) for rel, href, priority in links[:len(first)]} == {
        ("modulepreload", href, "high") for href in first}
    assert all(priority == "low" for rel, href, priority in links[len(first):]
               if rel == "modulepreload")
    assert '<script type="module" src="/js/run_page.js" fetchpriority="low">' in html
    assert html.index('src="/js/first_load.js"') < html.index("/css/style.css")


def test_inline_first_requests_send_the_token_of_token_js() -> None:
    # run.html's inline script reads the tab's token before token.js has loaded: same key.
    html = (FRONTEND / "run.html").read_text()
    token_js = (FRONTEND / "js" / "token.js").read_text()
    key = re.search(r'const STORAGE_KEY = "([^"]+)";', token_js)
    assert key is not None
    assert f'sessionStorage.getItem("{key.group(1)}")' in html
    assert html.index("window.emaboardFirstRequests") < html.index('src="/js/first_load.js"')
