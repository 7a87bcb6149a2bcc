"""`%deploy` and `%%deploy` through IPython's own shell, deploying real local services."""
import importlib.util
import json

import pytest
import requests
from IPython.core.interactiveshell import InteractiveShell
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import nbdeploy as nd
from nbdeploy.faces import routing_of


@pytest.fixture(scope="module")
def ip():
    "IPython's shell with the extension loaded and a fitted model and data in its namespace."
    shell = InteractiveShell.instance()
    ext = "nbdeploy" if hasattr(nd, "load_ipython_extension") else "nbdeploy.magic"
    assert shell.run_cell(f"%load_ext {ext}").success
    X, y = load_iris(return_X_y=True, as_frame=True)
    shell.user_ns.update(X=X, y=y, clf=LogisticRegression(max_iter=500).fit(X, y),
                         clf2=LogisticRegression(max_iter=500, C=0.5).fit(X, y))
    yield shell
    for name in ("magic-iris",):
        try: nd.stop(name)
        except nd.NbdeployError: pass


def test_load_ext_nbdeploy_registers_the_magic():
    if not hasattr(nd, "load_ipython_extension"):
        pytest.skip("nbdeploy does not re-export load_ipython_extension yet (nbs/80_api.ipynb): "
                    "`%load_ext nbdeploy.magic` works")
    shell = InteractiveShell.instance()
    assert shell.run_cell("%load_ext nbdeploy").success and "deploy" in shell.magics_manager.magics["line"]


def run(ip, code):
    "Run a cell; its result (raising if it failed with anything but a UsageError)."
    r = ip.run_cell(code)
    if r.error_in_exec is not None and type(r.error_in_exec).__name__ != "UsageError": raise r.error_in_exec
    return r


def test_mistakes_give_usage_not_traceback(ip, capsys):
    for code in ("%deploy clf --nmae x", "%deploy nothing_here --test X y", "%deploy clf --test X", "%deploy rollback",
                 "%%deploy\nmodel: clf\nsensitiv: x\n", "%deploy rollback never-deployed"):
        r = run(ip, code)
        assert type(r.error_in_exec).__name__ == "UsageError", code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unrecognized arguments: --nmae" in err and "no variable 'nothing_here'" in err
    assert "usage:" in err and "sensitiv" in err and "no deployment named 'never-deployed'" in err


def test_deploy_status_rollback_stop(ip, capsys):
    r = run(ip, "dep = %deploy clf --name magic-iris --test X y --sensitive 'petal width (cm)'")
    assert r.success, r.error_in_exec
    dep = ip.user_ns["dep"]
    out = capsys.readouterr().out
    assert "(sensitive: petal width (cm))" in out and "verdict: " in out
    assert f"magic-iris v{dep.version} is serving at {dep.url}" in out
    answer = requests.post(f"{dep.url}/predict", json={"inputs": X_rows(ip)}, timeout=30).json()
    assert answer["predictions"] == ip.user_ns["clf"].predict(ip.user_ns["X"].head(2)).tolist()

    r = run(ip, "%%deploy\nmodel: clf2\nname: magic-iris\ntest: [X, y]\n")
    assert r.success, r.error_in_exec
    assert r.result.version == dep.version + 1
    assert run(ip, "%deploy status").result.query("name == 'magic-iris'").status.tolist()[:2] == ["serving", "retired"]
    back = run(ip, "%deploy rollback magic-iris").result
    assert back.version == dep.version and back.status() == "serving"
    assert "serving" in (run(ip, "%deploy status magic-iris"), capsys.readouterr().out)[1]
    assert run(ip, "%deploy logs magic-iris").success and "magic-iris" in capsys.readouterr().out  # BentoServer's lines
    r = run(ip, "%deploy monitor magic-iris --window 1h")  # the Monitor; its summary printed outside a notebook
    assert r.success and type(r.result).__name__ == "Monitor", r.error_in_exec
    assert capsys.readouterr().out.startswith(f"magic-iris v{dep.version} over 1h")
    assert type(run(ip, "%deploy monitor magic-iris --window soon").error_in_exec).__name__ == "UsageError"
    canary_round(ip, capsys, "magic-iris", dep.version)  # on the same champion: one deploy more, not two
    assert run(ip, "%deploy stop magic-iris").success and "stopped magic-iris" in capsys.readouterr().out
    assert nd.deployment("magic-iris", dep.version).status() == "stopped"


def test_the_sidebar_entry_points_speak_the_protocol(ip, capsys):
    "panel_deploy prints step events and one result event last; panel_report answers the version's report as HTML."
    from nbdeploy.faces import RESULT_MARK, kernel_models, panel_deploy, panel_report
    assert kernel_models()._repr_json_()["protocol"] == {"mark": RESULT_MARK, "version": 1}
    out = panel_deploy(json.dumps({"model": "clf", "name": "panel-iris", "X_test": "X", "y_test": "y"}))
    try:
        lines = capsys.readouterr().out.splitlines()
        events = [json.loads(x[len(RESULT_MARK):]) for x in lines if x.startswith(RESULT_MARK)]
        steps = [e for e in events if e["event"] == "step"]
        assert [s["label"] for s in steps] == ["check", "package", "start on local", "health check"]
        assert [s["i"] for s in steps] == [0, 1, 2, 3] and {s["n"] for s in steps} == {4}
        assert events[-1] == out and out["event"] == "result" and out["ok"] and out["report"] is True, out
        assert "checking clf on X/y" in lines
        assert not any('"event"' in x for x in lines if not x.startswith(RESULT_MARK))
        rep = panel_report("panel-iris", out["version"])._repr_json_()
        assert rep["ok"] and rep["title"] == f"readiness: panel-iris v{out['version']}" and "<" in rep["html"], rep
        assert panel_report("panel-iris", 99)._repr_json_()["ok"] is False
    finally: nd.stop("panel-iris")


def X_rows(ip):
    "Two rows of the iris frame as the service's JSON."
    return ip.user_ns["X"].head(2).to_dict(orient="records")



def canary_round(ip, capsys, name: str, live: int):
    "clf2 as a 20% canary beside `name` v`live` via the magic; promote to 50% on the real nginx endpoint; roll back."
    r = run(ip, f"%deploy clf2 --name {name} --sample X --strategy canary --traffic 0.2 --steps 0.2,0.5,1")
    assert r.success, r.error_in_exec
    new = r.result.version
    out = capsys.readouterr().out
    assert "as a canary beside the champion" in out and f"v{live} 80% · v{new} 20% canary" in out, out
    assert nd.routing(name)["shares"] == {str(live): 0.8, str(new): 0.2}
    url = nd.deployment(name, live).url
    assert all(requests.post(f"{url}/predict", json={"inputs": X_rows(ip)}, timeout=30).ok for _ in range(4))

    assert run(ip, f"%deploy promote {name}").success
    assert f"{name} promoted: v{live} 50% · v{new} 50% canary" in capsys.readouterr().out
    assert nd.routing(name)["shares"] == {str(live): 0.5, str(new): 0.5}
    r = run(ip, f"%deploy promote {name} --traffic lots")
    assert type(r.error_in_exec).__name__ == "UsageError" and "--traffic must be a fraction" in capsys.readouterr().err
    h = run(ip, f"%deploy history {name}").result
    assert list(h.event)[-2:] == ["canary", "promoted"] and h.shares.iloc[-1] == f"v{live} 50%, v{new} 50%", h
    if importlib.util.find_spec("nbdeploy.compare"):  # nd.compare; too little traffic is refused as a UsageError
        r = run(ip, f"%deploy compare {name} --window 1h")
        assert r.success or "nbdeploy: " in str(r.error_in_exec), r.error_in_exec

    assert run(ip, f"%deploy rollback {name}").success
    assert f"{name} v{live} is back in service" in capsys.readouterr().out
    assert nd.routing(name)["shares"] == {str(live): 1.0} and routing_of(name)["actions"] == []
    assert nd.deployment(name, new).status() == "rolled_back" and nd.deployment(name, live).status() == "serving"
