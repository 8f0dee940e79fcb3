"""The book as a reader gets it: every page of the smoke-scale build, opened in Debian's
chromium (headless, driven by Playwright, no browser download) with every request that is
not to this machine blocked, so no network.  After MathJax has typeset a page: no raw TeX is
left in a math element, every image has loaded, no output shows an error or a traceback, the
claims table is on the root page, the .md and .ipynb downloads are there, and every link
inside the book resolves (the file, and the anchor in it).

Slow (it needs the smoke build of tests/conftest.py).  Chromium is installed where that can
be done (scripts/ensure-chromium.sh, as for the data); otherwise the tests skip, saying how to
get it."""

from __future__ import annotations

import functools
import html as htmlmod
import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from hessnoise import book
from hessnoise.claims import CLAIMS
from hessnoise.report import repo_root

ROOT = repo_root(Path(__file__).parent)
# Chromium's own traffic (updates, sync, safe browsing) off; as root it needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    # no host resolves but this one: a request that escapes the route below fails too
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
# Text that an output cell shows when code failed.
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|\b\w+(Error|Exception): |Warning: ")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        try:
            proc = subprocess.run(
                ["sh", str(ROOT / "scripts" / "ensure-chromium.sh")],
                capture_output=True,
                text=True,
            )
            why = proc.stderr.strip()
        except OSError as err:
            why = str(err)
        found = shutil.which("chromium")
        if found is None:
            pytest.skip(
                "Debian's chromium is not installed and could not be installed here "
                f"({why}); install it with `sudo apt-get install chromium`"
            )
    return found


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports what matters
        pass


@pytest.fixture(scope="session")
def served(smoke_book):
    """``_build/html`` of the smoke build on a localhost HTTP server (file:// blocks some
    loads that a published site allows)."""
    html = smoke_book[0] / "html"
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield html, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


# What the page looks like once MathJax is done (run in the page).
INSPECT = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const maths = [...document.querySelectorAll('.math')];
  const raw = maths.filter(el => {
    const copy = el.cloneNode(true);
    copy.querySelectorAll('mjx-container').forEach(c => c.remove());
    return !el.querySelector('mjx-container') || /\\\\[(\\[]|\\$\\$/.test(copy.textContent);
  }).map(el => el.textContent.slice(0, 80));
  const images = [...document.images];
  return {
    mathjax: !!(window.MathJax && MathJax.version),
    maths: maths.length,
    rendered: document.querySelectorAll('.math mjx-container').length,
    merrors: document.querySelectorAll('mjx-merror').length,
    // MathJax shows an undefined macro (a lost \\R, say) as its name in red
    undefined: document.querySelectorAll('.math mjx-container [style*="color: red"]').length,
    raw: raw,
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    outputs: [...document.querySelectorAll('.cell_output')].map(o => o.innerText),
    stderr: document.querySelectorAll('.output.stderr, .output.traceback, .output.error').length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    tables: [...document.querySelectorAll('table')].map(t => ({
      head: [...t.querySelectorAll('thead th')].map(th => th.innerText.trim()),
      rows: t.querySelectorAll('tbody tr').length,
    })),
    downloads: [...document.querySelectorAll('a.btn-download-source-button, '
      + '.dropdown-download-buttons a, a[href*="_sources/"]')].map(a => a.href),
  };
}"""


@pytest.fixture(scope="session")
def pages(served, chromium):
    """Every page of the book (the ``_toc.yml`` pages, then the others Sphinx made, such as
    the index and the search page; ``index.html`` must forward to the root page), inspected in
    chromium with the network blocked: ``({path: inspection}, requests blocked or failed)``."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install -r requirements.txt"
    )
    html, base = served
    toc = [f"{p}.html" for p in book.toc_files(ROOT)]
    others = sorted(
        f.relative_to(html).as_posix()
        for f in html.rglob("*.html")
        if not f.relative_to(html).parts[0].startswith("_") and f.name != "index.html"
    )
    assert set(toc) <= set(others), "a page of _toc.yml is missing from the HTML"
    paths = toc + [p for p in others if p not in toc]  # genindex, search, ...
    blocked: list[str] = []

    def only_here(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    seen = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.route("**/*", only_here)
        page = context.new_page()
        # a file the build lacks (a MathJax part, an image) shows as a failed local request
        page.on("response", lambda r: r.status >= 400 and blocked.append(f"{r.status} {r.url}"))
        for path in paths:
            page.goto(f"{base}/{path}", wait_until="load")
            seen[path] = page.evaluate(INSPECT)
        # the site's front door forwards to the root page
        page.goto(f"{base}/index.html")
        page.wait_for_url(f"{base}/{toc[0]}")
        browser.close()
    return seen, blocked


def test_math_is_typeset_offline_with_no_raw_tex_left(pages):
    seen, blocked = pages
    assert not blocked, f"requests off this machine or failed: {sorted(set(blocked))[:5]}"
    total = 0
    for path, info in seen.items():
        assert info["mathjax"], f"{path}: MathJax did not load"
        assert not info["raw"], f"{path}: math left as TeX: {info['raw'][:3]}"
        assert info["merrors"] == 0, f"{path}: MathJax reported TeX errors"
        assert info["undefined"] == 0, f"{path}: undefined TeX macros"
        assert info["rendered"] >= info["maths"]
        total += info["rendered"]
    # every chapter derives something: a book without typeset math would be a broken build
    assert total > 100


def test_every_image_loads(pages):
    seen, _ = pages
    for path, info in seen.items():
        assert not info["broken"], f"{path}: images that did not load: {info['broken']}"
    assert sum(info["images"] for info in seen.values()) > 0


def test_no_output_shows_an_error_or_a_traceback(pages):
    seen, _ = pages
    for path, info in seen.items():
        assert info["stderr"] == 0, f"{path}: an output is stderr or a traceback"
        bad = [o[:200] for o in info["outputs"] if ERROR_TEXT.search(o)]
        assert not bad, f"{path}: outputs with error text: {bad}"


def test_the_claims_table_and_the_downloads_are_on_the_root_page(pages, served):
    seen, _ = pages
    html, _ = served
    root = f"{book.toc_files(ROOT)[0]}.html"
    heads = [t for t in seen[root]["tables"] if t["head"][:2] == ["claim", "what is claimed"]]
    assert heads and heads[0]["rows"] == len(CLAIMS)
    downloads = {Path(urlsplit(u).path).name for u in seen[root]["downloads"]}
    assert {"intro.md", "intro.ipynb"} <= downloads, downloads
    for name in ("intro.md", "intro.ipynb"):
        assert (html / "_sources" / "book" / name).is_file()


def _ids(path: Path) -> set[str]:
    text = path.read_text(errors="replace")
    return {htmlmod.unescape(m) for m in re.findall(r'\bid="([^"]+)"', text)}


def test_every_internal_link_resolves(pages, served):
    seen, _ = pages
    html, base = served
    broken = []
    checked = 0
    for path, info in seen.items():
        for link in info["links"]:
            if not link.startswith(base):
                continue
            parts = urlsplit(link)
            target = html / unquote(parts.path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append(f"{path} → {link}")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _ids(target):
                    broken.append(f"{path} → {link} (no such anchor)")
    assert checked > 0 and not broken, broken[:10]
