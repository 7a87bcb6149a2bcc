"""Reliability of the docker target on a real engine: sustained load, and a server killed mid-traffic."""
import asyncio
import os
import signal
import time

import requests

import nbdeploy as nd
from tests.docker_fixtures import iris_model
from tests.load import hammer


def container_mb(c) -> float:
    "The container's memory use, in MiB, as the engine reports it."
    return c.stats(stream=False)["memory_stats"]["usage"] / 2**20


def test_docker_target_under_load_then_restarted_after_a_crash(docker_engine, iris_image):
    bento, tag, _ = iris_image
    _, X, _ = iris_model()
    dep = nd.deploy(bento, name="iris-soak", target="docker")
    try:
        url, body = f"{dep.url}/predict", {"inputs": X.head(1).to_dict("records")}
        seconds = float(os.environ.get("NBDEPLOY_LOAD_SECONDS", 20))
        c = docker_engine.containers.get(dep.row["handle"])
        asyncio.run(hammer(url, body, 64, 3))
        first = asyncio.run(hammer(url, body, 64, seconds / 2))
        middle = container_mb(c)
        second = asyncio.run(hammer(url, body, 64, seconds / 2))
        after = container_mb(c)
        print(f"docker load: {sum(first.values()) + sum(second.values())} requests in {seconds:.0f} s at 64 clients, memory {middle:.0f} -> {after:.0f} MiB")
        assert set(first) == {200} and set(second) == {200}, (first, second)
        assert after - middle < 50

        os.kill(c.attrs["State"]["Pid"], signal.SIGKILL)  # the server dies under the engine, not by a stop
        for _ in range(120):
            c.reload()
            if c.attrs["RestartCount"] >= 1 and c.status == "running" and dep.status() == "serving": break
            time.sleep(0.5)
        assert c.attrs["RestartCount"] >= 1 and dep.status() == "serving"
        answer = requests.post(url, json=body, timeout=30)
        assert answer.status_code == 200
    finally:
        dep.stop()
