"""Test session setup: a throwaway nbdeploy home (ledger, logs, BentoML store) and no server left running."""
import os
import tempfile
import time
from pathlib import Path

import pytest

HOME = Path(tempfile.mkdtemp(prefix="nbdeploy-tests-"))
os.environ["NBDEPLOY_HOME"] = str(HOME)
os.environ["BENTOML_HOME"] = str(HOME / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ.pop("NBDEPLOY_API_KEY", None)
ARTIFACTS = Path(__file__).parent / "artifacts"
ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def stop_everything_at_the_end():
    "Stop every version still serving in the test ledger, by the PID or id the ledger recorded."
    yield
    import nbdeploy as nd
    from nbdeploy import ledger
    for row in ledger.rows():
        if row["status"] in (*ledger.IN_SERVICE, "starting", "dead"):  # a dead one may leave its endpoint running
            try: nd.Deployment(row["name"], row["version"]).stop()
            except Exception as e: print(f"could not stop {row['name']} v{row['version']}: {e}")


@pytest.fixture(scope="session")
def home():
    "The nbdeploy home the tests run in."
    return HOME


# Container tests: a real Docker engine, the base image and a shared iris image (tests/docker_fixtures.py).
pytest_plugins = ["tests.docker_fixtures"]

# Registry, moto (SageMaker) and cluster tests: services on 127.0.0.1 started and stopped by PID (tests/cloud_fixtures.py).
pytest_plugins = [*pytest_plugins, "tests.cloud_fixtures"]


def poll(f, timeout=60, what="the condition"):
    "f()'s first truthy answer, polled every 0.2 s."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = f()
        if got: return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
