"""The direct path: the generated service answers its own APIs exactly as BentoML's handler would, and is counted."""
import re

import pytest
import requests

import nbdeploy as nd
from tests.models import churn_frame, churn_pipeline

ROW = {"age": 30, "income": 51.5, "plan": "pro", "region": "north"}
BODIES = {
    "one row": {"inputs": [ROW]},
    "three rows": {"inputs": [ROW, {**ROW, "plan": "max"}, {**ROW, "age": 70, "region": "south"}]},
    "open category unseen": {"inputs": [{**ROW, "region": "west"}]},
    "closed category unseen": {"inputs": [{**ROW, "plan": "gold"}]},
    "missing column": {"inputs": [{k: v for k, v in ROW.items() if k != "age"}]},
    "extra column": {"inputs": [{**ROW, "zip": "12345"}]},
    "wrong type": {"inputs": [{**ROW, "income": "lots"}]},
    "null value": {"inputs": [{**ROW, "age": None}]},
    "empty list": {"inputs": []},
    "too many rows": {"inputs": [ROW] * 10_001},
    "no inputs key": {"rows": [ROW]},
    "extra top-level key": {"inputs": [ROW], "debug": True},
    "a list body": [ROW],
}
RAW = {"empty body": b"", "null body": b"null", "broken JSON": b'{"inputs": [',
       "non-UTF-8": b'{"inputs": [{"plan": "\xc3\x28"}]}'}


@pytest.fixture(scope="module")
def pair(monkeypatch_module):
    "The same model served twice: through the direct path (the default) and through BentoML's own handler."
    df, y = churn_frame(seed=11)
    model = churn_pipeline(df, y, 10)
    direct = nd.deploy(model, name="direct", sample=df)
    monkeypatch_module.setenv("NBDEPLOY_FAST_PATH", "0")
    routed = nd.deploy(model, name="routed", sample=df)
    monkeypatch_module.delenv("NBDEPLOY_FAST_PATH")
    yield direct, routed
    direct.stop(); routed.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp: yield mp


def answers(url: str, route: str) -> list:
    "Status and JSON body of every test body posted to `route`."
    out = [requests.post(f"{url}{route}", json=b, timeout=60) for b in BODIES.values()]
    out += [requests.post(f"{url}{route}", data=b, headers={"Content-Type": "application/json"}, timeout=60)
            for b in RAW.values()]
    return [(r.status_code, r.json()) for r in out]


@pytest.mark.parametrize("route", ["/predict", "/predict_proba", "/invocations"])
def test_the_direct_path_answers_as_bentoml_does(pair, route):
    direct, routed = pair
    got, want = answers(direct.url, route), answers(routed.url, route)
    for name, g, w in zip([*BODIES, *RAW], got, want):
        assert g == w, (name, g, w)
    codes = dict(zip([*BODIES, *RAW], (s for s, _ in got)))
    assert codes["one row"] == codes["three rows"] == codes["open category unseen"] == 200
    accepted = ("one row", "three rows", "open category unseen", "extra top-level key")
    assert all(400 <= c < 500 for n, c in codes.items() if n not in accepted)


def test_bentoml_client_and_metrics_see_direct_requests(pair):
    direct, _ = pair
    import bentoml
    with bentoml.SyncHTTPClient(direct.url) as client:
        want = direct.predict(__import__("pandas").DataFrame([ROW])).tolist()
        assert client.predict(inputs=[ROW]) == {"predictions": want}
    for _ in range(25): requests.post(f"{direct.url}/predict", json={"inputs": [ROW]}, timeout=10).raise_for_status()
    requests.post(f"{direct.url}/predict", json={"inputs": []}, timeout=10)
    text = requests.get(f"{direct.url}/metrics", timeout=10).text
    def count(code):
        found = re.findall(rf'bentoml_service_request_total\{{[^}}]*endpoint="/predict"'
                           rf'[^}}]*http_response_code="{code}"[^}}]*\}} ([\d.e+]+)', text)
        return sum(float(v) for v in found)
    assert count(200) >= 26 and count(400) >= 1, text[:2000]
