"""Serving speed of nbdeploy services against the peers a user would otherwise pick, in one run.

Run by hand (never in tests), on a quiet machine:
    pip install -r benchmarks/requirements.txt   # fastapi, uvicorn (mlflow goes in its own venv, made here)
    apt-get install wrk
    python benchmarks/serve.py [--seconds 10] [--quick]

Two models: a 50-tree RandomForest on iris (4 float columns) and a ColumnTransformer + GradientBoosting pipeline
over a churn-like frame (2 numeric, 2 categorical columns). For each model, each service runs alone on 127.0.0.1
and the same load generator (wrk, 2 threads, keep-alive) POSTs single-row and 64-row bodies with 16 and 64
concurrent connections:
  - nbdeploy-onnx:   `nd.deploy(model, ...)` (ONNX Runtime, chosen because parity holds)
  - nbdeploy-native: `nd.deploy(model, ..., runtime="native")` (scikit-learn, adaptive batching)
  - bentoml-docs:    a plain BentoML service as BentoML's docs write one (1 worker; batchable for the array model;
                     unbatched for the frame model, since a batchable pd.DataFrame API hangs in BentoML 1.4.40)
  - fastapi:         a hand-written FastAPI + uvicorn app with a pydantic body
  - mlflow:          `mlflow models serve --env-manager local` (MLflow 3, in benchmarks/.venv-mlflow)
  - hello-world:     a BentoML service that returns a constant: the ceiling of the HTTP stack itself
Also time-to-ready: seconds from the call to a passing health check, first deploy and after retraining.
Where the host has nginx, `nd.deploy` puts each local deployment behind its stable nginx endpoint (nbdeploy.endpoint):
the nbdeploy rows above are measured on the version's own (direct) URL, and in the same run, on the same server, the
same load goes through the endpoint too, the two taking turns (ROUNDS runs each) so both see the same background load
(`--docker-endpoint` adds the docker target: nginx in containers, beside its container's direct URL). A last table
gives endpoint / direct ratios.
Prints markdown tables (req/s, p50, p99, errors, ratios to the best peer) and writes benchmarks/results/serve.json.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import requests
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = Path(__file__).parent
MLFLOW_VENV = HERE / ".venv-mlflow"

BENTOML_DOCS = '''
import bentoml
import numpy as np
import pandas as pd

@bentoml.service(workers=1)
class Classifier:
    bento_model = bentoml.models.BentoModel("bench-plain:latest")

    def __init__(self):
        self.model = bentoml.sklearn.load_model(self.bento_model)

    @bentoml.api(batchable={batchable})
    def classify(self, input_series: {kind}) -> np.ndarray:
        return self.model.predict(input_series)
'''

HELLO = '''
import bentoml

@bentoml.service(workers=1)
class Hello:
    @bentoml.api
    def hello(self, inputs: list) -> dict:
        return {"predictions": [0] * len(inputs)}
'''

# The same constant answer through nbdeploy's serving stack (its middleware, direct path, timer fix, worker count):
# the ceiling for nbdeploy's services on this machine.
HELLO_NBDEPLOY = '''
import bentoml
from pydantic import BaseModel
from nbdeploy.serving import Gate, _direct_routes, _fitted_workers, _release_request_timers

_release_request_timers()
live = {}

class Predictions(BaseModel):
    predictions: list

@bentoml.service(workers=_fitted_workers(), traffic={"timeout": 60})
class Hello:
    def __init__(self): live["instance"] = self

    @bentoml.api
    async def hello(self, inputs: list) -> Predictions:
        return Predictions(predictions=[0] * len(inputs))

Hello.add_asgi_middleware(Gate, metadata={}, direct=lambda: _direct_routes(Hello, live.get("instance")))
'''

FASTAPI_APP = '''
import joblib, os
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

model = joblib.load(os.environ["MODEL_PATH"])
cols = os.environ["COLUMNS"].split("|")
kinds = os.environ["KINDS"].split("|")
fields = {f"c{i}": ((float if k == "number" else str), Field(alias=c)) for i, (c, k) in enumerate(zip(cols, kinds))}
Row = create_model("Row", __config__=ConfigDict(extra="forbid"), **fields)

class Body(BaseModel):
    inputs: list[Row] = Field(min_length=1)

app = FastAPI()

@app.get("/readyz")
def ready(): return "ok"

@app.post("/predict")
def predict(body: Body):
    X = pd.DataFrame([r.model_dump(by_alias=True) for r in body.inputs])
    return {"predictions": model.predict(X).tolist()}
'''

MLFLOW_SAVE = '''
import sys, joblib, mlflow.sklearn
mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], serialization_format="pickle")
'''

LUA = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body}]==]\n'


def churn(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.integers(18, 80, n).astype(float), "income": rng.normal(50, 10, n).round(2),
                       "plan": rng.choice(["basic", "pro", "max"], n), "region": rng.choice(["north", "south"], n)})
    return df, ((df.age > 45) ^ (df.plan == "max")).astype(int)


def models():
    "The two benchmark models with their training frames."
    X, y = load_iris(return_X_y=True, as_frame=True)
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
    df, yc = churn()
    ct = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
                                 (StandardScaler(), ["age", "income"]))
    pipe = make_pipeline(ct, GradientBoostingClassifier(n_estimators=50, random_state=0)).fit(df, yc)
    return {"forest": (forest, X), "pipeline": (pipe, df)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url, timeout=300, method="get", body=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            r = requests.request(method, url, json=body, timeout=2)
            if r.status_code == 200: return
        except requests.RequestException: pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def wrk(url, body, seconds, clients):
    "wrk's req/s, p50, p99 (ms) and error count for POSTing `body` to `url`."
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.format(body=json.dumps(body)))
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", f.name, url],
                         capture_output=True, text=True, check=True).stdout
    ms = lambda v, u: float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
    lat = {p: ms(*re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()) for p in ("50", "99")}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": lat["50"], "p99_ms": lat["99"],
            "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)}


def start(cmd, env=None, cwd=None):
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(p):
    os.killpg(p.pid, signal.SIGTERM)
    try: p.wait(30)
    except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL)


def mlflow_python():
    "The benchmark's own venv with MLflow and this kernel's scikit-learn, pandas and numpy, made once."
    py = MLFLOW_VENV / "bin" / "python"
    if not py.exists():
        import sklearn
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "mlflow", f"scikit-learn=={sklearn.__version__}",
                        f"pandas=={pd.__version__}", f"numpy=={np.__version__}"], check=True)
    return py


# --- one starter per service: each returns (process or Deployment, predict URL, body maker, stopper) ------------

def rows(X, n):
    return X.head(n).to_dict(orient="records")


def svc_nbdeploy(runtime, direct=True, target="local"):
    def go(model, X, work):
        import nbdeploy as nd
        if not direct: os.environ["NBDEPLOY_FAST_PATH"] = "0"  # the server inherits it: BentoML's own handler answers
        name = f"bench-{runtime}{'' if direct else '-routed'}{'' if target == 'local' else '-' + target}"
        try: dep = nd.deploy(model, name=name, sample=X, runtime=runtime, target=target)
        finally: os.environ.pop("NBDEPLOY_FAST_PATH", None)
        assert dep.metadata()["runtime"]["runtime"] == runtime, dep.metadata()["runtime"]
        own = f"http://127.0.0.1:{dep.row['port']}"  # the version's own port; dep.url is the stable endpoint, if any
        extra = {"nginx endpoint": f"{dep.url}/predict"} if dep.url != own else {}
        return dep.stop, f"{own}/predict", lambda n: {"inputs": rows(X, n)}, extra
    return go


def svc_bentoml_docs(model, X, work):
    import bentoml
    bentoml.sklearn.save_model("bench-plain", model)
    d = work / "plain"; d.mkdir(exist_ok=True)
    frame = not all(pd.api.types.is_numeric_dtype(X[c]) for c in X)
    # A batchable pd.DataFrame API hangs in BentoML 1.4.40 (its dispatcher adds an int to a tuple), so a frame
    # model gets the unbatched API a user would fall back to; the array model gets adaptive batching as documented.
    src = textwrap.dedent(BENTOML_DOCS).replace("{kind}", "pd.DataFrame" if frame else "np.ndarray")
    src = src.replace("{batchable}", str(not frame))
    (d / "service.py").write_text(src)
    port = free_port()
    p = start([sys.executable, "-m", "bentoml", "serve", "service:Classifier", "--host", "127.0.0.1",
               "--port", str(port)], cwd=d)
    wait(f"http://127.0.0.1:{port}/readyz")
    if frame: body = lambda n: {"input_series": rows(X, n)}
    else: body = lambda n: {"input_series": X.head(n).to_numpy().tolist()}
    return (lambda: stop(p)), f"http://127.0.0.1:{port}/classify", body


def svc_fastapi(model, X, work):
    joblib.dump(model, work / "model.joblib")
    (work / "fastapi_app.py").write_text(FASTAPI_APP)
    kinds = "|".join("number" if pd.api.types.is_numeric_dtype(X[c]) else "category" for c in X)
    port = free_port()
    p = start([sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"],
              env={"MODEL_PATH": str(work / "model.joblib"), "COLUMNS": "|".join(X.columns), "KINDS": kinds}, cwd=work)
    wait(f"http://127.0.0.1:{port}/readyz")
    return (lambda: stop(p)), f"http://127.0.0.1:{port}/predict", lambda n: {"inputs": rows(X, n)}


def svc_mlflow(model, X, work):
    py = mlflow_python()
    joblib.dump(model, work / "model.joblib")
    target = work / f"mlflow-model-{time.time_ns()}"
    subprocess.run([str(py), "-c", MLFLOW_SAVE, str(work / "model.joblib"), str(target)], check=True,
                   capture_output=True)
    port = free_port()
    p = start([str(MLFLOW_VENV / "bin" / "mlflow"), "models", "serve", "-m", str(target), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)], env={"PATH": f"{MLFLOW_VENV / 'bin'}:{os.environ['PATH']}"})
    wait(f"http://127.0.0.1:{port}/ping")
    return (lambda: stop(p)), f"http://127.0.0.1:{port}/invocations", lambda n: {"dataframe_records": rows(X, n)}


def svc_hello(source):
    def go(model, X, work):
        d = work / f"hello-{abs(hash(source))}"; d.mkdir(exist_ok=True)
        (d / "service.py").write_text(source)
        port = free_port()
        p = start([sys.executable, "-m", "bentoml", "serve", "service:Hello", "--host", "127.0.0.1",
                   "--port", str(port)], cwd=d)
        wait(f"http://127.0.0.1:{port}/readyz")
        return (lambda: stop(p)), f"http://127.0.0.1:{port}/hello", lambda n: {"inputs": rows(X, n)}
    return go


SERVICES = {"nbdeploy-onnx": svc_nbdeploy("onnx"), "nbdeploy-native": svc_nbdeploy("native"),
            "nbdeploy-onnx, BentoML handler": svc_nbdeploy("onnx", direct=False), "bentoml-docs": svc_bentoml_docs,
            "fastapi": svc_fastapi, "mlflow": svc_mlflow, "hello-world (BentoML)": svc_hello(HELLO),
            "hello-world (nbdeploy stack)": svc_hello(HELLO_NBDEPLOY)}
PEERS = ("bentoml-docs", "fastapi", "mlflow")
CEILING = "hello-world (nbdeploy stack)"


ROUNDS = 3  # turns each of a server's paths (direct, nginx endpoint) takes, so both see the same background load


def combined(runs: list[dict]) -> dict:
    "One figure from alternating wrk runs: mean req/s, median latencies, all errors."
    med = lambda k: sorted(r[k] for r in runs)[len(runs) // 2]
    return {"rps": sum(r["rps"] for r in runs) / len(runs), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
            "errors": sum(r["errors"] for r in runs), **({"runs": runs} if len(runs) > 1 else {})}


def measure(seconds, loads, only):
    "Throughput and latency of every service on every model and load."
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-"))
    results = {}
    for mname, (model, X) in models().items():
        for sname, starter in SERVICES.items():
            if only and sname not in only: continue
            print(f"-- {mname} / {sname}", flush=True)
            stopper, url, body, *extra = starter(model, X, work)
            paths = {sname: url, **{f"{sname} via {k}": u for k, u in (extra[0] if extra else {}).items()}}
            try:
                for u in paths.values(): requests.post(u, json=body(1), timeout=30).raise_for_status()
                for clients, n in loads:
                    for u in paths.values(): wrk(u, body(n), 2, clients)  # warm up
                    runs = {label: [] for label in paths}
                    for _ in range(ROUNDS if len(paths) > 1 else 1):  # direct and endpoint take turns on one server
                        for label, u in paths.items(): runs[label].append(wrk(u, body(n), seconds, clients))
                    for label, rs in runs.items(): results[f"{mname}|{label}|{clients}|{n}"] = combined(rs)
            finally: stopper()
    return results


def time_to_ready():
    "Seconds from the deploy call to a passing health check: nbdeploy local (first, after retraining) and the peers."
    import nbdeploy as nd
    model, X = models()["forest"]
    out = {}
    t = time.perf_counter(); nd.deploy(model, name="bench-ttr", sample=X)
    out["nbdeploy local, first deploy"] = time.perf_counter() - t
    retrained = RandomForestClassifier(n_estimators=50, random_state=1).fit(X, load_iris().target)
    t = time.perf_counter(); dep2 = nd.deploy(retrained, name="bench-ttr", sample=X)
    out["nbdeploy local, after retraining (v2 live)"] = time.perf_counter() - t
    dep2.stop()
    try: t = time.perf_counter(); nd.base_image()
    except nd.DeployError as e: print(f"no docker rows: {e}")  # no engine answers (scripts/docker-engine.sh starts one)
    else:
        out["nbdeploy docker, base image (once per machine, cached after)"] = time.perf_counter() - t
        for label, m in (("first deploy (image built)", model), ("after retraining (v2 live)", retrained)):
            t = time.perf_counter(); d = nd.deploy(m, name="bench-ttr-docker", sample=X, target="docker")
            out[f"nbdeploy docker, {label}"] = time.perf_counter() - t
        d.stop()
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-ttr-"))
    for name, starter in (("bentoml serve (docs service, model saved)", svc_bentoml_docs),
                          ("mlflow models serve (model saved)", svc_mlflow)):
        t = time.perf_counter(); stopper, *_ = starter(model, X, work); out[name] = time.perf_counter() - t
        stopper()
    return out


def table(results, mname, clients, n):
    get = lambda s: results.get(f"{mname}|{s}|{clients}|{n}")
    best = max((get(p) or {}).get("rps", 0) for p in PEERS) or float("nan")
    best_p99 = min((get(p)["p99_ms"] for p in PEERS if get(p)), default=float("nan"))
    ceiling = (get(CEILING) or {}).get("rps", float("nan"))
    lines = [f"\n**{mname}, {clients} clients, {n}-row bodies**\n",
             "| service | req/s | p50 ms | p99 ms | errors | req/s / best peer | p99 / best peer | req/s / ceiling |",
             "|---|---|---|---|---|---|---|---|"]
    for s in sorted({k.split("|")[1] for k in results}, key=lambda s: (list(SERVICES).index(s.split(" via ")[0]), s)):
        if r := get(s):
            lines.append(f"| {s} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
                         f"{r['rps'] / best:.2f} | {r['p99_ms'] / best_p99:.2f} | {r['rps'] / ceiling:.2f} |")
    return "\n".join(lines)


def endpoint_table(results) -> str:
    "Each service measured through the nginx endpoint beside its direct URL, in the same run: the ratios."
    lines = ["\n**nginx endpoint vs direct URL (same server, same run)**\n",
             "| model | service | clients | rows | direct req/s | endpoint req/s | req/s ratio | direct p99 ms "
             "| endpoint p99 ms | p99 ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        mname, label, clients, n = key.split("|")
        if " via " not in label: continue
        d = results.get(f"{mname}|{label.split(' via ')[0]}|{clients}|{n}")
        if d: lines.append(f"| {mname} | {label} | {clients} | {n} | {d['rps']:.0f} | {r['rps']:.0f} | "
                           f"{r['rps'] / d['rps']:.2f} | {d['p99_ms']:.1f} | {r['p99_ms']:.1f} | "
                           f"{r['p99_ms'] / d['p99_ms']:.2f} |")
    return "\n".join(lines) if len(lines) > 3 else "\n(no nginx endpoint measured: is nginx installed?)"


def main(seconds=10, quick=False, only=None, docker_endpoint=False):
    home = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-home-"))
    os.environ.update(NBDEPLOY_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    loads = [(16, 1)] if quick else [(16, 1), (64, 1), (16, 64), (64, 64)]
    if docker_endpoint: SERVICES["nbdeploy-onnx (docker)"] = svc_nbdeploy("onnx", target="docker")
    results = measure(seconds, loads, only)
    ttr = {} if quick else time_to_ready()
    print(f"\nwrk -t2 -d{seconds}s on {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for mname in ("forest", "pipeline"):
        for clients, n in loads: print(table(results, mname, clients, n))
    print(endpoint_table(results))
    if ttr:
        print("\n| time to a passing health check | seconds |\n|---|---|")
        for k, v in ttr.items(): print(f"| {k} | {v:.1f} |")
    (HERE / "results").mkdir(exist_ok=True)
    record = {"seconds": seconds, "results": results, "time_to_ready": ttr}
    (HERE / "results" / "serve.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--seconds", type=int, default=10)
    a.add_argument("--quick", action="store_true", help="16 clients, single rows only, no time-to-ready")
    a.add_argument("--only", nargs="*", help="services to run (default: all)")
    a.add_argument("--docker-endpoint", action="store_true",
                   help="also the docker target (its nginx endpoint beside its direct URL)")
    args = a.parse_args()
    main(args.seconds, args.quick, args.only, args.docker_endpoint)
