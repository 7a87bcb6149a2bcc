"""Reliability and security of the local target: fuzzed, hostile bodies, load, faults, and secrets kept out."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

import nbdeploy as nd
from nbdeploy import ledger
from tests.load import hammer, tree_rss
from tests.models import churn_frame, churn_pipeline


@pytest.fixture(scope="module")
def svc():
    df, y = churn_frame(seed=7)
    dep = nd.deploy(churn_pipeline(df, y, 10), name="fuzzed", sample=df)
    yield dep, df
    dep.stop()


@pytest.fixture(scope="module")
def native_svc():
    df, y = churn_frame(seed=8)
    dep = nd.deploy(churn_pipeline(df, y, 10), name="fuzzed-native", sample=df, runtime="native")
    yield dep, df
    dep.stop()


# --- fuzzing from the service's own OpenAPI document -------------------------------------------------------------

@pytest.fixture(scope="module")
def api_schema(svc, native_svc):
    return schemathesis.openapi.from_url(f"{svc[0].url}/docs.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_get_a_5xx(case, svc, native_svc):
    if case.method != "POST" or case.path not in ("/predict", "/predict_proba"):
        return
    for dep in (svc[0], native_svc[0]):
        r = case.call(base_url=dep.url)
        assert r.status_code < 500, (case.body, r.status_code, r.text[:500])
        if r.status_code >= 400:
            body = r.json()
            assert isinstance(body, dict) and (body.get("detail") or body.get("error")), (r.status_code, r.text[:300])


# --- hostile bodies -----------------------------------------------------------------------------------------------

ROW = {"age": 30, "income": 51.5, "plan": "pro", "region": "north"}
HOSTILE = {
    "20 MB of rows": (json.dumps({"inputs": [ROW] * 250_000}), "application/json", "bytes"),  # over the body limit: 413
    "a 5 MB string": (json.dumps({"inputs": [{**ROW, "plan": "x" * 5_000_000}]}), "application/json", "bytes"),
    "deep nesting": ('{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}", "application/json", ""),
    "text/plain": (json.dumps({"inputs": [ROW]}).replace("{", "(", 1), "text/plain", ""),
    "form encoded": ("inputs=1&age=2", "application/x-www-form-urlencoded", ""),
    "multipart": ('--b\r\nContent-Disposition: form-data; name="inputs"\r\n\r\n1\r\n--b--\r\n', "multipart/form-data; boundary=b", ""),
    "non-UTF-8": (b'{"inputs": [{"plan": "\xc3\x28"}]}', "application/json", ""),
    "NaN row": ('{"inputs": [{"age": 30, "income": NaN, "plan": "pro", "region": "north"}]}', "application/json", "income"),
    "null body": ("null", "application/json", ""),
    "empty body": ("", "application/json", ""),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_get_a_4xx_and_the_service_lives_on(svc, native_svc, case):
    body, ctype, field = HOSTILE[case]
    for dep in (svc[0], native_svc[0]):
        r = requests.post(f"{dep.url}/predict", data=body, headers={"Content-Type": ctype}, timeout=120)
        assert 400 <= r.status_code < 500, (case, r.status_code, r.text[:300])
        assert field in r.text[:5000]
        assert dep.predict(svc[1].head(2)).shape == (2,)  # and it still serves


# --- binding, keys, load -----------------------------------------------------------------------------------------

def test_servers_listen_on_loopback_only(svc):
    proc = psutil.Process(int(svc[0].row["handle"]))
    listening = [c.laddr for p in [proc, *proc.children(recursive=True)] for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(a.ip == "127.0.0.1" for a in listening), listening


def test_sustained_load_has_no_errors_and_bounded_memory(svc):
    dep, df = svc
    url, body = f"{dep.url}/predict", {"inputs": df.head(1).to_dict(orient="records")}
    seconds = float(os.environ.get("NBDEPLOY_LOAD_SECONDS", 20))
    asyncio.run(hammer(url, body, 64, 3))  # warm up
    before = tree_rss(int(dep.row["handle"]))
    first = asyncio.run(hammer(url, body, 64, seconds / 2))
    middle = tree_rss(int(dep.row["handle"]))
    second = asyncio.run(hammer(url, body, 64, seconds / 2))
    after = tree_rss(int(dep.row["handle"]))
    assert set(first) == {200} and set(second) == {200}, (first, second)
    growth_mb = (after - middle) / 2**20
    print(f"load: {sum(first.values()) + sum(second.values())} requests in {seconds:.0f} s at 64 clients, rss {before / 2**20:.0f} -> {middle / 2**20:.0f} -> {after / 2**20:.0f} MB")
    assert growth_mb < 50, f"memory grew {growth_mb:.0f} MB in the second half of the run"


# --- faults -------------------------------------------------------------------------------------------------------

def test_a_killed_server_is_reported_dead_and_recorded():
    df, y = churn_frame(seed=9)
    dep = nd.deploy(churn_pipeline(df, y, 5), name="killed", sample=df)
    workers = psutil.Process(int(dep.row["handle"])).children(recursive=True)
    assert workers
    os.killpg(int(dep.row["handle"]), signal.SIGKILL)
    for _ in range(50):
        if dep.status() == "dead": break
        time.sleep(0.2)
    assert dep.status() == "dead"
    assert [e["event"] for e in ledger.events("killed")][-1] == "died"
    gone, orphans = psutil.wait_procs(workers, timeout=15)  # workers die with their parent, none left behind
    assert not orphans, [q.cmdline() for q in orphans]


def test_an_interrupted_deploy_leaves_the_previous_version_serving(monkeypatch):
    df, y = churn_frame(seed=10)
    v1 = nd.deploy(churn_pipeline(df, y, 5), name="interrupted", sample=df)

    def interrupt(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr("nbdeploy.deployer.wait_ready", interrupt)
    with pytest.raises(KeyboardInterrupt):
        nd.deploy(churn_pipeline(df, y, 6), name="interrupted", sample=df)
    rows = {r["version"]: r for r in ledger.rows("interrupted")}
    assert rows[2]["status"] == "failed" and "KeyboardInterrupt" in rows[2]["detail"]
    assert not psutil.pid_exists(int(rows[2]["handle"])) or psutil.Process(int(rows[2]["handle"])).status() == psutil.STATUS_ZOMBIE
    assert rows[1]["status"] == "serving" and v1.status() == "serving"
    assert v1.predict(df.head(3)).shape == (3,)
    v1.stop()


def test_a_locked_ledger_is_a_clear_error(home, monkeypatch):
    nd.deployments()  # make sure the file exists
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time\n"
                               f"c = sqlite3.connect({str(home / 'ledger.sqlite')!r}, isolation_level=None)\n"
                               "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("NBDEPLOY_LEDGER_TIMEOUT", "1")
        with pytest.raises(nd.NbdeployError, match="locked"):
            ledger.begin("blocked", "local", "x:y")
    finally:
        holder.kill(); holder.wait()
    assert ledger.rows("blocked") == []


@pytest.fixture
def tiny_disk(tmp_path):
    "A 3 MB tmpfs, or a skip where this process may not mount one."
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the disk-full test did not run")
    yield mnt
    subprocess.run(["umount", str(mnt)])


def test_a_full_disk_while_packaging_is_a_clear_error(tiny_disk, monkeypatch):
    from sklearn.ensemble import RandomForestClassifier
    df, y = churn_frame(seed=11)
    big = RandomForestClassifier(n_estimators=300, random_state=0).fit(df[["age", "income"]], y)  # pickles to > 3 MB
    monkeypatch.setenv("NBDEPLOY_HOME", str(tiny_disk))
    code = ("import nbdeploy as nd, pickle, sys\nm, X = pickle.load(sys.stdin.buffer)\n"
            "try: nd.package(m, 'too-big', sample=X)\nexcept nd.PackagingError as e: print('ERROR', e); sys.exit(3)\n")
    import pickle
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((big, df[["age", "income"]])), capture_output=True,
                         env={**os.environ, "NBDEPLOY_HOME": str(tiny_disk), "BENTOML_HOME": str(tiny_disk / "bentoml")}, timeout=300)
    assert out.returncode == 3, out.stderr[-2000:]
    assert b"disk is full" in out.stdout, out.stdout[-2000:]


# --- safe storage -------------------------------------------------------------------------------------------------

def test_safe_packaging_stores_with_skops_and_trusts_only_named_types():
    import bentoml
    import numpy as np
    from tests.models import cancer_forest
    model, X, y = cancer_forest(5)
    with pytest.raises(nd.PackagingError, match="sklearn.tree._tree.Tree"):
        nd.package(model, "safe-forest", sample=X[:20], safe=True)
    bento = nd.package(model, "safe-forest", sample=X[:20], safe=True, trusted=["sklearn.tree._tree.Tree"], runtime="native")
    meta = bentoml.models.get(bento.info.models[0].tag).info.metadata
    assert meta["format"] == "skops" and meta["trusted"] == ["sklearn.tree._tree.Tree"]
    dep = nd.deploy(bento, name="safe-forest")
    np.testing.assert_array_equal(dep.predict(X[:30]), model.predict(X[:30]))
    dep.stop()
