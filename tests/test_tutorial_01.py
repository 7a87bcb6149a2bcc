"""The quickstart tutorial, run for real by papermill in a fresh kernel."""
from pathlib import Path

import papermill as pm

from tests.conftest import ARTIFACTS

TUTORIALS = Path(__file__).parent.parent / "tutorials"


def test_quickstart_runs_end_to_end():
    out = ARTIFACTS / "01_quickstart.out.ipynb"
    pm.execute_notebook(str(TUTORIALS / "01_quickstart.ipynb"), str(out), kernel_name="python3",
                        parameters={"name": "quickstart-pm", "n_estimators": 20}, cwd=str(TUTORIALS))
    assert "http://127.0.0.1:" in out.read_text()
