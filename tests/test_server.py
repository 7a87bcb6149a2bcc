"""The server extension's endpoints on a real `jupyter server` (127.0.0.1): with a token, without one, and XSRF."""
import pytest
import requests

from nbdeploy import ledger
from tests.conftest import ARTIFACTS
from tests.jupyter_fixtures import jupyter


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    "A real Jupyter server with the nbdeploy extension enabled by its installed config; (url, token)."
    with jupyter("server", tmp_path_factory.mktemp("root"), ARTIFACTS / "jupyter-server.log") as s:
        yield s


def fake_serving(name: str) -> dict:
    "A ledger row that says `name` v1 is serving, with no process behind it (stopping it is instant)."
    row = ledger.begin(name, "local", f"{name}:fake", "pass")
    return ledger.update(name, row["version"], "deployed", status="serving", url="http://127.0.0.1:9", port=9, handle="0")


def test_refused_without_token(server):
    url, _ = server
    assert requests.get(f"{url}/nbdeploy/deployments", timeout=10).status_code == 403
    assert requests.post(f"{url}/nbdeploy/deployments/x/stop", timeout=10).status_code == 403
    assert requests.get(f"{url}/nbdeploy/deployments", headers={"Authorization": "token wrong"}, timeout=10).status_code == 403


def test_ledger_and_stop_with_token(server):
    url, token = server
    h = {"Authorization": f"token {token}"}
    fake_serving("srv-fake")
    rows = requests.get(f"{url}/nbdeploy/deployments", params={"name": "srv-fake"}, headers=h, timeout=30).json()["deployments"]
    assert [(r["name"], r["version"], r["target"], r["verdict"]) for r in rows] == [("srv-fake", 1, "local", "pass")]
    assert rows[0]["status"] == "dead"          # checked live: the ledger said serving, but nothing runs
    fake_serving("srv-stop")
    r = requests.post(f"{url}/nbdeploy/deployments/srv-stop/stop", headers=h, timeout=60)
    assert r.status_code == 200 and r.json()["message"] == "stopped srv-stop"
    assert ledger.get("srv-stop", 1)["status"] == "stopped"


def test_errors_are_json_with_status(server):
    url, token = server
    h = {"Authorization": f"token {token}"}
    r = requests.post(f"{url}/nbdeploy/deployments/no-such/rollback", headers=h, timeout=30)
    assert r.status_code == 404 and "no deployment named 'no-such'" in r.json()["error"]
    r = requests.post(f"{url}/nbdeploy/deployments/no-such/stop", headers=h, timeout=30)
    assert r.status_code == 404 and r.json()["kind"] == "NotFoundError"
    assert requests.post(f"{url}/nbdeploy/deployments/x/delete", headers=h, timeout=30).status_code == 404


def test_cookie_session_needs_xsrf(server):
    "A browser session (login cookie) may read, but a POST without the XSRF token is refused; with it, it passes."
    url, token = server
    s = requests.Session()
    s.get(f"{url}/login", timeout=10)
    r = s.post(f"{url}/login", data={"password": token, "_xsrf": s.cookies.get("_xsrf")}, timeout=10, allow_redirects=False)
    assert r.status_code in (302, 303), r.text[:300]
    assert s.get(f"{url}/nbdeploy/deployments", timeout=30).status_code == 200
    assert s.post(f"{url}/nbdeploy/deployments/no-such/stop", timeout=30).status_code == 403
    r = s.post(f"{url}/nbdeploy/deployments/no-such/stop", headers={"X-XSRFToken": s.cookies.get("_xsrf")}, timeout=30)
    assert r.status_code == 404          # past authentication and XSRF: the API's own answer
