"""The server extension's endpoints on a real `jupyter server` (127.0.0.1): with a token, without one, XSRF, a row whose
live check fails, a read-only authorizer, the health of a live deployment in its row, and a canary beside it: its
routing in the rows, promoted and rolled back through the handlers."""
import json
import os
import time

import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import nbdeploy as nd
from nbdeploy import ledger
from nbdeploy.cli import main
from nbdeploy.config import free_port
from tests.conftest import ARTIFACTS
from tests.jupyter_fixtures import jupyter


def no_aws(home) -> dict:
    "This environment with no AWS credentials to be found: boto3 raises NoCredentialsError before it sends anything."
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"), "AWS_CONFIG_FILE": str(home / "none"),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}  # nothing listens there, should a request be made


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    "A real Jupyter server, the nbdeploy extension enabled by its installed config, no AWS credentials; (url, token)."
    root = tmp_path_factory.mktemp("root")
    with jupyter("server", root, ARTIFACTS / "jupyter-server.log", env=no_aws(root)) as s:
        yield s


@pytest.fixture(scope="module")
def readonly_server(tmp_path_factory):
    "A real Jupyter server whose Authorizer allows only reads (jupyter_fixtures.ReadOnlyAuthorizer); (url, token)."
    with jupyter("server", tmp_path_factory.mktemp("root-ro"), ARTIFACTS / "jupyter-server-readonly.log",
                 "--ServerApp.authorizer_class=tests.jupyter_fixtures.ReadOnlyAuthorizer") as s:
        yield s


def fake_serving(name: str, target: str = "local", handle: str = "0") -> dict:
    "A ledger row that says `name` v1 is serving, with no process behind it (stopping it is instant)."
    row = ledger.begin(name, target, f"{name}:fake", "pass")
    return ledger.update(name, row["version"], "deployed", status="serving", url="http://127.0.0.1:9", port=9,
                         handle=handle)


def retire(*names: str) -> None:
    "Mark the rows stopped, so the session's final clean-up leaves them alone."
    for n in names:
        for r in ledger.rows(n): ledger.update(n, r["version"], "stopped", status="stopped")


def test_refused_without_token(server):
    url, _ = server
    assert requests.get(f"{url}/nbdeploy/deployments", timeout=10).status_code == 403
    assert requests.post(f"{url}/nbdeploy/deployments/x/stop", timeout=10).status_code == 403
    wrong = {"Authorization": "token wrong"}
    assert requests.get(f"{url}/nbdeploy/deployments", headers=wrong, timeout=10).status_code == 403


def test_ledger_and_stop_with_token(server):
    url, token = server
    h = {"Authorization": f"token {token}"}
    fake_serving("srv-fake")
    events = ledger.events("srv-fake")
    r = requests.get(f"{url}/nbdeploy/deployments", params={"name": "srv-fake"}, headers=h, timeout=30)
    rows = r.json()["deployments"]
    assert [(r["name"], r["version"], r["target"], r["verdict"]) for r in rows] == [("srv-fake", 1, "local", "pass")]
    assert rows[0]["status"] == "dead" and rows[0]["error"] is None  # checked live: ledger says serving, nothing runs
    # a GET writes nothing: the row is still serving in the ledger, and no event was recorded
    assert ledger.get("srv-fake", 1)["status"] == "serving" and ledger.events("srv-fake") == events
    retire("srv-fake")
    fake_serving("srv-stop")
    r = requests.post(f"{url}/nbdeploy/deployments/srv-stop/stop", headers=h, timeout=60)
    assert r.status_code == 200 and r.json()["message"] == "stopped srv-stop"
    assert ledger.get("srv-stop", 1)["status"] == "stopped"


def test_rows_carry_the_actions_that_apply_and_logs_and_versions_are_read(server):
    "Each row says which actions apply (nbdeploy.actions); the logs route reads; `?version=` reaches the API."
    url, token = server
    h = {"Authorization": f"token {token}"}
    get = lambda: requests.get(f"{url}/nbdeploy/deployments", params={"name": "srv-act"}, headers=h, timeout=30).json()
    fake_serving("srv-act")
    try:
        assert [(r["version"], r["actions"]) for r in get()["deployments"]] == [(1, ["stop", "logs"])]
        r = requests.get(f"{url}/nbdeploy/deployments/srv-act/logs", params={"version": 1, "tail": 5}, headers=h,
                         timeout=30)
        assert r.status_code == 200 and r.json()["version"] == 1 and isinstance(r.json()["logs"], str), r.text[:300]
        r = requests.post(f"{url}/nbdeploy/deployments/srv-act/rollback", params={"version": "one"}, headers=h,
                          timeout=30)
        assert r.status_code == 400 and "whole number" in r.json()["error"]
        r = requests.post(f"{url}/nbdeploy/deployments/srv-act/rollback", params={"version": 1}, headers=h, timeout=30)
        assert r.status_code == 400 and "in service already" in r.json()["error"]
    finally: retire("srv-act")
    assert [(r["status"], r["actions"]) for r in get()["deployments"]] == [("stopped", ["rollback", "logs"])]


def test_a_row_whose_check_fails_says_so_and_the_rest_are_listed(server):
    "A SageMaker row on a Jupyter server with no AWS credentials: that row is `unknown` with its error; list is 200."
    url, token = server
    fake_serving("srv-ok")
    fake_serving("srv-sm", "sagemaker", json.dumps({"endpoint": "srv-sm", "model": "srv-sm-v1", "config": "srv-sm-v1",
                                                    "region": "us-east-1"}))
    try:
        r = requests.get(f"{url}/nbdeploy/deployments", headers={"Authorization": f"token {token}"}, timeout=60)
        assert r.status_code == 200, r.text[:500]
        rows = {x["name"]: x for x in r.json()["deployments"]}
        assert rows["srv-sm"]["status"] == "unknown" and "no AWS credentials" in rows["srv-sm"]["error"]
        assert rows["srv-ok"]["status"] == "dead" and rows["srv-ok"]["error"] is None
        assert ledger.get("srv-sm", 1)["status"] == "serving"
    finally: retire("srv-ok", "srv-sm")


def test_a_read_only_authorizer_allows_the_listing_and_forbids_stop_rollback_promote(readonly_server):
    url, token = readonly_server
    h = {"Authorization": f"token {token}"}
    fake_serving("srv-ro")
    try:
        for action in ("stop", "rollback", "promote"):
            r = requests.post(f"{url}/nbdeploy/deployments/srv-ro/{action}", headers=h, timeout=30)
            assert r.status_code == 403, (action, r.status_code, r.text[:300])
        assert ledger.get("srv-ro", 1)["status"] == "serving"
        r = requests.get(f"{url}/nbdeploy/deployments", params={"name": "srv-ro"}, headers=h, timeout=30)
        assert r.status_code == 200 and [x["name"] for x in r.json()["deployments"]] == ["srv-ro"]
    finally: retire("srv-ro")


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
    r = s.post(f"{url}/login", data={"password": token, "_xsrf": s.cookies.get("_xsrf")}, timeout=10,
               allow_redirects=False)
    assert r.status_code in (302, 303), r.text[:300]
    assert s.get(f"{url}/nbdeploy/deployments", timeout=30).status_code == 200
    assert s.post(f"{url}/nbdeploy/deployments/no-such/stop", timeout=30).status_code == 403
    r = s.post(f"{url}/nbdeploy/deployments/no-such/stop", headers={"X-XSRFToken": s.cookies.get("_xsrf")}, timeout=30)
    assert r.status_code == 404          # past authentication and XSRF: the API's own answer


HEALTH_KEYS = {"requests", "rate", "error_rate", "p99_ms", "drift", "drift_share", "alert"}


@pytest.fixture(scope="module")
def live():
    "A real local deployment of iris (v1, behind nginx), shared by the health and the canary tests; its Deployment."
    X, y = load_iris(return_X_y=True, as_frame=True)
    dep = nd.deploy(LogisticRegression(max_iter=500).fit(X, y), name="srv-health", sample=X)
    yield dep
    try: nd.stop(dep.name)
    except nd.NbdeployError: pass  # stopped by the test


def listing(server, name: str) -> list:
    "The server's rows of `name`."
    url, token = server
    got = requests.get(f"{url}/nbdeploy/deployments", params={"name": name},
                       headers={"Authorization": f"token {token}"}, timeout=30)
    assert got.status_code == 200, got.text[:500]
    return got.json()["deployments"]


def test_a_live_row_carries_its_health(server, live):
    "A real local deployment, a few requests: its row's `health` is Monitor.health."
    dep = live
    rows = load_iris(as_frame=True).data.head(2).to_dict(orient="records")
    for i in range(5):
        r = requests.post(f"{dep.url}/predict", json={"inputs": rows}, headers={"X-Request-ID": f"srv-h-{i}"},
                          timeout=30)
        assert r.status_code == 200 and r.headers["X-Request-ID"] == f"srv-h-{i}", r.text[:300]
    end, row = time.monotonic() + 30, None
    while time.monotonic() < end:  # the capture lands off the request path: poll the listing
        row = listing(server, dep.name)[0]
        if (row["health"] or {}).get("requests", 0) >= 5: break
        time.sleep(0.3)
    assert row["health_error"] is None and HEALTH_KEYS <= set(row["health"]), row
    h = row["health"]
    assert h["requests"] == 5 and h["error_rate"] == 0 and h["p99_ms"] > 0 and h["alert"] in ("ok", "warn"), h
    assert h["drift"] in ("ok", "drifted", None), h


def test_a_canary_row_carries_its_routing_and_promote_and_rollback_move_it(server, live, capsys):
    "v2 a 20% canary beside v1: rows carry the variants; POST promote (and the CLI) moves it on, POST rollback ends it."
    url, token = server
    h, name = {"Authorization": f"token {token}"}, live.name
    X, y = load_iris(return_X_y=True, as_frame=True)
    cand = nd.deploy(LogisticRegression(max_iter=500, C=0.5).fit(X, y), name=name, sample=X, strategy="canary",
                     traffic=0.2, steps=(0.2, 0.5, 1.0))
    rows = {r["version"]: r for r in listing(server, name)}
    champ, new = rows[live.version], rows[cand.version]
    assert [(v["version"], v["share"], v["role"], v["status"]) for v in new["routing"]["variants"]] == [
        (live.version, 0.8, "champion", "serving"), (cand.version, 0.2, "canary", "canary")], new["routing"]
    assert champ["routing"]["variants"] == new["routing"]["variants"] and new["routing"]["strategy"] == "canary"
    assert new["routing"]["actions"] == ["promote", "rollback"]
    assert new["routing"]["text"] == f"v{live.version} 80% · v{cand.version} 20% canary"
    assert (new["role"], new["share"], champ["role"]) == ("canary", 0.2, "champion")
    assert "rollback" not in new["actions"]  # the routing's Roll back is the candidate's
    assert new["health_error"] is None and "health" in new  # a candidate's health is measured too

    r = requests.post(f"{url}/nbdeploy/deployments/{name}/promote", headers=h, timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert r.json()["message"] == f"{name} promoted: v{live.version} 50% · v{cand.version} 50% canary"
    assert nd.routing(name)["shares"] == {str(live.version): 0.5, str(cand.version): 0.5}
    r = requests.post(f"{url}/nbdeploy/deployments/{name}/promote", params={"traffic": "lots"}, headers=h, timeout=30)
    assert r.status_code == 400 and "--traffic must be a fraction" in r.json()["error"]
    assert main(["promote", name, "--traffic", "0.6"]) == 0  # the command line, the same API
    assert nd.routing(name)["shares"] == {str(live.version): 0.4, str(cand.version): 0.6}
    assert main(["promote", "srv-no-such"]) == 2
    assert main(["compare", name, "--window", "1h"]) == 0  # nd.compare on the captured split, as text
    out = capsys.readouterr().out
    assert f"{name}: v{live.version} vs v{cand.version} (split) over 1h: " in out, out
    assert main(["history", name, "--json"]) == 0 and json.loads(capsys.readouterr().out)[-1]["event"] == "promoted"

    r = requests.post(f"{url}/nbdeploy/deployments/{name}/rollback", headers=h, timeout=60)
    assert r.status_code == 200 and r.json()["message"] == f"{name} v{live.version} is back in service", r.text[:500]
    rows = {r["version"]: r for r in listing(server, name)}
    assert rows[cand.version]["status"] == "rolled_back" and rows[live.version]["status"] == "serving"
    assert rows[live.version]["routing"]["actions"] == [] and rows[live.version]["routing"]["text"] == \
        f"v{live.version} 100%"
    assert list(nd.history(name).event)[-4:] == ["canary", "promoted", "promoted", "rolled back"]

    nd.stop(name)
    got = listing(server, name)
    assert [(r["status"], r["health"], r["health_error"]) for r in got] == [("rolled_back", None, None),
                                                                            ("stopped", None, None)]
