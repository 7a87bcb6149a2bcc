"""The JupyterLab sidebar in a real headless Chromium against a real `jupyter lab` on 127.0.0.1.

Opens a notebook with a fitted model, opens the nbdeploy panel from the command palette, picks the model and
its test data, deploys (twice), checks the verdict, the URL and the deployments list, calls the endpoint, rolls
back and stops from the panel. Screenshots go to tests/artifacts/.
"""
import shutil
from pathlib import Path

import nbformat
import pytest
import requests

import nbdeploy as nd
from tests.conftest import ARTIFACTS
from tests.jupyter_fixtures import jupyter

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
NAME = "sidebar-iris"
CODE = """from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
X, y = load_iris(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
clf = LogisticRegression(max_iter=500).fit(X_train, y_train)
print("fitted", type(clf).__name__)"""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium: `apt-get install -y chromium` to run the browser test")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "A real JupyterLab serving a folder with one notebook that fits a model; (url, token)."
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "model.ipynb")
    with jupyter("lab", root, ARTIFACTS / "jupyter-lab.log", "--LabApp.expose_app_in_browser=True") as s:
        yield s


@pytest.fixture(scope="module")
def page(lab):
    "A Chromium page on the lab (Debian's chromium driven by Python Playwright)."
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev requirement) to run the browser test")
    console = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        pg.set_default_timeout(60_000)
        pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        try: yield pg
        finally:
            (ARTIFACTS / "sidebar-console.log").write_text("\n".join(console))
            browser.close()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"sidebar-{name}.png"))


def answers(url: str) -> bool:
    "Does the service at `url` answer a prediction?"
    row = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
    try: return requests.post(f"{url}/predict", json={"inputs": [row]}, timeout=10).status_code == 200
    except requests.RequestException: return False


def deploy_from_panel(page, version: int) -> str:
    "Pick the model and its test data, click Deploy, wait for the verdict; the URL shown."
    page.select_option("#nbdeploy-model", "clf")
    page.select_option("#nbdeploy-xtest", "X_test")
    page.select_option("#nbdeploy-ytest", "y_test")
    page.fill("#nbdeploy-name", NAME)
    page.click("#nbdeploy-deploy")
    page.wait_for_selector(f"#nbdeploy-result:has-text('{NAME} v{version} serving at')", timeout=180_000)
    return page.get_attribute("#nbdeploy-url", "href")


def test_deploy_rollback_stop_from_the_sidebar(lab, page):
    url, token = lab
    page.goto(f"{url}/lab/tree/model.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand('nbdeploy:open')", timeout=60_000)
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                           timeout=90_000)
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_selector(".jp-OutputArea-output:has-text('fitted LogisticRegression')", timeout=90_000)
    shot(page, "0-notebook")

    # the command palette's command opens the panel
    page.keyboard.press("Control+Shift+C")
    page.fill(".lm-CommandPalette-input", "nbdeploy")
    page.keyboard.press("Enter")
    page.wait_for_selector("#nbdeploy-sidebar", state="visible", timeout=30_000)
    page.wait_for_selector("#nbdeploy-model option[value='clf']", state="attached", timeout=90_000)
    assert "LogisticRegression" in page.inner_text("#nbdeploy-model")
    assert page.input_value("#nbdeploy-target") == "local"
    shot(page, "1-models")

    url1 = deploy_from_panel(page, 1)
    assert page.inner_text("#nbdeploy-verdict") in ("PASS", "WARN")
    assert "checking clf on X_test/y_test" in page.inner_text("#nbdeploy-log")
    assert url1.startswith("http://127.0.0.1:") and answers(url1)
    page.wait_for_selector(f"#nbdeploy-deployments tr[data-name='{NAME}'][data-version='1'][data-status='serving']", timeout=30_000)
    shot(page, "2-deployed")

    url2 = deploy_from_panel(page, 2)
    assert answers(url2)
    page.wait_for_selector(f"#nbdeploy-deployments tr[data-name='{NAME}'][data-version='2'][data-status='serving']", timeout=30_000)
    page.wait_for_selector(f"#nbdeploy-deployments tr[data-name='{NAME}'][data-version='1'][data-status='retired']", timeout=30_000)

    page.click(f"#nbdeploy-deployments tr[data-name='{NAME}'] button.nbdeploy-rollback")
    page.wait_for_selector(f"#nbdeploy-deployments tr[data-name='{NAME}'][data-version='1'][data-status='serving']", timeout=180_000)
    page.wait_for_selector(f"#nbdeploy-action:text-is('{NAME} v1 is back in service')", timeout=60_000)
    assert nd.deployment(NAME).version == 1 and answers(nd.deployment(NAME).url)
    assert not answers(f"http://127.0.0.1:{nd.deployment(NAME, 2).row['port']}")  # v2's own server is gone
    shot(page, "3-rolled-back")

    page.click(f"#nbdeploy-deployments tr[data-name='{NAME}'][data-status='serving'] button.nbdeploy-stop")
    page.wait_for_selector(f"#nbdeploy-deployments tr[data-name='{NAME}'][data-version='1'][data-status='stopped']", timeout=60_000)
    assert not answers(nd.deployment(NAME, 1).url)
    page.wait_for_selector(f"#nbdeploy-action:text-is('stopped {NAME}')", timeout=60_000)
    shot(page, "4-stopped")
