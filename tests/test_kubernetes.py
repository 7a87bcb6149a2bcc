"""The kubernetes target and nd.manifests.

What runs against real software here:
- every manifest is validated against the real Kubernetes OpenAPI schemas (kubernetes-validate, strict, the latest
  version it ships and the oldest still supported upstream), and decoded by the real kubectl (`kubectl annotate --local
  --dry-run=client`: kubectl's own parser and REST mapping, no server);
- the read-only root filesystem, non-root user and scratch mounts the Deployment asks for are run for real on the Docker
  engine (the same image, `read_only` with tmpfs at the emptyDir paths, as uid 10001): the service gets ready;
- the target's client path runs the official `kubernetes` client over real HTTP;
- the canary and shadow manifests' Gateway API HTTPRoute is validated against the HTTPRoute CRD's own OpenAPI schema
  (Gateway API v1.6.1, standard channel), and the KServe InferenceService against KServe v0.20.0's CRD schema, both
  vendored under tests/schemas/ (see its README for where they come from), with `jsonschema`, unknown fields
  refused as the API server's strict field validation refuses them. What those CRD schemas hold but `jsonschema`
  cannot check: their CEL rules (`x-kubernetes-validations`, e.g. "a Service backendRef needs a port"). Every rule
  that applies to our routes is evaluated with `common-expression-language` (the cel-rust interpreter, a dev
  requirement); the rules our routes touch are also checked one by one.

What could not run: no Kubernetes API server can be had on this machine (Debian bookworm ships only kubectl 1.20,
no kube-apiserver; no PyPI package ships one; image pulls for kind/k3s are impossible). So the client path talks to
`ApiStub` below: a small HTTP server on 127.0.0.1 that checks what a real API server checks for server-side apply
(PATCH with `application/apply-patch+yaml`, `fieldManager` present, `force` allowed, body schema-valid against the
same OpenAPI schemas, else 422) and reports a Deployment as rolled out at once (or stalled, for an image whose name
says so). It is a stub, not Kubernetes: no scheduling, no pods, no ReplicaSets. `kubectl apply --dry-run=client` needs
an API server for discovery and OpenAPI download, so it is not run.
The stub also plays the Deployment controller's part that `alive`/`gone` read: a ReplicaSet per pod template, the new
one scaled up and the old ones down at once (the old one kept up when the new one stalls), deleted with the Deployment.
There are no pods, so a node drain is simulated by setting the available counts to 0.
"""
import copy
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml

import nbdeploy.kubernetes as k8s
from nbdeploy import ledger
from nbdeploy.config import free_port
from nbdeploy.errors import DeployError, InputError
from tests.docker_fixtures import wait_serving

VERSIONS = [kubernetes_validate.latest_version(), "1.32.0"]


def _objs(**kw):
    return list(yaml.safe_load_all(k8s.manifests("127.0.0.1:5000/nbdeploy/iris:v1", name="iris", **kw)))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_openapi_schemas(version):
    objs = _objs() + k8s.manifest_objects("r:5000/iris:1", "iris", "models", version=3, api_key="s")
    for o in objs: kubernetes_validate.validate(o, version, strict=True)
    # KServe's InferenceService has no schema in kubernetes-validate: its predictor is a PodSpec plus KServe's
    # component fields, so the PodSpec part is validated as a Pod.
    isvc = _objs(kserve=True)[0]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    pod = {k: v for k, v in isvc["spec"]["predictor"].items() if k not in ("minReplicas", "maxReplicas")}
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod}, version, strict=True)


def test_the_schema_check_catches_a_broken_manifest():
    d = _objs()[-1]
    d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = [0]
    with pytest.raises(kubernetes_validate.ValidationError): kubernetes_validate.validate(d, VERSIONS[0], strict=True)
    d = _objs()[-1]
    d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError): kubernetes_validate.validate(d, VERSIONS[0], strict=True)


def test_manifest_contents(tmp_path):
    p = tmp_path/"iris.yaml"
    text = k8s.manifests("127.0.0.1:5000/nbdeploy/iris:v1", name="iris", path=p, replicas=3, max_replicas=7, memory_limit="3Gi")
    assert p.read_text() == text
    svc, hpa, pdb, dep = _objs(replicas=3, max_replicas=7, memory_limit="3Gi")
    spec = dep["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    c = spec["template"]["spec"]["containers"][0]
    assert (c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"]) == ("/readyz", "/livez")
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "3Gi"}}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] == 10001 and not sc["allowPrivilegeEscalation"] and sc["readOnlyRootFilesystem"]
    assert svc["spec"]["selector"] == spec["selector"]["matchLabels"] == pdb["spec"]["selector"]["matchLabels"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    with pytest.raises(InputError, match="lowercase"): k8s.manifests("r/iris:1", name="Iris_Model")
    with pytest.raises(InputError, match="name= is required"): k8s.manifests("r/iris:1")


SCHEMAS = Path(__file__).parent/"schemas"
HTTPROUTE, ISVC = "gateway-api-v1.6.1-httproute-v1.json", "kserve-v0.20.0-inferenceservice-v1beta1.json"


def _strict(s):
    "A CRD's structural schema as strict field validation applies it: an object's unknown fields are refused."
    if isinstance(s, list): return [_strict(x) for x in s]
    if not isinstance(s, dict): return s
    out = {k: ({n: _strict(x) for n, x in v.items()} if k == "properties" else _strict(v)) for k, v in s.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")): out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(file: str) -> jsonschema.Draft4Validator:
    "A validator for a vendored CRD schema (OpenAPI v3.0 schemas are JSON Schema draft 4 in what they use)."
    schema = _strict(json.loads((SCHEMAS/file).read_text()))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def crd_errors(obj: dict, file: str) -> list[str]:
    "What the CRD schema `file` finds wrong in `obj` (its metadata checked as core ObjectMeta)."
    errs = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(file).iter_errors(obj)]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, VERSIONS[0],
                                 strict=True)
    return errs


def _two(strategy, **kw):
    return _objs(strategy=strategy, candidate="127.0.0.1:5000/nbdeploy/iris:v2", **kw)


@pytest.mark.parametrize("version", VERSIONS)
def test_canary_and_shadow_manifests_are_valid(version):
    "Two tracks of core objects (OpenAPI schemas), an HTTPRoute (its CRD schema), a KServe canary (its CRD schema)."
    for strategy in ("canary", "shadow"):
        objs = _two(strategy)
        assert [o["kind"] for o in objs].count("Deployment") == 2 and objs[-1]["kind"] == "HTTPRoute"
        for o in objs[:-1]: kubernetes_validate.validate(o, version, strict=True)
        assert crd_errors(objs[-1], HTTPROUTE) == []
    isvc = _two("canary", kserve=True)
    assert len(isvc) == 1 and crd_errors(isvc[0], ISVC) == []
    assert crd_errors(_objs(kserve=True)[0], ISVC) == []  # the single-version InferenceService too


def test_route_rules_the_crd_states_in_cel():
    "The HTTPRoute CRD's CEL rules that touch our routes, checked here since only an API server evaluates CEL."
    for strategy in ("canary", "shadow"):
        rule = _two(strategy)[-1]["spec"]["rules"][0]
        refs = rule["backendRefs"] + [f["requestMirror"]["backendRef"] for f in rule.get("filters", [])]
        # (size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true
        assert all("port" in r for r in refs if r["group"] == "" and r["kind"] == "Service")
        # !(has(self.requestMirror) && self.type != 'RequestMirror'), and its converse
        assert all(("requestMirror" in f) == (f["type"] == "RequestMirror") for f in rule.get("filters", []))
        # a PathPrefix match starts with '/'
        assert all(m["path"]["value"].startswith("/") for m in rule["matches"])
    schema = json.loads((SCHEMAS/HTTPROUTE).read_text())
    backend = schema["properties"]["spec"]["properties"]["rules"]["items"]["properties"]["backendRefs"]["items"]
    assert [r["rule"] for r in backend["x-kubernetes-validations"]] == [
        "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true"]  # the vendored schema says so


# property names Kubernetes escapes in CEL (`namespace` is `__namespace__`), the CEL keywords and reserved words
_CEL_ESCAPED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
                "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}


def cel_check(obj: dict, file: str) -> tuple[list[str], list[str]]:
    """Evaluate every CEL rule (`x-kubernetes-validations`) of CRD schema `file` on the nodes of `obj` it applies to.

    With a real CEL implementation (`common-expression-language`, the cel-rust interpreter): (rules that failed,
    rules that held). Transition rules (`oldSelf`) need an old object and are left out; so are messageExpressions.
    """
    import cel  # common-expression-language, a dev requirement
    failed, held = [], []
    esc = lambda v: ({(f"__{k}__" if k in _CEL_ESCAPED else k): esc(x) for k, x in v.items()} if isinstance(v, dict)
                     else [esc(x) for x in v] if isinstance(v, list) else v)
    def walk(v, sch, path):
        for r in sch.get("x-kubernetes-validations") or []:
            if "oldSelf" in r["rule"]: continue
            ok = cel.evaluate(r["rule"], {"self": esc(v)}) is True
            (held if ok else failed).append(f"{path or '/'}: {r['rule']}")
        if isinstance(v, dict):
            for k, x in v.items():
                sub = (sch.get("properties") or {}).get(k)
                if sub is None and isinstance(sch.get("additionalProperties"), dict): sub = sch["additionalProperties"]
                if sub is not None: walk(x, sub, f"{path}/{k}")
        elif isinstance(v, list) and isinstance(sch.get("items"), dict):
            for i, x in enumerate(v): walk(x, sch["items"], f"{path}[{i}]")
    walk(obj, json.loads((SCHEMAS/file).read_text()), "")
    return failed, held


def test_route_cel_rules_evaluated():
    "Every CEL rule of the HTTPRoute CRD that applies to our routes holds; a route that breaks one is caught."
    port_rule = "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true"
    for strategy in ("canary", "shadow"):
        failed, held = cel_check(_two(strategy)[-1], HTTPROUTE)
        assert failed == [] and any(h.endswith(port_rule) for h in held), (failed, held)
    failed, held = cel_check(_two("shadow")[-1], HTTPROUTE)
    assert any("requestMirror" in h and "backendRef:" in h for h in held)  # the mirror's backendRef is checked too
    bad = copy.deepcopy(_two("canary")[-1]); del bad["spec"]["rules"][0]["backendRefs"][1]["port"]
    assert [f for f in cel_check(bad, HTTPROUTE)[0] if f.endswith(port_rule)]
    bad = copy.deepcopy(_two("shadow")[-1]); bad["spec"]["rules"][0]["filters"][0]["type"] = "RequestHeaderModifier"
    assert any("requestMirror" in f for f in cel_check(bad, HTTPROUTE)[0])  # a mirror body under another type


def test_the_crd_schemas_catch_broken_routes():
    "The vendored schemas are not vacuous: a bad weight, filter type, unknown field or percent is refused."
    route = _two("canary")[-1]
    bad = copy.deepcopy(route); bad["spec"]["rules"][0]["backendRefs"][1]["weight"] = -1
    assert any("weight" in e for e in crd_errors(bad, HTTPROUTE))
    bad = copy.deepcopy(route); bad["spec"]["rules"][0]["backendRefs"][1]["weight"] = 2_000_000  # max 1,000,000
    assert crd_errors(bad, HTTPROUTE)
    bad = copy.deepcopy(_two("shadow")[-1]); bad["spec"]["rules"][0]["filters"][0]["type"] = "Mirror"
    assert any("Mirror" in e for e in crd_errors(bad, HTTPROUTE))
    bad = copy.deepcopy(route); bad["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 1
    assert any("weigth" in e for e in crd_errors(bad, HTTPROUTE))
    isvc = _two("canary", kserve=True)[0]
    bad = copy.deepcopy(isvc); bad["spec"]["predictor"]["canaryTrafficPercent"] = "10%"
    assert any("canaryTrafficPercent" in e for e in crd_errors(bad, ISVC))
    bad = copy.deepcopy(isvc); bad["spec"]["predictor"]["containers"][0]["ports"][0]["containerPort"] = "http"
    assert crd_errors(bad, ISVC)


@pytest.mark.skipif(not shutil.which("kubectl"), reason="no kubectl on PATH")
def test_kubectl_decodes_the_canary_manifests(tmp_path):
    "kubectl reads both tracks, the HTTPRoute and the KServe canary (custom kinds decoded as unstructured objects)."
    p = tmp_path/"m.yaml"
    p.write_text(k8s.to_yaml(_two("canary") + _two("canary", kserve=True)))
    env = {**os.environ, "KUBECONFIG": str(tmp_path/"none")}
    r = subprocess.run(["kubectl", "annotate", "--local", "-f", str(p), "nbdeploy.io/checked=yes", "--dry-run=client",
                        "-o", "name"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    names = r.stdout.split()
    assert {"deployment.apps/iris-stable", "deployment.apps/iris-canary", "service/iris-canary",
            "httproute.gateway.networking.k8s.io/iris", "inferenceservice.serving.kserve.io/iris"} <= set(names)


PROMETHEUS_RULE_TEST = """rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - {series: 'nbdeploy_drift_share{namespace="default",pod="iris-5d8f9c7b6-x2k9p"}', values: '0.6x15'}
  - {series: 'nbdeploy_drift_share{namespace="default",pod="iris-b-5d8f9c7b6-x2k9p"}', values: '0.9x15'}
  alert_rule_test:
  - eval_time: 10m
    alertname: NbdeployDriftShare
    exp_alerts:
    - exp_labels: {severity: warning, deployment: iris}
      exp_annotations: {summary: "iris: the share of drifted features is 0.6 (warning at 0.25)"}
    - exp_labels: {severity: critical, deployment: iris}
      exp_annotations: {summary: "iris: the share of drifted features is 0.6 (critical at 0.5)"}
"""


def test_scrape_annotations_capture_volume_and_prometheus_rule(tmp_path):
    "Pods say where Prometheus scrapes them; the PrometheusRule's rules pass Debian's promtool, checked and unit-tested."
    *_, dep, rule = _objs(prometheus_rule=True)
    tpl = dep["spec"]["template"]
    ann = {k: v for k, v in tpl["metadata"]["annotations"].items() if k.startswith("prometheus.io/")}
    assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": "3000", "prometheus.io/path": "/metrics"}
    assert tpl["spec"]["containers"][0]["ports"][0]["containerPort"] == 3000
    assert (rule["apiVersion"], rule["kind"], rule["metadata"]["name"]) == ("monitoring.coreos.com/v1", "PrometheusRule",
                                                                           "iris")
    # a capturing Deployment (an emptyDir at /capture) is still schema-valid
    cap = k8s.manifest_objects("r:5000/iris:1", "iris", version=2, capture={"fraction": 1.0, "redact": []})[-1]
    kubernetes_validate.validate(cap, VERSIONS[0], strict=True)
    promtool = shutil.which("promtool")
    if promtool is None: pytest.skip("promtool is not installed (apt-get install prometheus)")
    (tmp_path/"rules.yml").write_text(yaml.safe_dump(rule["spec"]))
    (tmp_path/"test.yml").write_text(PROMETHEUS_RULE_TEST)  # only iris's pod counts, not iris-b's
    for cmd in (["check", "rules", "rules.yml"], ["test", "rules", "test.yml"]):
        r = subprocess.run([promtool, *cmd], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("kubectl"), reason="no kubectl on PATH")
def test_kubectl_decodes_every_manifest(tmp_path):
    p = tmp_path/"m.yaml"
    p.write_text(k8s.to_yaml(k8s.manifest_objects("r:5000/iris:1", "iris", version=1, api_key="s")))
    env = {**os.environ, "KUBECONFIG": str(tmp_path/"none")}
    r = subprocess.run(["kubectl", "annotate", "--local", "-f", str(p), "nbdeploy.io/checked=yes", "--dry-run=client", "-o", "name"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["secret/iris-v1-api-key", "service/iris", "horizontalpodautoscaler.autoscaling/iris",
                                "poddisruptionbudget.policy/iris", "deployment.apps/iris"]


def test_pod_security_settings_run_for_real(docker_engine, iris_image):
    "The image serves as the Deployment runs it: uid 10001, read-only root, writable /tmp and BentoML home only."
    _, tag, _ = iris_image
    port = free_port()
    c = docker_engine.containers.run(tag, detach=True, network_mode="host", user="10001", read_only=True, cap_drop=["ALL"],
                                     security_opt=["no-new-privileges"], tmpfs={"/tmp": "", "/home/nbdeploy/bentoml": "uid=10001"},
                                     environment={"HOST": "127.0.0.1", "PORT": str(port)})
    try:
        wait_serving(c, f"http://127.0.0.1:{port}")
        assert requests.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200
        r = requests.post(f"http://127.0.0.1:{port}/predict", timeout=30,
                          json={"inputs": [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]})
        assert r.status_code == 200, r.text
    finally: c.remove(force=True)


# --- the client path, against a stub API server ------------------------------------------------------------------

_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[a-z.]+)/(?P<ver>v[0-9a-z]+))/namespaces/(?P<ns>[^/]+)/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?(?P<status>/status)?$")


class ApiStub:
    "Stores applied objects per path; checks server-side apply requests and schemas like an API server; not Kubernetes."
    def __init__(self):
        self.objects, self.requests, self.fail_kind = {}, [], None
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code); self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
            def status(self, code, reason, msg): self.send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "reason": reason, "code": code})
            def do_GET(self):
                path, _, query = self.path.partition("?")
                stub.requests.append(("GET", path, query, None))
                m = _PATH.match(path)
                if m and not m["name"]:
                    return self.send(200, stub.list(path, dict(urllib.parse.parse_qsl(query)).get("labelSelector", "")))
                key = path.removesuffix("/status")
                if key not in stub.objects: return self.status(404, "NotFound", f"{path} not found")
                self.send(200, stub.objects[key])
            def do_DELETE(self):
                path = self.path.partition("?")[0]
                stub.requests.append(("DELETE", path, "", None))
                gone = stub.objects.pop(path, None)
                if gone is None: return self.status(404, "NotFound", f"{path} not found")
                if gone["kind"] == "Deployment": stub.collect(gone)
                # like the API server: a Service's DELETE returns the object, the others a Status
                self.send(200, gone if gone["kind"] == "Service" else {"kind": "Status", "apiVersion": "v1", "status": "Success"})
            def do_PATCH(self):
                path, _, query = self.path.partition("?")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ctype, q = self.headers.get("Content-Type"), dict(p.split("=", 1) for p in query.split("&") if p)
                stub.requests.append(("PATCH", path, query, ctype))
                if ctype != "application/apply-patch+yaml": return self.status(415, "UnsupportedMediaType", f"not an apply patch: {ctype}")
                if not q.get("fieldManager"): return self.status(400, "BadRequest", "fieldManager is required for apply requests")
                if stub.fail_kind == body.get("kind"): return self.status(403, "Forbidden", 'exceeded quota: compute-resources, requested: limits.memory=2Gi')
                try: kubernetes_validate.validate(body, VERSIONS[0], strict=True)
                except kubernetes_validate.ValidationError as e: return self.status(422, "Invalid", str(e.message))
                old = stub.objects.get(path)
                obj = copy.deepcopy(body)
                meta = obj["metadata"]
                meta["uid"] = (old or {}).get("metadata", {}).get("uid", f"uid-{len(stub.objects)}")
                gen = (old or {}).get("metadata", {}).get("generation", 0)
                meta["generation"] = gen + 1 if not old or old.get("spec") != body.get("spec") else gen
                meta["managedFields"] = [{"manager": q["fieldManager"], "operation": "Apply", "apiVersion": body["apiVersion"]}]
                if body["kind"] == "Deployment": obj["status"] = stub.deployment_status(obj)
                stub.objects[path] = obj
                if body["kind"] == "Deployment": stub.replica_sets(obj)
                self.send(201 if old is None else 200, obj)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def list(self, path, selector):
        "A collection GET: the stored objects under `path` whose labels match an equality `selector` (a=b,c=d)."
        want = dict(p.split("=", 1) for p in selector.split(",") if p)
        items = [o for k, o in self.objects.items() if k.rsplit("/", 1)[0] == path
                 and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in want.items())]
        kind = {"pods": "Pod", "replicasets": "ReplicaSet", "secrets": "Secret"}.get(path.rsplit("/", 1)[1], "Object")
        return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": items}

    def replica_sets(self, d):
        "The controller, at once: a ReplicaSet per pod template; the new one up, the old ones down unless it stalls."
        meta, spec = d["metadata"], d["spec"]
        base, n = f"/apis/apps/v1/namespaces/{meta['namespace']}/replicasets", spec["replicas"]
        h = hashlib.sha256(json.dumps(spec["template"], sort_keys=True).encode()).hexdigest()[:10]
        stalls = "broken" in spec["template"]["spec"]["containers"][0]["image"]
        if not stalls:
            for o in self.owned(d):
                o["spec"]["replicas"], o["status"] = 0, {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0}
        tpl = copy.deepcopy(spec["template"])
        tpl["metadata"]["labels"]["pod-template-hash"] = h
        self.objects[f"{base}/{meta['name']}-{h}"] = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{h}", "namespace": meta["namespace"],
                         "labels": tpl["metadata"]["labels"],
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True}]},
            "spec": {"replicas": 1 if stalls else n, "template": tpl,
                     "selector": {"matchLabels": {**spec["selector"]["matchLabels"], "pod-template-hash": h}}},
            "status": {"replicas": 1, "availableReplicas": 0} if stalls
                      else {"replicas": n, "readyReplicas": n, "availableReplicas": n}}

    def owned(self, d):
        "The ReplicaSets Deployment `d` owns."
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        return [o for o in self.objects.values() if o["kind"] == "ReplicaSet" and o["metadata"]["namespace"] == ns
                and o["metadata"]["ownerReferences"][0]["name"] == name]

    def collect(self, d):
        "Garbage collection: a deleted Deployment's ReplicaSets go with it."
        for o in self.owned(d):
            m = o["metadata"]
            self.objects.pop(f"/apis/apps/v1/namespaces/{m['namespace']}/replicasets/{m['name']}")

    @staticmethod
    def deployment_status(d):
        "Rolled out at once; stalled when the image name says `broken`."
        n, g = d["spec"]["replicas"], d["metadata"]["generation"]
        if "broken" in d["spec"]["template"]["spec"]["containers"][0]["image"]:
            return {"observedGeneration": g, "replicas": n + 1, "updatedReplicas": 1, "availableReplicas": n, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": f"ReplicaSet \"{d['metadata']['name']}-x\" has timed out progressing."}]}
        return {"observedGeneration": g, "replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}

    def kubeconfig(self, path):
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "stub",
               "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
               "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "u"}}], "users": [{"name": "u", "user": {"token": "t"}}]}
        path.write_text(yaml.safe_dump(cfg))
        return str(path)


@pytest.fixture
def stub(tmp_path):
    s = ApiStub()
    s.thread.start()
    yield s
    s.server.shutdown(); s.server.server_close()


class _Bento:
    "Stands in for a Bento: the target only needs the image, which `_image` is told."


def _target(stub, tmp_path, images):
    t = k8s.KubernetesTarget(kubeconfig=stub.kubeconfig(tmp_path/"kubeconfig"), namespace="models", wait=10)
    t._image = lambda bento: images[bento]  # the image step is nd.push/ensure_image, tested elsewhere
    return t


def _deploy(t, name, bento, env=None):
    "What `rollout` does with a target that has its own readiness gate: begin, start, record, wait, mark serving."
    row = ledger.begin(name, t.name, "iris:x")
    try:
        s = t.start(bento, name, row["version"], env or {})
        row = ledger.update(name, row["version"], "started", s["url"], url=s["url"], handle=s["handle"], image=s["image"])
        t.wait_ready(row)
    except Exception as e:
        t.stop(ledger.get(name, row["version"]))
        ledger.update(name, row["version"], "failed", str(e), status="failed", detail=str(e))
        raise
    return ledger.update(name, row["version"], "deployed", s["url"], status="serving")


@pytest.fixture
def retire():
    "Mark this test's ledger rows stopped afterwards, so the session's final clean-up leaves them alone."
    names = []
    yield names
    for n in names:
        for r in ledger.rows(n): ledger.update(n, r["version"], "stopped", status="stopped")


def test_client_path_apply_wait_update_rollback_delete(stub, tmp_path, retire):
    retire.append("iris-k8s")
    t = _target(stub, tmp_path, {"b1": "r:5000/iris:v1", "b2": "r:5000/iris:v2", "bad": "r:5000/iris:broken"})
    dep_path = "/apis/apps/v1/namespaces/models/deployments/iris-k8s"
    v1 = _deploy(t, "iris-k8s", "b1", {"NBDEPLOY_API_KEY": "s3cret"})
    assert v1["url"] == "http://iris-k8s.models.svc.cluster.local" and t.alive(v1)
    patches = [r for r in stub.requests if r[0] == "PATCH"]
    assert [p[1].rsplit("/", 2)[-2] for p in patches] == ["secrets", "services", "horizontalpodautoscalers", "poddisruptionbudgets", "deployments"]
    assert all(p[3] == "application/apply-patch+yaml" and "fieldManager=nbdeploy" in p[2] and "force=true" in p[2].lower() for p in patches)
    assert stub.objects["/api/v1/namespaces/models/secrets/iris-k8s-v1-api-key"]["stringData"] == {"api-key": "s3cret"}
    assert "s3cret" not in json.dumps(stub.objects[dep_path]) and "s3cret" not in json.dumps(ledger.rows("iris-k8s"))
    # an update is a new pod template on the same Deployment
    v2 = _deploy(t, "iris-k8s", "b2", {"NBDEPLOY_API_KEY": "s3cret"})
    ledger.update("iris-k8s", v1["version"], "retired", status="retired"); t.stop(v1)  # replaced: stop leaves the Deployment alone
    d = stub.objects[dep_path]
    assert d["metadata"]["generation"] == 2 and d["spec"]["template"]["metadata"]["annotations"]["nbdeploy.io/version"] == "2"
    assert not t.alive(v1) and t.alive(v2)
    # a rollout that stalls: named with the controller's message; the serving version is applied back
    with pytest.raises(DeployError, match="stalled.*timed out progressing"): _deploy(t, "iris-k8s", "bad", {"NBDEPLOY_API_KEY": "s3cret"})
    d = stub.objects[dep_path]
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "r:5000/iris:v2" and t.alive(v2)
    assert ledger.rows("iris-k8s")[0]["status"] == "failed"
    env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NBDEPLOY_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "iris-k8s-v2-api-key"
    # rollback to v1 is applying v1 again: the image and version annotation go back
    ledger.update("iris-k8s", v2["version"], "rolling back", status="starting")
    s = t.start("b1", "iris-k8s", v1["version"], {"NBDEPLOY_API_KEY": "s3cret"})
    t.wait_ready(ledger.update("iris-k8s", v1["version"], "started", handle=s["handle"]))
    assert stub.objects[dep_path]["spec"]["template"]["spec"]["containers"][0]["image"] == "r:5000/iris:v1"
    assert "rolled out" in t.logs(ledger.get("iris-k8s", v1["version"]))
    # stopping the version that runs deletes every object of the deployment
    t.stop(ledger.get("iris-k8s", v1["version"]))
    assert stub.objects == {}


def test_client_path_failures_name_cause_and_fix(stub, tmp_path):
    t = _target(stub, tmp_path, {"b1": "r:5000/iris:v1"})
    # a quota: the first deploy's objects already applied are removed again, and the error says what to do
    stub.fail_kind = "Deployment"
    with pytest.raises(DeployError, match="ResourceQuota is exceeded.*raise the quota"):
        t.start("b1", "quota", 1, {})
    assert stub.objects == {}
    stub.fail_kind = None
    with pytest.raises(InputError, match="lowercase"): t.start("b1", "Bad_Name", 1, {})
    # a cluster that does not answer
    port = free_port()
    (tmp_path/"dead").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "d",
        "clusters": [{"name": "d", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "d", "context": {"cluster": "d", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    dead = k8s.KubernetesTarget(kubeconfig=str(tmp_path/"dead"))
    dead._image = lambda b: "r:5000/iris:v1"
    with pytest.raises(DeployError, match=f"no API server answers at http://127.0.0.1:{port}"): dead.start("b1", "iris", 1, {})
    with pytest.raises(DeployError, match="KUBECONFIG"): k8s.KubernetesTarget(kubeconfig=str(tmp_path/"missing")).start("b1", "iris", 1, {})


def _secret_ref(stub, name):
    "The Secret the pods of the Deployment `name` read their API key from, and the key it holds."
    c = stub.objects[f"/apis/apps/v1/namespaces/models/deployments/{name}"]["spec"]["template"]["spec"]["containers"][0]
    ref = {e["name"]: e for e in c["env"]}["NBDEPLOY_API_KEY"]["valueFrom"]["secretKeyRef"]["name"]
    return ref, stub.objects[f"/api/v1/namespaces/models/secrets/{ref}"]["stringData"]["api-key"]


def _secrets(stub):
    return sorted(k.rsplit("/", 1)[1] for k in stub.objects if "/secrets/" in k)


def test_a_failed_rollout_with_a_new_key_leaves_the_live_versions_key(stub, tmp_path, retire):
    "Issue 13 item 9: the serving version keeps reading its own Secret, whatever a failed rollout with another key did."
    retire.append("iris-key")
    t = _target(stub, tmp_path, {"b1": "r:5000/iris:v1", "bad": "r:5000/iris:broken"})
    _deploy(t, "iris-key", "b1", {"NBDEPLOY_API_KEY": "old-key"})
    assert _secret_ref(stub, "iris-key")[1] == "old-key"
    # the new pods never get ready: the rollout stalls and is undone
    with pytest.raises(DeployError, match="stalled"): _deploy(t, "iris-key", "bad", {"NBDEPLOY_API_KEY": "new-key"})
    assert _secret_ref(stub, "iris-key")[1] == "old-key"  # the key serving pods check (one shared Secret: new-key)
    assert _secret_ref(stub, "iris-key")[0] == "iris-key-v1-api-key"
    assert _secrets(stub) == ["iris-key-v1-api-key"]  # the failed version's Secret went with it
    # the cluster refuses the new Deployment after the new Secret was applied
    stub.fail_kind = "Deployment"
    with pytest.raises(DeployError, match="ResourceQuota"):
        _deploy(t, "iris-key", "b1", {"NBDEPLOY_API_KEY": "newer-key"})
    stub.fail_kind = None
    assert _secret_ref(stub, "iris-key") == ("iris-key-v1-api-key", "old-key")
    assert _secrets(stub) == ["iris-key-v1-api-key"]
    assert [r["status"] for r in ledger.rows("iris-key")] == ["failed", "failed", "serving"]


def test_stop_finds_a_version_without_a_handle(stub, tmp_path, retire):
    "A deployer killed between applying and recording leaves a row with no handle: stop finds it by name and version."
    retire.extend(["iris-nh", "iris-nh1"])
    t = _target(stub, tmp_path, {"b1": "r:5000/iris:v1", "b2": "r:5000/iris:v2"})
    v1 = _deploy(t, "iris-nh", "b1", {"NBDEPLOY_API_KEY": "k1"})
    row2 = ledger.begin("iris-nh", t.name, "iris:x", auth=True)
    t.start("b2", "iris-nh", row2["version"], {"NBDEPLOY_API_KEY": "k2"})  # the ledger never hears of it
    row2 = ledger.get("iris-nh", row2["version"])
    assert row2["handle"] is None and not t.gone(row2) and _secret_ref(stub, "iris-nh")[0] == "iris-nh-v2-api-key"
    t.stop(row2)  # v1 serves: its Deployment is applied back, and v2's Secret goes
    dep = stub.objects["/apis/apps/v1/namespaces/models/deployments/iris-nh"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "r:5000/iris:v1"
    assert _secret_ref(stub, "iris-nh") == ("iris-nh-v1-api-key", "k1") and _secrets(stub) == ["iris-nh-v1-api-key"]
    assert t.alive(v1) and t.gone(row2)
    # a first deploy interrupted the same way: every object of the name goes
    row = ledger.begin("iris-nh1", t.name, "iris:x", auth=True)
    t.start("b1", "iris-nh1", row["version"], {"NBDEPLOY_API_KEY": "k"})
    t.stop(ledger.get("iris-nh1", row["version"]))
    assert not [k for k in stub.objects if "iris-nh1" in k]
    assert "does not exist" in t.logs(ledger.get("iris-nh1", row["version"]))


def test_gone_only_when_no_pods_of_the_version_are_left(stub, tmp_path, retire, monkeypatch):
    "gone() is confirmed by the cluster's objects; a Deployment with 0 available pods is unhealthy, not gone."
    import nbdeploy as nd
    from nbdeploy.deployer import TARGETS
    retire.append("iris-gone")
    t = _target(stub, tmp_path, {"b1": "r:5000/iris:v1", "b2": "r:5000/iris:v2", "bad": "r:5000/iris:broken"})
    monkeypatch.setitem(TARGETS, "kubernetes", t)
    status = lambda v: nd.Deployment("iris-gone", v).status()
    path = "/apis/apps/v1/namespaces/models/deployments/iris-gone"
    v1 = _deploy(t, "iris-gone", "b1")
    assert t.alive(v1) and not t.gone(v1) and status(1) == "serving"
    # a node drain: no pod of v1 is available for a while, but the Deployment still runs v1
    drained = [stub.objects[path], *stub.owned(stub.objects[path])]
    for o in drained: o["status"]["availableReplicas"] = 0
    assert not t.alive(v1) and not t.gone(v1)
    assert status(1) == "unhealthy" and ledger.get("iris-gone", 1)["status"] == "serving"  # nd.status: not dead
    for o in drained: o["status"]["availableReplicas"] = o["spec"]["replicas"]
    # a rollout that stalls: v1's old ReplicaSet keeps serving; the new version is not ready, and neither is gone
    row = ledger.begin("iris-gone", t.name, "iris:x")
    s = t.start("bad", "iris-gone", row["version"], {})
    row = ledger.update("iris-gone", row["version"], "started", handle=s["handle"], image=s["image"])
    assert t.alive(v1) and not t.gone(v1) and not t.alive(row) and not t.gone(row)
    t.stop(row)  # undone: v1's template is applied back, the stalled ReplicaSet scaled down
    assert t.gone(row) and t.alive(v1) and not t.gone(v1)
    # replaced by a version that rolls out: v1's ReplicaSet has no pods left
    v3 = _deploy(t, "iris-gone", "b2")
    assert t.gone(v1) and not t.alive(v1) and t.alive(v3) and not t.gone(v3)
    # the Deployment deleted: gone
    t.stop(v3)
    assert t.gone(v3) and t.gone(v1) and stub.objects == {}
    assert status(3) == "dead" and ledger.get("iris-gone", 3)["status"] == "dead"
    assert k8s.KubernetesTarget.remote  # nd.status takes the cluster's word, no HTTP probe from here


@pytest.mark.skipif(not __import__("tests.test_sagemaker", fromlist=["x"]).rollout_uses_target_gate(),
                    reason="nd.deploy's rollout does not call a target's own wait_ready yet")
def test_nd_deploy_and_rollback_on_kubernetes(stub, tmp_path, iris_image, monkeypatch, retire):
    import nbdeploy as nd
    from nbdeploy.deployer import TARGETS
    bento, tag, _ = iris_image
    t = k8s.KubernetesTarget(kubeconfig=stub.kubeconfig(tmp_path/"kubeconfig"), namespace="models", wait=10)
    monkeypatch.setitem(TARGETS, "kubernetes", t)
    retire.append("iris-k8sd")
    path = "/apis/apps/v1/namespaces/models/deployments/iris-k8sd"
    v1 = nd.deploy(bento, name="iris-k8sd", target="kubernetes")
    v2 = nd.deploy(bento, name="iris-k8sd", target="kubernetes")
    ann = lambda: stub.objects[path]["spec"]["template"]["metadata"]["annotations"]["nbdeploy.io/version"]
    assert ann() == "2" and v2.row["status"] == "serving" and v1.row["status"] == "retired"
    assert stub.objects[path]["spec"]["template"]["spec"]["containers"][0]["image"] == tag
    back = nd.rollback("iris-k8sd")
    assert back.version == 1 and ann() == "1" and stub.objects[path]["metadata"]["generation"] == 3
    back.stop()
    assert stub.objects == {}
