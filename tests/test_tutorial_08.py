"""Tutorial 08 (shadow, canary and A/B: promote_if_better, a shadow compared, a canary crowned, a slow canary rolled
back by the autopilot, a retrain kept out) runs end to end with papermill, in a real kernel, against real services."""
from pathlib import Path

import nbformat
import papermill as pm

import nbdeploy as nd
from tests.conftest import ARTIFACTS
from tests.test_tutorial_07 import outputs

NB = Path(__file__).parents[1] / "tutorials" / "08_shadow_canary_ab.ipynb"
NAME = "churn-evolve-pm"


def test_tutorial_08_runs(tmp_path):
    out = ARTIFACTS / "08_shadow_canary_ab.out.ipynb"
    pm.execute_notebook(str(NB), str(out), parameters=dict(name=NAME), kernel_name="python3", cwd=str(tmp_path),
                        progress_bar=False)
    text = outputs(nbformat.read(out, as_version=4))
    assert "exceeds min_gain=0: deployed v2 as shadow" in text           # the gate let the better retrain in
    assert "blue-green: {'2': 1.0}" in text                             # ... and the canary steps crowned it
    assert "v3 is now 'rolled_back'" in text and "p99 latency is" in text  # the autopilot caught the slow one
    assert "keep - " in text and "Traceback" not in text                 # the retrain no better stayed out
    h = nd.history(NAME)
    assert {"shadow", "promoted", "canary", "rolled back", "decision"} <= set(h.event)
    assert nd.deployment(NAME, 2).status() == "stopped"
