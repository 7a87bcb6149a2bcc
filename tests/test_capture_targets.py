"""Capture on the targets: real servers write records where the deployer said, rollback keeps a version's settings.

The local target runs real `bentoml serve` processes; the docker test a real container (read-only, cap_drop=ALL, as
uid 10001) writing through the bind mount at /capture. SageMaker's Data Capture and the Kubernetes manifests are
tested in tests/test_sagemaker.py and tests/test_kubernetes.py.
"""
import json
import time

import pytest
import requests

import nbdeploy as nd
import nbdeploy.docker_target  # registers target="docker"
import nbdeploy.sagemaker  # registers target="sagemaker", whose capture cannot redact
from nbdeploy import ledger
from nbdeploy.capture import sampled
from nbdeploy.deployer import capture_of, get_target
from nbdeploy.errors import InputError
from nbdeploy.packager import reference
from tests.docker_fixtures import iris_model, make_bento

SECRET = "sepal width (cm)"  # the field every test redacts


def records(dep, n: int, timeout: float = 30) -> list[dict]:
    "The version's captured records once there are at least `n` (the writer flushes off the request path)."
    t, row = get_target(dep.target), dep.row
    end = time.monotonic() + timeout
    while True:
        got = t.capture_records(row)
        if len(got) >= n or time.monotonic() > end: return got
        time.sleep(0.1)


def send(dep, X, ids: list[str]) -> None:
    "One /predict per request id, each with that id in X-Request-ID."
    rows = json.loads(X.head(2).to_json(orient="records"))
    for rid in ids:
        r = requests.post(f"{dep.url}/predict", json={"inputs": rows}, headers={"X-Request-ID": rid}, timeout=30)
        assert r.status_code == 200 and r.headers["X-Request-ID"] == rid, r.text


@pytest.fixture(scope="module")
def bento():
    return make_bento("iris-capture")


def test_bad_settings_are_refused_before_the_ledger_records(bento):
    for kw, why in (({"capture": 1.5}, "capture= is the fraction"), ({"capture": "all"}, "capture= is the fraction"),
                    ({"redact": "email"}, "redact= is a list"), ({"redact": ["email"]}, "does not take"),
                    ({"reference_rows": 5}, "a Bento carries the reference")):
        with pytest.raises(InputError, match=why): nd.deploy(bento, name="cap-bad", **kw)
    # SageMaker's Data Capture writes whole requests: a redaction it could not honour is refused too
    with pytest.raises(InputError, match="writes whole requests"):
        nd.deploy(bento, name="cap-bad", target="sagemaker", redact=[SECRET])
    assert ledger.rows("cap-bad") == []


def test_local_capture_redaction_off_and_rollback(bento):
    _, X, _ = iris_model()
    assert reference(bento)["n"] == len(X)  # the Bento carries its drift reference
    v1 = nd.deploy(bento, name="cap-local", capture=1.0, redact=[SECRET])
    try:
        assert capture_of(v1.row) == {"fraction": 1.0, "redact": [SECRET]}
        send(v1, X, ["a-1", "a-2", "a-3"])
        got = records(v1, 3)
        assert [r["eventMetadata"]["eventId"] for r in got] == ["a-1", "a-2", "a-3"]
        meta = got[0]["nbdeploy"]
        assert (meta["deployment"], meta["version"], meta["route"], meta["status"], meta["rows"]) == \
            ("cap-local", 1, "/predict", 200, 2)
        inputs = json.loads(got[0]["captureData"]["endpointInput"]["data"])["inputs"]
        assert all(SECRET not in row and "sepal length (cm)" in row for row in inputs)
        assert all(SECRET not in r["captureData"]["endpointInput"]["data"] for r in got)  # the name is not written

        v2 = nd.deploy(bento, name="cap-local", capture=False)
        send(v2, X, ["b-1", "b-2"])
        # off: no folder is made and no server is told of one, so nothing can be written for v2
        local = get_target("local")
        assert local.capture_records(v2.row) == [] and not local.capture_dir(v2.row).exists()
        assert capture_of(v2.row) == {"fraction": 0.0, "redact": []}

        back = nd.rollback("cap-local", to_version=1)
        assert back.version == 1 and capture_of(back.row) == {"fraction": 1.0, "redact": [SECRET]}
        send(back, X, ["c-1"])
        got = records(back, 4)
        assert [r["eventMetadata"]["eventId"] for r in got][-1] == "c-1"
        assert all(SECRET not in json.loads(r["captureData"]["endpointInput"]["data"])["inputs"][0] for r in got)
    finally: nd.stop("cap-local")


def test_docker_capture_writes_through_the_mount(docker_engine, iris_image):
    bento, _, _ = iris_image
    _, X, _ = iris_model()
    dep = nd.deploy(bento, name="cap-docker", target="docker", capture=0.5)
    try:
        c = docker_engine.containers.get(dep.row["handle"])
        host = c.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and c.attrs["Config"]["User"] == "10001"
        mount = next(m for m in c.attrs["Mounts"] if m["Destination"] == "/capture")
        assert mount["RW"] and mount["Source"] == str(get_target("docker").capture_dir(dep.row))
        assert "NBDEPLOY_CAPTURE_DIR=/capture" in c.attrs["Config"]["Env"]
        ids = [f"d-{i}" for i in range(40)]
        send(dep, X, ids)
        want = [i for i in ids if sampled(i, 0.5)]  # sampling by hash: exactly these, whichever process decides
        assert 0 < len(want) < len(ids)
        got = records(dep, len(want))
        assert sorted(r["eventMetadata"]["eventId"] for r in got) == sorted(want)
    finally: dep.stop()
