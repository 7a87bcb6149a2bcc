"""promote_if_better and the canary autopilot on real local servers behind nginx: a worse candidate and a failing one
kept (nothing deployed, the decision in the ledger), a better one deployed as a canary after a replay of captured
traffic; advance holding below min_requests and promoting when the SLO holds; the autopilot rolling back a candidate
30 ms slower at the tail."""
import json
import time
import uuid

import numpy as np
import pytest
import requests
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import nbdeploy as nd
from nbdeploy import ledger
from nbdeploy.endpoint import nginx_available
from nbdeploy.evolve import advance, autopilot, promote_if_better
from tests.conftest import poll
from tests.models import churn_frame

pytestmark = pytest.mark.skipif(not nginx_available(), reason="a canary needs the local nginx endpoint")
NAME = "evolved"


def model(kind, X, y):
    "A churn model: 'linear' (the champion, AUC about 0.66), 'stump' (worse), 'boosted' (better), 'shuffled' (fails)."
    ct = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
                                 (StandardScaler(), ["age", "income"]))
    est = {"linear": LogisticRegression(), "stump": GradientBoostingClassifier(n_estimators=1, max_depth=1),
           "boosted": GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0),
           "shuffled": GradientBoostingClassifier(n_estimators=5, random_state=0)}[kind]
    if kind == "shuffled": y = np.random.default_rng(2).permutation(y)
    return make_pipeline(ct, est).fit(X, y)


class Sleepy:
    "A model answering as `model` does, `seconds` later."
    def __init__(self, model, seconds):
        self.model, self.seconds, self.classes_ = model, seconds, model.classes_

    def predict(self, X):
        time.sleep(self.seconds)
        return self.model.predict(X)

    def predict_proba(self, X):
        time.sleep(self.seconds)
        return self.model.predict_proba(X)


def send(n):
    "n one-row requests to the name's stable endpoint, each with a fresh id; all must succeed."
    url, rows = nd.deployment(NAME).url, json.loads(DATA[0].iloc[:50].to_json(orient="records"))
    with requests.Session() as s:
        for i in range(n):
            r = s.post(f"{url}/predict", json={"inputs": [rows[i % 50]]}, headers={"X-Request-ID": uuid.uuid4().hex},
                       timeout=30)
            assert r.status_code == 200, r.text


def decisions():
    return [r for r in ledger.routes(NAME) if r["event"] == "decision"]


df, y = churn_frame(800, seed=0)
y = np.where(np.random.default_rng(1).random(len(y)) < 0.15, 1 - y, y)  # 15% label noise: nobody is perfect
DATA = (df.iloc[:400], y[:400], df.iloc[400:], y[400:])  # train, holdout


@pytest.fixture(scope="module")
def champion():
    "The linear champion, serving behind nginx with 40 captured requests."
    Xtr, ytr, Xho, yho = DATA
    dep = nd.deploy(model("linear", Xtr, ytr), name=NAME, sample=Xtr)
    send(40)
    yield dep
    for r in ledger.in_service(NAME): nd.Deployment(NAME, r["version"]).stop()


def test_a_worse_candidate_is_kept(champion):
    Xtr, ytr, Xho, yho = DATA
    d = promote_if_better(model("stump", Xtr, ytr), NAME, Xho, yho)
    assert d.action == "keep" and d.version is None
    g = d.evidence["gain"]
    assert g["metric"] == "roc_auc" and g["n"] == len(yho) and g["interval"][1] < 0 < g["champion"] - g["candidate"]
    assert [r["version"] for r in ledger.rows(NAME)] == [1]  # nothing deployed
    last = decisions()[-1]
    assert last["evidence"]["action"] == "keep" and last["evidence"]["evidence"]["gain"] == g


def test_a_candidate_failing_the_gate_is_kept(champion):
    Xtr, ytr, Xho, yho = DATA
    d = promote_if_better(model("shuffled", Xtr, ytr), NAME, Xho, yho)
    assert d.action == "keep" and "readiness gate" in d.reason and "gain" not in d.evidence
    assert [r["version"] for r in ledger.rows(NAME)] == [1] and decisions()[-1]["evidence"]["reason"] == d.reason


def test_a_better_candidate_is_deployed_after_a_replay(champion):
    Xtr, ytr, Xho, yho = DATA
    d = promote_if_better(model("boosted", Xtr, ytr), NAME, Xho, yho, strategy="canary", traffic=0.5,
                          steps=(0.5, 1.0), sample=Xtr)
    assert d.action == "promote" and d.version == 2, d.reason
    assert d.evidence["gain"]["interval"][0] > 0.1  # AUC about 0.87 against 0.66
    rp = d.evidence["replay"]
    assert rp["requests"] >= 40 and rp["failed"] == 0 and rp["refused"] == 0 and rp["identical"] < rp["requests"]
    assert [(r["version"], r["status"]) for r in ledger.in_service(NAME)] == [(1, "serving"), (2, "canary")]
    assert decisions()[-1]["evidence"]["evidence"]["deployed"] == {"version": 2, "strategy": "canary"}


def test_advance_holds_below_min_requests_then_promotes(champion):
    send(20)
    d = advance(NAME, min_requests=200)
    assert d.action == "hold" and d.version == 2 and d.evidence["candidate"]["requests"] < 200
    held = ledger.routes(NAME)[-1]
    assert held["event"] == "held" and held["evidence"]["reason"] == d.reason
    assert nd.routing(NAME)["shares"] == {"1": 0.5, "2": 0.5}  # held: nothing moved
    send(160)
    d = advance(NAME, min_requests=40, slo={"p99_slack_ms": 25.0})  # room for a busy machine's tails
    assert d.action == "promote", d.reason
    assert [(r["version"], r["status"]) for r in ledger.in_service(NAME)] == [(2, "serving")]  # crowned at 1.0
    assert ledger.routes(NAME)[-1]["event"] == "promoted" and ledger.routes(NAME)[-1]["evidence"]["action"] == "promote"


def test_the_autopilot_rolls_back_a_slower_candidate(champion):
    Xtr, ytr, Xho, yho = DATA
    slow = Sleepy(model("boosted", Xtr, ytr), 0.03)
    nd.deploy(slow, name=NAME, sample=Xtr, strategy="canary", traffic=0.5, steps=(0.5, 1.0))
    pilot = autopilot(NAME, every=0.5, min_requests=40)
    send(40)
    assert pilot.running and pilot.last.action == "hold"
    send(120)
    poll(lambda: not pilot.running, 60, "the autopilot to decide")
    assert pilot.last.action == "rollback" and "p99 latency" in pilot.last.reason, pilot
    assert pilot.last.evidence["p99_difference_ms"]["lo"] > 20
    assert [(r["version"], r["status"]) for r in ledger.in_service(NAME)] == [(2, "serving")]
    assert ledger.get(NAME, 3)["status"] == "rolled_back"
    last = ledger.routes(NAME)[-1]
    assert last["event"] == "rolled back" and last["evidence"]["action"] == "rollback"
    assert nd.routing(NAME)["shares"] == {"2": 1.0}
