"""Replay: 10,000 captured requests sent again to the same version give identical answers, at what rate.

Run by hand (never in tests), on a quiet machine:
    python benchmarks/replay.py [--requests 10000] [--clients 4] [--out /tmp/w/bench16-replay.md]

One deployment (the churn pipeline of tests/models.py, capture=1.0, behind the local nginx endpoint where nginx is
installed) answers `requests` live requests to /predict_proba (probabilities, so the comparison's |delta| is defined),
one to three rows each, sent by `clients` threads with keep-alive sessions: that is the live serving rate. Then
`nd.replay` sends every captured request again, with its original X-Request-ID, to the champion's own Bento started
ephemeral (`speed="max"`, the same number of threads, straight to its port): the share of answers identical to the
captured ones (same status, same bytes) must be 100%, and the replay rate is reported beside the live one (through
nginx, and straight to the server's port, as the replay goes). The newest `requests` captured are replayed. Prints a
markdown table and writes it to `--out`.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).parent


def main(n: int = 10_000, clients: int = 4, out: str = "/tmp/w/bench16-replay.md"):
    home = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-replay-"))
    os.environ.update(NBDEPLOY_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    sys.path.insert(0, str(HERE.parent))
    import nbdeploy as nd
    from nbdeploy.deployer import get_target
    from nbdeploy.replay import replay
    from tests.models import churn_frame, churn_pipeline

    df, y = churn_frame(2000)
    dep = nd.deploy(churn_pipeline(df, y), name="bench-replay", sample=df)
    via = "through the nginx endpoint" if get_target("local").endpoint() else "direct"
    try:
        rows = json.loads(df.to_json(orient="records"))
        bodies = [("/predict_proba", rows[(3 * i) % 1990:(3 * i) % 1990 + 1 + i % 3])
                  for i in range(n)]
        sessions = {}

        def send(item, url=None):
            import threading
            s = sessions.setdefault(threading.get_ident(), requests.Session())
            r = s.post(f"{url or dep.url}{item[0]}", json={"inputs": item[1]},
                       headers={"X-Request-ID": uuid.uuid4().hex}, timeout=30)
            return r.status_code

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, bodies[:200]))  # warm up (not captured into the figures below)
            time.sleep(1)
            start_at = time.time()
            t = time.perf_counter()
            codes = list(pool.map(send, bodies))
            live_s = time.perf_counter() - t
            direct = f"http://127.0.0.1:{dep.row['port']}"  # the server itself, past nginx (captured too)
            t = time.perf_counter()
            list(pool.map(lambda b: send(b, direct), bodies[:n // 5]))
            direct_s = time.perf_counter() - t
        assert all(c == 200 for c in codes), {c: codes.count(c) for c in set(codes)}
        row = dep.row
        deadline = time.monotonic() + 60
        while len(get_target("local").capture_records(row, since=start_at)) < n + n // 5 \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        window = time.time() - start_at + 0.5  # the measured requests, not the warm-up
        cmp = replay("bench-replay", row["bento"], window=window, limit=n, workers=clients)
        rp, d = cmp.replay, cmp.to_dict()
        figures = {"captured requests replayed": rp["requests"],
                   "identical answers": f"{rp['identical']} ({100 * rp['identical'] / rp['requests']:.2f}%)",
                   "failed / refused": f"{rp['failed']} / {rp['refused']}",
                   "rows paired (Comparison)": d["paired"]["rows"], "agreement": d["paired"]["agreement"],
                   "max abs delta of probabilities": d["paired"]["max_delta"],
                   f"live serving rate ({clients} clients, {via}, capture on)": f"{n / live_s:.0f} req/s",
                   f"live serving rate ({clients} clients, straight to the server's port, capture on)":
                       f"{(n // 5) / direct_s:.0f} req/s",
                   f"replay rate (speed='max', {clients} threads, ephemeral server: its port, capture off)":
                       f"{rp['rate']:.0f} req/s",
                   "replay took": f"{rp['seconds']:.1f} s", "cores": os.cpu_count()}
    finally: dep.stop()
    text = "| replay of captured traffic to the same version | |\n|---|---|\n" + "".join(
        f"| {k} | {v} |\n" for k, v in figures.items()) + (
        "\nThe replay's server captures nothing (an ephemeral server writes no records), the live one captures every "
        "request; clients and servers share the same cores.\n")
    print(text)
    Path(out).write_text(text)
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--out", default="/tmp/w/bench16-replay.md")
    a = ap.parse_args()
    main(a.requests, a.clients, a.out)
