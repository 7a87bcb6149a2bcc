"""Traffic between versions on the docker target: what a shadow costs production, how exact a canary's split is,
whether a sticky key sticks, and whether any request fails through promotions and rollbacks.

Run by hand (never in tests), on a quiet machine with the Docker engine running and wrk installed:
    python benchmarks/evolve.py [--seconds 10] [--rounds 2] [--clients 16] [--requests 10000] [--users 500] [--rate 100]

One Bento (the 50-tree RandomForest on iris of benchmarks/serve.py, served by ONNX Runtime) is containerised once
and deployed as several versions of one name on the docker target, behind its nginx endpoint containers.
1. Shadow cost: wrk (2 threads, keep-alive, single rows, `clients` connections) through the stable URL, with the
   routing switched between the champion alone and the champion with a shadow mirrored (the same two containers
   running throughout), in ABBA order so both see the same background load; then the same at a steady rate
   (`rate` req/s, open loop), below saturation. On one host the shadow does the champion's work a second time on
   the same cores, so at saturation it costs production that CPU; the steady rate shows what the mirror itself
   adds when the host has room for the shadow.
2. Split accuracy: a canary at 10%, `requests` requests with fresh random request ids; who answered each is read
   from the two versions' captures.
3. Stickiness: a sticky canary (`sticky="header:X-User"`, 30%), `users` users sending 10 requests each.
4. Availability: 4 clients predicting in a loop through a canary's four steps to its crowning, then a new canary
   and its rollback; every answer that is not a 200 is counted.
Prints a markdown table and writes benchmarks/results/evolve.json.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from serve import combined, models, rows, wrk  # noqa: E402 (the serving benchmark's)

NAME = "bench-evolve"


def answered_by(nd, versions, since: float) -> dict:
    "Request id -> the version whose capture holds it, for records since `since` (epoch seconds)."
    from nbdeploy import capture
    from nbdeploy.config import subdir
    out = {}
    for v in versions:
        for r in capture.read_records(subdir("capture") / NAME / f"v{v}", since=since):
            out[r["eventMetadata"]["eventId"]] = v
    return out


def settle(nd, versions, ids, timeout=60):
    "Wait until every id in `ids` is captured by one of `versions`; id -> version."
    end = time.monotonic() + timeout
    while True:
        got = answered_by(nd, versions, 0)
        if set(ids) <= got.keys() or time.monotonic() > end: return {i: got.get(i) for i in ids}
        time.sleep(0.5)


def send(url, body, ids, headers_of=lambda i: {}, workers=8):
    "POST `body` once per id (as its X-Request-ID) from `workers` threads; the number of non-200 answers."
    local = threading.local()
    def one(i):
        s = getattr(local, "s", None) or setattr(local, "s", requests.Session()) or local.s
        return s.post(url, json=body, headers={"X-Request-ID": i, **headers_of(i)}, timeout=30).status_code != 200
    with ThreadPoolExecutor(workers) as ex: return sum(ex.map(one, ids))


def paced(url, body, rate: float, seconds: float, workers: int = 8) -> dict:
    "Open-loop load: requests sent at `rate` per second for `seconds` whatever the answers; p50/p99 and failures."
    n, t0, lat, failed = int(rate * seconds), time.perf_counter(), [], [0]
    local = threading.local()
    def one(k):
        wait = t0 + k / rate - time.perf_counter()
        if wait > 0: time.sleep(wait)
        s = getattr(local, "s", None) or setattr(local, "s", requests.Session()) or local.s
        start = time.perf_counter()
        ok = s.post(url, json=body, timeout=30).status_code == 200
        lat.append(1000 * (time.perf_counter() - start)); failed[0] += not ok
    with ThreadPoolExecutor(workers) as ex: list(ex.map(one, range(n)))
    lat.sort()
    return {"rps": n / (time.perf_counter() - t0), "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(0.99 * len(lat))],
            "errors": failed[0]}


class Clients:
    "`n` clients predicting in a loop until stopped; answers counted, failures kept."
    def __init__(self, url, body, n=4):
        self.url, self.body, self.ok, self.failed, self.stop = url, body, 0, [], threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]

    def run(self):
        with requests.Session() as s:
            while not self.stop.is_set():
                try:
                    r = s.post(self.url, json=self.body, timeout=30)
                    if r.status_code == 200: self.ok += 1
                    else: self.failed.append(f"{r.status_code} {r.text[:120]}")
                except requests.RequestException as e: self.failed.append(repr(e)[:120])

    def __enter__(self):
        for t in self.threads: t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads: t.join(60)


def main(seconds=10, rounds=2, clients=16, n_requests=10_000, users=500, rate=100.0):
    home = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-home-"))
    os.environ.update(NBDEPLOY_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    import nbdeploy as nd
    from nbdeploy import ledger
    from nbdeploy.deployer import alone, get_target
    from nbdeploy.docker_target import endpoint
    model, X = models()["forest"]
    bento = nd.package(model, NAME, sample=X, runtime="onnx")
    nd.containerize(bento)
    body = {"inputs": rows(X, 1)}
    out = {"clients": clients, "seconds": seconds, "rounds": rounds, "cores": os.cpu_count()}
    champion = nd.deploy(bento, name=NAME, target="docker")
    url = endpoint(NAME)
    predict = f"{url}/predict"
    try:
        # 1. what a shadow costs production
        nd.deploy(bento, name=NAME, target="docker", strategy="shadow")
        t, serving = get_target("docker"), {r["version"]: r for r in ledger.in_service(NAME)}
        routings = {"champion alone": alone(champion.version), "with a shadow": nd.routing(NAME)}
        wrk(predict, body, 3, clients)  # warm up
        runs = {label: [] for label in routings}
        for i in range(rounds):
            for label in (list(routings) if i % 2 == 0 else list(routings)[::-1]):
                t.route(NAME, routings[label], serving)
                runs[label].append(wrk(predict, body, seconds, clients))
        paced_runs = {label: [] for label in routings}
        for i in range(rounds):  # below saturation: what the mirror adds when the host has room for the shadow
            for label in (list(routings) if i % 2 == 0 else list(routings)[::-1]):
                t.route(NAME, routings[label], serving)
                paced_runs[label].append(paced(predict, body, rate, seconds))
        t.route(NAME, routings["with a shadow"], serving)
        out["shadow"] = {label: combined(rs) for label, rs in runs.items()}
        out["shadow_paced"] = {label: combined(rs) for label, rs in paced_runs.items()}
        nd.rollback(NAME)

        # 2. split accuracy of a 10% canary over fresh random ids
        canary = nd.deploy(bento, name=NAME, target="docker", strategy="canary", traffic=0.1)
        ids = [f"split-{uuid.uuid4().hex}" for _ in range(n_requests)]
        t0 = time.time()
        failed = send(predict, body, ids)
        split_rate = n_requests / (time.time() - t0)
        who = settle(nd, [champion.version, canary.version], ids)
        share = sum(v == canary.version for v in who.values()) / n_requests
        out["split"] = {"target": 0.10, "share": share, "requests": n_requests, "failed": failed,
                        "uncaptured": sum(v is None for v in who.values()), "rate": split_rate}
        nd.rollback(NAME)

        # 3. stickiness: each user's requests meet one variant
        sticky = nd.deploy(bento, name=NAME, target="docker", strategy="canary", traffic=0.3, sticky="header:X-User")
        uids = [f"u{u}-r{i}-{uuid.uuid4().hex[:6]}" for u in range(users) for i in range(10)]
        failed = send(predict, body, uids, headers_of=lambda i: {"X-User": i.split("-")[0]})
        who = settle(nd, [champion.version, sticky.version], uids)
        by_user = {}
        for i, v in who.items(): by_user.setdefault(i.split("-")[0], set()).add(v)
        out["sticky"] = {"users": users, "requests": len(uids), "failed": failed,
                         "one_variant": sum(len(v) == 1 and None not in v for v in by_user.values()) / users,
                         "users_on_canary": sum(v == {sticky.version} for v in by_user.values()) / users}
        nd.rollback(NAME)

        # 4. availability through every promotion and a rollback
        with Clients(predict, body) as c:
            moving = nd.deploy(bento, name=NAME, target="docker", strategy="canary")
            steps = [nd.routing(NAME)["shares"]]
            while ledger.get(NAME, moving.version)["status"] != "serving":
                time.sleep(2); steps.append(nd.promote(NAME)["shares"])
            time.sleep(2)
            nd.deploy(bento, name=NAME, target="docker", strategy="canary", traffic=0.5)
            time.sleep(2); nd.rollback(NAME); time.sleep(2)
        out["availability"] = {"answered": c.ok, "failed": len(c.failed), "examples": c.failed[:3],
                               "steps": steps, "changes": len(steps) + 2}
    finally:
        for r in ledger.in_service(NAME): nd.Deployment(NAME, r["version"]).stop()
    alone_, shadowed = out["shadow"]["champion alone"], out["shadow"]["with a shadow"]
    pa, ps = out["shadow_paced"]["champion alone"], out["shadow_paced"]["with a shadow"]
    lines = [f"docker target, {os.cpu_count()} cores, wrk -t2 -c{clients} -d{seconds}s x {rounds} rounds each "
             f"(ABBA), single rows, ONNX forest, both versions capturing", "",
             "| measure | result | target |", "|---|---|---|",
             f"| p50 through the endpoint, champion alone / with a shadow | {alone_['p50_ms']:.2f} / "
             f"{shadowed['p50_ms']:.2f} ms (+{shadowed['p50_ms'] - alone_['p50_ms']:.2f} ms) | at most +1 ms |",
             f"| req/s, champion alone / with a shadow | {alone_['rps']:.0f} / {shadowed['rps']:.0f} "
             f"({100 * (1 - shadowed['rps'] / alone_['rps']):.1f}% less) | at most 5% less |",
             f"| p99, champion alone / with a shadow | {alone_['p99_ms']:.2f} / {shadowed['p99_ms']:.2f} ms | |",
             f"| p50 at a steady {rate:g} req/s, champion alone / with a shadow | {pa['p50_ms']:.2f} / "
             f"{ps['p50_ms']:.2f} ms (+{ps['p50_ms'] - pa['p50_ms']:.2f} ms; p99 {pa['p99_ms']:.1f} / "
             f"{ps['p99_ms']:.1f}) | |",
             f"| split of a 10% canary over {n_requests} requests | {100 * out['split']['share']:.2f}% "
             f"({out['split']['failed']} failed, {out['split']['uncaptured']} uncaptured) | 10 ± 2 points |",
             f"| sticky users (`header:X-User`) on one variant | {100 * out['sticky']['one_variant']:.1f}% of {users} "
             f"users ({100 * out['sticky']['users_on_canary']:.1f}% on the 30% canary) | 100% |",
             f"| failed requests through {out['availability']['changes']} routing changes | "
             f"{out['availability']['failed']} of {out['availability']['answered'] + out['availability']['failed']}"
             f" | 0 |"]
    print("\n".join(lines))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "evolve.json").write_text(json.dumps(out, indent=1, default=str))
    Path("/tmp/w").mkdir(exist_ok=True)
    Path("/tmp/w/bench16-traffic.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--seconds", type=int, default=10)
    a.add_argument("--rounds", type=int, default=2)
    a.add_argument("--clients", type=int, default=16)
    a.add_argument("--requests", type=int, default=10_000)
    a.add_argument("--users", type=int, default=500)
    a.add_argument("--rate", type=float, default=100.0, help="req/s of the steady (open-loop) shadow measurement")
    args = a.parse_args()
    main(args.seconds, args.rounds, args.clients, args.requests, args.users, args.rate)
