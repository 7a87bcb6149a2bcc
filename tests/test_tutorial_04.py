"""Tutorial 04 (registry, Kubernetes manifests, SageMaker), run for real by papermill in a fresh kernel: a real engine, a
real registry and moto's server, all on 127.0.0.1."""
from pathlib import Path

import papermill as pm

from tests.conftest import ARTIFACTS

TUTORIALS = Path(__file__).parent.parent / "tutorials"


def test_kubernetes_and_cloud_runs_end_to_end(docker_engine, base_tag, registry, aws):
    out = ARTIFACTS / "04_kubernetes_and_cloud.out.ipynb"
    pm.execute_notebook(str(TUTORIALS / "04_kubernetes_and_cloud.ipynb"), str(out), kernel_name="python3", cwd=str(TUTORIALS),
                        parameters={"name": "iris-cloud-pm", "n_estimators": 20, "registry": registry, "aws_endpoint_url": aws})
    text = out.read_text()
    assert f"{registry}/models/iris-cloud-pm:" in text and "@sha256:" in text
    assert "valid: Deployment iris-cloud-pm" in text and "valid: PodDisruptionBudget iris-cloud-pm" in text
    assert "InferenceService" in text and "KUBECONFIG" in text
    assert "/ping 200" in text and "/invocations 200" in text
    assert "'EndpointStatus': 'InService'" in text and "endpoints left: []" in text
    assert "did not start on sagemaker" in text and "does this endpoint implement UpdateEndpoint" in text  # moto lacks it
    assert "models: ['iris-cloud-pm-v1']" in text  # the failed version's model and config were removed again
    assert "endpoint configs: ['iris-cloud-pm-v1']" in text
    assert docker_engine.containers.list(all=True, filters={"ancestor": "nbdeploy/iris-cloud-pm"}) == []
