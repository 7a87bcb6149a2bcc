"""The readiness gate in front of deploy: a failing model is refused unless forced, and the verdict travels."""
import json
import os
import subprocess

import bentoml
import pytest
import requests
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import train_test_split

import nbdeploy as nd
from nbdeploy import ledger
from tests.models import churn_frame, churn_pipeline


@pytest.fixture(scope="module")
def data():
    df, y = churn_frame(n=400, seed=5)
    return train_test_split(df, y, test_size=0.3, random_state=0, stratify=y)


def test_a_model_no_better_than_the_baseline_is_refused_then_forced(data):
    X_train, X_test, y_train, y_test = data
    dummy = DummyClassifier(strategy="most_frequent").fit(X_train, y_train)
    with pytest.raises(nd.CheckFailed, match="force=True"):
        nd.deploy(dummy, name="gated", sample=X_train, X_test=X_test, y_test=y_test)
    assert ledger.rows("gated") == []  # refused before anything was started or recorded
    dep = nd.deploy(dummy, name="gated", sample=X_train, X_test=X_test, y_test=y_test, force=True)
    row = dep.row
    assert row["verdict"] == "fail" and row["forced"] == 1
    assert any("forced" in (e["detail"] or "") for e in ledger.events("gated"))
    meta = requests.get(f"{dep.url}/metadata", timeout=10).json()
    assert meta["readiness"]["verdict"] == "fail"
    bento = bentoml.get(row["bento"])
    assert bento.info.labels["nbdeploy.verdict"] == "fail"
    with pytest.raises(nd.CheckFailed):  # the Bento carries its verdict: deploying it again is gated too
        nd.deploy(bento, name="gated")
    dep.stop()


def test_a_good_model_ships_with_its_report_and_card(data):
    X_train, X_test, y_train, y_test = data
    model = churn_pipeline(X_train, y_train)
    report = nd.check(model, X_test, y_test, X_train=X_train, y_train=y_train, intended_use="Test of the gate.")
    assert report.verdict in ("pass", "warn")
    bento = nd.package(model, "shipped", sample=X_train, report=report)
    src = bento.path_of("src")
    assert json.load(open(os.path.join(src, "readiness.json")))["verdict"] == report.verdict
    assert "Test of the gate." in open(os.path.join(src, "MODEL_CARD.md")).read()
    dep = nd.deploy(bento, name="shipped")
    meta = requests.get(f"{dep.url}/metadata", timeout=10).json()
    assert meta["readiness"]["verdict"] == report.verdict and meta["card"]
    assert dep.row["verdict"] == report.verdict and dep.row["forced"] == 0
    dep.stop()


def test_the_console_gate_runs_over_a_bento(data, tmp_path):
    X_train, X_test, y_train, y_test = data
    X_test.assign(churned=y_test.values).to_csv(tmp_path / "test.csv", index=False)
    good = nd.package(churn_pipeline(X_train, y_train), "cli-good", sample=X_train)
    bad = nd.package(DummyClassifier(strategy="most_frequent").fit(X_train, y_train), "cli-bad", sample=X_train)
    run = lambda tag: subprocess.run(["nbdeploy", "check", str(tag), str(tmp_path / "test.csv"), "--target", "churned",
                                      "--quiet"], capture_output=True, text=True, timeout=300)
    ok, failing, missing = run(good.tag), run(bad.tag), run("no-such-bento:v1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert missing.returncode == 2 and "no-such-bento" in missing.stdout + missing.stderr
