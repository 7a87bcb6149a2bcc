"""nd.push against a real OCI registry (Debian's docker-registry on 127.0.0.1): push, remove, pull back by digest."""
import pytest
import requests
from docker.errors import ImageNotFound

from nbdeploy.errors import DeployError, InputError
from nbdeploy.registry import push


def test_push_pull_round_trip(docker_engine, iris_image, registry):
    _, tag, _ = iris_image
    ref = push(tag, registry=registry, repository="models/iris", tag="v1")
    name, digest = ref.split("@")
    assert name == f"{registry}/models/iris:v1" and digest.startswith("sha256:")
    # the registry itself lists it, and serves the manifest under that digest
    assert "v1" in requests.get(f"http://{registry}/v2/models/iris/tags/list", timeout=10).json()["tags"]
    r = requests.head(f"http://{registry}/v2/models/iris/manifests/v1", timeout=10,
                      headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.headers["Docker-Content-Digest"] == digest
    # drop the local copies under the remote name, pull by digest, and get the same image back
    local_id = docker_engine.images.get(tag).id
    docker_engine.images.remove(name)
    with pytest.raises(ImageNotFound): docker_engine.images.get(name)
    pulled = docker_engine.images.pull(ref)
    assert pulled.id == local_id
    assert pulled.labels["org.nbdeploy.bento"] == str(iris_image[0].tag)


def test_unreachable_registry_names_cause_and_fix(iris_image):
    _, tag, _ = iris_image
    with pytest.raises(DeployError, match="no registry answers at 127.0.0.1:1"):
        push(tag, registry="127.0.0.1:1")


def test_bad_names_and_missing_image(docker_engine, registry):
    with pytest.raises(InputError, match="host\\[:port\\]"): push("nbdeploy/x:1", registry="not a registry")
    with pytest.raises(InputError, match="lowercase"): push("nbdeploy/x:1", registry=registry, repository="Bad Repo")
    with pytest.raises(InputError, match="nd.containerize"): push("nbdeploy/does-not-exist:1", registry=registry)


def test_registry_that_requires_credentials(docker_engine, iris_image, auth_registry):
    "A real registry with basic auth: no or wrong credentials are named with the fix; the right ones push."
    _, tag, _ = iris_image
    host, user, password = auth_registry
    with pytest.raises(DeployError, match="refused the credentials.*auth="):
        push(tag, registry=host, repository="private/iris", auth={"username": user, "password": "wrong"})
    ref = push(tag, registry=host, repository="private/iris", tag="v1", auth={"username": user, "password": password})
    assert ref.startswith(f"{host}/private/iris:v1@sha256:")
    assert requests.get(f"http://{host}/v2/private/iris/tags/list", timeout=10).status_code == 401
    tags = requests.get(f"http://{host}/v2/private/iris/tags/list", auth=(user, password), timeout=10).json()["tags"]
    assert tags == ["v1"]


def test_failed_push_leaves_no_tag(docker_engine, iris_image):
    _, tag, _ = iris_image
    with pytest.raises(DeployError): push(tag, registry="127.0.0.1:1", repository="gone/iris", tag="x")
    with pytest.raises(ImageNotFound): docker_engine.images.get("127.0.0.1:1/gone/iris:x")
