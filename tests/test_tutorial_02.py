"""Tutorial 02 (readiness and fairness) runs end to end with papermill, small."""
from pathlib import Path

import nbformat
import papermill as pm

NB = Path(__file__).parents[1] / "tutorials" / "02_readiness_and_fairness.ipynb"


def test_tutorial_02_runs(tmp_path):
    out = tmp_path / "02_out.ipynb"
    pm.execute_notebook(str(NB), str(out), parameters=dict(sample_rows=2000, shap_rows=40, lime_rows=1),
                        kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "exit code 1" in text                   # the unfair model fails the gate on the command line too
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
