"""Debian's real Prometheus scraping a live local deployment (behind an API key) on loopback with the config
`nd.monitoring_config` writes, and promtool checking and testing the rules it writes."""
import shutil
import subprocess

import pytest
import requests

import nbdeploy as nd
from nbdeploy.config import free_port
from tests.conftest import poll
from tests.models import churn_frame, churn_pipeline

PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None,
                                reason="Debian's prometheus and promtool are not installed (apt install prometheus)")
KEY = "prometheus-test-key"


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    "A deployment behind an API key, its monitoring files, and a Prometheus scraping it every second."
    df, y = churn_frame()
    dep = nd.deploy(churn_pipeline(df, y), name="scraped", sample=df, api_key=KEY)
    for i in range(5):
        r = requests.post(f"{dep.url}/predict", json={"inputs": df.iloc[[i]].to_dict("records")},
                          headers=dep.headers(), timeout=30)
        assert r.status_code == 200
    path = tmp_path_factory.mktemp("prometheus")
    files = nd.monitoring_config("scraped", path, api_key=KEY, scrape_interval="1s")
    port = free_port()
    log = open(path/"prometheus.log", "w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={files['prometheus.yml']}",
                             f"--storage.tsdb.path={path/'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    def ready():
        assert proc.poll() is None, (path/"prometheus.log").read_text()[-2000:]
        try: return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException: return False
    try:
        poll(ready, what="Prometheus to be ready")
        yield dep, files, url
    finally:
        proc.terminate()  # by its own PID
        try: proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        dep.stop()


def query(url, q):
    r = requests.get(f"{url}/api/v1/query", params={"query": q}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_prometheus_scrapes_capture_and_bentoml_series(scraped):
    dep, files, url = scraped
    up = poll(lambda: query(url, 'up{job="nbdeploy-scraped"} == 1'), what="a successful scrape (with the API key)")
    assert up[0]["metric"]["deployment"] == "scraped" and up[0]["metric"]["version"] == str(dep.version)
    cap = poll(lambda: query(url, 'sum(nbdeploy_capture_records_total{job="nbdeploy-scraped"}) >= 5'),
               what="nbdeploy_capture_records_total")
    assert float(cap[0]["value"][1]) == 5
    req = poll(lambda: query(url, 'sum(bentoml_service_request_total{job="nbdeploy-scraped",endpoint="/predict",'
                                  'http_response_code="200"})'), what="bentoml_service_request_total")
    assert float(req[0]["value"][1]) == 5
    assert poll(lambda: query(url, 'count(bentoml_service_request_duration_seconds_bucket{job="nbdeploy-scraped"})'),
                what="the latency histogram")


def test_prometheus_loads_and_evaluates_the_rules(scraped):
    dep, files, url = scraped
    def evaluated():
        groups = requests.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups if g["name"] == "nbdeploy-scraped" for r in g["rules"]]
        return rules if rules and all(r["health"] == "ok" and r.get("lastEvaluation", "").startswith("2")
                                      for r in rules) else None
    rules = poll(evaluated, what="every rule evaluated without error")
    assert {r["labels"]["level"] for r in rules} == {"warn", "fail"}
    assert {r["labels"]["rule"] for r in rules} >= {"p99_latency", "error_rate", "drift_share", "capture_dropped"}
    firing = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert not [a for a in firing if a["labels"].get("deployment") == "scraped"]  # five fast requests: healthy


def test_promtool_checks_and_tests_the_written_files(scraped):
    dep, files, url = scraped
    for args in (["check", "config", files["prometheus.yml"]], ["check", "rules", files["rules.yml"]],
                 ["test", "rules", files["rules_test.yml"]]):
        r = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "SUCCESS" in r.stdout + r.stderr, r.stdout + r.stderr
