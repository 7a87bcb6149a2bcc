"""Shadow, canary and A/B on the local target behind real nginx (issue 16, items 1-3 and 6): real `bentoml serve`
versions, real captures, a client polling the stable URL through every promotion and rollback."""
import threading
import uuid

import pytest
import requests

import nbdeploy as nd
from nbdeploy import capture, ledger
from nbdeploy.config import subdir
from nbdeploy.endpoint import nginx_available
from nbdeploy.errors import DeployError, InputError
from tests.conftest import poll
from tests.models import churn_frame, churn_pipeline

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed (apt-get install nginx)")
NAME = "evolving"
ROW = {"age": 30, "income": 51.5, "plan": "pro", "region": "north"}


class Poller:
    "A client predicting through the stable URL in a loop; every answer that is not a 200 is kept."
    def __init__(self, url, body=None):
        self.url, self.n, self.failed, self.stopping = url, 0, [], threading.Event()
        self.body = body or {"inputs": [ROW]}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with requests.Session() as s:
            while not self.stopping.is_set():
                try:
                    r = s.post(f"{self.url}/predict", json=self.body, timeout=10)
                    if r.status_code != 200: self.failed.append(f"{r.status_code} {r.text[:200]}")
                except requests.RequestException as e: self.failed.append(repr(e))
                self.n += 1

    def __enter__(self): self.thread.start(); return self
    def __exit__(self, *exc): self.stopping.set(); self.thread.join(15)


def send(url, ids, headers=None):
    "POST one row per id through `url` with that X-Request-ID; every answer must be a 200."
    with requests.Session() as s:
        for i in ids:
            r = s.post(f"{url}/predict", json={"inputs": [ROW]}, headers={"X-Request-ID": i, **(headers or {})})
            assert r.status_code == 200, r.text


def captured(version):
    "The request ids version `version` of NAME captured so far."
    return {r["eventMetadata"]["eventId"] for r in capture.read_records(subdir("capture") / NAME / f"v{version}")}


@pytest.fixture(scope="module")
def bentos():
    "Three Bentos of NAME: two models of one kind and a third trained on other rows."
    df, y = churn_frame(seed=31)
    return [nd.package(churn_pipeline(df, y, n), NAME, sample=df, workers=1) for n in (5, 8, 12)]


@pytest.fixture(scope="module")
def champion(bentos):
    "v1 of NAME serving behind its stable URL."
    dep = nd.deploy(bentos[0], name=NAME)
    yield dep
    for r in ledger.in_service(NAME): nd.Deployment(NAME, r["version"]).stop()


def test_a_canary_takes_its_share_moves_up_its_steps_and_is_crowned_without_a_failed_request(bentos, champion):
    url = champion.url
    with Poller(url) as client:
        cand = nd.deploy(bentos[1], name=NAME, strategy="canary", traffic=0.2)
        assert cand.row["status"] == "canary" and nd.routing(NAME)["shares"] == {"1": 0.8, str(cand.version): 0.2}
        ids = [f"split-{i}" for i in range(1000)]
        send(url, ids)
        got = poll(lambda: (lambda a, b: (a, b) if len(a & set(ids)) + len(b & set(ids)) == 1000 else None)(
            captured(1), captured(cand.version)), what="every split request captured by one version or the other")
        share = len(got[1] & set(ids)) / 1000
        assert 0.16 <= share <= 0.24, share  # binomial sd 1.3 points: well inside 3 sd
        assert not got[0] & got[1] & set(ids)  # each request answered by exactly one version
        test_promotions = nd.promote(NAME)  # the next step above 0.2
        assert test_promotions["shares"][str(cand.version)] == 0.25
        final = nd.promote(NAME, traffic=1.0)
        assert final == {"strategy": "blue-green", "live": cand.version, "shares": {str(cand.version): 1.0},
                         "mirror": None}
    assert client.n > 50 and client.failed == [], client.failed[:5]
    assert nd.deployment(NAME).version == cand.version and ledger.get(NAME, 1)["status"] == "retired"
    assert nd.Deployment(NAME, cand.version).url == url  # the stable URL stays the name's URL
    h = nd.history(NAME)
    assert list(h.event) == ["deployed", "canary", "promoted", "promoted"]
    assert h.shares.iloc[1] == {1: 0.8, cand.version: 0.2} and h.shares.iloc[-1] == {cand.version: 1.0}


def test_a_shadow_sees_every_request_under_the_same_id_and_answers_nobody(bentos, champion):
    live = nd.deployment(NAME)
    shadow = nd.deploy(bentos[2], name=NAME, strategy="shadow")
    assert shadow.row["status"] == "shadow" and nd.routing(NAME)["mirror"] == shadow.version
    ids = [f"mirror-{uuid.uuid4().hex[:8]}-{i}" for i in range(200)]
    send(live.url, ids)
    poll(lambda: set(ids) <= captured(live.version) and set(ids) <= captured(shadow.version),
         what="both versions capturing every mirrored request")
    roles = {v["version"]: (v["role"], v["share"], v["mirror"]) for v in nd.variants(NAME)}
    assert roles == {live.version: ("champion", 1.0, False), shadow.version: ("shadow", 0.0, True)}
    with Poller(live.url) as client:
        nd.rollback(NAME)
    assert client.failed == [], client.failed[:5]
    assert ledger.get(NAME, shadow.version)["status"] == "rolled_back" and shadow.status() == "rolled_back"
    assert nd.routing(NAME)["mirror"] is None and nd.deployment(NAME).version == live.version
    before = len(captured(shadow.version))
    send(live.url, [f"after-{i}" for i in range(20)])
    assert len(captured(shadow.version)) == before  # the shadow is gone, the champion answers alone


def test_a_sticky_split_keeps_each_user_on_one_variant_and_an_ab_test_promotes_the_named_winner(bentos, champion):
    live = nd.deployment(NAME)
    b = nd.deploy(bentos[0], name=NAME, strategy="ab", traffic={f"v{live.version}": 0.5, "new": 0.5},
                  sticky="header:X-User")
    users = [f"user{u}" for u in range(40)]
    for u in users: send(live.url, [f"{u}-req{i}" for i in range(5)], headers={"X-User": u})
    a_ids = poll(lambda: (lambda a, c: (a, c) if len(a) + len(c) >= 200 else None)(
        {i for i in captured(live.version) if "-req" in i}, {i for i in captured(b.version) if "-req" in i}),
        what="every A/B request captured")
    where = {u: {v for v, ids in zip((live.version, b.version), a_ids) if any(i.startswith(f"{u}-") for i in ids)}
             for u in users}
    assert all(len(v) == 1 for v in where.values()), where  # 100% sticky
    assert 8 <= sum(b.version in v for v in where.values()) <= 32  # both variants get users
    with pytest.raises(InputError, match="version="): nd.promote(NAME)
    nd.promote(NAME, version=b.version)
    assert nd.deployment(NAME).version == b.version and ledger.get(NAME, live.version)["status"] == "retired"


def test_refused_and_failed_candidates_leave_the_champion_serving_alone(bentos, champion):
    live = nd.deployment(NAME)
    rows_before = len(ledger.rows(NAME))
    with pytest.raises(InputError, match="traffic="): nd.deploy(bentos[1], name=NAME, strategy="canary", traffic=2)
    with pytest.raises(InputError, match="strategy="): nd.deploy(bentos[1], name=NAME, strategy="sideways")
    assert len(ledger.rows(NAME)) == rows_before  # refused before the ledger recorded anything
    with pytest.raises(DeployError):
        nd.deploy(bentos[1], name=NAME, strategy="canary", timeout=0.001)  # fails its health gate
    failed = ledger.rows(NAME)[0]
    assert failed["status"] == "failed" and nd.routing(NAME)["shares"] == {str(live.version): 1.0}
    assert requests.post(f"{live.url}/predict", json={"inputs": [ROW]}).status_code == 200
    assert [r["version"] for r in ledger.in_service(NAME)] == [live.version]
    with pytest.raises(InputError, match="no candidate"): nd.promote(NAME)
