"""The JupyterLab sidebar in a real headless Chromium against a real `jupyter lab` on 127.0.0.1.

Opens a notebook with a fitted model, opens the nbdeploy panel from the command palette, picks the model and
its test data, deploys (twice), follows the progress bar, checks the verdict badge, the URL and its copy button,
the deployments list (grouped by name, only the serving version expanded, only the actions the API lists, the
serving version's health line: rate, errors, p99 and the drift verdict, once it has had traffic), opens
the readiness report in a main-area tab, calls the endpoint, rolls back and stops from the panel. It asserts
through the DOM that the panel takes its colours from JupyterLab's theme variables in the light and the dark
theme, and saves screenshots of both to tests/artifacts/. A canary beside a champion shows its variants with their
shares ("v1 80% · v2 20% canary", deployed from the form's Strategy and Traffic), and its Promote and Roll back
buttons move it on and end it.
"""
import shutil
from pathlib import Path

import nbformat
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

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
GROUP = f"#nbdeploy-deployments .nbdeploy-group[data-name='{NAME}']"
# The computed value of a CSS property of the first element matching a selector, and the same property set to a
# theme variable on a probe element: equal when the panel follows the theme.
THEMED = """([sel, prop, variable]) => {
  const el = document.querySelector(sel);
  const probe = document.createElement('div');
  probe.style.setProperty(prop, `var(${variable})`);
  document.body.appendChild(probe);
  const want = getComputedStyle(probe).getPropertyValue(prop);
  probe.remove();
  return [el ? getComputedStyle(el).getPropertyValue(prop) : null, want];
}"""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium at /usr/bin/chromium: `apt-get install -y chromium` to run it")


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
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="pip install playwright (dev requirement) to run the browser test")
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


def row(version: int, status: str | None = None) -> str:
    "The selector of one version's row in the deployments list."
    return f"{GROUP} .nbdeploy-row[data-version='{version}']" + (f"[data-status='{status}']" if status else "")


def assert_themed(page, sel: str, prop: str, variable: str) -> str:
    "Assert that `sel`'s computed `prop` is the theme variable's value; that value."
    got, want = page.evaluate(THEMED, [sel, prop, variable])
    assert got == want, f"{sel} {prop} is {got}, {variable} is {want}"
    return got


def set_theme(page, theme: str) -> None:
    "Switch JupyterLab's theme and wait until its variables apply."
    page.evaluate("t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme)
    page.wait_for_function("t => document.body.dataset.jpThemeName === t", arg=theme, timeout=60_000)
    page.wait_for_timeout(1500)  # the theme's stylesheet is applied a moment after the attribute changes


def deploy_from_panel(page, version: int) -> str:
    "Pick the model and its test data, click Deploy, wait for the verdict and the progress bar's end; the URL."
    page.select_option("#nbdeploy-model", "clf")
    page.select_option("#nbdeploy-xtest", "X_test")
    page.select_option("#nbdeploy-ytest", "y_test")
    page.fill("#nbdeploy-name", NAME)
    page.evaluate("""() => {  // every step label the progress bar shows during this deploy
      window.nbdeploySteps = [];
      const step = document.querySelector('#nbdeploy-step');
      new MutationObserver(() => window.nbdeploySteps.push(step.textContent))
        .observe(step, {childList: true, characterData: true, subtree: true});
    }""")
    page.click("#nbdeploy-deploy")
    page.wait_for_selector(f"#nbdeploy-result:has-text('{NAME} v{version} serving at')", timeout=180_000)
    page.wait_for_selector("#nbdeploy-progress[data-state='done']", timeout=10_000)
    bar = page.eval_on_selector("#nbdeploy-progress-bar", "p => [p.tagName, p.value, p.max]")
    assert bar[0] == "PROGRESS" and bar[1] == bar[2], bar
    steps = page.evaluate("() => window.nbdeploySteps")
    assert any("/" in s and "(" in s for s in steps), f"no step shown on the progress bar: {steps}"
    return page.get_attribute("#nbdeploy-url", "href")


def api_rows(lab) -> list:
    "The deployments list as the server extension gives it."
    url, token = lab
    r = requests.get(f"{url}/nbdeploy/deployments", headers={"Authorization": f"token {token}"}, timeout=30)
    return [d for d in r.json()["deployments"] if d["name"] == NAME]


def assert_actions_as_the_api_says(page, lab) -> None:
    "Each row offers exactly the stop/rollback actions its `actions` field lists."
    for d in api_rows(lab):
        sel = row(d["version"])
        page.wait_for_selector(f"{sel}[data-status='{d['status']}']", timeout=30_000)
        shown = page.eval_on_selector_all(f"{sel} .nbdeploy-actions button", "bs => bs.map(b => b.className)")
        shown = sorted(a for a in ("stop", "rollback") for c in shown if f"nbdeploy-{a}" in c)
        assert shown == sorted(a for a in d.get("actions", []) if a in ("stop", "rollback")), (d, shown)


def test_deploy_rollback_stop_from_the_sidebar(lab, page):
    open_notebook(page, lab)
    shot(page, "0-notebook")

    # the command palette's command opens the panel, built from JupyterLab's own widgets
    page.keyboard.press("Control+Shift+C")
    page.fill(".lm-CommandPalette-input", "nbdeploy")
    page.keyboard.press("Enter")
    page.wait_for_selector("#nbdeploy-sidebar.jp-SidePanel", state="visible", timeout=30_000)
    page.wait_for_selector("#nbdeploy-model option[value='clf']", state="attached", timeout=90_000)
    assert "LogisticRegression" in page.inner_text("#nbdeploy-model")
    assert page.input_value("#nbdeploy-target") == "local"
    assert page.is_visible(".jp-select-wrapper > select#nbdeploy-model.jp-mod-styled")
    assert page.is_visible("#nbdeploy-sidebar .jp-AccordionPanel-toolbar .nbdeploy-refresh-models")
    assert page.is_visible("#nbdeploy-deploy.jp-Button.jp-mod-accept")
    assert page.locator("#nbdeploy-sidebar .lm-AccordionPanel-title").count() == 2
    shot(page, "1-models")

    url1 = deploy_from_panel(page, 1)
    assert page.inner_text("#nbdeploy-verdict") in ("PASS", "WARN")
    assert page.eval_on_selector("#nbdeploy-verdict", "b => b.className").split()[:2] in (
        ["nbdeploy-badge", "nbdeploy-badge-ok"], ["nbdeploy-badge", "nbdeploy-badge-warn"])
    assert "checking clf on X_test/y_test" in page.text_content("#nbdeploy-log")
    assert url1.startswith("http://127.0.0.1:") and answers(url1)
    link = page.eval_on_selector("#nbdeploy-url", "a => [a.tagName, a.target, a.textContent]")
    assert link == ["A", "_blank", url1]
    page.click("#nbdeploy-url-copy")  # JupyterLab's Clipboard; the button says it copied
    page.wait_for_selector("#nbdeploy-url-copy.nbdeploy-copied[title='Copied']", timeout=5_000)
    page.wait_for_selector(row(1, "serving"), timeout=30_000)

    url2 = deploy_from_panel(page, 2)
    assert answers(url2)
    page.wait_for_selector(row(2, "serving"), timeout=30_000)
    page.wait_for_selector(row(1, "retired"), timeout=30_000)
    # one group per name; only the serving version expanded (with its URL), the retired one folded
    assert page.locator(GROUP).count() == 1 and page.locator(f"{GROUP} .nbdeploy-row").count() == 2
    assert page.get_attribute(row(2), "data-expanded") == "true"
    assert page.get_attribute(row(1), "data-expanded") == "false"
    assert page.get_attribute(f"{row(2)} .nbdeploy-row-details a.nbdeploy-url", "href") == url2
    assert page.locator(f"{row(1)} .nbdeploy-row-details").count() == 0
    assert page.inner_text(f"{row(2)} .nbdeploy-status") == "serving"
    assert page.inner_text(f"{row(1)} .nbdeploy-status") == "retired"
    assert_actions_as_the_api_says(page, lab)

    # the version in service shows its health (Monitor.health, in the server's rows) once it has had traffic
    assert all(answers(url2) for _ in range(5))
    health = f"{row(2)} .nbdeploy-health"
    page.wait_for_selector(f"{health}[data-drift] .nbdeploy-health-stat[data-stat='p99']", timeout=60_000)
    text = page.inner_text(health)
    assert ("req/s" in text or "req/min" in text) and "% errors" in text and "p99 " in text and " ms" in text, text
    assert page.locator(f"{health} .nbdeploy-drift").count() == 1, text
    assert page.get_attribute(health, "data-drift") in ("ok", "drifted", "n/a")
    assert page.locator(f"{row(1)} .nbdeploy-health").count() == 0  # a retired version has none
    assert next(d for d in api_rows(lab) if d["version"] == 2)["health"]["requests"] >= 5

    # the light theme: the panel's colours are the theme's variables
    light_bg = assert_themed(page, "#nbdeploy-deploy-section .nbdeploy-form", "background-color", "--jp-layout-color1")
    assert_themed(page, "#nbdeploy-deploy-section .nbdeploy-form", "color", "--jp-ui-font-color1")
    assert_themed(page, f"{row(2)} .nbdeploy-status", "background-color", "--jp-success-color1")
    assert_themed(page, f"{GROUP} .nbdeploy-group-header", "background-color", "--jp-layout-color2")
    assert_themed(page, f"{row(2)} .nbdeploy-health", "color", "--jp-ui-font-color2")
    shot(page, "2-light")

    # the readiness report in a main-area tab, its text in a sandboxed frame
    page.click("#nbdeploy-report")
    tab = page.wait_for_selector(".jp-MainAreaWidget.nbdeploy-report, .jp-MainAreaWidget .nbdeploy-report",
                                 state="visible", timeout=30_000)
    assert tab is not None
    assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current").inner_text().startswith("readiness")
    assert page.get_attribute(".nbdeploy-report-frame", "sandbox") == ""
    report = page.frame_locator(".nbdeploy-report-frame")
    for text in ("Metrics", "Gates", "LogisticRegression"):
        assert text in report.locator("body").inner_text(), text
    shot(page, "3-report-light")

    # the dark theme: the same DOM now takes the dark values of the same variables
    set_theme(page, "JupyterLab Dark")
    dark_bg = assert_themed(page, "#nbdeploy-deploy-section .nbdeploy-form", "background-color", "--jp-layout-color1")
    assert dark_bg != light_bg, (dark_bg, light_bg)
    assert_themed(page, "#nbdeploy-deploy-section .nbdeploy-form", "color", "--jp-ui-font-color1")
    assert_themed(page, "#nbdeploy-log", "background-color", "--jp-layout-color2")
    assert_themed(page, f"{row(2)} .nbdeploy-status", "background-color", "--jp-success-color1")
    assert_themed(page, "#nbdeploy-url", "color", "--jp-content-link-color")
    shot(page, "4-report-dark")
    page.click(".lm-DockPanel-tabBar .lm-TabBar-tab:has-text('model.ipynb')")  # the notebook in front again
    shot(page, "5-dark")

    page.click(f"{GROUP} button.nbdeploy-rollback")
    page.wait_for_selector(row(1, "serving"), timeout=180_000)
    page.wait_for_selector(f"#nbdeploy-action:text-is('{NAME} v1 is back in service')", timeout=60_000)
    assert nd.deployment(NAME).version == 1 and answers(nd.deployment(NAME).url)
    assert not answers(f"http://127.0.0.1:{nd.deployment(NAME, 2).row['port']}")  # v2's own server is gone
    assert page.get_attribute(row(1), "data-expanded") == "true"
    assert_actions_as_the_api_says(page, lab)
    shot(page, "6-rolled-back-dark")

    set_theme(page, "JupyterLab Light")
    page.click(f"{row(1, 'serving')} button.nbdeploy-stop")
    page.wait_for_selector(row(1, "stopped"), timeout=60_000)
    assert not answers(nd.deployment(NAME, 1).url)
    page.wait_for_selector(f"#nbdeploy-action:text-is('stopped {NAME}')", timeout=60_000)
    assert page.locator(f"{GROUP} button.nbdeploy-stop").count() == 0  # nothing left to stop
    assert_actions_as_the_api_says(page, lab)
    shot(page, "7-stopped")


CANARY = "sidebar-canary"
CGROUP = f"#nbdeploy-deployments .nbdeploy-group[data-name='{CANARY}']"


def variants_text(page) -> str:
    "The canary group's variants line as it reads, or '' when it shows none."
    loc = page.locator(f"{CGROUP} .nbdeploy-variants .nbdeploy-variant-list")
    return loc.inner_text() if loc.count() else ""


def open_notebook(page, lab) -> None:
    "The model notebook in the lab, its cells run (the kernel holds clf and the data)."
    url, token = lab
    page.goto(f"{url}/lab/tree/model.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand('nbdeploy:open')",
                           timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=90_000)
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_selector(".jp-OutputArea-output:has-text('fitted LogisticRegression')", timeout=90_000)


def test_a_canary_from_the_form_shows_its_variants_and_promote_and_roll_back_move_it(lab, page):
    "v1 (the API), then clf as a 20% canary from the form: its variants line; Promote moves it on, Roll back ends it."
    X, y = load_iris(return_X_y=True, as_frame=True)
    nd.deploy(LogisticRegression(max_iter=500).fit(X, y), name=CANARY, sample=X)
    try:
        open_notebook(page, lab)
        page.evaluate("() => window.jupyterapp.commands.execute('nbdeploy:open')")
        page.wait_for_selector("#nbdeploy-strategy option[value='canary']", state="attached", timeout=90_000)
        page.wait_for_selector("#nbdeploy-model option[value='clf']", state="attached", timeout=90_000)
        page.select_option("#nbdeploy-model", "clf")
        page.select_option("#nbdeploy-xtest", "X_test")  # checked, and its sample for the input schema
        page.select_option("#nbdeploy-ytest", "y_test")
        page.fill("#nbdeploy-name", CANARY)
        page.select_option("#nbdeploy-strategy", "canary")
        page.fill("#nbdeploy-traffic", "0.2")
        page.click("#nbdeploy-deploy")
        page.wait_for_selector(f"#nbdeploy-result:has-text('{CANARY} v2 serving at')", timeout=180_000)
        assert "as a canary beside the champion" in page.text_content("#nbdeploy-log")
        page.wait_for_selector(f"{CGROUP} .nbdeploy-variants", timeout=120_000)  # a loaded machine: the lab is slow
        assert variants_text(page) == "v1 80% · v2 20% canary"
        assert nd.routing(CANARY)["shares"] == {"1": 0.8, "2": 0.2}
        assert page.get_attribute(f"{CGROUP} .nbdeploy-variant[data-version='2']", "data-role") == "canary"
        assert page.get_attribute(f"{CGROUP} .nbdeploy-variants", "data-strategy") == "canary"
        assert page.locator(f"{CGROUP} .nbdeploy-row[data-version='2'] button.nbdeploy-rollback").count() == 0
        assert page.get_attribute(f"{CGROUP} .nbdeploy-row[data-version='2']", "data-expanded") == "true"
        shot(page, "8-canary")

        page.click(f"{CGROUP} button.nbdeploy-route-promote")  # the next of the default steps: 0.25
        page.wait_for_selector(f"#nbdeploy-action:text-is('{CANARY} promoted: v1 75% · v2 25% canary')",
                               timeout=60_000)
        page.wait_for_function(f"() => document.querySelector(\"{CGROUP} .nbdeploy-variant-list\")?.textContent"
                               f" === 'v1 75% · v2 25% canary'", timeout=30_000)
        assert nd.routing(CANARY)["shares"] == {"1": 0.75, "2": 0.25}
        shot(page, "9-promoted")

        page.click(f"{CGROUP} button.nbdeploy-route-rollback")
        page.wait_for_selector(f"{CGROUP} .nbdeploy-row[data-version='2'][data-status='rolled_back']", timeout=60_000)
        page.wait_for_selector(f"#nbdeploy-action:text-is('{CANARY} v1 is back in service')", timeout=60_000)
        assert variants_text(page) == "" and nd.routing(CANARY)["shares"] == {"1": 1.0}
        assert answers(nd.deployment(CANARY, 1).url)
    except Exception:
        shot(page, "canary-failed")
        print("result:", page.text_content("#nbdeploy-result"), "\nlog:", page.text_content("#nbdeploy-log"))
        raise
    finally: nd.stop(CANARY)
