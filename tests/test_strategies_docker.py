"""Canary and shadow on the docker target (issue 16, "Done when": local and docker, with real servers): the
endpoint's nginx containers split and mirror between version containers; captures land through each one's mount."""
import requests

import nbdeploy as nd
from nbdeploy import capture, ledger
from nbdeploy.config import subdir
from nbdeploy.docker_target import endpoint
from tests.conftest import poll
from tests.docker_fixtures import iris_model
from tests.test_strategies import Poller

NAME = "iris-evolve"


def captured(version):
    "The request ids version `version` of NAME captured so far."
    return {r["eventMetadata"]["eventId"] for r in capture.read_records(subdir("capture") / NAME / f"v{version}")}


def test_docker_canary_split_shadow_copy_and_crowning_drop_no_request(docker_engine, iris_image):
    bento, _, _ = iris_image
    _, X, _ = iris_model()
    row = X.head(1).to_dict("records")
    v1 = nd.deploy(bento, name=NAME, target="docker")
    url = endpoint(NAME)
    try:
        with Poller(url, {"inputs": row}) as client:
            canary = nd.deploy(bento, name=NAME, target="docker", strategy="canary", traffic=0.3)
            ids = [f"dsplit-{i}" for i in range(300)]
            with requests.Session() as s:
                for i in ids:
                    assert s.post(f"{url}/predict", json={"inputs": row}, headers={"X-Request-ID": i}).ok
            a, b = poll(lambda: (lambda a, b: (a, b) if len((a | b) & set(ids)) == 300 else None)(
                captured(v1.version), captured(canary.version)), what="the split requests captured")
            assert not a & b & set(ids) and 0.22 <= len(b & set(ids)) / 300 <= 0.38
            nd.promote(NAME, traffic=1.0)
            assert ledger.live(NAME)["version"] == canary.version
            shadow = nd.deploy(bento, name=NAME, target="docker", strategy="shadow")
            mirrored = [f"dmirror-{i}" for i in range(50)]
            with requests.Session() as s:
                for i in mirrored: assert s.post(f"{url}/predict", json={"inputs": row}, headers={"X-Request-ID": i}).ok
            poll(lambda: set(mirrored) <= captured(canary.version) and set(mirrored) <= captured(shadow.version),
                 what="the shadow container capturing every mirrored request")
            nd.rollback(NAME)
        assert client.n > 20 and client.failed == [], client.failed[:5]
        assert ledger.get(NAME, shadow.version)["status"] == "rolled_back"
        assert [e for e in nd.history(NAME).event] == ["deployed", "canary", "promoted", "shadow", "rolled back"]
    finally:
        for r in ledger.in_service(NAME): nd.Deployment(NAME, r["version"]).stop()
