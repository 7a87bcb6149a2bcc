"""Single-row serving speed of an nbdeploy service against the peers a user would otherwise pick.

Run by hand (never in tests):  python benchmarks/serve.py [--seconds 15] [--clients 16]
Needs `wrk` (Debian: apt-get install wrk) and `fastapi` (pip install -r benchmarks/requirements.txt).

One run, one model (a 50-tree RandomForest on iris, 4 features), one load generator (wrk, 2 threads,
N keep-alive connections, single-row POSTs), each service on 127.0.0.1 in turn:
  - nbdeploy: `nd.deploy(model, name=..., sample=X)` on the local target;
  - bentoml-docs: a plain BentoML service written as BentoML's docs show (np.ndarray input, batchable);
  - fastapi: a hand-written FastAPI + uvicorn app with a pydantic body.
Prints a markdown table (req/s, p50, p99, non-2xx) with ratios to the best peer, and writes
benchmarks/results/serve.json.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import joblib
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

HERE = Path(__file__).parent
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}

BENTOML_DOCS = '''
import bentoml
import numpy as np

@bentoml.service(workers=1)
class IrisClassifier:
    bento_model = bentoml.models.BentoModel("bench-iris-plain:latest")

    def __init__(self):
        self.model = bentoml.sklearn.load_model(self.bento_model)

    @bentoml.api(batchable=True)
    def classify(self, input_series: np.ndarray) -> np.ndarray:
        return self.model.predict(input_series)
'''

FASTAPI_APP = '''
import joblib, os
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

model = joblib.load(os.environ["MODEL_PATH"])
app = FastAPI()

class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sepal_length: float = Field(alias="sepal length (cm)")
    sepal_width: float = Field(alias="sepal width (cm)")
    petal_length: float = Field(alias="petal length (cm)")
    petal_width: float = Field(alias="petal width (cm)")

class Body(BaseModel):
    inputs: list[Row] = Field(min_length=1)

@app.get("/readyz")
def ready(): return "ok"

@app.post("/predict")
def predict(body: Body):
    X = pd.DataFrame([r.model_dump(by_alias=True) for r in body.inputs])
    return {"predictions": model.predict(X).tolist()}
'''

LUA = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body}]==]\n'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if requests.get(url, timeout=2).status_code == 200: return
        except requests.RequestException: pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} never answered")


def wrk(url, body, seconds, clients):
    "wrk's req/s, p50, p99 (ms) and non-2xx count for POSTing `body` to `url`."
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.format(body=json.dumps(body)))
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", f.name, url],
                         capture_output=True, text=True, check=True).stdout
    ms = lambda v, u: float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
    lat = {p: ms(*re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()) for p in ("50", "99")}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": lat["50"], "p99_ms": lat["99"],
            "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)}


def start(cmd, env=None, cwd=None):
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(p):
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(30)


def main(seconds=15, clients=16):
    home = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-"))
    os.environ.update(NBDEPLOY_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    import bentoml
    import nbdeploy as nd
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
    results = {}

    dep = nd.deploy(model, name="bench-iris", sample=X)
    try: results["nbdeploy"] = wrk(f"{dep.url}/predict", {"inputs": [ROW]}, seconds, clients)
    finally: dep.stop()

    bentoml.sklearn.save_model("bench-iris-plain", model)
    work = home / "plain"; work.mkdir()
    (work / "service.py").write_text(textwrap.dedent(BENTOML_DOCS))
    port = free_port()
    p = start([sys.executable, "-m", "bentoml", "serve", "service:IrisClassifier", "--host", "127.0.0.1", "--port", str(port)], cwd=work)
    try:
        wait(f"http://127.0.0.1:{port}/readyz")
        results["bentoml-docs"] = wrk(f"http://127.0.0.1:{port}/classify", {"input_series": [list(ROW.values())]}, seconds, clients)
    finally: stop(p)

    joblib.dump(model, home / "model.joblib")
    (home / "fastapi_app.py").write_text(FASTAPI_APP)
    port = free_port()
    p = start([sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
              env={"MODEL_PATH": str(home / "model.joblib")}, cwd=home)
    try:
        wait(f"http://127.0.0.1:{port}/readyz")
        results["fastapi"] = wrk(f"http://127.0.0.1:{port}/predict", {"inputs": [ROW]}, seconds, clients)
    finally: stop(p)

    best = max(results[k]["rps"] for k in ("bentoml-docs", "fastapi"))
    best_p99 = min(results[k]["p99_ms"] for k in ("bentoml-docs", "fastapi"))
    lines = [f"| service | req/s | p50 ms | p99 ms | errors | req/s vs best peer | p99 vs best peer |", "|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {k} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['rps'] / best:.2f} | {r['p99_ms'] / best_p99:.2f} |")
    print(f"wrk -t2 -c{clients} -d{seconds}s, single-row POST, 50-tree RandomForest (iris), {os.cpu_count()} cores\n")
    print("\n".join(lines))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "serve.json").write_text(json.dumps({"seconds": seconds, "clients": clients, "results": results}, indent=1))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--seconds", type=int, default=15)
    a.add_argument("--clients", type=int, default=16)
    args = a.parse_args()
    main(args.seconds, args.clients)
