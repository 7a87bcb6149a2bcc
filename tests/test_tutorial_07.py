"""Tutorial 07 (monitoring and drift: capture, drift, an alert, late labels, version 2) runs end to end with
papermill, in a real kernel, against real local services."""
from pathlib import Path

import nbformat
import papermill as pm

import nbdeploy as nd
from nbdeploy import ledger
from tests.conftest import ARTIFACTS

NB = Path(__file__).parents[1] / "tutorials" / "07_monitoring_and_drift.ipynb"
NAME = "churn-watch-pm"


def outputs(nb) -> str:
    "Every text output and error message of a run notebook."
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") + o.get("evalue", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_tutorial_07_runs(tmp_path):
    out = ARTIFACTS / "07_monitoring_and_drift.out.ipynb"
    pm.execute_notebook(str(NB), str(out), parameters=dict(name=NAME, n_train=2000, n_live=300, shap_rows=0),
                        kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    text = outputs(nb)
    assert "dataset drifted: True" in text                      # the shifted traffic drifted ...
    assert "exit code 1" in text                                # ... the fail alert fired, also for cron and CI
    assert f"{NAME} v2 serving at http://127.0.0.1:" in text and "version 2 drifted: False" in text
    html = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert html and max(map(len, html)) < 1_000_000             # the monitor rendered in the cell, small
    assert "Traceback" not in text
    assert nd.deployment(NAME, 2).status() == "stopped"
    assert [e for e in ledger.events(NAME) if e["event"] == "alert"], "no alert event in the ledger"
