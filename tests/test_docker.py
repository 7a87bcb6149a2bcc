"""Containers on a real Docker engine: base images, nbdeploy's own image, the docker target, swaps with a client polling."""
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

import nbdeploy as nd
import nbdeploy.docker_target  # registers target="docker"
from nbdeploy import containers, ledger
from nbdeploy.containers import containerize, verify_image
from nbdeploy.docker_target import DockerTarget, endpoint
from nbdeploy.deployer import register_target
from nbdeploy.errors import DeployError, PackagingError
from nbdeploy.images import IMAGE_CA_PATH, base_image, engine
from tests.docker_fixtures import SCRIPT, endpoint_container, iris_model, locked_down, make_bento
from tests.load import half_open

ARTIFACTS = Path(__file__).parent / "artifacts"
BENCH = ARTIFACTS / "docker_bench.json"


def record(**kw):
    "Keep measured numbers for benchmarks/README.md."
    data = json.loads(BENCH.read_text()) if BENCH.exists() else {}
    data.update(kw)
    BENCH.write_text(json.dumps(data, indent=1))


# --- no engine ----------------------------------------------------------------------------------------------------

def test_no_engine_says_how_to_start_one(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(DeployError, match="docker-engine.sh"):
        engine(timeout=2)
    with pytest.raises(DeployError, match="127.0.0.1:9"):
        containerize("iris:latest")


# --- engine and base image ----------------------------------------------------------------------------------------

def test_engine_script_is_idempotent(docker_engine):
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "DOCKERD_PID=" in r.stdout and "already answers" in r.stderr


def test_base_image_is_cached_and_trusts_the_host_ca(docker_engine, base_tag, monkeypatch):
    def no_build(*a, **kw): raise AssertionError("a second base_image() must reuse the image, not build")
    monkeypatch.setattr("nbdeploy.images.stream_build", no_build)
    assert base_image() == base_tag
    monkeypatch.undo()
    out = docker_engine.containers.run(base_tag, ["sh", "-c", "python3 -m venv /tmp/v && /tmp/v/bin/pip --version && "
                                                  "cmp $SSL_CERT_FILE $PIP_CERT && echo $REQUESTS_CA_BUNDLE"],
                                       remove=True, network_mode="none").decode()
    assert "pip " in out and IMAGE_CA_PATH in out
    inside = docker_engine.containers.run(base_tag, ["cat", IMAGE_CA_PATH], remove=True, network_mode="none")
    assert inside == Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    record(base_image_mb=round(docker_engine.images.get(base_tag).attrs["Size"] / 1e6))


def test_base_image_from_a_rootfs_tarball_with_a_given_ca(docker_engine, base_tag, tmp_path):
    c = docker_engine.containers.create(base_tag, ["true"])
    try:
        with open(tmp_path / "rootfs.tar", "wb") as f:
            for chunk in c.export(): f.write(chunk)
    finally: c.remove()
    pem = Path("/etc/ssl/certs/ca-certificates.crt").read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    (tmp_path / "site-ca.pem").write_text(pem)
    tag = base_image("nbdeploy/test-rootfs:1", rootfs=tmp_path / "rootfs.tar", ca_bundle=tmp_path / "site-ca.pem")
    try:
        inside = docker_engine.containers.run(tag, ["cat", IMAGE_CA_PATH], remove=True, network_mode="none").decode()
        assert inside == pem
    finally: docker_engine.images.remove(tag, force=True)


# --- the image ----------------------------------------------------------------------------------------------------

def test_image_is_small_labelled_nonroot_and_health_checked(docker_engine, iris_image):
    bento, tag, seconds = iris_image
    img = docker_engine.images.get(tag)
    size_mb = img.attrs["Size"] / 1e6
    record(image_mb=round(size_mb), first_build_s=round(seconds, 1))
    assert size_mb < 600, f"image is {size_mb:.0f} MB"
    labels = img.labels
    assert labels["org.nbdeploy.bento"] == str(bento.tag) and labels["org.opencontainers.image.title"] == "iris"
    assert labels["org.opencontainers.image.version"] == bento.tag.version
    assert labels["org.nbdeploy.verdict"] == bento.info.labels.get("nbdeploy.verdict", "unchecked")
    assert labels["org.nbdeploy.model"].startswith("iris:")
    cfg = img.attrs["Config"]
    assert cfg["User"] == "10001" and "/readyz" in " ".join(cfg["Healthcheck"]["Test"])
    r = docker_engine.containers.run(tag, ["sh", "-c", "id -u; for t in gcc cc git; do command -v $t || true; done"],
                                     remove=True, network_mode="none").decode().split()
    assert r == ["10001"], f"non-root user and no compiler or git expected, got {r}"


def test_version_mismatch_fails_with_the_diff(iris_image):
    bento, tag, _ = iris_image
    reqs = containers.requirements_of(bento)
    versions = verify_image(tag, reqs)  # the real comparison passes
    with pytest.raises(PackagingError, match=r"scikit-learn: kernel 0\.0\.1, image " + versions["scikit-learn"]):
        verify_image(tag, reqs, kernel={**versions, "scikit-learn": "0.0.1"})


def test_build_failure_shows_the_log_tail(docker_engine, base_tag, iris_image, monkeypatch):
    bento, _, _ = iris_image
    monkeypatch.setattr(containers, "requirements_of", lambda b: ["nbdeploy-no-such-package==0.0.0"])
    with pytest.raises(PackagingError, match="(?s)build log tail.*nbdeploy-no-such-package"):
        containerize(bento, base_image=base_tag, tag="nbdeploy/broken:test")


def test_offline_build_uses_no_network(docker_engine, base_tag, iris_image, monkeypatch):
    bento, _, _ = iris_image
    seen = {}
    real = containers.stream_build
    def spy(client, **kw):
        seen.update(kw, containerfile=(Path(kw["path"]) / kw["dockerfile"]).read_text(),
                    wheels=len(list((Path(kw["path"]) / "wheels").glob("*.whl"))))
        return real(client, **kw)
    monkeypatch.setattr(containers, "stream_build", spy)
    t0 = time.time()
    tag = containerize(bento, base_image=base_tag, offline=True, tag="nbdeploy/iris-offline:test")
    record(offline_build_s=round(time.time() - t0, 1))
    assert seen["network_mode"] == "none"
    assert "--no-index --find-links /tmp/wheels" in seen["containerfile"] and seen["wheels"] > 10
    assert docker_engine.images.get(tag).labels["org.nbdeploy.bento"] == str(bento.tag)
    docker_engine.images.remove(tag, force=True)


# --- the docker target --------------------------------------------------------------------------------------------

def test_serves_the_http_contract(docker_engine, iris_image):
    bento, tag, _ = iris_image
    model, X, _ = iris_model()
    dep = nd.deploy(bento, name="iris-contract", target="docker")
    try:
        row = ledger.get("iris-contract", dep.version)
        assert row["image"] == tag and row["status"] == "serving" and dep.status() == "serving"
        c = docker_engine.containers.get(row["handle"])
        hc = c.attrs["HostConfig"]
        assert c.attrs["Config"]["User"] == "10001" and hc["NetworkMode"] == "host" and hc["Memory"] > 0
        assert hc["RestartPolicy"]["Name"] == "on-failure"
        locked_down(c, tmpfs={"/tmp", "/home/nbdeploy/bentoml"})
        assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
        url = endpoint("iris-contract")
        assert url and url.startswith("http://127.0.0.1:") and dep.url == url == row["url"]
        edge, router = (endpoint_container("iris-contract", role) for role in ("edge", "router"))
        for e in (edge, router):
            locked_down(e, tmpfs=set())
            assert e.attrs["Config"]["Cmd"][0] == "nginx"
            assert e.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert edge.labels["org.nbdeploy.proxy"] == "iris-contract"
        assert url.endswith(":" + edge.labels["org.nbdeploy.proxy-port"])
        assert requests.get(f"{url}/livez", timeout=10).headers["X-Request-ID"]
        direct = f"http://127.0.0.1:{row['port']}"
        for base in (url, direct):
            np.testing.assert_array_equal(
                requests.post(f"{base}/predict", json={"inputs": X.head(20).to_dict("records")}, timeout=30).json()["predictions"],
                model.predict(X.head(20)))
        np.testing.assert_array_equal(dep.predict(X), model.predict(X))
        for route in ("/livez", "/readyz", "/metrics", "/metadata"):
            assert requests.get(f"{url}{route}", timeout=10).status_code == 200, route
        bad = requests.post(f"{url}/predict", json={"inputs": [{"nope": 1}]}, timeout=10)
        assert 400 <= bad.status_code < 500
        assert "Uvicorn" in dep.logs() or "bentoml" in dep.logs().lower() or dep.logs()
        c.stop(timeout=10)  # a container that dies after start: status says so and the ledger records it
        assert DockerTarget().gone(row) and not DockerTarget().alive(row)
        assert dep.status() == "dead" and ledger.get("iris-contract", dep.version)["status"] == "dead"
    finally:
        dep.stop()
    with pytest.raises(Exception):
        docker_engine.containers.get(row["handle"])
    assert endpoint("iris-contract") is None
    assert docker_engine.containers.list(all=True, filters={"label": "org.nbdeploy.endpoint=iris-contract"}) == []


def test_api_key_is_a_read_only_file_never_in_the_environment(docker_engine, iris_image):
    bento, tag, _ = iris_image
    _, X, _ = iris_model()
    assert not any("NBDEPLOY_API_KEY" in e for e in docker_engine.images.get(tag).attrs["Config"]["Env"])
    dep = nd.deploy(bento, name="iris-auth", target="docker", api_key="s3cret-key")
    try:
        c = docker_engine.containers.get(dep.row["handle"])
        inspect = json.dumps(docker_engine.api.inspect_container(c.id))
        assert "s3cret-key" not in inspect, "the API key shows in docker inspect"
        assert "NBDEPLOY_API_KEY_FILE=/run/secrets/nbdeploy-api-key" in c.attrs["Config"]["Env"]
        mount = next(m for m in c.attrs["Mounts"] if m["Destination"] == "/run/secrets/nbdeploy-api-key")
        assert mount["RW"] is False and not Path(mount["Source"]).stat().st_mode & 0o004  # not world-readable
        assert c.exec_run(["cat", "/run/secrets/nbdeploy-api-key"]).output == b"s3cret-key"  # its user can read it
        body = {"inputs": X.head(2).to_dict("records")}
        assert requests.post(f"{dep.url}/predict", json=body, timeout=30).status_code == 401
        ok = requests.post(f"{dep.url}/predict", json=body, headers={"Authorization": "Bearer s3cret-key"}, timeout=30)
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2
        assert len(dep.predict(X.head(5))) == 5
    finally:
        dep.stop()
    assert not Path(mount["Source"]).exists(), "the key file outlived its version"


def test_stop_finds_a_version_without_handle_by_its_labels(docker_engine, iris_image):
    bento, _, _ = iris_image
    dep = nd.deploy(bento, name="iris-nohandle", target="docker")
    row = dep.row
    t = DockerTarget()
    assert t.alive({**row, "handle": None}) and not t.gone({**row, "handle": None})
    t.stop({**row, "handle": None})  # as for a row whose deployer died before recording the container
    assert docker_engine.containers.list(all=True, filters={"label": "org.nbdeploy.deployment=iris-nohandle"}) == []
    assert t.gone(row) and endpoint("iris-nohandle") is None
    dep.stop()


def test_endpoint_takes_chunked_bodies_limits_size_and_outlasts_half_open_clients(docker_engine, iris_image):
    bento, _, _ = iris_image
    model, X, _ = iris_model()
    dep = nd.deploy(bento, name="iris-edge", target="docker")
    try:
        url = dep.url
        body = json.dumps({"inputs": X.head(50).to_dict("records")}).encode()
        chunked = requests.post(f"{url}/predict", data=iter([body[i:i + 100] for i in range(0, len(body), 100)]),
                                headers={"Content-Type": "application/json"}, timeout=30)
        assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
        assert chunked.status_code == 200, chunked.text
        np.testing.assert_array_equal(chunked.json()["predictions"], model.predict(X.head(50)))
        big = b'{"inputs": [' + b'{"sepal length (cm)": 1.0},' * (100 * 2**20 // 27) + b"{}]}"
        t0 = time.monotonic()
        r = requests.post(f"{url}/predict", data=big, headers={"Content-Type": "application/json"}, timeout=60)
        took = time.monotonic() - t0
        assert r.status_code == 413 and r.json()["limit_bytes"] < len(big), r.text[:300]
        held = half_open(int(url.rsplit(":", 1)[1]))
        try:
            t1 = time.monotonic()
            one = {"inputs": X.head(1).to_dict("records")}
            with requests.Session() as c:
                codes = [c.post(f"{url}/predict", json=one, timeout=10).status_code for _ in range(50)]
            answers = time.monotonic() - t1
        finally:
            for s in held: s.close()
        assert codes == [200] * 50
        record(docker_body_100mb_status=r.status_code, docker_body_100mb_s=round(took, 3),
               docker_half_open_held=300, docker_half_open_50_answers_s=round(answers, 3))
    finally:
        dep.stop()


def test_swap_failed_upgrade_and_rollback_drop_no_request(docker_engine, iris_image):
    bento1, _, _ = iris_image
    _, X, _ = iris_model()
    register_target(DockerTarget(name="docker-tiny", memory="24m", restart_retries=1))
    d1 = nd.deploy(bento1, name="iris-swap", target="docker")
    url = endpoint("iris-swap")
    body = {"inputs": X.head(3).to_dict("records")}
    stats = {"ok": 0, "failed": []}
    stop = threading.Event()

    def poll():
        s = requests.Session()
        while not stop.is_set():
            try:
                r = s.post(f"{url}/predict", json=body, timeout=30)
                if r.status_code == 200: stats["ok"] += 1
                else: stats["failed"].append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as e:
                stats["failed"].append(repr(e))

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        # retrain and rebuild: dependency layers reused
        bento2 = make_bento("iris-swap", n_estimators=15, seed=1)
        t0 = time.time()
        containerize(bento2)
        rebuild = time.time() - t0
        record(rebuild_after_retraining_s=round(rebuild, 1))
        changed = set(containers.requirements_of(bento2)) ^ set(containers.requirements_of(bento1))
        assert rebuild < 20, f"rebuild took {rebuild:.1f} s" + (f"; pins changed mid-session: {sorted(changed)}" if changed else "")
        d2 = nd.deploy(bento2, name="iris-swap", target="docker")
        assert d2.url == d1.url == url
        assert requests.get(f"{url}/metadata", timeout=10).json()["bento"] == str(bento2.tag)
        assert ledger.get("iris-swap", d1.version)["status"] == "retired"

        # an upgrade that cannot start (its container does not fit its memory limit) is held back
        bento3 = make_bento("iris-swap", n_estimators=5, seed=2)
        with pytest.raises(DeployError, match="memory limit"):
            nd.deploy(bento3, name="iris-swap", target="docker-tiny", timeout=60)
        failed = ledger.rows("iris-swap")[0]
        assert failed["status"] == "failed" and failed["bento"] == str(bento3.tag)
        assert ledger.live("iris-swap")["version"] == d2.version
        assert requests.get(f"{url}/metadata", timeout=10).json()["bento"] == str(bento2.tag)

        # rollback brings v1 back behind the same endpoint
        back = nd.rollback("iris-swap")
        assert back.version == d1.version and ledger.live("iris-swap")["version"] == d1.version
        assert requests.get(f"{url}/metadata", timeout=10).json()["bento"] == str(bento1.tag)
        time.sleep(1)
    finally:
        stop.set(); th.join(60)
        live = ledger.live("iris-swap")
        if live: nd.Deployment("iris-swap", live["version"]).stop()
    record(swap_requests_ok=stats["ok"], swap_requests_failed=len(stats["failed"]))
    assert stats["ok"] > 20 and stats["failed"] == [], stats["failed"][:5]
    left = docker_engine.containers.list(all=True, filters={"label": "org.nbdeploy.deployment=iris-swap"})
    assert left == [] and endpoint("iris-swap") is None
