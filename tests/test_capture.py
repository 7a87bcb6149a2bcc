"""Capture in the serving runtime (issue 15, item 1): request ids, sampling, records, redaction, segments, gauges.

One live `bentoml serve` of a packaged model, two workers, capturing half of the requests into tiny segments."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import nbdeploy as nd
from nbdeploy.config import free_port
from nbdeploy import capture
from tests.models import churn_frame, churn_pipeline

ROW = {"age": 30, "income": 51.5, "plan": "pro", "region": "north"}
FRACTION = 0.5


def ids(prefix: str, n: int, kept: bool = True) -> list[str]:
    "The first `n` ids `prefix-0`, `prefix-1`, ... that are (or, with `kept=False`, are not) sampled at FRACTION."
    out, i = [], 0
    while len(out) < n:
        if capture.sampled(f"{prefix}-{i}", FRACTION) == kept: out.append(f"{prefix}-{i}")
        i += 1
    return out


def wait_for(folder: Path, wanted: set, timeout: float = 20) -> dict:
    "Request id -> record, once every id in `wanted` has been written under `folder`."
    end = time.monotonic() + timeout
    while True:
        got = {r["eventMetadata"]["eventId"]: r for r in capture.read_records(folder)}
        if wanted <= got.keys() or time.monotonic() > end: return got
        time.sleep(0.1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    "A churn pipeline served by `bentoml serve` with capture at 0.5, `income` redacted, 2 KB segments."
    df, y = churn_frame(seed=21)
    bento = nd.package(churn_pipeline(df, y, 10), "captured", sample=df, workers=2)
    folder = tmp_path_factory.mktemp("capture")
    port = free_port()  # outside the kernel's ephemeral range, which BentoML's own ports come from
    env = {**os.environ, "NBDEPLOY_CAPTURE": str(FRACTION), "NBDEPLOY_CAPTURE_DIR": str(folder),
           "NBDEPLOY_REDACT": '["income"]', "NBDEPLOY_CAPTURE_SEGMENT_BYTES": "2000", "NBDEPLOY_DRIFT_EVERY": "1",
           "NBDEPLOY_DEPLOYMENT_NAME": "captured", "NBDEPLOY_DEPLOYMENT_VERSION": "3"}
    cmd = [sys.executable, "-m", "bentoml", "serve", str(bento.tag), "--host", "127.0.0.1", "--port", str(port)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200: break
            except requests.RequestException: pass
            assert p.poll() is None, "the service exited before it was ready"
            time.sleep(0.1)
        yield url, folder, bento
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()


def post(url: str, route: str = "/predict", body=None, rid: str | None = None) -> requests.Response:
    headers = {"X-Request-ID": rid} if rid is not None else {}
    return requests.post(f"{url}{route}", json={"inputs": [ROW]} if body is None else body, headers=headers, timeout=30)


def test_request_ids_are_honoured_made_and_checked(live):
    url, _, _ = live
    test_id = "order-17:a.b_c"
    assert post(url, rid=test_id).headers["X-Request-ID"] == test_id
    made = post(url).headers["X-Request-ID"]
    assert len(made) == 32 and int(made, 16) >= 0
    assert len(requests.get(f"{url}/readyz", timeout=10).headers["X-Request-ID"]) == 32
    assert post(url, body={"inputs": []}, rid="refused-1").headers["X-Request-ID"] == "refused-1"  # 4xx echo it too
    for bad in ("has space", "x" * 129):
        r = post(url, rid=bad)
        assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["header", "x-request-id"], r.text
        assert r.headers["X-Request-ID"] != bad and len(r.headers["X-Request-ID"]) == 32
    meta = requests.get(f"{url}/metadata", timeout=10).json()
    assert meta["capture"] == {"fraction": FRACTION, "redact": ["income"]}, meta["capture"]


def test_sampling_is_decided_by_the_id(live):
    url, folder, _ = live
    kept, skipped = ids("s", 12), ids("s", 12, kept=False)
    for rid in kept + skipped: assert post(url, rid=rid).status_code == 200
    got = wait_for(folder, set(kept))
    assert set(kept) <= got.keys() and not set(skipped) & got.keys()


def test_records_have_data_captures_shape_and_no_redacted_field(live):
    url, folder, _ = live
    three = {"inputs": [ROW, {**ROW, "plan": "max"}, {**ROW, "age": 70, "region": "south"}]}
    a, b, c = ids("shape", 3)
    answers = {a: post(url, "/predict_proba", three, a), b: post(url, "/invocations", three, b),
               c: post(url, "/predict", three, c)}
    assert all(r.status_code == 200 for r in answers.values())
    got = wait_for(folder, set(answers))
    for rid, route in ((a, "/predict_proba"), (b, "/predict"), (c, "/predict")):
        rec = got[rid]
        assert set(rec) == {"captureData", "eventMetadata", "eventVersion", "nbdeploy"}
        assert rec["eventVersion"] == "0" and rec["eventMetadata"]["inferenceTime"].endswith("Z")
        for mode, part in (("INPUT", "endpointInput"), ("OUTPUT", "endpointOutput")):
            assert rec["captureData"][part] == {**rec["captureData"][part], "mode": mode, "encoding": "JSON",
                                                "observedContentType": "application/json"}
        nb = rec["nbdeploy"]
        assert {k: nb[k] for k in ("deployment", "version", "route", "status", "rows", "redacted")} == {
            "deployment": "captured", "version": 3, "route": route, "status": 200, "rows": 3, "redacted": ["income"]}
        assert 0 < nb["latency_ms"] < 30_000
        assert json.loads(rec["captureData"]["endpointOutput"]["data"]) == answers[rid].json()
        sent = json.loads(rec["captureData"]["endpointInput"]["data"])
        assert sent == {"inputs": [{k: v for k, v in row.items() if k != "income"} for row in three["inputs"]]}
    written = "".join(p.read_text() for p in folder.glob("*.jsonl"))
    assert '\\"income\\"' not in written and "51.5" not in written  # neither the field nor its value
    requests_, rows = capture.frames([got[a], got[b], got[c]])
    assert requests_.request_id.tolist() == [a, b, c] and requests_.rows.tolist() == [3, 3, 3]
    assert len(rows) == 9 and "income" not in rows.columns
    assert rows.prediction.tolist()[3:] == answers[b].json()["predictions"] + answers[c].json()["predictions"]
    proba = answers[a].json()
    assert rows.proba.tolist()[:3] == proba["probabilities"]


def test_bad_input_is_answered_4xx_and_captured_with_its_status(live):
    url, folder, _ = live
    empty, wrong, broken = ids("bad", 3)
    codes = {empty: post(url, body={"inputs": []}, rid=empty).status_code,
             wrong: post(url, body={"inputs": [{**ROW, "age": "old"}]}, rid=wrong).status_code,
             broken: requests.post(f"{url}/predict", data=b'{"inputs": [', timeout=30,
                                   headers={"Content-Type": "application/json", "X-Request-ID": broken}).status_code}
    assert all(400 <= c < 500 for c in codes.values()), codes
    got = wait_for(folder, set(codes))
    assert {rid: got[rid]["nbdeploy"]["status"] for rid in codes} == codes
    assert got[broken]["captureData"]["endpointInput"]["data"] == ""  # not JSON, and a field is redacted: not written


def test_segments_rotate_by_size(live):
    url, folder, _ = live
    rids = ids("rot", 16)
    for rid in rids: post(url, rid=rid)
    wait_for(folder, set(rids))
    segments = sorted(folder.glob("*.jsonl"))
    assert len(segments) >= 3, segments
    by_pid = {}
    for p in segments:
        stamp, pid, seq = p.stem.split("-")
        assert len(stamp) == 15 and stamp[8] == "T" and pid.isdigit() and seq.isdigit()
        by_pid.setdefault(pid, []).append((int(seq), p))
        assert all(json.loads(line) for line in p.read_text().splitlines())
    for pid, files in by_pid.items():
        files.sort()
        assert [s for s, _ in files] == list(range(1, len(files) + 1))  # none lost (the cap is far)
        for _, p in files[:-1]: assert p.stat().st_size >= 2000  # a segment is closed once it is past 2000 bytes


def test_metrics_show_the_nbdeploy_series(live):
    url, folder, bento = live
    rids = ids("metrics", 4)
    for rid in rids: post(url, rid=rid)
    written = len(wait_for(folder, set(rids)))
    end = time.monotonic() + 15
    while True:
        families = {f.name: f for f in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=10).text)}
        value = {s.name: s.value for f in families.values() for s in f.samples if s.name.startswith("nbdeploy_")}
        if value.get("nbdeploy_capture_records_total", 0) >= written or time.monotonic() > end: break
        time.sleep(0.2)
    assert value["nbdeploy_capture_records_total"] >= written, value
    assert value["nbdeploy_capture_dropped_total"] == 0 and value["nbdeploy_capture_queue_depth"] >= 0, value
    assert families["nbdeploy_capture_records"].type == "counter"
    assert families["nbdeploy_capture_queue_depth"].type == "gauge"
    if getattr(nd.packager, "reference", None) is None or nd.packager.reference(bento) is None:
        print("no reference in the Bento: drift gauges not checked"); return
    end = time.monotonic() + 15  # with a reference in the Bento, the drift gauges follow within NBDEPLOY_DRIFT_EVERY
    while True:
        text = requests.get(f"{url}/metrics", timeout=10).text
        value = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
        if "nbdeploy_drift_share" in value or time.monotonic() > end: break
        time.sleep(0.3)
    assert 0 <= value["nbdeploy_drift_share"].value <= 1 and value["nbdeploy_drift_window_rows"].value > 0, value
    assert value["nbdeploy_alert_level"].labels == {"rule": "drift_share"}
    features = {s.labels["feature"] for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "nbdeploy_drifted"}
    assert {"age", "plan", "region", "__prediction__"} <= features and "income" not in features, features


def test_a_full_queue_drops_and_counts():
    "The writer unit: a queue of two with no writer draining it takes two exchanges and drops the rest."
    config = capture.settings({"NBDEPLOY_CAPTURE": "1", "NBDEPLOY_CAPTURE_DIR": "/nonexistent",
                               "NBDEPLOY_CAPTURE_QUEUE": "2"})
    cap = capture.Capture(config)
    item = ("r", "/predict", 200, time.time(), 1.0, b"{}", b"{}")
    assert [cap.offer(item) for _ in range(5)] == [True, True, False, False, False] and cap.dropped == 3
