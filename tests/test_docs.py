"""The documentation site (scripts/docs.sh), served on 127.0.0.1 and read in headless Chromium.

scripts/test.sh builds the site once and names it in NBDEPLOY_DOCS_SITE; run alone, this file builds its own.
What the pages must say is read from nbs/, tutorials/ and the docments, so rewording a docstring breaks nothing.
"""
import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from fastcore.docments import docments

import nbdeploy as nd
from tests.conftest import ARTIFACTS

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium at /usr/bin/chromium: `apt-get install -y chromium` to run it")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    "The built site: the one scripts/test.sh built (NBDEPLOY_DOCS_SITE), else a fresh build of scripts/docs.sh."
    if given := os.environ.get("NBDEPLOY_DOCS_SITE"):
        assert (Path(given) / "index.html").exists(), f"NBDEPLOY_DOCS_SITE={given} holds no index.html"
        return Path(given)
    out = tmp_path_factory.mktemp("docs") / "_site"
    r = subprocess.run(["bash", "scripts/docs.sh", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"scripts/docs.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return out


@pytest.fixture(scope="module")
def url(site):
    "The site served by http.server in a thread, on a free loopback port."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try: yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def page():
    "A Chromium page (Debian's chromium driven by Python Playwright); page errors collected in `page.errors`."
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev requirement)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        pg.set_default_timeout(30_000)
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        try: yield pg
        finally: browser.close()


def test_index_is_the_home_page_with_every_notebook_and_tutorial(url, page):
    page.goto(f"{url}/index.html")
    assert page.locator("article h1").first.is_visible()
    nav = page.locator(".sidebar-tree")
    for nb in sorted((REPO / "nbs").glob("*.ipynb")):
        if nb.stem != "index": assert nav.locator(f'a[href="{nb.stem}.html"]').count() == 1, f"{nb.name} not in the nav"
    for t in sorted((REPO / "tutorials").glob("*.ipynb")):
        assert nav.locator(f'a[href="tutorials/{t.stem}.html"]').count() == 1, f"tutorials/{t.name} not in the nav"
    assert nav.get_by_role("link", name="API reference").is_visible()
    page.screenshot(path=str(ARTIFACTS / "docs-index.png"))
    assert not page.errors, page.errors


def _section(page, title: str):
    "The section of the API page headed by the name `title`."
    head = page.locator(":scope > :is(h2, h3) > code").get_by_text(title, exact=True)
    return page.locator("section").filter(has=head).last


def _text(md: str) -> str: return md.replace("`", "")  # markdown's code spans render as code


def _row(page, title: str, param: str) -> str:
    "The text of `param`'s row in the docments table of the section headed `title`."
    return _section(page, title).locator("tr").filter(has=page.get_by_text(param, exact=True)).first.inner_text()


def test_an_api_page_renders_functions_methods_and_docments(url, page):
    page.goto(f"{url}/api/deployer.html")
    assert page.locator("article h1").first.inner_text().startswith("nbdeploy.deployer")
    deploy = _section(page, "deploy")
    assert deploy.is_visible()
    assert "target" in deploy.locator("pre").first.inner_text()  # the signature
    assert _text(docments(nd.deploy)["target"]) in _row(page, "deploy", "target")
    assert _section(page, "Deployment").is_visible()
    assert _section(page, "Deployment.status").is_visible()  # a method, under its class
    assert _text(docments(nd.Deployment.status)["record"]) in _row(page, "Deployment.status", "record")
    page.screenshot(path=str(ARTIFACTS / "docs-api-deployer.png"), full_page=False)
    assert not page.errors, page.errors


def test_a_notebook_page_shows_the_code_without_nbdev_directives(url, page):
    nb = sorted((REPO / "nbs").glob("*deployer*.ipynb"))[0]
    page.goto(f"{url}/{nb.stem}.html")
    assert page.locator("article h1").first.is_visible()
    code = page.locator("article").inner_text()
    assert "def deploy(" in code and "#| export" not in code and "#|export" not in code
    assert not page.errors, page.errors
