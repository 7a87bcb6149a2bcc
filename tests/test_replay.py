"""Replay on real local servers: a champion's captured requests sent again to its own Bento (identical answers), to a
different model (disagreements), to a deployment at the original pace, refused for a redacted capture; an ephemeral
server stopped on an interrupt."""
import json
import time

import bentoml
import psutil
import pytest
import requests

import nbdeploy as nd
from nbdeploy import ledger
from nbdeploy.deployer import get_target
from nbdeploy.errors import InputError
from nbdeploy.replay import ephemeral, replay
from tests.conftest import poll
from tests.models import churn_frame, churn_pipeline

N = 40  # requests captured, in two bursts a second apart


def replay_servers(label):
    "The processes of ephemeral servers running under `label`."
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("NBDEPLOY_DEPLOYMENT_NAME") == label and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error: pass
    return out


def records_of(df):
    return json.loads(df.to_json(orient="records"))


def captured(dep):
    row = dep.row
    return get_target(row["target"]).capture_records(row)


@pytest.fixture(scope="module")
def champion():
    "A deployment with N captured requests to /predict_proba (3 rows each), and one refused (a /predict)."
    df, y = churn_frame()
    pipe = churn_pipeline(df, y)
    dep = nd.deploy(pipe, name="replayed", sample=df)
    rows = records_of(df)
    for i in range(N):
        if i == N // 2: time.sleep(1.0)  # a gap speed=1.0 keeps
        r = requests.post(f"{dep.url}/predict_proba", json={"inputs": rows[3 * i:3 * i + 3]},
                          headers={"X-Request-ID": f"rp-{i}"}, timeout=30)
        assert r.status_code == 200
    r = requests.post(f"{dep.url}/predict", json={"inputs": [{"age": 30}]}, headers={"X-Request-ID": "rp-bad"})
    assert r.status_code == 400
    poll(lambda: len(captured(dep)) >= N + 1, 30, "the capture")
    yield pipe, df, y, dep
    dep.stop()


def test_replay_to_the_same_version_is_identical(champion):
    pipe, df, y, dep = champion
    cmp = replay("replayed", dep.row["bento"])  # the champion's own Bento, started ephemeral
    rp = cmp.replay
    assert (rp["requests"], rp["identical"], rp["failed"], rp["refused"]) == (N + 1, N + 1, 0, 0)
    assert rp["rate"] > 10 and rp["candidate"]["name"] == "replayed-replay"
    paired = cmp.to_dict()["paired"]  # every row answered alike, every probability to the last digit
    assert (paired["requests"], paired["agreement"], paired["max_delta"], paired["identical"]) == (N + 1, 1, 0, True)
    assert not replay_servers("replayed-replay")  # stopped on the way out
    assert not any(r["name"] == "replayed-replay" for r in ledger.rows())  # never in the ledger


def test_replay_to_a_different_model_disagrees(champion):
    pipe, df, y, dep = champion
    other = churn_pipeline(df, 1 - y, n_estimators=3)  # trained on the opposite labels
    cmp = replay("replayed", other, limit=10)
    rp = cmp.replay
    assert rp["requests"] == 10 and rp["failed"] == 0 and rp["identical"] < 10
    assert cmp.agreement < 1.0 and cmp.paired["max_delta"] > 0.5  # opposite labels: some rows answered otherwise
    assert "replayed-replay" not in {b.tag.name for b in bentoml.bentos.list()}  # packaged for it, deleted after
    assert not replay_servers("replayed-replay")


def test_replay_to_a_deployment_at_the_original_pace(champion):
    pipe, df, y, dep = champion
    target = nd.deploy(dep.row["bento"], name="replay-target", redact=["income"])
    try:
        cmp = replay("replayed", "replay-target", speed=1.0)
        assert cmp.replay["seconds"] >= 1.0  # the gap between the two bursts, kept
        assert cmp.replay["identical"] == N + 1 and cmp.replay["candidate"] == {"name": "replay-target",
                                                                               "version": target.version}
        sent = {f"rp-{i}" for i in range(N)}  # each request went with its original X-Request-ID
        poll(lambda: sent <= {r["eventMetadata"]["eventId"] for r in captured(target)}, 30, "the ids in its capture")
        # the target's own capture left `income` out: its traffic cannot be replayed faithfully
        with pytest.raises(InputError, match=r"replay-target v1 was captured with redact=\['income'\]"):
            replay("replay-target", dep.row["bento"])
    finally: target.stop()


def test_an_ephemeral_server_stops_on_an_interrupt(champion):
    pipe, df, y, dep = champion
    with pytest.raises(KeyboardInterrupt):
        with ephemeral(dep.row["bento"], "replay-interrupted") as row:
            assert requests.get(f"{row['url']}/readyz", timeout=5).status_code == 200
            raise KeyboardInterrupt
    assert not replay_servers("replay-interrupted")


def test_bad_arguments_are_refused(champion):
    with pytest.raises(InputError, match="speed="): replay("replayed", "replayed", speed=0)
    with pytest.raises(InputError, match="a replay candidate is"): replay("replayed", object())
    with pytest.raises(nd.NotFoundError, match="has no version in service"): replay("never-deployed", "replayed")
