"""A real Jupyter server or JupyterLab on 127.0.0.1 for the server-extension and browser tests, stopped by its PID."""
import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from jupyter_server.auth import Authorizer

from nbdeploy.config import free_port

REPO = Path(__file__).resolve().parents[1]


class ReadOnlyAuthorizer(Authorizer):
    "Lets every authenticated user read and no one write: a view-only Jupyter (`--ServerApp.authorizer_class=` this)."
    def is_authorized(self, handler, user, action: str, resource: str) -> bool: return action == "read"


def command(app: str, port: int, token: str, root: Path, extra: tuple = ()) -> list:
    "The command line of `jupyter server` or `jupyter lab`, loopback only, nothing fetched from outside."
    cmd = [sys.executable, "-m", "jupyterlab" if app == "lab" else "jupyter_server", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if app == "lab":
        cmd += ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    return cmd + list(extra)


def wait_up(url: str, token: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    "Wait until the server answers and the nbdeploy extension is loaded; fail with the log if it does not."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            r = requests.get(f"{url}/nbdeploy/deployments", headers={"Authorization": f"token {token}"}, timeout=5)
            if r.status_code == 200: return
        except requests.RequestException: pass
        time.sleep(0.5)
    raise RuntimeError(f"jupyter did not answer /nbdeploy/deployments within {timeout} s:\n{log.read_text()[-3000:]}")


def shut_kernels(url: str, token: str) -> None:
    "Shut down every kernel the server started (they would otherwise outlive it)."
    h = {"Authorization": f"token {token}"}
    try:
        for k in requests.get(f"{url}/api/kernels", headers=h, timeout=10).json():
            requests.delete(f"{url}/api/kernels/{k['id']}", headers=h, timeout=30)
    except requests.RequestException as e: print(f"could not shut kernels down: {e}")


def lab_settings(root: Path) -> Path:
    "A fresh JupyterLab user-settings folder, with the news prompt off (it would cover the screenshots)."
    d = root.parent / f"{root.name}-lab-settings"
    f = d / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"fetchNews": "false"}))
    return d


@contextmanager
def jupyter(app: str, root: Path, log: Path, *extra: str, env: dict | None = None):
    "Run `jupyter server` (app='server') or `jupyter lab` on a random loopback port and token; yields (url, token)."
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ if env is None else env)
    # classes from tests/ (an authorizer) importable in the server
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if app == "lab": env["JUPYTERLAB_SETTINGS_DIR"] = str(lab_settings(root))
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as f:
        proc = subprocess.Popen(command(app, port, token, root, extra), stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=root, env=env)
    try:
        wait_up(url, token, proc, log)
        yield url, token
    finally:
        if proc.poll() is None: shut_kernels(url, token)
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill(); proc.wait(10)
