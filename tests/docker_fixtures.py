"""Pytest plugin: a real Docker engine (started here if need be), nbdeploy's base image, and one iris image shared by the container tests.

Load it with `pytest_plugins = ["tests.docker_fixtures"]` in tests/conftest.py.
"""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "docker-engine.sh"
os.environ.setdefault("DOCKER_BUILDKIT", "0")


def _engine_answers() -> bool:
    "Does the docker SDK reach an engine?"
    from nbdeploy.images import engine
    try:
        engine(timeout=10)
        return True
    except Exception:
        return False


def wait_serving(container, url: str, timeout: float = 90) -> None:
    "Return once `url`/readyz answers 200; fail with the container's log if it stops running or time runs out."
    from nbdeploy.deployer import wait_ready
    from nbdeploy.errors import DeployError
    def running():
        container.reload()
        return container.status == "running"
    try: wait_ready(url, running, timeout)
    except DeployError as e: pytest.fail(f"{e}:\n{container.logs().decode()[-3000:]}")


def locked_down(c, tmpfs: set) -> None:
    "Assert that container `c` runs as the Kubernetes manifests' pods do: no capabilities, read-only, limited."
    hc = c.attrs["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd"), (hc["CapDrop"], hc.get("CapAdd"))
    assert hc["ReadonlyRootfs"] is True and (hc.get("PidsLimit") or 0) > 0 and hc["Memory"] > 0
    assert "no-new-privileges" in (hc.get("SecurityOpt") or []) and c.attrs["Config"]["User"] not in ("", "0", "root")
    assert set(hc.get("Tmpfs") or {}) == tmpfs


def endpoint_container(name: str, role: str):
    "The running `role` container (edge or router) of deployment `name`'s endpoint."
    import docker
    labels = [f"org.nbdeploy.endpoint={name}", f"org.nbdeploy.role={role}"]
    cs = docker.from_env().containers.list(filters={"label": labels})
    assert len(cs) == 1, f"{len(cs)} {role} containers for {name}"
    return cs[0]


def _clean_up(client):
    "Stop this session's docker deployments still serving and remove the images built from this session's Bentos (the base image stays cached)."
    import bentoml
    import nbdeploy as nd
    from nbdeploy import ledger
    for row in ledger.rows():
        if row["target"].startswith("docker") and row["status"] in ("serving", "starting", "dead"):
            try: nd.Deployment(row["name"], row["version"]).stop()
            except Exception as e: print(f"could not stop {row['name']} v{row['version']}: {e}")
    for b in bentoml.list():
        try: client.images.remove(f"nbdeploy/{b.tag.name.lower()}:{b.tag.version}", force=True)
        except Exception: pass


@pytest.fixture(scope="session")
def docker_engine():
    "A docker SDK client on a real engine: the one that answers, else one started by scripts/docker-engine.sh (and stopped at the end)."
    started = None
    if not _engine_answers():
        if os.environ.get("DOCKER_HOST"):
            pytest.skip(f"no Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}; not starting a local one")
        piddir = Path(os.environ.get("NBDEPLOY_DOCKERD_DIR", "/tmp/nbdeploy-dockerd-tests"))
        env = {**os.environ, "NBDEPLOY_DOCKERD_DIR": str(piddir)}
        r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, env=env, timeout=600)
        if r.returncode or not _engine_answers():
            pytest.skip(f"no Docker engine could be started here (scripts/docker-engine.sh exit {r.returncode}): "
                        f"{(r.stderr or r.stdout).strip()[-800:]}")
        m = re.search(r"DOCKERD_PID=(\d+)", r.stdout)
        started = (piddir, m.group(1)) if m else None
    import docker
    client = docker.from_env(timeout=600)
    yield client
    _clean_up(client)
    client.close()
    if started:  # stop the dockerd this fixture started, by its recorded PID
        subprocess.run(["bash", str(SCRIPT), "stop"], env={**os.environ, "NBDEPLOY_DOCKERD_DIR": str(started[0])},
                       capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def base_tag(docker_engine):
    "nbdeploy's default base image (made once per engine; later sessions reuse it)."
    from nbdeploy.images import base_image
    t0 = time.time()
    tag = base_image()
    print(f"base image {tag} ready in {time.time() - t0:.1f} s")
    return tag


def iris_model(n_estimators=10, seed=0):
    "A small RandomForest on iris (a DataFrame with four float columns) and its data."
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    X, y = load_iris(return_X_y=True, as_frame=True)
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed).fit(X, y), X, y


def make_bento(name="iris", n_estimators=10, seed=0):
    "A real Bento from nbdeploy's own `package`, for a freshly fitted iris forest."
    from nbdeploy.packager import package
    model, X, _ = iris_model(n_estimators, seed)
    return package(model, name=name, sample=X)


@pytest.fixture(scope="session")
def iris_image(docker_engine, base_tag):
    "One iris image built with `nd.containerize`, shared by the tests: (bento, tag, build seconds)."
    from nbdeploy.containers import containerize
    bento = make_bento("iris")
    t0 = time.time()
    tag = containerize(bento, base_image=base_tag)
    return bento, tag, time.time() - t0
