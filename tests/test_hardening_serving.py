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


# --- the bytes that were hashed are the bytes that are loaded (item 13) ----------------------------------------

def test_the_model_is_loaded_from_the_bytes_that_were_hashed(tmp_path):
    "The model file becomes a FIFO that gives the packaged bytes to its first reader and other bytes to a second."
    import os
    import pickle
    import threading

    import bentoml
    from tests.models import churn_frame, churn_pipeline
    df, y = churn_frame(n=60, seed=3)
    bento = nd.package(churn_pipeline(df, y, 3), "hashed-once", sample=df, runtime="native")
    path = bentoml.models.get(bento.info.models[0].tag).path_of("model.pkl")
    good = open(path, "rb").read()
    os.unlink(path)
    os.mkfifo(path)
    served, real = [], os.path.realpath(path)
    def reading() -> bool:
        "Whether this process still has the FIFO open."
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == real: return True
            except OSError: pass
        return False
    def feed():
        for data in (good, pickle.dumps({"swapped": "after the hash was checked"})):
            quiet = time.monotonic()
            while time.monotonic() - quiet < 0.3:  # the first reader done with it: a new open gets the next bytes
                if reading(): quiet = time.monotonic()
                time.sleep(0.005)
            with open(path, "wb") as f:  # blocks until someone opens the file to read
                served.append(len(data)); f.write(data)
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    model = nd.load_model(bento)
    assert hasattr(model, "predict"), model  # not the swapped object
    assert served == [len(good)]  # the file was opened once
    with open(path, "rb") as f: f.read()  # let the writer finish
    writer.join(5)


# --- a failed start writes its marker (hook for the local and docker targets) ----------------------------------

def test_a_failed_start_writes_the_startup_marker(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys

    import bentoml
    from tests.models import churn_frame, churn_pipeline
    df, y = churn_frame(n=60, seed=4)
    bento = nd.package(churn_pipeline(df, y, 3), "broken-start", sample=df, runtime="native")
    path = bentoml.models.get(bento.info.models[0].tag).path_of("model.pkl")
    with open(path, "ab") as f: f.write(b"corrupted")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    marker = tmp_path / "markers" / "broken-start.txt"
    p = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", str(bento.tag), "--host", "127.0.0.1", "--port", str(port)],
                         env={**os.environ, "NBDEPLOY_STARTUP_MARKER": str(marker)}, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(600):
            if marker.exists() and marker.read_text(): break
            time.sleep(0.1)
        text = marker.read_text()
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert "does not match its recorded SHA-256" in text and text.startswith("Traceback"), text[-2000:]
