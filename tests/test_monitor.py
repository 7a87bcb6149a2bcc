"""Monitor end to end on one local deployment: traffic as sent, drift on the shifted feature only, late labels,
alerts as ledger events, and a display under 1 MB over a big capture."""
import json
import os
import time
import uuid
from datetime import datetime, timezone
from unittest import mock

import numpy as np
import pytest
import requests

import nbdeploy as nd
from nbdeploy import ledger
from nbdeploy.capture import frames
from nbdeploy.deployer import get_target
from nbdeploy.monitor import Monitor, Rule
from tests.conftest import poll
from tests.models import churn_frame, churn_pipeline


@pytest.fixture(scope="module")
def live():
    "One deployment with its readiness report (so rules and live metrics have something to compare with)."
    df, y = churn_frame()
    pipe = churn_pipeline(df, y)
    report = nd.check(pipe, df, y)
    with mock.patch.dict(os.environ, {"NBDEPLOY_DRIFT_EVERY": "1"}):  # the service's own drift gauges, every second
        dep = nd.deploy(pipe, name="watched", sample=df, report=report)
    yield pipe, df, y, dep
    dep.stop()


def send(dep, rows, rid=None, route="/predict"):
    "POST rows with a request id; the answer."
    headers = {"X-Request-ID": rid} if rid else {}
    return requests.post(f"{dep.url}{route}", json={"inputs": rows}, headers=headers, timeout=30)


def wait_records(m, n, timeout=30):
    "Poll until the capture holds at least `n` records (the writer is off the request path)."
    end = time.monotonic() + timeout
    while len(m.records(None)) < n:
        if time.monotonic() > end: raise AssertionError(f"{len(m.records(None))} records captured, expected {n}")
        time.sleep(0.1)


def records_of(df):
    return json.loads(df.to_json(orient="records"))


def test_traffic_matches_what_was_sent(live):
    pipe, df, y, dep = live
    m = dep.monitor()
    before, n0 = m.traffic(None), len(m.records(None))
    ids = [f"traffic-{i}" for i in range(20)]
    for i, rid in enumerate(ids):
        r = send(dep, records_of(df.iloc[2 * i:2 * i + 2]), rid)
        assert r.status_code == 200 and r.headers["x-request-id"] == rid
    for _ in range(3): assert send(dep, [{"age": 30}]).status_code == 400  # missing fields: refused, counted
    for i in range(5): assert send(dep, records_of(df.iloc[[i]]), route="/predict_proba").status_code == 200
    wait_records(m, n0 + 28)
    after = m.traffic(None)
    assert after.requests - before.requests == 28
    assert after.rows - before.rows == 40 + 3 + 5
    grew = {k: after.by_status.get(k, 0) - before.by_status.get(k, 0) for k in after.by_status}
    assert grew == {"2xx": 25, "4xx": 3}
    assert after.error_rate == 0 and 0 < after.p50_ms <= after.p95_ms <= after.p99_ms
    # /metrics, read with prometheus_client's parser: BentoML's counter and nbdeploy's capture counter agree
    mb, ma = before.metrics, after.metrics
    assert ma["requests"] - mb["requests"] == 28
    assert ma["by_status"]["4xx"] - mb["by_status"].get("4xx", 0) == 3
    assert ma["capture_records"] - (mb["capture_records"] or 0) == 28 and ma["capture_dropped"] == 0
    assert ma["p99_ms"] is not None
    assert set(ids) <= set(frames(m.records(None))[0].request_id)  # each answer's id, as sent


def test_drift_flags_the_shifted_feature_and_not_the_others(live):
    pipe, df, y, dep = live
    m = nd.monitor("watched")
    n0, rng = len(m.records(None)), np.random.default_rng(1)
    for k in range(10):
        batch = df.iloc[rng.integers(0, len(df), 30)].copy()
        batch["income"] += 30  # three standard deviations
        assert send(dep, records_of(batch), f"shift-{k}").status_code == 200
    wait_records(m, n0 + 10)
    d = m.drift(None)
    flags = d.table.set_index("column").drifted
    assert bool(flags["income"]) and not bool(flags["age"])
    row = d.table.set_index("column").loc["income"]
    assert row.test == "ks" and row.p_value < 0.05 and row.effect >= 0.1
    # the drift share rule fires, and the ledger records it once
    fired = {a.rule: a for a in m.alerts(window=None)}
    assert fired["drift_share"].level in ("warn", "fail")
    m.alerts(window=None)
    events = [e for e in ledger.events("watched") if e["event"] == "alert" and e["detail"].startswith("drift_share")]
    assert len(events) == 1 and events[0]["version"] == dep.version
    # the service's own drift gauges, as /metrics and the cheap health line see them. Each worker measures the
    # requests it answered and /metrics shows the newest worker's figures, so poll until one read shows both.
    def seen():
        h = nd.monitor("watched").health("1h")
        income = ((m.traffic("1h").metrics or {}).get("drift_features") or {}).get("income") or {}
        return h if (h["drift_share"] or 0) >= 0.25 and income.get("drifted") is True else None
    h = poll(seen, what="the in-service drift gauges to see the shift")
    assert h["requests"] > 0 and h["drift"] in ("ok", "drifted") and h["alert"] in ("warn", "fail")


def test_late_labels_join_by_request_id(live):
    pipe, df, y, dep = live
    m = dep.monitor()
    n0, ids = len(m.records(None)), [f"label-{i}-{uuid.uuid4().hex[:6]}" for i in range(15)]
    rows = df.iloc[100:130]
    for i, rid in enumerate(ids): assert send(dep, records_of(rows.iloc[2 * i:2 * i + 2]), rid).status_code == 200
    wait_records(m, n0 + 15)
    truth = y.iloc[100:130].to_numpy()
    perf = m.performance(truth, ids=[i for i in ids for _ in (0, 1)])
    assert perf.n == 30 and perf.task == "binary"
    expected = float(np.mean(pipe.predict(rows) == truth))
    assert abs(perf.metrics["accuracy"] - expected) < 1e-9
    assert perf.readiness["accuracy"] is not None and set(perf.table.columns) == {"metric", "live", "readiness"}
    # wrong labels arrive later for the same rows: the newest label wins, and the metric drop rule fails
    m.feedback([i for i in ids for _ in (0, 1)], 1 - truth)
    perf = m.performance()
    assert perf.n == 30 and perf.drop > 0.1
    fired = {a.rule: a.level for a in m.alerts(window=None)}
    assert fired.get("metric_drop") == "fail"
    assert any(e["event"] == "alert" and e["detail"].startswith("metric_drop fail") for e in ledger.events("watched"))
    s = m.summary(None, record=False)
    assert s["level"] == "fail" and json.loads(json.dumps(s)) == s


def test_display_stays_under_a_megabyte_over_a_big_capture(live):
    pipe, df, y, dep = live
    row = ledger.begin("watched-big", "local", dep.row["bento"], "pass")  # the same Bento: its reference
    ledger.update("watched-big", row["version"], "stopped", status="stopped", url=dep.url)
    folder = get_target("local").capture_dir(row)
    folder.mkdir(parents=True, exist_ok=True)
    rng, now = np.random.default_rng(0), datetime.now(timezone.utc)
    inputs = records_of(df)
    with open(folder/"20260101T000000-1-0.jsonl", "w") as f:
        for i in range(20_000):  # 200,000 rows
            rows = [inputs[j] for j in rng.integers(0, len(inputs), 10)]
            at = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            f.write(json.dumps({
                "captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                                  "data": json.dumps({"inputs": rows}), "encoding": "JSON"},
                                "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                                   "data": json.dumps({"predictions": [0] * 10}), "encoding": "JSON"}},
                "eventMetadata": {"eventId": f"big-{i}", "inferenceTime": at}, "eventVersion": "0",
                "nbdeploy": {"deployment": "watched-big", "version": 1, "route": "/predict", "status": 200,
                             "latency_ms": float(rng.gamma(2, 2)), "rows": 10, "redacted": []}}) + "\n")
    m = Monitor("watched-big")
    t = time.perf_counter()
    page = m._repr_html_()
    took = time.perf_counter() - t
    assert len(page.encode()) < 1_000_000, len(page)
    assert "latency over time" in page and "drift per feature" in page and "big-1" not in page
    print(f"display of 20,000 records (200,000 rows): {len(page.encode()) / 1e3:.0f} kB in {took:.1f} s")


def test_bad_inputs_are_refused(live):
    with pytest.raises(nd.NotFoundError, match="no deployment named"): nd.monitor("never-deployed")
    with pytest.raises(nd.InputError, match="is not a duration"): nd.monitor("watched").traffic("1 week")
    with pytest.raises(nd.InputError, match="ids for"): nd.monitor("watched").feedback(["a", "b"], [1])
    assert Rule("x", "error_rate", 0.1, 0.2).level(0.15) == "warn"
