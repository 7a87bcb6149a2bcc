"""`%deploy` and `%%deploy` through IPython's own shell, deploying real local services."""
import json

import pytest
import requests
from IPython.core.interactiveshell import InteractiveShell
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import nbdeploy as nd


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
