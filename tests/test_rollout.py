"""Rollouts that hold under pressure: leases, kills at every step, cross-target retirement, names, and status."""
import signal
import subprocess
import sys
import textwrap
import threading

import psutil
import pytest
import requests

import nbdeploy as nd
from nbdeploy import ledger
from nbdeploy.config import home
from nbdeploy.errors import LedgerError
from tests.models import churn_frame, churn_pipeline

import nbdeploy.deployer as D


@pytest.fixture(scope="module")
def bento():
    "One small Bento, packaged once: the deploys below start it, so each costs a server start and nothing more."
    df, y = churn_frame(seed=21)
    return nd.package(churn_pipeline(df, y, 5), "rollout", sample=df), df


def servers_of(name: str) -> dict[int, list]:
    "Version -> the running processes of this test home's local servers of `name`, found by their environment."
    found = {}
    for q in psutil.process_iter():
        try: env = q.environ()
        except psutil.Error: continue
        if env.get("NBDEPLOY_DEPLOYMENT_NAME") == name and env.get("BENTOML_HOME", "").startswith(str(home())):
            found.setdefault(int(env["NBDEPLOY_DEPLOYMENT_VERSION"]), []).append(q)
    return found


def serving(name: str) -> list[int]:
    return [r["version"] for r in ledger.rows(name) if r["status"] == "serving"]


def stop_all(name: str):
    for r in ledger.rows(name):
        D.get_target(r["target"]).stop(r)


# --- item 3: no request can mark a live deployment dead; only a confirmed-gone server is dead ---------------------

def test_a_request_path_cannot_mark_a_live_server_dead(bento, monkeypatch):
    monkeypatch.setenv("NBDEPLOY_LOG_BYTES", "20000")  # and the log rotates by size
    dep = nd.deploy(bento[0], name="pathlog", api_key="k" * 24)
    r = requests.get(f"{dep.url}/Application%20startup%20failed", timeout=10, verify=dep.verify())
    assert r.status_code == 401
    for i in range(300): requests.get(f"{dep.url}/x{i}", timeout=10, verify=dep.verify())  # 401s, access-logged
    assert dep.status() == "serving" and serving("pathlog") == [dep.version]
    log = D.LocalTarget().log(dep.row)
    assert log.with_name(log.name + ".1").exists() and log.stat().st_size <= 20000
    dep.stop()


def test_a_stalled_server_is_unhealthy_not_dead(bento):
    dep = nd.deploy(bento[0], name="stalled")
    procs = D._server_processes(dep.row)
    for q in procs: q.suspend()
    try: assert dep.status() == "unhealthy" and ledger.get("stalled", dep.version)["status"] == "serving"
    finally:
        for q in procs: q.resume()
    assert dep.status() == "serving"
    dep.stop()


# --- item 4: two deploys of one name at once ----------------------------------------------------------------------

def test_concurrent_deploys_in_two_threads_leave_one_serving(bento):
    outcomes = []
    def go():
        try: outcomes.append(nd.deploy(bento[0], name="twins-t").version)
        except nd.DeployError as e: outcomes.append(str(e))
    ts = [threading.Thread(target=go) for _ in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert len(serving("twins-t")) == 1, ledger.rows("twins-t")
    refused = [o for o in outcomes if isinstance(o, str)]
    assert all("busy" in o and "process" in o for o in refused), outcomes
    assert set(servers_of("twins-t")) == set(serving("twins-t"))
    stop_all("twins-t")


def test_concurrent_deploys_in_two_processes_leave_one_serving(bento):
    code = f"import nbdeploy as nd\ntry: nd.deploy({str(bento[0].tag)!r}, name='twins-p'); print('deployed')\n" \
           "except nd.DeployError as e: print('refused', e)"
    ps = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
          for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in ps]
    nd.deployments("twins-p")
    assert len(serving("twins-p")) == 1, (outs, ledger.rows("twins-p"))
    assert set(servers_of("twins-p")) == set(serving("twins-p")), outs
    stop_all("twins-p")


# --- item 6: kill the deployer at each step of a rollout ----------------------------------------------------------

KILLER = textwrap.dedent("""
    import os, signal, sys
    import nbdeploy as nd
    from nbdeploy import ledger
    import nbdeploy.deployer as D
    tag, point = sys.argv[1], sys.argv[2]
    def die(): os.kill(os.getpid(), signal.SIGKILL)
    def after(owner, attr, hit):
        f = getattr(owner, attr)
        def wrapped(*a, **k):
            out = f(*a, **k)
            if hit(*a, **k): die()
            return out
        setattr(owner, attr, wrapped)
    after(ledger, "update", lambda name, version, event=None, *a, **k: event == point)
    after(ledger, "begin", lambda *a, **k: point == "begin")
    after(D.LocalTarget, "start", lambda *a, **k: point == "start")
    after(D.LocalTarget, "stop", lambda *a, **k: point == "stop-old")
    nd.deploy(tag, name="killed-at")
    print("not killed")
""")
POINTS = ["begin", "start", "started", "promoted", "deployed", "stop-old", "retired"]


def test_a_deployer_killed_at_any_step_leaves_a_consistent_ledger_and_no_orphan(bento):
    tag, df = str(bento[0].tag), bento[1]
    nd.deploy(tag, name="killed-at")
    table = []
    for point in POINTS:
        before = serving("killed-at")
        p = subprocess.run([sys.executable, "-c", KILLER, tag, point], capture_output=True, text=True, timeout=300)
        killed = p.returncode == -signal.SIGKILL
        nd.deployments("killed-at")  # a later read settles what the killed deploy left
        rows = ledger.rows("killed-at")
        now = serving("killed-at")
        table.append((point, killed, before, now, rows[0]["status"]))
        assert not any(r["status"] == "starting" for r in rows), (point, rows)
        assert len(now) == 1, (point, rows)
        assert set(servers_of("killed-at")) == set(now), (point, servers_of("killed-at"), rows)
        live = nd.deployment("killed-at")
        assert live.status() == "serving" and live.predict(df.head(3)).shape == (3,), point
        if not killed: assert point == "promoted" and "not killed" in p.stdout  # no nginx: no promote step
    print("\n".join(map(str, table)))
    stop_all("killed-at")


def test_a_failed_ledger_write_after_start_still_stops_the_started_server(bento, monkeypatch):
    nd.deploy(bento[0], name="nowrite")
    update = ledger.update
    def broken(name, version, event=None, *a, **k):
        if event == "started": raise LedgerError("disk full")
        return update(name, version, event, *a, **k)
    monkeypatch.setattr(ledger, "update", broken)
    with pytest.raises(nd.DeployError, match="disk full"):
        nd.deploy(bento[0], name="nowrite")
    monkeypatch.setattr(ledger, "update", update)
    assert set(servers_of("nowrite")) == {1} and serving("nowrite") == [1]
    stop_all("nowrite")


# --- item 5: the old version is stopped through its own target ---------------------------------------------------

class SecondLocal(D.LocalTarget):
    "A second local target under another name: a rollout between it and `local` crosses targets."
    name = "local-b"
    def stop(self, row):
        assert row["target"] == self.name, f"{self.name} was asked to stop a {row['target']} row"
        super().stop(row)


def test_the_old_version_is_stopped_through_its_own_target(bento):
    D.register_target(SecondLocal())
    try:
        v1 = nd.deploy(bento[0], name="crossing", target="local-b")
        v2 = nd.deploy(bento[0], name="crossing", target="local")
        assert ledger.get("crossing", v1.version)["status"] == "retired" and v2.status() == "serving"
        assert set(servers_of("crossing")) == {v2.version}
        v3 = nd.rollback("crossing")
        assert v3.version == v1.version and set(servers_of("crossing")) == {v1.version}
        stop_all("crossing")
    finally: D.TARGETS.pop("local-b")


# --- items 10 and 14: refused before anything starts ------------------------------------------------------------

def test_rollback_to_the_version_in_service_is_refused(bento):
    nd.deploy(bento[0], name="samever")
    v2 = nd.deploy(bento[0], name="samever")
    with pytest.raises(nd.InputError, match="in service already"):
        nd.rollback("samever", to_version=v2.version)
    assert set(servers_of("samever")) == {v2.version}
    stop_all("samever")


@pytest.mark.parametrize("bad", ["../../x", "a/b", "..", "x" * 80, "", "dot..dot/.."])
def test_names_that_could_escape_the_home_are_refused_on_every_target(bento, bad):
    for target in D.TARGETS:
        with pytest.raises(nd.InputError):
            nd.deploy(bento[0], name=bad, target=target)
    assert all(r["name"] != bad for r in ledger.rows())
    assert not (home().parent / "x").exists()
