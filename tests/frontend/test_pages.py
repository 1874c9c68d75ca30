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
    assert scripts == ["/js/first_load.js"]  # it loads run_page.js
    assert 'import("./run_page.js")' in (FRONTEND / "js" / "first_load.js").read_text()
    graph = module_graph(FRONTEND / "js" / "run_page.js")
    assert sorted(links) == sorted(graph - set(scripts))
    assert '<link rel="preload" href="/vendor/plotly.min.js" as="script">' in html
    assert '<script src="/vendor/plotly.min.js">' not in html  # loaded by js/plotly.js


def test_first_requests_go_out_before_the_rest_of_the_page_loads() -> None:
    # first_load.js sends the data requests as soon as it and its imports are in (async,
    # preloaded at a high priority, before Plotly.js and the CSS); the rest of the page's
    # modules are preloaded only after that (an inert template that first_load.js adds), so
    # that they do not take the browser's 6 connections to the server first.
    html = (FRONTEND / "run.html").read_text()
    assert re.search(r'<script type="module" async src="/js/first_load.js"[^>]*>', html)
    head, template = html.split('<template id="page-modules">')
    template = template.split("</template>")[0]
    first = module_graph(FRONTEND / "js" / "first_load.js") - {"/js/first_load.js"}
    early = re.findall(r'<link rel="modulepreload" href="([^"]+)" fetchpriority="high">', head)
    assert sorted(early) == sorted(first)
    assert sorted(re.findall(r'<link rel="modulepreload" href="([^"]+)"', head)) == sorted(first)
    later = set(re.findall(r'<link rel="modulepreload" href="([^"]+)">', template))
    assert later == module_graph(FRONTEND / "js" / "run_page.js") - first - {"/js/first_load.js"}
    assert head.index('src="/js/first_load.js"') < head.index("/css/style.css")
    assert "document.getElementById(\"page-modules\")" in (
        FRONTEND / "js" / "first_load.js").read_text()


def test_inline_first_requests_send_the_token_of_token_js() -> None:
    # run.html's inline script reads the tab's token before token.js has loaded: same key.
    html = (FRONTEND / "run.html").read_text()
    token_js = (FRONTEND / "js" / "token.js").read_text()
    key = re.search(r'const STORAGE_KEY = "([^"]+)";', token_js)
    assert key is not None
    assert f'sessionStorage.getItem("{key.group(1)}")' in html
    assert html.index("window.emaboardFirstRequests") < html.index('src="/js/first_load.js"')
