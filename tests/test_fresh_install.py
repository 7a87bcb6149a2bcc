"""A newcomer's install, for real: README command 1 from a clean clone in a new venv with the interpreter's stock pip,
the wheel `python -m build` makes installed where no node is, and a resolve on every other supported Python.

These tests clone the repository's committed HEAD, so they test what would land, not the work tree."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.fresh_install
ROOT = Path(__file__).parents[1]
BASE_PYTHON = Path(sys._base_executable).resolve()  # the interpreter a newcomer's `python3` is, without our venv
NODE_TOOLS = {"node", "nodejs", "npm", "npx", "corepack", "yarn", "jlpm"}


@pytest.fixture
def scratch(tmp_path: Path):
    "A scratch folder, removed afterwards: every fresh venv here is a gigabyte or two."
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def newcomer_env(path: str | None = None, **extra) -> dict:
    "A newcomer's shell: the machine's own settings, but none of this suite's venv, constraints or nbdeploy home."
    drop = ("VIRTUAL_ENV", "PIP_CONSTRAINT", "PYTHONPATH", "NBDEPLOY_", "BENTOML_", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    dirs = [d for d in env["PATH"].split(os.pathsep) if not d.startswith(sys.prefix)]
    return {**env, "PATH": path or os.pathsep.join([str(BASE_PYTHON.parent), *dirs]), **extra}


def run(cmd: str, cwd: Path, env: dict, timeout: float = 1800) -> subprocess.CompletedProcess:
    "Run a bash command line; fail with the tail of its output when it fails."
    p = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"`{cmd}` exited {p.returncode}:\n{(p.stdout + p.stderr)[-4000:]}"
    return p


def clone(dest: Path) -> Path:
    "A clean clone of the repository's HEAD."
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    return dest


def readme_block(heading: str) -> str:
    "The first bash block under a README heading, as written there."
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def listed(cmd: str, cwd: Path, env: dict) -> str:
    "What a `jupyter ... extension list` prints, both streams, without its colour codes."
    p = run(cmd, cwd, env)
    return re.sub(r"\x1b\[[0-9;]*m", "", p.stdout + p.stderr)


def sidebar_enabled(jupyter: str, cwd: Path, env: dict) -> bool:
    "Does `jupyter labextension list` show the sidebar enabled and OK?"
    text = listed(f"{jupyter} labextension list", cwd, env)
    return re.search(r"nbdeploy-labextension v\S+ enabled OK", text) is not None


def test_the_readme_commands_are_the_ones_tested_here():
    "README command 1 makes a venv, installs the clone and runs the quickstart; command 2 is the test script."
    assert "pip install -e . && nbdeploy quickstart" in readme_block("Try it")
    assert "python3 -m venv" in readme_block("Try it")
    assert readme_block("Run the tests").strip() == "bash scripts/test.sh"


def test_readme_command_one_serves_a_prediction_and_brings_the_sidebar(scratch):
    "A clean clone, README command 1 as written: a URL and a prediction over HTTP, plain lines, the sidebar enabled."
    repo, home = clone(scratch / "nbdeploy"), scratch / "home"
    env = newcomer_env(NBDEPLOY_HOME=str(home))
    venv_bin = repo / ".venv" / "bin"
    try:
        p = run(readme_block("Try it"), repo, env)
        out = p.stdout.split("Successfully installed", 1)[-1]  # what nbdeploy quickstart wrote, after pip's own lines
        assert (venv_bin / "pip").exists(), "README command 1 no longer makes .venv"
        stock = run(f"{BASE_PYTHON} -c 'import ensurepip; print(ensurepip.version())'", repo, env).stdout.strip()
        assert run(f"{venv_bin}/pip --version", repo, env).stdout.startswith(f"pip {stock} "), "not the stock pip"
        url = re.search(r"is serving at (http://127\.0\.0\.1:\d+)", out).group(1)
        assert re.search(rf"POST {re.escape(url)}/predict -> {{'predictions': \[\d\]}}", out), out
        for text in (out, p.stderr):
            assert "\x1b[" not in text and "\r" not in text, f"cursor escapes or bar redraws in a log:\n{text!r}"
        r = requests.post(f"{url}/predict", json={"inputs": [{"mean radius": 1.0}]}, timeout=30)
        assert r.status_code == 400 and "mean texture" in r.text  # the real, validating service answers
        assert sidebar_enabled(f"{venv_bin}/jupyter", repo, env)
    finally:
        if (venv_bin / "nbdeploy").exists(): subprocess.run([venv_bin / "nbdeploy", "stop", "quickstart"], env=env)
    with pytest.raises(requests.ConnectionError): requests.get(f"{url}/readyz", timeout=5)


def no_node_path(tmp_path: Path) -> str:
    "A PATH with every tool of /usr/bin and /bin but Node.js and its package managers."
    farm = tmp_path / "bin-without-node"
    farm.mkdir()
    for d in (Path("/usr/bin"), Path("/bin")):
        for f in d.iterdir():
            if f.name not in NODE_TOOLS and not (farm / f.name).exists(): (farm / f.name).symlink_to(f)
    return str(farm)


def test_the_wheel_carries_the_prebuilt_sidebar(scratch):
    "`python -m build` makes a wheel with the sidebar; installed in a new venv with no node, the sidebar is enabled."
    repo = clone(scratch / "nbdeploy")
    env = newcomer_env()
    run(f"{BASE_PYTHON} -m venv {scratch}/build-env && {scratch}/build-env/bin/pip install -q 'build>=1' && "
        f"{scratch}/build-env/bin/python -m build -o {scratch}/dist .", repo, env)
    wheel = next((scratch / "dist").glob("nbdeploy-*.whl"))
    path = no_node_path(scratch)
    assert shutil.which("node", path=path) is None
    v = scratch / "user"
    env = newcomer_env(path=f"{v}/bin{os.pathsep}{path}")
    run(f"{BASE_PYTHON} -m venv {v} && pip install -q -c {ROOT}/requirements.lock {wheel}", scratch, env)
    assert sidebar_enabled("jupyter", scratch, env)
    assert re.search(r"nbdeploy\.server enabled", listed("jupyter server extension list", scratch, env))


def other_pythons() -> dict:
    "The other supported Pythons pyenv holds here (3.10, 3.12, 3.13): {version: interpreter}."
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = {}
    for minor in ("3.10", "3.12", "3.13"):
        for d in sorted(root.glob(f"{minor}.*"), reverse=True):
            if (d / "bin" / "python3").exists(): found[minor] = d / "bin" / "python3"; break
    return found


def test_every_other_supported_python_resolves(scratch):
    "`pip install --dry-run` of the clone resolves with each other supported Python's stock pip (run side by side)."
    pythons = other_pythons()
    if not pythons: pytest.skip("pyenv holds no Python 3.10, 3.12 or 3.13 here")
    repo, env, procs = clone(scratch / "nbdeploy"), newcomer_env(SKIP_JUPYTER_BUILDER="1"), {}  # metadata, no sidebar
    for minor, py in pythons.items():
        v = scratch / f"py{minor}"
        cmd = f"{py} -m venv {v} && {v}/bin/pip install --dry-run ."
        procs[minor] = subprocess.Popen(["bash", "-c", cmd], cwd=repo, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for minor, p in procs.items():
        out = p.communicate(timeout=1500)[0]
        assert p.returncode == 0 and "Would install" in out, f"Python {minor} does not resolve:\n{out[-4000:]}"
    print({m: str(p) for m, p in pythons.items()})
