"""The stable endpoint with real nginx on 127.0.0.1: swaps under load, request ids, chunked bodies, half-open clients,
the body limit, TLS and rate limits. Upstreams are real HTTP servers (Python's threading server), each a process."""
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from nbdeploy.config import free_port
from nbdeploy.endpoint import LocalEndpoint, endpoint_dir, endpoint_options, nginx_available, self_signed
from nbdeploy.errors import DeployError
from tests.load import half_open

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed (apt-get install nginx)")
ARTIFACTS = Path(__file__).parent / "artifacts"

UPSTREAM = r'''
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
NAME, PORT = sys.argv[1], int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    protocol_version, disable_nagle_algorithm = "HTTP/1.1", True
    def log_message(self, *a): pass
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({"variant": NAME, "path": self.path, "method": self.command, "bytes": len(body),
                          "request_id": self.headers.get("X-Request-ID"),
                          "chunked": self.headers.get("Transfer-Encoding"),
                          "threads": threading.active_count()}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
    do_GET = do_POST = answer
class S(ThreadingHTTPServer):
    daemon_threads, request_queue_size = True, 512
S(("127.0.0.1", PORT), H).serve_forever()
'''



def _cmdline(p: psutil.Process) -> str:
    "`p`'s command line, or '' for a process that is a zombie, gone or not ours to read (any process on the host)."
    try: return " ".join(p.cmdline())
    except psutil.Error: return ""

def record(**kw):
    "Keep measured numbers for the report."
    p = ARTIFACTS / "endpoint_bench.json"
    data = json.loads(p.read_text()) if p.exists() else {}
    data.update(kw)
    p.write_text(json.dumps(data, indent=1))


@pytest.fixture
def upstream():
    "Start real HTTP upstreams on free loopback ports: `upstream(name) -> port`; stopped by PID afterwards."
    procs = []
    def start(name="live"):
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", UPSTREAM, name, str(port)]))
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1); return port
            except requests.RequestException: time.sleep(0.05)
        raise RuntimeError("the upstream did not start")
    yield start
    for p in procs:
        p.terminate(); p.wait(10)


@pytest.fixture
def ep(request):
    "The local runner and a name of this test's own; the endpoint is removed afterwards."
    name = "ep-" + request.node.name.replace("_", "-")[5:40].strip("-").lower()
    e = LocalEndpoint()
    yield e, name
    e.remove(name)


def nginx_pids(e, name) -> list[int]:
    "Master pids the runner recorded for `name` (edge and router)."
    return list(e.state(name).get("pids", {}).values())


# --- switching --------------------------------------------------------------------------------------------------

def test_switches_keep_the_url_and_drop_no_request(ep, upstream):
    e, name = ep
    a, b = upstream("a"), upstream("b")
    url = e.switch(name, a, endpoint_options(name))
    assert url.startswith("http://127.0.0.1:") and e.url(name) == url and e.upstream(name) == a
    stats, seen, stop = {"ok": 0, "failed": []}, set(), threading.Event()

    def poll():
        s = requests.Session()
        while not stop.is_set():
            try:
                r = s.post(f"{url}/predict", json={"inputs": [{"x": 1}]}, timeout=30)
                if r.status_code == 200: stats["ok"] += 1; seen.add(r.json()["variant"])
                else: stats["failed"].append(f"{r.status_code} {r.text[:100]}")
            except requests.RequestException as ex: stats["failed"].append(repr(ex))

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(8)]
    for t in threads: t.start()
    try:
        for i in range(20):
            port = (b, a)[i % 2]
            assert e.switch(name, port, endpoint_options(name)) == url
            assert e.upstream(name) == port
            assert requests.get(f"{url}/x", timeout=10).json()["variant"] == ("b", "a")[i % 2]  # live on return
    finally:
        stop.set()
        for t in threads: t.join(30)
    record(switch_requests_ok=stats["ok"], switch_requests_failed=len(stats["failed"]), switches=20, switch_clients=8)
    assert stats["failed"] == [] and stats["ok"] > 200 and seen == {"a", "b"}, stats["failed"][:5]
    assert (endpoint_dir(name) / "local" / "router.sock").exists()


def test_a_refused_switch_keeps_the_route(ep, upstream, tmp_path):
    e, name = ep
    a = upstream()
    url = e.switch(name, a)
    with pytest.raises(DeployError, match="nothing listens"):
        e.switch(name, free_port())
    bad = tmp_path / "cert.pem"
    pair = self_signed(name)
    opts = endpoint_options(name, tls=(pair["cert"], pair["key"]))
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    with pytest.raises(DeployError, match="nginx refused"):
        e.switch(name, a, {**opts, "tls": {**opts["tls"], "cert": str(bad)}})
    assert e.url(name) == url and requests.get(f"{url}/x", timeout=10).status_code == 200


def test_a_refused_first_switch_leaves_no_nginx_running(ep, upstream, tmp_path):
    e, name = ep
    pair = self_signed(name)
    bad = tmp_path / "cert.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    opts = endpoint_options(name, tls=(pair["cert"], pair["key"]))
    with pytest.raises(DeployError, match="nginx refused"):  # the router's config is fine, the edge's is not
        e.switch(name, upstream(), {**opts, "tls": {**opts["tls"], "cert": str(bad)}})
    prefix = str(endpoint_dir(name) / "local")
    left = [p.pid for p in psutil.process_iter() if prefix in _cmdline(p)]
    assert left == [] and e.url(name) is None


def test_endpoint_outlives_its_caller_and_stops_by_its_pids(ep, upstream):
    e, name = ep
    url = e.switch(name, upstream())
    pids = nginx_pids(e, name)
    assert len(pids) == 2 and all(" ".join(psutil.Process(p).cmdline()).startswith("nginx: master") for p in pids)
    assert all(psutil.Process(p).ppid() != psutil.Process().pid for p in pids)  # daemons, not children of this process
    assert all(psutil.Process(p).status() != psutil.STATUS_ZOMBIE and os.getsid(p) != os.getsid(0) for p in pids)
    port = int(url.rsplit(":", 1)[1])
    e.remove(name)
    assert e.url(name) is None and e.upstream(name) is None
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert e.switch(name, upstream()) == f"http://127.0.0.1:{port}"  # the stable port comes back


# --- what nginx does for every request --------------------------------------------------------------------------

def test_request_ids_are_passed_on_echoed_and_logged(ep, upstream):
    e, name = ep
    url = e.switch(name, upstream())
    r = requests.get(f"{url}/predict", timeout=10)
    rid = r.headers["X-Request-ID"]
    assert len(rid) == 32 and r.json()["request_id"] == rid
    mine = requests.get(f"{url}/predict", headers={"X-Request-ID": "trace-42.a"}, timeout=10)
    assert mine.headers["X-Request-ID"] == "trace-42.a" == mine.json()["request_id"]
    odd = requests.get(f"{url}/predict", headers={"X-Request-ID": 'x" injected'}, timeout=10)
    assert odd.headers["X-Request-ID"] != 'x" injected' and len(odd.headers["X-Request-ID"]) == 32
    time.sleep(0.2)
    lines = [json.loads(l) for l in (endpoint_dir(name) / "local/logs/access.log").read_text().splitlines()]
    assert {rid, "trace-42.a"} <= {l["request_id"] for l in lines}
    last = lines[-1]
    assert last["status"] == 200 and last["variant"] == "live" and last["upstream"].startswith("127.0.0.1:")


def test_chunked_post_gets_200_with_its_whole_body(ep, upstream):
    e, name = ep
    url = e.switch(name, upstream())
    parts = [b'{"inputs": [', b'{"x": 1},' * 5000, b'{"x": 2}]}']
    r = requests.post(f"{url}/predict", data=iter(parts), headers={"Content-Type": "application/json"}, timeout=30)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200 and r.json()["bytes"] == sum(map(len, parts)) and r.json()["chunked"] is None
    again = requests.get(f"{url}/after", timeout=10)  # nothing of the body was read as a next request
    assert again.status_code == 200 and again.json()["path"] == "/after"


def test_300_half_open_connections_do_not_stop_the_endpoint(ep, upstream):
    e, name = ep
    url = e.switch(name, upstream())
    held = half_open(int(url.rsplit(":", 1)[1]))
    try:
        t0, codes, threads = time.monotonic(), [], []
        with requests.Session() as c:
            for _ in range(50):
                r = c.post(f"{url}/predict", json={"inputs": [{"x": 1}]}, timeout=10)
                codes.append(r.status_code); threads.append(r.json()["threads"])
        took = time.monotonic() - t0
        closed = 0
        for s in held[::2]:  # the half-sent headers: nginx closes them after client_header_timeout (10 s)
            s.settimeout(max(0.1, t0 + 15 - time.monotonic()))
            try: s.recv(1024); closed += 1  # an end of stream (or an error page): the server let go
            except ConnectionResetError: closed += 1
            except socket.timeout: pass
    finally:
        for s in held: s.close()
    record(half_open_held=300, half_open_answers=len(codes), half_open_answers_ok=codes.count(200),
           half_open_50_requests_s=round(took, 3), half_open_upstream_threads=max(threads),
           half_open_closed_by_timeout=closed)
    assert codes == [200] * 50
    assert max(threads) < 20, "the half-sent requests reached the upstream"  # nginx holds them, not the service
    assert closed == 150, f"only {closed} of 150 half-sent headers were timed out"


def test_a_100_mb_body_gets_a_json_413(ep, upstream):
    e, name = ep
    url = e.switch(name, upstream(), endpoint_options(name, max_body=10 * 2**20))
    edge = psutil.Process(e.state(name)["pids"]["edge"])
    before = sum(p.memory_info().rss for p in [edge, *edge.children()])
    body = b"[" + b"1," * (50 * 2**20) + b"1]"
    t0 = time.monotonic()
    r = requests.post(f"{url}/predict", data=body, headers={"Content-Type": "application/json"}, timeout=60)
    took = time.monotonic() - t0
    after = sum(p.memory_info().rss for p in [edge, *edge.children()])
    chunks = iter([body[i:i + 2**20] for i in range(0, len(body), 2**20)])
    chunked = requests.post(f"{url}/predict", data=chunks, timeout=60)
    record(body_100mb_status=r.status_code, body_100mb_s=round(took, 3),
           body_100mb_edge_growth_mb=round((after - before) / 2**20, 1))
    assert r.status_code == 413 and r.json()["limit_bytes"] == 10 * 2**20 and r.headers["X-Request-ID"]
    assert r.json()["detail"][0]["loc"] == ["body"]  # the HTTP contract: every 4xx has error and detail
    assert chunked.status_code == 413
    assert after - before < 50 * 2**20
    assert requests.get(f"{url}/x", timeout=10).status_code == 200


# --- TLS --------------------------------------------------------------------------------------------------------

def test_self_signed_tls_verifies_against_its_ca_and_refuses_plain_http(ep, upstream):
    e, name = ep
    opts = endpoint_options(name, tls="self-signed")
    url = e.switch(name, upstream(), opts)
    assert url.startswith("https://127.0.0.1:") and e.url(name) == url
    r = requests.post(f"{url}/predict", json={"inputs": []}, verify=opts["tls"]["ca"], timeout=10)
    assert r.status_code == 200 and r.json()["method"] == "POST"
    by_name = requests.get(url.replace("127.0.0.1", "localhost") + "/x", verify=opts["tls"]["ca"], timeout=10)
    assert by_name.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/x", timeout=10)  # the system's CAs do not vouch for it
    plain = requests.get(url.replace("https://", "http://") + "/x", timeout=10)
    assert plain.status_code == 400 and "HTTPS only" in plain.json()["error"]
    ctx = ssl.create_default_context(cafile=opts["tls"]["ca"])
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t: assert t.version() in ("TLSv1.2", "TLSv1.3")
    record(tls_verified_status=r.status_code, tls_plain_status=plain.status_code)


def test_plain_http_redirects_with_308_when_asked(ep, upstream):
    e, name = ep
    opts = endpoint_options(name, tls="self-signed", plain_http="redirect")
    url = e.switch(name, upstream(), opts)
    plain = e.state(name)["plain_port"]
    r = requests.post(f"http://127.0.0.1:{plain}/predict?x=1", json={"inputs": []}, allow_redirects=False, timeout=10)
    assert r.status_code == 308 and r.headers["Location"] == f"{url}/predict?x=1"
    followed = requests.post(f"http://127.0.0.1:{plain}/predict", json={"inputs": []}, verify=opts["tls"]["ca"],
                             timeout=10)
    assert followed.status_code == 200 and followed.json()["method"] == "POST"  # a 308 keeps the method and body


# --- rate limits ------------------------------------------------------------------------------------------------

def paced(url: str, key: str, rate: float, seconds: float, out: dict, clients: int = 6):
    "Send GETs with `key` at `rate` per second for `seconds`, from `clients` threads; counts by status into `out`."
    t0, lock, sent = time.monotonic(), threading.Lock(), [0]
    def worker():
        s = requests.Session()
        while True:
            with lock:
                i = sent[0]; sent[0] += 1
            at = t0 + i / rate
            if at - t0 > seconds: return
            time.sleep(max(0, at - time.monotonic()))
            r = s.get(f"{url}/x", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            with lock:
                out[r.status_code] = out.get(r.status_code, 0) + 1
                if r.status_code == 429: out["retry_after"] = r.headers.get("Retry-After"); out["body"] = r.json()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join(seconds + 30)
    out["seconds"] = time.monotonic() - t0


def test_rate_limit_per_key_holds_a_flood_and_spares_another_key(ep, upstream):
    e, name = ep
    url = e.switch(name, upstream(), endpoint_options(name, rate_limit="50r/s", burst=5))
    flood, calm, seconds = {}, {}, 6
    t = threading.Thread(target=paced, args=(url, "key-calm", 20, seconds, calm, 2))
    t.start(); paced(url, "key-flood", 200, seconds, flood); t.join()
    sent = flood.get(200, 0) + flood.get(429, 0)
    admitted = flood.get(200, 0) / flood["seconds"]
    record(rate_limit="50r/s", rate_offered=round(sent / flood["seconds"]), rate_admitted=round(admitted, 1),
           rate_other_key_ok=calm.get(200, 0), rate_other_key_429=calm.get(429, 0))
    assert sent / flood["seconds"] > 100, "the load generator could not offer twice the limit"
    assert abs(admitted - 50) <= 5, (admitted, flood)
    assert flood["retry_after"] == "1" and "rate limit of 50r/s" in flood["body"]["error"]
    assert calm.get(429, 0) == 0 and calm.get(200, 0) > 0.8 * 20 * seconds, calm


def test_rate_limit_by_address_counts_every_key_together(ep, upstream):
    e, name = ep
    url = e.switch(name, upstream(), endpoint_options(name, rate_limit="10r/s", burst=0, limit_by="address"))
    a, b = {}, {}
    t = threading.Thread(target=paced, args=(url, "key-a", 40, 3, a, 2))
    t.start(); paced(url, "key-b", 40, 3, b, 2); t.join()
    assert a.get(429, 0) > 0 and b.get(429, 0) > 0
    assert (a.get(200, 0) + b.get(200, 0)) / max(a["seconds"], b["seconds"]) <= 10 * 1.1 + 1


def test_a_deep_nbdeploy_home_still_gets_an_endpoint(upstream, tmp_path, monkeypatch):
    "A home whose router socket path passes the kernel's 108 bytes reaches it through a short symlink."
    monkeypatch.setenv("NBDEPLOY_HOME", str(tmp_path / ("deep-" * 20)))
    e, name = LocalEndpoint(), "deep"
    assert len(str(e.prefix(name) / "router.sock")) > 108
    try:
        url = e.switch(name, upstream())
        assert requests.get(f"{url}/x", timeout=10).status_code == 200
    finally: e.remove(name)
    assert e.url(name) is None
