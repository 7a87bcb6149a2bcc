"""Hardening of the serving runtime (issue 13): one request's fate stays its own, bodies are bounded, training values stay private."""
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests

import nbdeploy as nd
from tests.models import SlowModel


# --- a timed-out request leaves its batchmates answered (item 1) ------------------------------------------------

@pytest.fixture(scope="module")
def slow():
    "A native model that sleeps for the `wait` its rows ask for, one worker, requests timed out after 3 s."
    X = pd.DataFrame({"wait": [0.0, 0.5], "x": [1.0, 2.0]})
    bento = nd.package(SlowModel().fit(X, [0, 1]), "slow", sample=X, workers=1, runtime="native")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_REQUEST_TIMEOUT", "3")
        dep = nd.deploy(bento, name="slow")
    yield dep
    dep.stop()


def test_a_timed_out_request_leaves_the_others_answered(slow):
    url = f"{slow.url}/predict"
    def post(wait): return requests.post(url, json={"inputs": [{"wait": wait, "x": 1.0}]}, timeout=30)
    assert post(0.0).status_code == 200
    with ThreadPoolExecutor(8) as pool:
        running = pool.submit(post, 4.5)  # scored alone for 4.5 s; the service gives up on it after 3 s
        time.sleep(0.5)
        queued = pool.submit(post, 0.0)  # waits behind it, and is given up at 3.5 s while still waiting
        assert running.result().status_code == 504
        others = [pool.submit(post, 0.0) for _ in range(5)]  # arrive at 3 s, wait for the call to end at 4.5 s
        codes = [f.result().status_code for f in others]
        assert queued.result().status_code == 504
    assert codes == [200] * 5, codes
    assert [post(0.0).status_code for _ in range(3)] == [200] * 3
