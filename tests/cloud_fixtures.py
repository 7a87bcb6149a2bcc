"""Pytest plugin: real services on 127.0.0.1 for the registry, SageMaker and Kubernetes tests.

- `registry`: Debian's `docker-registry` (distribution 2.8) with its own config and storage, started here.
- `moto_server`: moto in server mode (`moto_server`), the real boto3 client talks HTTP to it; `moto_recording`
  reads back, from moto's own recorder, exactly what the server received.
Each is started as its own process and stopped by the PID recorded here, in the fixture's finaliser.
Load it with `pytest_plugins = [..., "tests.cloud_fixtures"]` in tests/conftest.py.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from nbdeploy.config import free_port


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    "Wait until `url` answers at all; fail with the log tail if `proc` exits or time runs out."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: pytest.fail(f"{proc.args[0]} exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException: time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text()[-2000:]}")


def stop_pid(proc: subprocess.Popen) -> None:
    "Stop the process we started, by its PID: TERM, then KILL after 10 s."
    if proc.poll() is None:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(5)


REGISTRY_CONFIG = """version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
"""


def _registry(htpasswd: str | None = None):
    "Start Debian's docker-registry on a free loopback port (with basic auth when given an htpasswd line): (host:port, stop)."
    exe = shutil.which("docker-registry")
    if not exe: pytest.skip("docker-registry is not installed: apt-get install -y docker-registry")
    d = Path(tempfile.mkdtemp(prefix="nbdeploy-registry-"))
    port = free_port()
    config = REGISTRY_CONFIG.format(root=d/"data", port=port)
    if htpasswd:
        (d/"htpasswd").write_text(htpasswd + "\n")
        config += f"auth:\n  htpasswd: {{realm: nbdeploy-tests, path: {d/'htpasswd'}}}\n"
    (d/"config.yml").write_text(config)
    log = d/"registry.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([exe, "serve", str(d/"config.yml")], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    def stop():
        stop_pid(proc)
        shutil.rmtree(d, ignore_errors=True)
    try: wait_http(f"http://127.0.0.1:{port}/v2/", proc, log)
    except BaseException: stop(); raise
    return f"127.0.0.1:{port}", stop


def untag(client, prefix: str = "", suffix: str = "") -> None:
    "Remove the engine's tags that start with `prefix` and end with `suffix` (their layers stay while other tags use them)."
    for img in client.images.list():
        digests = [d for d in img.attrs.get("RepoDigests") or [] if not suffix]  # pulled by digest: no tag, only this
        for t in [*img.tags, *digests]:
            if t.startswith(prefix) and t.endswith(suffix):
                try: client.images.remove(t)
                except Exception: pass


@pytest.fixture(scope="session")
def registry(docker_engine):
    "A real OCI registry (Debian's docker-registry) on 127.0.0.1: its `host:port`."
    host, stop = _registry()
    yield host
    stop()
    untag(docker_engine, prefix=f"{host}/")
    untag(docker_engine, suffix="-sagemaker")


@pytest.fixture(scope="session")
def auth_registry(docker_engine):
    "A real registry on 127.0.0.1 that requires basic auth: (host:port, username, password)."
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try: import crypt
        except ImportError: pytest.skip("no crypt module to make a bcrypt htpasswd entry")
    hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"): pytest.skip("this libc's crypt cannot make bcrypt hashes")
    host, stop = _registry(f"nbdeploy:{hashed}")
    yield host, "nbdeploy", "s3cret"
    stop()
    untag(docker_engine, prefix=f"{host}/")


@pytest.fixture(scope="session")
def moto_server():
    "moto in server mode on 127.0.0.1, started as its own process: its endpoint URL."
    exe = shutil.which("moto_server")
    if not exe: pytest.skip("moto's server is not installed: pip install 'moto[server]'")
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="nbdeploy-moto-"))
    log = d/"moto.log"
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(d/"recording.jsonl")}  # `moto_recording`: off until started
    with open(log, "wb") as f:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/", proc, log)
        yield url
    finally: stop_pid(proc)


@pytest.fixture
def aws(moto_server, monkeypatch):
    "Environment pointing every boto3 client at the moto server, with dummy credentials and a region."
    for k, v in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"): monkeypatch.delenv(k, raising=False)
    yield moto_server
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)


class moto_recording:
    "moto's own request recorder, on for a `with` block: `.calls()` is what the server received, (action, body) each."
    def __init__(self, url: str): self.url = url
    def __enter__(self):
        requests.post(f"{self.url}/moto-api/recorder/reset-recording", timeout=10)
        requests.post(f"{self.url}/moto-api/recorder/start-recording", timeout=10)
        return self
    def __exit__(self, *exc): requests.post(f"{self.url}/moto-api/recorder/stop-recording", timeout=10)
    def calls(self, service: str = "SageMaker") -> list[tuple[str, dict]]:
        "The JSON-protocol calls to `service` recorded so far: (operation, request body), in order."
        out = []
        for line in requests.get(f"{self.url}/moto-api/recorder/download-recording", timeout=10).text.splitlines():
            e = json.loads(line)
            target = {k.lower(): v for k, v in e["headers"].items()}.get("x-amz-target", "")
            if not target.startswith(f"{service}."): continue
            body = base64.b64decode(e["body"]) if e.get("body_encoded") else (e.get("body") or "{}")
            out.append((target.split(".", 1)[1], json.loads(body or "{}")))
        return out

    def headers(self, path_part: str) -> list[dict]:
        "The headers of each recorded request whose URL contains `path_part` (lower-cased names)."
        lines = requests.get(f"{self.url}/moto-api/recorder/download-recording", timeout=10).text.splitlines()
        return [{k.lower(): v for k, v in e["headers"].items()} for e in map(json.loads, lines)
                if path_part in e["url"]]
