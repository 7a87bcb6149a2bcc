"""Compare end to end on the local target behind real nginx: a real shadow and a real canary of one name, real
requests under shared X-Request-ID values, real capture folders; `compare` and `Comparison.of` on them agree with
what the two models answer when called here."""
import json
import time

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.metrics import roc_auc_score

import nbdeploy as nd
from nbdeploy import capture, ledger
from nbdeploy.compare import Comparison, compare
from nbdeploy.config import subdir
from nbdeploy.endpoint import nginx_available
from nbdeploy.monitor import Monitor
from tests.conftest import poll
from tests.models import churn_frame, churn_pipeline

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed (apt-get install nginx)")
NAME = "compared"


def folder(version):
    return subdir("capture") / NAME / f"v{version}"


def captured(version):
    "The request ids version `version` of NAME captured so far."
    return {r["eventMetadata"]["eventId"] for r in capture.read_records(folder(version))}


def send(url, ids, rows):
    "POST two rows per id to /predict_proba through the stable URL, under that X-Request-ID."
    with requests.Session() as s:
        for k, i in enumerate(ids):
            body = {"inputs": json.loads(rows.iloc[2 * k:2 * k + 2].to_json(orient="records"))}
            r = s.post(f"{url}/predict_proba", json=body, headers={"X-Request-ID": i}, timeout=30)
            assert r.status_code == 200 and r.headers["x-request-id"] == i, r.text


@pytest.fixture(scope="module")
def setup():
    "Two models of NAME (a weak champion, a stronger candidate), their Bentos, the champion serving; the test rows."
    df, y = churn_frame(n=600, seed=7)
    weak, strong = churn_pipeline(df[:60], y[:60], 3), churn_pipeline(df[:400], y[:400], 40)
    bentos = [nd.package(m, NAME, sample=df, workers=1, runtime="native") for m in (weak, strong)]
    champion = nd.deploy(bentos[0], name=NAME)
    test, truth = df[400:].reset_index(drop=True), y[400:].reset_index(drop=True)
    yield weak, strong, bentos, champion, test, truth
    for r in ledger.in_service(NAME): nd.Deployment(NAME, r["version"]).stop()


def test_a_shadow_compared_on_the_requests_both_answered(setup):
    weak, strong, bentos, champion, test, truth = setup
    shadow = nd.deploy(bentos[1], name=NAME, strategy="shadow")
    ids = [f"shadow-{i}" for i in range(60)]
    rows = test.iloc[:120]
    send(champion.url, ids, rows)
    poll(lambda: set(ids) <= captured(champion.version) and set(ids) <= captured(shadow.version),
         what="both versions capturing every mirrored request")
    c = compare(NAME)  # the routing says who is the champion, who the shadow, and that they pair
    assert (c.kind, c.versions) == ("paired", [champion.version, shadow.version])
    p = c.paired
    assert (p["requests"], p["rows"], p["only_champion"], p["only_candidate"]) == (60, 120, 0, 0)
    pa, pb = weak.predict_proba(rows), strong.predict_proba(rows)
    la, lb = weak.classes_[pa.argmax(1)], strong.classes_[pb.argmax(1)]
    assert abs(p["agreement"] - np.mean(la == lb)) < 1e-12 and p["agreement"] < 1
    assert (c.confusion.values == pd.crosstab(la, lb).values).all()
    delta = np.abs(pb - pa).max(1)  # the largest change over the classes, row by row
    assert abs(p["max_delta"] - delta.max()) < 1e-9 and abs(p["mean_delta"] - delta.mean()) < 1e-9
    t = c.table
    assert (t.requests == 60).all() and (t.errors == 0).all() and (t.error_rate == 0).all()
    assert ((t.p50_ms > 0) & (t.p99_ms >= t.p50_ms)).all()
    assert c.lead["error_rate"]["p_value"] == 1.0 and c.lead["p99_ms"]["lo"] <= c.lead["p99_ms"]["hi"]
    assert c.drift is not None and c.drift.prediction is not None
    assert c.verdict == "inconclusive" and "send labels" in c.reason  # no labels yet
    # late labels, joined by request id: each version's AUC, and the paired gain
    Monitor(NAME).feedback([i for i in ids for _ in (0, 1)], truth[:120])
    c = compare(NAME)
    gain = roc_auc_score(truth[:120], pb[:, 1]) - roc_auc_score(truth[:120], pa[:, 1])
    assert c.metric_name == "roc_auc" and abs(c.gain["estimate"] - gain) < 1e-9 and c.gain["n"] == 120
    assert c.gain["lo"] <= c.gain["estimate"] <= c.gain["hi"] and c.verdict in ("promote", "inconclusive")
    assert abs(t.loc[f"v{shadow.version}", "p99_ms"] - c.table.loc[f"v{shadow.version}", "p99_ms"]) < 1e-9
    evidence = json.loads(json.dumps(c.to_dict()))
    assert evidence["paired"]["requests"] == 60 and evidence["metric"] == "roc_auc"
    page = c._repr_html_()
    assert page.count("<img") == 3 and len(page) < 1_000_000
    # the same comparison from the capture folders themselves, as replay builds it
    d = Comparison.of(folder(champion.version), folder(shadow.version), labels=Monitor(NAME)._labels())
    assert d.paired == c.paired and d.gain == c.gain
    nd.rollback(NAME)


def test_a_canary_compared_variant_by_variant(setup):
    weak, strong, bentos, champion, test, truth = setup
    start = time.time()
    canary = nd.deploy(bentos[1], name=NAME, strategy="canary", traffic=0.5)
    ids = [f"canary-{i}" for i in range(100)]
    rows = pd.concat([test, test]).iloc[:200]
    send(champion.url, ids, rows)
    poll(lambda: set(ids) <= captured(champion.version) | captured(canary.version), what="every split request captured")
    Monitor(NAME).feedback([i for i in ids for _ in (0, 1)], pd.concat([truth, truth]).iloc[:200])
    c = compare(NAME, window=time.time() - start + 1)  # the canary's time only: the shadow's requests are older
    assert (c.kind, c.versions, c.paired, c.confusion) == ("split", [champion.version, canary.version], None, None)
    t = c.table
    n_a, n_b = t.requests.tolist()
    assert n_a + n_b == 100 and 25 <= n_b <= 75, (n_a, n_b)
    assert t.labelled.tolist() == [2 * n_a, 2 * n_b] and (t.errors == 0).all()
    assert all(lo <= m <= hi for m, lo, hi in zip(t.metric, t.lo, t.hi))
    e = c.lead["error_rate"]
    assert (e["n_a"], e["n_b"], e["p_value"]) == (n_a, n_b, 1.0)
    p99 = c.lead["p99_ms"]
    assert p99["lo"] <= p99["estimate"] <= p99["hi"]
    assert c.verdict in ("promote", "keep", "inconclusive")
    assert c.verdict != "inconclusive" or c.needed > 0
    json.dumps(c.to_dict())
