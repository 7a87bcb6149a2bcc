"""Tutorial 06 (the %deploy magic and the deployment card) runs end to end with papermill, in a real kernel."""
from pathlib import Path

import nbformat
import papermill as pm

import nbdeploy as nd
from tests.conftest import ARTIFACTS

NB = Path(__file__).parents[1] / "tutorials" / "06_sidebar_and_magic.ipynb"


def outputs(nb) -> str:
    "Every text output and error message of a run notebook."
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") + o.get("evalue", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_tutorial_06_runs(tmp_path):
    assert hasattr(nd, "load_ipython_extension"), \
        "`%load_ext nbdeploy` needs `from nbdeploy.magic import load_ipython_extension` in nbs/80_api.ipynb"
    out = ARTIFACTS / "06_sidebar_and_magic.out.ipynb"
    pm.execute_notebook(str(NB), str(out), parameters=dict(name="heart-magic-pm", n_estimators=20),
                        kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    text = outputs(nb)
    # the gate refused the unfair forest
    assert "the readiness check failed" in text and "for sex" in text and "--force" in text
    assert "Traceback" not in text                                          # ... with a message, not a traceback
    assert "heart-magic-pm v2 is serving at http://127.0.0.1:" in text and "prediction: <code>[" in text
    assert "heart-magic-pm v1 is back in service" in text and "stopped heart-magic-pm" in text
    assert nd.deployment("heart-magic-pm", 1).status() == "stopped"
