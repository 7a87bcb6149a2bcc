"""The on-prem Docker tutorial, run for real by papermill in a fresh kernel on a real engine."""
from pathlib import Path

import papermill as pm

from tests.conftest import ARTIFACTS

TUTORIALS = Path(__file__).parent.parent / "tutorials"


def test_docker_on_prem_runs_end_to_end(docker_engine, base_tag):
    out = ARTIFACTS / "03_docker_on_prem.out.ipynb"
    pm.execute_notebook(str(TUTORIALS / "03_docker_on_prem.ipynb"), str(out), kernel_name="python3",
                        parameters={"name": "iris-docker-pm", "n_estimators": 20}, cwd=str(TUTORIALS))
    text = out.read_text()
    assert "stable endpoint: http://127.0.0.1:" in text and "0 failed" in text
    left = docker_engine.containers.list(all=True, filters={"label": "org.nbdeploy.deployment=iris-docker-pm"})
    assert left == []
