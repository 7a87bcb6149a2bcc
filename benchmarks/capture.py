"""Capture overhead: throughput of one ONNX service with capture=1.0 against the same service with capture off.

Run by hand (never in tests), on a quiet machine:
    apt-get install wrk
    python benchmarks/capture.py [--seconds 10] [--rounds 3] [--clients 16]

One Bento (the 50-tree RandomForest on iris of benchmarks/serve.py, served by ONNX Runtime) is served twice by
`bentoml serve` on 127.0.0.1, at the same time: once with capture off, once with NBDEPLOY_CAPTURE=1 (every request
recorded, through the bounded queue and writer thread, into default-sized segments; with the packager's drift
reference in the Bento, the in-service drift gauges run every 30 s too). The same load generator as
benchmarks/serve.py (wrk, 2 threads, keep-alive, single-row bodies, 16 connections) takes turns on the two (`rounds`
runs each, in ABBA order), so both see the same background load. The servers' own CPU seconds per request answered
(psutil, the process and its workers) are measured too: on a busy machine they vary less than req/s.
Prints a markdown table and writes benchmarks/results/capture.json.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from serve import combined, free_port, models, rows, start, stop, wait, wrk  # noqa: E402 (the serving benchmark's)


def serve(bento, env: dict) -> tuple:
    "`bentoml serve` of `bento` on a free port with `env` added: (process, predict URL)."
    port = free_port()
    p = start([sys.executable, "-m", "bentoml", "serve", str(bento.tag), "--host", "127.0.0.1", "--port", str(port)],
              env=env)
    url = f"http://127.0.0.1:{port}"
    wait(f"{url}/readyz")
    return p, f"{url}/predict"


def cpu_seconds(p) -> float:
    "User + system CPU seconds of a server process and its workers so far."
    procs = [psutil.Process(p.pid)]
    procs += procs[0].children(recursive=True)
    return sum(sum(q.cpu_times()[:2]) for q in procs)


def main(seconds: int = 10, rounds: int = 3, clients: int = 16, drift_every: float | None = None):
    home = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-home-"))
    os.environ.update(NBDEPLOY_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    import nbdeploy as nd
    model, X = models()["forest"]
    bento = nd.package(model, "bench-capture", sample=X, runtime="onnx")
    reference = getattr(nd.packager, "reference", None)
    has_reference = bool(reference and reference(bento))
    folder = home / "capture"
    variants = {"capture off": {"NBDEPLOY_CAPTURE": "0"},
                "capture=1.0": {"NBDEPLOY_CAPTURE": "1", "NBDEPLOY_CAPTURE_DIR": str(folder),
                                "NBDEPLOY_DEPLOYMENT_NAME": "bench-capture", "NBDEPLOY_DEPLOYMENT_VERSION": "1",
                                **({"NBDEPLOY_DRIFT_EVERY": str(drift_every)} if drift_every else {})}}
    servers = {label: serve(bento, env) for label, env in variants.items()}
    load = os.getloadavg()
    body = {"inputs": rows(X, 1)}
    try:
        for _, url in servers.values():
            requests.post(url, json=body, timeout=30).raise_for_status()
            wrk(url, body, 2, clients)  # warm up
        runs = {label: [] for label in servers}
        for i in range(rounds):  # off, on, on, off, off, on...: a trend in the background load hits both alike
            for label in (list(servers) if i % 2 == 0 else list(servers)[::-1]):
                before = cpu_seconds(servers[label][0])
                r = wrk(servers[label][1], body, seconds, clients)
                r["cpu_ms_per_request"] = 1000 * (cpu_seconds(servers[label][0]) - before) / (r["rps"] * seconds)
                runs[label].append(r)
        metrics = requests.get(servers["capture=1.0"][1].replace("/predict", "/metrics"), timeout=10).text
    finally:
        for p, _ in servers.values(): stop(p)
    results = {label: combined(rs) for label, rs in runs.items()}
    for label, rs in runs.items():
        results[label]["cpu_ms_per_request"] = sum(r["cpu_ms_per_request"] for r in rs) / len(rs)
    off, on = results["capture off"]["rps"], results["capture=1.0"]["rps"]
    pairs = sorted(1 - b["rps"] / a["rps"] for a, b in zip(runs["capture off"], runs["capture=1.0"]))
    median = pairs[len(pairs) // 2]  # of the rounds' own overheads: each pair ran back to back
    written = sum(1 for p in folder.glob("*.jsonl") for _ in open(p, "rb"))
    dropped = next((line.split()[-1] for line in metrics.splitlines()
                    if line.startswith("nbdeploy_capture_dropped_total")), "?")
    print(f"\nwrk -t2 -c{clients} -d{seconds}s x {rounds} rounds (taking turns), single rows, ONNX forest, "
          f"{os.cpu_count()} cores, python {sys.version.split()[0]}; drift reference in the Bento: {has_reference}, "
          f"drift every {drift_every or 30} s; load average before: {load[0]:.1f}")
    print("\n| service | req/s | p50 ms | p99 ms | errors | server CPU ms per request |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} "
              f"| {r['cpu_ms_per_request']:.3f} |")
    cpu = results["capture=1.0"]["cpu_ms_per_request"] / results["capture off"]["cpu_ms_per_request"] - 1
    print(f"\nthroughput overhead of capture=1.0: {100 * (off - on) / off:.1f}% of the mean req/s, "
          f"{100 * median:.1f}% median of the rounds' pairs (target: at most 5%); "
          f"records written: {written}, dropped: {dropped}; server CPU per request: {100 * cpu:+.1f}%")
    (HERE / "results").mkdir(exist_ok=True)
    record = {"seconds": seconds, "rounds": rounds, "clients": clients, "results": results,
              "overhead": (off - on) / off, "median_overhead": median, "cpu_overhead": cpu, "written": written,
              "dropped": dropped, "reference": has_reference,
              "drift_every": drift_every, "load_average": load}
    (HERE / "results" / "capture.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--seconds", type=int, default=10)
    a.add_argument("--rounds", type=int, default=3)
    a.add_argument("--clients", type=int, default=16)
    a.add_argument("--drift-every", type=float, help="seconds between in-service drift gauges (default: the service's)")
    args = a.parse_args()
    main(args.seconds, args.rounds, args.clients, args.drift_every)
