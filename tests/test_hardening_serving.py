"""Hardening of the serving runtime (issue 13).

One request's fate stays its own, bodies and answers are bounded, training values stay private, the model is loaded
from the bytes that were hashed, and a failed start says so itself."""
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests

import nbdeploy as nd
from nbdeploy.config import free_port
from tests.models import SlowModel


def own_url(dep) -> str:
    "The URL of a version's own server, past the stable endpoint (nginx) that may stand in front of it."
    return f"http://127.0.0.1:{dep.row['port']}"


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
    url = f"{own_url(slow)}/predict"
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
    import subprocess
    import sys

    import bentoml
    from tests.models import churn_frame, churn_pipeline
    df, y = churn_frame(n=60, seed=4)
    bento = nd.package(churn_pipeline(df, y, 3), "broken-start", sample=df, runtime="native")
    path = bentoml.models.get(bento.info.models[0].tag).path_of("model.pkl")
    with open(path, "ab") as f: f.write(b"corrupted")
    port = free_port()  # outside the kernel's ephemeral range, which BentoML's own ports come from
    marker = tmp_path / "markers" / "broken-start.txt"
    cmd = [sys.executable, "-m", "bentoml", "serve", str(bento.tag), "--host", "127.0.0.1", "--port", str(port)]
    p = subprocess.Popen(cmd, env={**os.environ, "NBDEPLOY_STARTUP_MARKER": str(marker)}, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(600):
            if marker.exists() and marker.read_text(): break
            time.sleep(0.1)
        text = marker.read_text()
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert "does not match its recorded SHA-256" in text and text.startswith("Traceback"), text[-2000:]


# --- bodies are bounded before they are read, rows counted before they are validated, 4xx answers short (item 2) --

def wide_frame(n=400, seed=0):
    "29 number columns and a 200-value category whose values are 40 characters long; the target."
    import numpy as np
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(29)})
    df["code"] = [f"category-{i % 200:03d}-".ljust(40, "x") for i in range(n)]
    return df, (df.x0 > 0).astype(int)


@pytest.fixture(scope="module")
def wide():
    "The same 30-column pipeline served twice: on the direct path and through BentoML's own handler."
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder
    df, y = wide_frame()
    model = make_pipeline(make_column_transformer((OrdinalEncoder(), ["code"]), remainder="passthrough"),
                          LogisticRegression(max_iter=500)).fit(df, y)
    bento = nd.package(model, "wide", sample=df, runtime="native", max_rows=10_000)
    direct = nd.deploy(bento, name="wide-direct")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_FAST_PATH", "0")
        routed = nd.deploy(bento, name="wide-routed")
    yield df, direct, routed
    direct.stop(); routed.stop()


def post_raw(port: int, size: int, chunked: bool) -> tuple:
    "POST a `size`-byte body of rows, reading the answer while it is sent: status, seconds to the answer, body."
    import socket
    import threading
    head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    piece = (b'{"inputs": [' + b'{"x0": 1.5, "code": "category-001"}, ' * 30_000)[:1 << 20]
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head.encode())
    start = time.monotonic()
    def body():
        try:
            for _ in range(size // len(piece)):
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        except OSError: pass  # the server answered and closed the connection: the rest is never sent
    sender = threading.Thread(target=body, daemon=True)
    sender.start()
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(65536)
        if not chunk: break
        answer += chunk
    seconds = time.monotonic() - start
    s.settimeout(5)
    try:
        while chunk := s.recv(65536): answer += chunk
    except OSError: pass
    s.close(); sender.join(10)
    return int(answer.split(b" ", 2)[1]), seconds, answer.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_100_mb_body_gets_413_at_once_and_costs_no_memory(wide, chunked):
    import json
    import threading

    from tests.load import tree_rss
    _, direct, routed = wide
    for dep in (direct, routed):
        pid = int(dep.row["handle"])
        before, peak, done = tree_rss(pid), [0], threading.Event()
        def watch():
            while not done.is_set(): peak[0] = max(peak[0], tree_rss(pid)); time.sleep(0.02)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        status, seconds, body = post_raw(int(dep.row["port"]), 100 * 2**20, chunked)
        done.set(); watcher.join()
        growth = (peak[0] - before) / 2**20
        print(f"{dep.name} {'chunked' if chunked else 'sized'}: {status} in {seconds:.3f} s, rss grew {growth:.1f} MB")
        assert status == 413, body[:300]
        detail = json.loads(body)["detail"][0]
        assert detail["loc"] == ["body"] and f"at most {dep.metadata()['max_body']} bytes" in detail["msg"], detail
        assert seconds < 1, seconds
        assert growth < 100, growth
        r = requests.post(f"{own_url(dep)}/predict", json={"inputs": [{}]}, timeout=30)
        assert r.status_code == 400  # and it serves on


def test_4xx_answers_stay_short_on_a_30_column_schema(wide):
    df, direct, routed = wide
    row = {c: 1.5 for c in df.columns if c != "code"} | {"code": df.code[0]}
    bodies = {"10,000 {} rows": {"inputs": [{}] * 10_000},
              "10,000 rows of wrong values": {"inputs": [{c: "nope" for c in df.columns}] * 10_000},
              "20,000 {} rows": {"inputs": [{}] * 20_000},
              "a row of 100,000 unknown columns": {"inputs": [row | {f"k{i}": 1 for i in range(100_000)}]},
              "unknown columns in many rows": {"inputs": [row | {"zip": "1", "city": "x"}] * 500}}
    for dep in (direct, routed):
        answers = {}
        for name, body in bodies.items():
            r = requests.post(f"{own_url(dep)}/predict", json=body, timeout=60)
            answers[name] = r.json()
            print(f"{dep.name} {name}: {r.status_code}, {len(r.content)} bytes")
            assert r.status_code == 400 and len(r.content) < 64 * 1024, (name, r.status_code, len(r.content))
            detail = r.json()["detail"]
            assert len(detail) <= 21 and all(len(d["msg"]) < 400 for d in detail), (name, r.text[:500])
        assert answers["20,000 {} rows"]["detail"][0]["type"] == "too_long"  # counted before any row was validated
        assert answers["10,000 {} rows"]["detail"][-1]["msg"] == "10 more errors left out: an answer lists the first 20"
        assert answers["a row of 100,000 unknown columns"]["detail"][-1]["msg"].startswith("99980 more errors left out")
        assert {d["loc"][1] for d in answers["unknown columns in many rows"]["detail"][:20]} == set(range(10))
        assert requests.post(f"{own_url(dep)}/predict", json={"inputs": [row] * 3}, timeout=30).status_code == 200


# --- training values of free-text, identifier-like and private columns are never published (item 8) -----------

def test_e_mail_addresses_and_private_columns_never_reach_metadata_or_openapi():
    import numpy as np
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    rng = np.random.default_rng(5)
    n = 40
    df = pd.DataFrame({"plan": rng.choice(["basic", "pro", "max"], n), "region": rng.choice(["north", "south"], n),
                       "email": [f"customer{i}@example-mail.com" for i in range(n)],
                       "note": [f"called on day {i} about invoice {1000 + i}" for i in range(n)],
                       "age": rng.integers(18, 80, n)})
    y = (df.age > 45).astype(int)
    onehot = OneHotEncoder(handle_unknown="ignore")
    model = make_pipeline(make_column_transformer((onehot, ["plan", "email", "region"]), ("passthrough", ["age"])),
                          LogisticRegression()).fit(df, y)  # the model's own encoder knows every e-mail address
    dep = nd.deploy(model, name="private-values", sample=df, runtime="native", private=["region"])
    try:
        published = [requests.get(f"{own_url(dep)}{p}", timeout=30).text for p in ("/metadata", "/docs.json")]
        for text in published:
            assert "example-mail.com" not in text and "invoice" not in text and "north" not in text, text[:3000]
        assert '"pro"' in published[0]  # the plan's categories are published (open: no enum in the OpenAPI document)
        kinds = {c["name"]: c["kind"] for c in dep.metadata()["input_schema"]["columns"]}
        assert kinds == {"plan": "category", "region": "string", "email": "string", "note": "string", "age": "integer"}
        np.testing.assert_array_equal(dep.predict(df.head(5)), model.predict(df.head(5)))
    finally:
        dep.stop()
