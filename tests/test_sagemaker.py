"""The sagemaker target: real boto3 over HTTP against moto in server mode, and the SageMaker image run on a real engine.

What moto (5.2.5) emulates here: the SageMaker control plane (CreateModel, CreateEndpointConfig with its
ProductionVariants and weights, CreateEndpoint, DescribeEndpoint, UpdateEndpointWeightsAndCapacities, Delete*;
endpoints are InService at once), InvokeEndpoint (answers it is told to give, keyed by the request's headers and
body), and ECR's API (CreateRepository, DescribeRepositories, GetAuthorizationToken). What it does not:
UpdateEndpoint (it answers 500), ShadowProductionVariants (accepted, then dropped from what DescribeEndpointConfig
returns — the test reads what the server received from moto's own request recorder instead), routing a request
by weight or by TargetVariant (it runs no model), name clashes (it overwrites a model of the same name), running the
container, and a registry that accepts layers — the image bytes go to Debian's docker-registry on 127.0.0.1 instead
(`SageMakerTarget(registry=...)`).
"""
import json

import boto3
import pytest
import requests

import nbdeploy as nd
from nbdeploy import ledger
from nbdeploy.config import free_port
from nbdeploy.errors import DeployError, InputError
from nbdeploy.sagemaker import SageMakerTarget, _sm_name, sagemaker_image
from tests.cloud_fixtures import moto_recording
from tests.docker_fixtures import iris_model, make_bento, wait_serving

ROLE = "arn:aws:iam::123456789012:role/nbdeploy-sagemaker"


def test_image_answers_ping_and_invocations(docker_engine, iris_image):
    "Run the SageMaker image as SageMaker does (`docker run IMAGE serve`), on loopback; /ping and /invocations answer."
    bento, tag, _ = iris_image
    image = sagemaker_image(tag)
    assert sagemaker_image(tag) == image  # built once
    port = free_port()
    c = docker_engine.containers.run(image, ["serve"], detach=True, network_mode="host",
                                     environment={"HOST": "127.0.0.1", "PORT": str(port)})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_serving(c, url)
        assert requests.get(f"{url}/ping", timeout=5).status_code == 200
        model, X, _ = iris_model()
        rows = X.head(5).to_dict(orient="records")
        r = requests.post(f"{url}/invocations", json={"inputs": rows}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.predict(X.head(5)).tolist()
        bad = requests.post(f"{url}/invocations", json={"inputs": [{"nope": 1}]}, timeout=30)
        assert bad.status_code == 400 and "sepal" in bad.text
    finally: c.remove(force=True)


def _row(name, version, bento, started):
    "The ledger row `rollout` would have recorded after `start`."
    ledger.update(name, version, "started", started["url"], url=started["url"], handle=started["handle"], image=started["image"])
    return ledger.get(name, version)


@pytest.fixture
def retire(aws):
    "Mark this test's ledger rows stopped afterwards, so the session's final clean-up never calls AWS for them."
    names = []
    yield names
    for n in names:
        for r in ledger.rows(n): ledger.update(n, r["version"], "stopped", status="stopped")


def test_sagemaker_flow_against_moto(aws, registry, iris_image, monkeypatch, retire):
    bento, _, _ = iris_image
    retire.append("iris-sm")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    t = SageMakerTarget(role=ROLE, registry=registry, wait=30)
    sm, ecr = boto3.client("sagemaker"), boto3.client("ecr")
    name = "iris-sm"
    row1 = ledger.begin(name, "sagemaker", str(bento.tag))
    started = t.start(bento, name, row1["version"], {"NBDEPLOY_API_KEY": "secret", "NBDEPLOY_DEPLOYMENT_NAME": name})
    row1 = _row(name, row1["version"], bento, started)
    t.wait_ready(row1)
    assert t.alive(row1)
    h = json.loads(row1["handle"])
    # every resource exists in moto, named after the deployment and version, pointing at the pushed image
    assert ecr.describe_repositories(repositoryNames=["nbdeploy/iris-sm"])["repositories"]
    model = sm.describe_model(ModelName=h["model"])
    assert model["PrimaryContainer"]["Image"] == started["image"] and model["ExecutionRoleArn"] == ROLE
    assert "NBDEPLOY_API_KEY" not in model["PrimaryContainer"].get("Environment", {})
    cfg = sm.describe_endpoint_config(EndpointConfigName=h["config"])
    assert cfg["ProductionVariants"][0]["ModelName"] == h["model"] == "iris-sm-v1"
    ep = sm.describe_endpoint(EndpointName="iris-sm")
    assert ep["EndpointStatus"] == "InService" and ep["EndpointConfigName"] == "iris-sm-v1"
    assert started["url"].endswith("/endpoints/iris-sm/invocations")
    # the image really is in the registry under the ECR repository's name
    repo, digest = started["image"].split("@")
    assert requests.get(f"http://{registry}/v2/nbdeploy/iris-sm/tags/list", timeout=10).json()["tags"] == [repo.rsplit(":", 1)[1]]
    assert "InService on iris-sm-v1" in t.logs(row1)

    # an update: start stages v2's model and config and leaves the endpoint on v1; promote moves it. moto has no
    # UpdateEndpoint, so this exercises the failure path for real: the error names it, the endpoint still serves v1,
    # and stopping v2 (what the deployer does then) removes its model and config
    row2 = ledger.begin(name, "sagemaker", str(bento.tag))
    row2 = _row(name, row2["version"], bento, t.start(bento, name, row2["version"], {}))
    assert json.loads(row2["handle"])["how"] == "staged" and not t.alive(row2) and t.alive(row1)
    with pytest.raises(DeployError, match="updating endpoint iris-sm to iris-sm-v2 failed"): t.promote(row2)
    assert sm.describe_endpoint(EndpointName="iris-sm")["EndpointConfigName"] == "iris-sm-v1"
    assert t.promote(row1) == {"url": started["url"]}  # already there: nothing to update
    t.stop(row2)
    names = [m["ModelName"] for m in sm.list_models()["Models"]]
    assert names == ["iris-sm-v1"]
    assert sm.describe_endpoint(EndpointName="iris-sm")["EndpointConfigName"] == "iris-sm-v1"

    # a clash: a leftover model with the next version's name (from an earlier ledger) is named, nothing is created
    sm.create_model(ModelName="iris-sm-v3", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": started["image"]})
    with pytest.raises(DeployError, match="name is taken.*iris-sm-v3"):
        t.start(bento, name, 3, {})
    assert sm.describe_endpoint(EndpointName="iris-sm")["EndpointConfigName"] == "iris-sm-v1"

    # stop (delete): endpoint, config and model go
    t.stop(row1)
    assert not t.alive(row1)
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["iris-sm-v3"]
    assert sm.list_endpoint_configs()["EndpointConfigs"] == [] and sm.list_endpoints()["Endpoints"] == []
    assert "does not exist" in t.logs(row1)


def _sagemaker_record(i: int, at: str) -> dict:
    "One record as SageMaker's Data Capture writes it: input and output JSON text, no nbdeploy fields."
    rows = [{"sepal length (cm)": 5.1 + i, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]
    part = lambda mode, data: {"observedContentType": "application/json", "mode": mode, "data": json.dumps(data),
                               "encoding": "JSON"}
    return {"captureData": {"endpointInput": part("INPUT", {"inputs": rows}),
                            "endpointOutput": part("OUTPUT", {"predictions": [0]})},
            "eventMetadata": {"eventId": f"e{i}", "inferenceTime": at}, "eventVersion": "0"}


def test_data_capture_config_and_records_read_back(aws, monkeypatch, retire):
    """The endpoint config carries DataCaptureConfig; `capture_records` reads what Data Capture wrote to S3.

    moto runs no containers, so nothing in it writes capture records: the test puts two where SageMaker would
    ({DestinationS3Uri}/{endpoint}/{variant}/yyyy/mm/dd/hh/<file>.jsonl, in its own record shape) and reads them back.
    The image push is the flow test's (above): here it is skipped, so no engine is needed.
    """
    from nbdeploy.capture import frames
    bento = make_bento("iris-smc")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(SageMakerTarget, "_push", lambda self, bento, name: "127.0.0.1:5000/nbdeploy/iris-smc:1")
    name = "iris-smc"
    retire.append(name)
    t = SageMakerTarget(role=ROLE, wait=30)
    row = ledger.begin(name, "sagemaker", str(bento.tag), capture=json.dumps({"fraction": 0.25, "redact": []}))
    row = _row(name, row["version"], bento, t.start(bento, name, row["version"], {"NBDEPLOY_CAPTURE": "0.25"}))
    cfg = boto3.client("sagemaker").describe_endpoint_config(EndpointConfigName="iris-smc-v1")["DataCaptureConfig"]
    uri = "s3://sagemaker-us-east-1-123456789012/nbdeploy-capture/iris-smc/v1"  # SageMaker's default bucket name
    assert (cfg["EnableCapture"], cfg["InitialSamplingPercentage"], cfg["DestinationS3Uri"]) == (True, 25, uri)
    assert [o["CaptureMode"] for o in cfg["CaptureOptions"]] == ["Input", "Output"]
    assert cfg["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}
    assert t.capture_dir(row) is None and t.capture_records(row) == []
    bucket, prefix = uri[5:].split("/", 1)
    body = "".join(json.dumps(_sagemaker_record(i, f"2026-12-01T18:0{i}:00Z")) + "\n" for i in range(2))
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/iris-smc/AllTraffic/2026/12/01/18/00-01-abc.jsonl",
                                  Body=body.encode())
    got = t.capture_records(row)
    assert [r["eventMetadata"]["eventId"] for r in got] == ["e0", "e1"]
    assert [r["eventMetadata"]["eventId"] for r in t.capture_records(row, since=1796148060)] == ["e1"]  # 18:01:00
    reqs, rows = frames(got)  # the monitor's view: the same tables as for nbdeploy's own records
    assert list(reqs["request_id"]) == ["e0", "e1"] and list(rows["prediction"]) == [0, 0]
    t.stop(row)


def test_bad_input_names_cause_and_fix(aws, iris_image, monkeypatch):
    bento, _, _ = iris_image
    with pytest.raises(InputError, match="letters, digits and dashes"): _sm_name("x" * 70, 1)
    # through nd.deploy, a name the target cannot use (though nbdeploy's own rule allows it) is refused before the
    # ledger records anything: 62 characters and "-v1" make 65, over SageMaker's 63; Kubernetes allows no "_"
    for target, bad, why in (("sagemaker", "x" * 62, "letters, digits and dashes"),
                             ("kubernetes", "bad_name", "lowercase")):
        with pytest.raises(InputError, match=why): nd.deploy(bento, name=bad, target=target)
        assert ledger.rows(bad) == []
    monkeypatch.delenv("NBDEPLOY_SAGEMAKER_ROLE", raising=False)
    with pytest.raises(InputError, match="IAM execution role"): SageMakerTarget().start(bento, "iris", 1, {})
    # no credentials at all: boto3's own lookup fails, and the error says where credentials come from
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"): monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"); monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(DeployError, match="no AWS credentials"):
        SageMakerTarget(role=ROLE).start(bento, "iris", 1, {})


def test_gone_and_stop_without_a_handle_against_moto(aws, registry, iris_image, monkeypatch, retire):
    "gone() from DescribeEndpoint; stop() of a row whose start was never recorded finds its resources by name+version."
    bento, _, _ = iris_image
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    name = "iris-smg"
    retire.append(name)
    t, sm = SageMakerTarget(role=ROLE, registry=registry, wait=30), boto3.client("sagemaker")
    assert t.remote
    row1 = ledger.begin(name, "sagemaker", str(bento.tag))
    started = t.start(bento, name, row1["version"], {})
    row1 = _row(name, row1["version"], bento, started)
    assert t.alive(row1) and not t.gone(row1)
    # the endpoint moves to v2's config (what an update does; moto has no UpdateEndpoint, so it is made anew on v2):
    # v1 is gone though its endpoint exists, and v2 — a row whose start the ledger never heard of — serves
    row2 = ledger.begin(name, "sagemaker", str(bento.tag))
    sm.delete_endpoint(EndpointName=name)
    assert t.gone(row1) and not t.alive(row1)
    sm.create_model(ModelName="iris-smg-v2", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": started["image"]})
    sm.create_endpoint_config(EndpointConfigName="iris-smg-v2", ProductionVariants=[{"VariantName": "AllTraffic",
        "ModelName": "iris-smg-v2", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName="iris-smg-v2")
    assert row2["handle"] is None and t.alive(row2) and not t.gone(row2) and t.gone(row1)
    assert "InService on iris-smg-v2" in t.logs(row2)
    t.stop(row2)
    assert sm.list_endpoints()["Endpoints"] == []
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["iris-smg-v1"]
    assert t.gone(row2) and t.gone(row1)
    t.stop(row1)
    assert sm.list_models()["Models"] == [] and sm.list_endpoint_configs()["EndpointConfigs"] == []


def test_an_api_key_is_refused_before_anything_is_recorded(aws, registry, iris_image, monkeypatch, retire):
    "Issue 13 item 16: IAM guards a SageMaker endpoint; a key it would never check is refused, not recorded as auth=1."
    from nbdeploy.deployer import TARGETS
    bento, _, _ = iris_image
    assert SageMakerTarget.supports_api_key is False
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setitem(TARGETS, "sagemaker", SageMakerTarget(role=ROLE, registry=registry, wait=30))
    retire.append("iris-smkey")
    with pytest.raises(InputError, match="API key.*IAM"):
        nd.deploy(bento, name="iris-smkey", target="sagemaker", api_key="s3cret")
    assert ledger.rows("iris-smkey") == []
    sm = boto3.client("sagemaker")
    assert sm.list_models()["Models"] == [] and sm.list_endpoints()["Endpoints"] == []


def rollout_uses_target_gate() -> bool:
    "Whether nd.deploy's rollout waits with a target's own `wait_ready` (needed for targets without a reachable /readyz)."
    import importlib, inspect
    return "t.wait_ready(" in inspect.getsource(importlib.import_module("nbdeploy.deployer")._rollout)


@pytest.mark.skipif(not rollout_uses_target_gate(), reason="nd.deploy's rollout does not call a target's own wait_ready yet")
def test_nd_deploy_on_sagemaker(aws, registry, iris_image, monkeypatch, retire):
    import nbdeploy as nd
    from nbdeploy.deployer import TARGETS
    bento, _, _ = iris_image
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setitem(TARGETS, "sagemaker", SageMakerTarget(role=ROLE, registry=registry, wait=30))
    retire.append("iris-smd")
    dep = nd.deploy(bento, name="iris-smd", target="sagemaker")
    assert dep.row["status"] == "serving" and dep.url.endswith("/endpoints/iris-smd/invocations")
    # moto has no UpdateEndpoint: the second version fails, is recorded as failed, and v1 keeps serving
    with pytest.raises(DeployError, match="did not start on sagemaker"): nd.deploy(bento, name="iris-smd", target="sagemaker")
    rows = {r["version"]: r for r in ledger.rows("iris-smd")}
    assert rows[2]["status"] == "failed" and "updating endpoint iris-smd to iris-smd-v2" in rows[2]["detail"]
    models = [m["ModelName"] for m in boto3.client("sagemaker").list_models()["Models"]]
    assert rows[1]["status"] == "serving" and models == ["iris-smd-v1"]  # v2's model went with it
    dep.stop()
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []


def _variants(cfg: dict, key: str = "ProductionVariants") -> list[tuple]:
    return [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"]) for v in cfg.get(key) or []]


def test_route_canary_weights_shadow_and_back_against_moto(aws, monkeypatch, retire):
    """`route`: a canary is one endpoint config with a weighted production variant per version, the next step shifts
    the weights in place, a shadow is ShadowProductionVariants, one version is its own config again.

    moto has no UpdateEndpoint, so each change of variants fails there for real (the error names the call, the new
    config is removed again, the endpoint keeps what it had) and the test then does what UpdateEndpoint would do:
    the recorded CreateEndpointConfig request is replayed and the endpoint made anew on it. The image push is the
    flow test's (above): here it is skipped, so no engine is needed.
    """
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(SageMakerTarget, "_push", lambda self, bento, name: "127.0.0.1:5000/nbdeploy/iris-smr:1")
    name, sm = "iris-smr", boto3.client("sagemaker")
    retire.append(name)
    t = SageMakerTarget(role=ROLE, wait=30)
    rows = {}
    for _ in range(2):
        v = ledger.begin(name, "sagemaker", "iris-smr:x", capture=json.dumps({"fraction": 1.0, "redact": []}))
        v = v["version"]
        rows[v] = _row(name, v, None, t.start(None, name, v, {"NBDEPLOY_CAPTURE": "1"}))
        t.wait_ready(rows[v])
    assert sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == "iris-smr-v1"  # v2 is staged only
    assert t.alive(rows[1]) and not t.alive(rows[2])

    canary = {"strategy": "canary", "live": 1, "shares": {"1": 0.9, "2": 0.1}, "mirror": None, "sticky": None}
    with moto_recording(aws) as rec:
        with pytest.raises(DeployError, match=r"updating endpoint iris-smr to iris-smr-r[0-9a-f]{8} failed"
                                              r"(.|\n)*Removed again: endpoint_config iris-smr-r"):
            t.route(name, canary, rows)
        calls = rec.calls()
    ops = [op for op, _ in calls]
    assert ops.index("CreateEndpointConfig") < ops.index("UpdateEndpoint") < ops.index("DeleteEndpointConfig")
    create = next(b for op, b in calls if op == "CreateEndpointConfig")
    assert _variants(create) == [("v1", "iris-smr-v1", 0.9), ("v2", "iris-smr-v2", 0.1)]
    assert "ShadowProductionVariants" not in create
    # the routed config captures as the champion's does, under <name>/routed (a folder per variant below it)
    routed = "s3://sagemaker-us-east-1-123456789012/nbdeploy-capture/iris-smr/routed"
    dc = create["DataCaptureConfig"]
    assert (dc["DestinationS3Uri"], dc["InitialSamplingPercentage"]) == (routed, 100)
    assert next(b for op, b in calls if op == "UpdateEndpoint") == {"EndpointName": name,
                                                                     "EndpointConfigName": create["EndpointConfigName"]}
    assert sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == "iris-smr-v1"
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] in (
        ["iris-smr-v1", "iris-smr-v2"], ["iris-smr-v2", "iris-smr-v1"])

    # what UpdateEndpoint would have done: the endpoint on the routed config
    sm.create_endpoint_config(**create)
    sm.delete_endpoint(EndpointName=name)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=create["EndpointConfigName"])
    cfg = sm.describe_endpoint_config(EndpointConfigName=create["EndpointConfigName"])
    assert _variants(cfg) == [("v1", "iris-smr-v1", 0.9), ("v2", "iris-smr-v2", 0.1)]
    assert t.alive(rows[1]) and t.alive(rows[2]) and not t.gone(rows[2])

    # the next canary step: the same variants, so the weights shift in place (no new config, no new fleet)
    step = {**canary, "shares": {"1": 0.75, "2": 0.25}}
    with moto_recording(aws) as rec:
        assert t.route(name, step, rows) == {"url": rows[1]["url"]}
        assert "CreateEndpointConfig" not in [op for op, _ in rec.calls()]
    ep = sm.describe_endpoint(EndpointName=name)
    assert ep["EndpointConfigName"] == create["EndpointConfigName"]
    assert [(v["VariantName"], v["CurrentWeight"]) for v in ep["ProductionVariants"]] == [("v1", 0.75), ("v2", 0.25)]

    # a call pinned to a variant: TargetVariant goes on the wire (moto answers what it is told to; it routes nothing)
    answer = lambda p: {"Body": json.dumps({"predictions": [p]}), "ContentType": "application/json",
                        "InvokedProductionVariant": f"v{p}"}
    requests.post(f"{aws}/moto-api/static/sagemaker/endpoint-results", timeout=10,
                  json={"results": [answer(2), answer(1)]})
    rows_in = [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]
    with moto_recording(aws) as rec:
        assert t.invoke(rows[2], rows_in) == {"predictions": [2], "variant": "v2"}
        assert t.invoke(rows[1], rows_in) == {"predictions": [1], "variant": "v1"}
        sent = rec.headers(f"/endpoints/{name}/invocations")
    assert [h.get("x-amzn-sagemaker-target-variant") for h in sent] == ["v2", "v1"]

    # what Data Capture writes for the routed config's v2 variant is v2's record
    bucket, prefix = routed[5:].split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{name}/v2/2026/12/01/18/00-01-abc.jsonl",
                                  Body=(json.dumps(_sagemaker_record(7, "2026-12-01T18:07:00Z")) + "\n").encode())
    assert [r["eventMetadata"]["eventId"] for r in t.capture_records(rows[2])] == ["e7"]
    assert t.capture_records(rows[1]) == []

    # a shadow: the champion alone in ProductionVariants, the candidate in ShadowProductionVariants
    shadow = {"strategy": "shadow", "live": 1, "shares": {"1": 1.0}, "mirror": 2, "sticky": None}
    with moto_recording(aws) as rec:
        with pytest.raises(DeployError, match="updating endpoint iris-smr to iris-smr-r"): t.route(name, shadow, rows)
        create2 = next(b for op, b in rec.calls() if op == "CreateEndpointConfig")
    assert _variants(create2) == [("v1", "iris-smr-v1", 1.0)]
    assert _variants(create2, "ShadowProductionVariants") == [("v2", "iris-smr-v2", 1.0)]
    assert create2["EndpointConfigName"] != create["EndpointConfigName"]
    # moto stores the config without its shadow variant: that is why the request is read from the recorder
    sm.create_endpoint_config(**create2)
    stored = sm.describe_endpoint_config(EndpointConfigName=create2["EndpointConfigName"])
    assert "ShadowProductionVariants" not in stored
    sm.delete_endpoint_config(EndpointConfigName=create2["EndpointConfigName"])
    assert sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == create["EndpointConfigName"]

    # back to one version: the champion's own config (UpdateEndpoint again), asked for by a blue-green routing
    alone = {"strategy": "blue-green", "live": 1, "shares": {"1": 1.0}, "mirror": None}
    with moto_recording(aws) as rec:
        with pytest.raises(DeployError, match="updating endpoint iris-smr to iris-smr-v1 failed"):
            t.route(name, alone, rows)
        assert [b for op, b in rec.calls() if op == "UpdateEndpoint"] == [{"EndpointName": name,
                                                                           "EndpointConfigName": "iris-smr-v1"}]
    # what SageMaker cannot do is refused before any call
    with pytest.raises(InputError, match="TargetVariant"): t.route(name, {**canary, "sticky": "header:X-User"}, rows)
    with pytest.raises(InputError, match="single production variant"): t.route(name, {**canary, "mirror": 2}, rows)
    t.stop(rows[2])  # the endpoint runs a routed config: it stays; v2's model and config go
    assert "iris-smr-v2" not in [m["ModelName"] for m in sm.list_models()["Models"]]
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


@pytest.mark.skipif(not rollout_uses_target_gate(), reason="nd.deploy's rollout does not call a target's own wait_ready yet")
def test_nd_deploy_canary_on_sagemaker_against_moto(aws, monkeypatch, retire):
    "nd.deploy(strategy='canary') on SageMaker goes through `route`; moto's missing UpdateEndpoint fails it for real."
    from nbdeploy.deployer import TARGETS
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(SageMakerTarget, "_push", lambda self, bento, name: "127.0.0.1:5000/nbdeploy/iris-smk:1")
    monkeypatch.setitem(TARGETS, "sagemaker", SageMakerTarget(role=ROLE, wait=30))
    name, sm = "iris-smk", boto3.client("sagemaker")
    retire.append(name)
    bento = make_bento(name)
    nd.deploy(bento, name=name, target="sagemaker")
    with pytest.raises(DeployError, match=r"did not start on sagemaker(.|\n)*updating endpoint iris-smk to iris-smk-r"):
        nd.deploy(bento, name=name, target="sagemaker", strategy="canary", traffic=0.1)
    rows = {r["version"]: r for r in ledger.rows(name)}
    assert (rows[1]["status"], rows[2]["status"]) == ("serving", "failed")
    assert nd.routing(name)["shares"] == {"1": 1.0}
    assert sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == "iris-smk-v1"
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["iris-smk-v1"]  # the candidate's model went
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["iris-smk-v1"]
    # SageMaker cannot keep a sticky key on one variant: refused before anything is recorded or started
    before = len(ledger.rows(name))
    with pytest.raises(InputError, match="TargetVariant"):
        nd.deploy(bento, name=name, target="sagemaker", strategy="canary", traffic=0.1, sticky="header:X-User")
    assert len(ledger.rows(name)) == before
    assert sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == "iris-smk-v1"
