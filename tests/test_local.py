"""The local target end to end: real Bento servers on 127.0.0.1, the HTTP contract, versions, rollback, auth."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import bentoml
import numpy as np
import pytest
import requests

import nbdeploy as nd
from nbdeploy import ledger
from tests.models import cancer_forest, churn_frame, churn_pipeline


@pytest.fixture(scope="module")
def churn():
    df, y = churn_frame()
    pipe = churn_pipeline(df, y)
    dep = nd.deploy(pipe, name="churn", sample=df)
    yield pipe, df, dep
    dep.stop()


@pytest.fixture(scope="module")
def forest():
    model, X, y = cancer_forest()
    dep = nd.deploy(model, name="cancer-array", sample=X[:50], runtime="native")
    yield model, X, dep
    dep.stop()


def post(dep, body, route="/predict", **kw):
    return requests.post(f"{dep.url}{route}", data=body if isinstance(body, (str, bytes)) else json.dumps(body),
                         headers={"Content-Type": "application/json", **kw.pop("headers", {})}, timeout=30, **kw)


# --- the HTTP contract ------------------------------------------------------------------------------------------

def test_pipeline_predictions_match_the_notebook(churn):
    pipe, df, dep = churn
    assert dep.status() == "serving" and dep.url.startswith("http://127.0.0.1:")
    np.testing.assert_array_equal(dep.predict(df), pipe.predict(df))
    np.testing.assert_allclose(dep.predict_proba(df.head(50)), pipe.predict_proba(df.head(50)), atol=1e-4)  # ONNX: float32
    assert list(dep.classes_) == list(pipe.classes_)


def test_runtime_is_onnx_where_it_matches_and_native_when_asked(churn, forest):
    onnx, native = churn[2].metadata()["runtime"], forest[2].metadata()["runtime"]
    assert onnx["runtime"] == "onnx" and onnx["parity"]["label_agreement"] == 1.0 and onnx["parity"]["max_proba_diff"] <= 1e-4
    assert native == {"runtime": "native", "reason": "native runtime requested"}
    assert any(r.startswith("onnxruntime==") for r in churn[2].metadata()["requirements"])


def test_bare_array_model_gets_f_columns(forest):
    model, X, dep = forest
    meta = dep.metadata()
    assert [c["name"] for c in meta["input_schema"]["columns"]] == [f"f{i}" for i in range(X.shape[1])]
    np.testing.assert_array_equal(dep.predict(X[:100]), model.predict(X[:100]))
    r = post(dep, {"inputs": [{f"f{i}": float(v) for i, v in enumerate(X[0])}]})
    assert r.status_code == 200 and r.json() == {"predictions": [int(model.predict(X[:1])[0])]}


def test_bentoml_client_speaks_the_contract(churn):
    pipe, df, dep = churn
    rows = df.head(3).to_dict(orient="records")
    with bentoml.SyncHTTPClient(dep.url) as client:
        out = client.predict(inputs=rows)
    assert out["predictions"] == pipe.predict(df.head(3)).tolist()


def test_metadata_health_and_metrics(churn):
    pipe, df, dep = churn
    meta = requests.get(f"{dep.url}/metadata", timeout=10).json()
    assert meta["name"] == "churn" and meta["deployment"] == {"name": "churn", "version": str(dep.version)}
    assert [c["name"] for c in meta["input_schema"]["columns"]] == list(df.columns)
    assert any(r.startswith("scikit-learn==") for r in meta["requirements"])
    for route in ("/livez", "/readyz"):
        assert requests.get(f"{dep.url}{route}", timeout=10).status_code == 200
    metrics = requests.get(f"{dep.url}/metrics", timeout=10).text
    assert "bentoml_service_request_total" in metrics


def test_sagemaker_contract_ping_and_invocations(churn):
    pipe, df, dep = churn
    assert requests.get(f"{dep.url}/ping", timeout=10).status_code == 200
    r = post(dep, {"inputs": df.head(2).to_dict(orient="records")}, route="/invocations")
    assert r.status_code == 200 and r.json()["predictions"] == pipe.predict(df.head(2)).tolist()
    assert post(dep, {"inputs": []}, route="/invocations").status_code == 400


def test_unseen_category_allowed_where_the_pipeline_takes_it(churn):
    pipe, df, dep = churn
    row = {**df.head(1).to_dict(orient="records")[0], "region": "west"}
    r = post(dep, {"inputs": [row]})
    assert r.status_code == 200 and r.json()["predictions"] == pipe.predict(df.head(1).assign(region="west")).tolist()


# --- bad input: always a 4xx that names the field ----------------------------------------------------------------

GOOD = {"age": 30, "income": 51.5, "plan": "pro", "region": "north"}
BAD = {
    "missing column": ({"inputs": [{k: v for k, v in GOOD.items() if k != "income"}]}, "income"),
    "unknown column": ({"inputs": [{**GOOD, "shoe_size": 44}]}, "shoe_size"),
    "string for a number": ({"inputs": [{**GOOD, "income": "lots"}]}, "income"),
    "fraction for an integer": ({"inputs": [{**GOOD, "age": 30.5}]}, "age"),
    "unseen closed category": ({"inputs": [{**GOOD, "plan": "platinum"}]}, "plan"),
    "null where none was seen": ({"inputs": [{**GOOD, "age": None}]}, "age"),
    "NaN": ('{"inputs": [{"age": 30, "income": NaN, "plan": "pro", "region": "north"}]}', "income"),
    "Infinity": ('{"inputs": [{"age": 30, "income": Infinity, "plan": "pro", "region": "north"}]}', "income"),
    "empty inputs": ({"inputs": []}, "inputs"),
    "no inputs key": ({"rows": [GOOD]}, "inputs"),
    "inputs not a list": ({"inputs": GOOD}, "inputs"),
    "row not an object": ({"inputs": [[30, 51.5, "pro", "north"]]}, "inputs"),
    "invalid JSON": ('{"inputs": [', "json"),
    "non-UTF-8 bytes": (b'{"inputs": [{"plan": "\xff\xfe"}]}', ""),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_naming_the_field(churn, case):
    body, field = BAD[case]
    r = post(churn[2], body)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert field.lower() in r.text.lower(), (case, r.text)


def test_too_many_rows_is_refused(churn):
    r = post(churn[2], {"inputs": [GOOD] * 10_001})
    assert r.status_code == 400 and "inputs" in r.text and "10000" in r.text


def test_client_turns_a_refusal_into_an_input_error(churn):
    pipe, df, dep = churn
    with pytest.raises(nd.InputError, match="plan"):
        dep.predict(df.head(2).assign(plan="platinum"))


# --- versions, rollback, failed deploys ------------------------------------------------------------------------

def test_versions_and_rollback():
    df, y = churn_frame(seed=1)
    v1 = nd.deploy(churn_pipeline(df, y, 10), name="rollme", sample=df)
    v2 = nd.deploy(churn_pipeline(df, y, 20), name="rollme", sample=df)
    assert (v1.version, v2.version) == (1, 2)
    assert v1.status() == "retired" and v2.status() == "serving"
    with pytest.raises(requests.ConnectionError):  # v1's own server is gone (its row's URL is the stable endpoint's)
        requests.get(f"http://127.0.0.1:{v1.row['port']}/readyz", timeout=5)
    back = nd.rollback("rollme")
    assert back.version == 1 and back.status() == "serving" and v2.status() == "rolled_back"
    assert requests.get(f"{back.url}/metadata", timeout=10).json()["deployment"]["version"] == "1"
    table = nd.deployments("rollme")
    assert dict(zip(table.version, table.status)) == {2: "rolled_back", 1: "serving"}
    events = [(e["version"], e["event"]) for e in ledger.events("rollme")]
    assert (1, "deployed") in events and (2, "retired") not in events and (2, "rolled back") in events
    assert (1, "rolled back in") in events
    back.stop()
    assert back.status() == "stopped"


def tampered_bento(df, y, name):
    "A Bento whose model file was changed after packaging."
    bento = nd.package(churn_pipeline(df, y, 15), name, sample=df)
    model_file = Path(bentoml.models.get(bento.info.models[0].tag).path) / "model.pkl"
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    return bento


@pytest.mark.parametrize("where", ["before start", "in the server"])
def test_failed_deploy_keeps_the_previous_version_serving(where, monkeypatch):
    name = "guarded-" + where.split()[-1]
    df, y = churn_frame(seed=2)
    good = nd.deploy(churn_pipeline(df, y, 10), name=name, sample=df)
    bento = tampered_bento(df, y, name)
    if where == "in the server":  # skip the deployer's own check: the server must refuse the file by itself
        monkeypatch.setattr("nbdeploy.deployer.verify", lambda bento: None)
    with pytest.raises(nd.DeployError, match="SHA-256"):
        nd.deploy(bento, name=name, timeout=90)
    assert good.status() == "serving"
    assert good.predict(df.head(5)).tolist() == churn_pipeline(df, y, 10).predict(df.head(5)).tolist()
    rows = {r["version"]: r for r in ledger.rows(name)}
    assert rows[2]["status"] == "failed" and "SHA-256" in rows[2]["detail"] and rows[1]["status"] == "serving"
    assert [e["event"] for e in ledger.events(name) if e["version"] == 2][-1] == "failed"
    good.stop()


def test_rollback_needs_an_earlier_healthy_version():
    df, y = churn_frame(seed=3)
    only = nd.deploy(churn_pipeline(df, y, 5), name="lonely", sample=df)
    with pytest.raises(nd.NotFoundError, match="earlier version"):
        nd.rollback("lonely")
    assert only.status() == "serving"
    import psutil
    tree = [psutil.Process(int(only.row["handle"]))]
    tree += tree[0].children(recursive=True)
    only.stop()
    assert not any(q.is_running() and q.status() != psutil.STATUS_ZOMBIE for q in tree)  # server and workers gone


def test_bad_names_and_targets_are_refused():
    df, y = churn_frame()
    with pytest.raises(nd.InputError, match="invalid name"):
        nd.package(churn_pipeline(df, y, 5), "My Model", sample=df)
    with pytest.raises(nd.InputError, match="unknown target"):
        nd.deploy(churn_pipeline(df, y, 5), name="x", sample=df, target="mars")
    with pytest.raises(nd.InputError, match="sample="):
        nd.deploy(churn_pipeline(df, y, 5), name="x")
    with pytest.raises(nd.InputError, match="predict"):
        nd.package(object(), "x", sample=df)


# --- API keys ---------------------------------------------------------------------------------------------------

def test_api_key_guards_everything_but_health(home):
    df, y = churn_frame(seed=4)
    key = "k3y-" + "x" * 28
    dep = nd.deploy(churn_pipeline(df, y, 5), name="secured", sample=df, api_key=key)
    row = {"inputs": df.head(1).to_dict(orient="records")}
    assert post(dep, row).status_code == 401
    assert post(dep, row, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert post(dep, row, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert post(dep, row, headers={"X-API-Key": key}).status_code == 200
    assert requests.get(f"{dep.url}/metadata", timeout=5).status_code == 401
    assert requests.get(f"{dep.url}/readyz", timeout=5).status_code == 200
    assert dep.predict(df.head(3)).shape == (3,)
    with pytest.raises(nd.InputError, match="API key"):
        nd.Deployment("secured", dep.version, api_key="wrong").predict(df.head(1))
    leaked = [p for p in home.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaked == [], f"the API key was written to {leaked}"
    dep.stop()


# --- code that lives in the notebook, and ephemeral servers -------------------------------------------------------

NOTEBOOK_CODE = textwrap.dedent('''
    import sys, numpy as np, pandas as pd
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    sys.path.insert(0, sys.argv[1])
    import helper_module                        # a .py file beside the notebook, not installed

    class Doubler(BaseEstimator, TransformerMixin):   # defined in a cell: lives in __main__
        def fit(self, X, y=None): return self
        def transform(self, X): return helper_module.scale(np.asarray(X, dtype=float), 2.0)

    import nbdeploy as nd
    X = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    y = (X.a > 20).astype(int)
    model = make_pipeline(Doubler(), LogisticRegression()).fit(X, y)
    dep = nd.deploy(model, name="custom-code", sample=X, ephemeral=True)
    assert dep.predict(X).tolist() == model.predict(X).tolist()
    print("PID", dep.row["handle"], "CODE", dep.metadata()["code_by_value"])
''')


def test_notebook_defined_code_travels_and_ephemeral_servers_stop(tmp_path, home):
    (tmp_path / "helper_module.py").write_text("def scale(X, k):\n    return X * k\n")
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK_CODE)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**__import__("os").environ})
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("PID"))
    assert "__main__" in line and "helper_module" in line
    pid = int(line.split()[1])
    import psutil
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
