"""The readiness check: each task type, Pipelines with categories, fairness == fairlearn, bad input, the CLI."""
import json
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                               equalized_odds_difference, selection_rate)
from sklearn import metrics as skm
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklego.datasets import load_arrests, load_hearts

from nbdeploy.checker import Report, check
from nbdeploy.check_explain import focus
from nbdeploy.errors import InputError

FAST = dict(progress=False, lime_rows=2, shap_rows=60)


def split(X, y, seed=0):
    return train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y if y.nunique() < 20 else None)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    Xtr, Xte, ytr, yte = split(X, y)
    rf = RandomForestClassifier(60, random_state=0).fit(Xtr, ytr)
    return rf, Xtr, Xte, ytr, yte


@pytest.fixture(scope="module")
def cancer_report(cancer):
    rf, Xtr, Xte, ytr, yte = cancer
    return check(rf, Xte, yte, Xtr, ytr, intended_use="tests", **FAST)


@pytest.fixture(scope="module")
def arrests():
    df = load_arrests(as_frame=True)
    X, y = df.drop(columns="released"), df.released
    Xtr, Xte, ytr, yte = split(X, y)
    cat, num = ["sex", "employed", "citizen"], ["year", "age", "checks"]
    enc = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), cat), (StandardScaler(), num))
    pipe = make_pipeline(enc, LogisticRegression(max_iter=1000, class_weight="balanced"))
    pipe.fit(Xtr.drop(columns="colour"), ytr)        # colour is not a model input
    return pipe, Xtr, Xte, ytr, yte


# --- each task type -------------------------------------------------------------------------------------------

def test_binary_metrics_equal_sklearn_and_pass(cancer, cancer_report):
    rf, Xtr, Xte, ytr, yte = cancer
    r = cancer_report
    assert r.task == "binary" and r.primary_metric == "roc_auc" and r.verdict == "pass", r.reasons
    p = rf.predict_proba(Xte)[:, 1]
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(yte, p))
    assert r.metrics["log_loss"] == pytest.approx(skm.log_loss(yte, rf.predict_proba(Xte)))
    assert r.metrics["brier"] == pytest.approx(skm.brier_score_loss(yte, p))
    assert r.metrics["f1"] == pytest.approx(skm.f1_score(yte, rf.predict(Xte)))
    assert r.baseline["roc_auc"] == 0.5 and r.baseline["accuracy"] == pytest.approx(max(yte.mean(), 1 - yte.mean()))
    assert r.train_metrics["accuracy"] >= r.metrics["accuracy"] and "calibration" in r.plots


def test_shap_additivity_for_tree_models(cancer, cancer_report):
    rf, *_ = cancer
    sv = cancer_report.artifacts["shap"]
    v, base = focus(sv["values"], sv["base_values"], "binary")
    assert cancer_report.explanations["shap"]["explainer"] == "tree"
    np.testing.assert_allclose(v.sum(1) + base, rf.predict_proba(sv["rows"])[:, 1], atol=1e-8)
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    gbr = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(Xd[:300], yd[:300])
    r = check(gbr, Xd[300:], yd[300:], Xd[:300], yd[:300], **FAST)
    sv = r.artifacts["shap"]
    np.testing.assert_allclose(sv["values"].sum(1) + sv["base_values"], gbr.predict(sv["rows"]), rtol=1e-6, atol=1e-6)


def test_multiclass(cancer):
    X, y = load_wine(return_X_y=True, as_frame=True)
    Xtr, Xte, ytr, yte = split(X, y)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Xtr, ytr)
    r = check(lr, Xte, yte, Xtr, ytr, **FAST)
    assert r.task == "multiclass" and r.primary_metric == "balanced_accuracy" and r.verdict in ("pass", "warn")
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(yte, lr.predict_proba(Xte), multi_class="ovr"))
    assert r.metrics["f1"] == pytest.approx(skm.f1_score(yte, lr.predict(Xte), average="macro"))
    assert set(r.explanations["shap"]["importance"]) == set(X.columns)
    assert r.explanations["lime"][0]["label"] in (0, 1, 2)


def test_regression():
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    m = Ridge(alpha=0.1).fit(Xd[:300], yd[:300])
    r = check(m, Xd[300:], yd[300:], Xd[:300], yd[:300], **FAST)
    assert r.task == "regression" and r.primary_metric == "r2"
    assert r.metrics["rmse"] == pytest.approx(skm.root_mean_squared_error(yd[300:], m.predict(Xd[300:])))
    assert r.metrics["mae"] == pytest.approx(skm.mean_absolute_error(yd[300:], m.predict(Xd[300:])))
    assert r.baseline["r2"] <= 0 and r.metrics["r2"] > 0.3 and r.explanations["shap"]["explainer"] == "linear"
    assert r.verdict in ("pass", "warn"), r.reasons


def test_bare_arrays_get_f_names_and_classifier_without_proba():
    X, y = load_breast_cancer(return_X_y=True)
    svc = make_pipeline(StandardScaler(), LinearSVC()).fit(X[:400], y[:400])
    r = check(svc, X[400:], y[400:], X[:400], y[:400], sensitive=(X[400:, 0] > 14).astype(int), **FAST)
    assert r.info["columns"][:2] == ["f0", "f1"] and r.primary_metric == "balanced_accuracy"
    assert "roc_auc" not in r.metrics
    assert "sensitive" in r.fairness["attributes"]


# --- Pipelines with categorical columns ----------------------------------------------------------------------

def test_pipeline_with_categories_explained_on_raw_columns():
    df = load_hearts(as_frame=True)
    X, y = df.drop(columns="target"), df.target
    Xtr, Xte, ytr, yte = split(X, y)
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["thal", "cp"]), remainder=StandardScaler()),
                         RandomForestClassifier(60, random_state=0)).fit(Xtr, ytr)
    r = check(pipe, Xte, yte, Xtr, ytr, **FAST)
    imp = r.explanations["shap"]["importance"]
    assert set(imp) == set(X.columns) and r.explanations["shap"]["explainer"] == "tree"
    sv = r.artifacts["shap"]                    # grouped values still add up to the pipeline's probability
    v, b = focus(sv["values"], sv["base_values"], "binary")
    np.testing.assert_allclose(v.sum(1) + b, pipe.predict_proba(sv["rows"])[:, 1], atol=1e-8)
    lime = r.explanations["lime"]
    assert any(w[0].startswith(("thal=", "cp=")) for l in lime for w in l["weights"]) or lime
    # OneHotEncoder without handle_unknown="ignore" crashes on a new category: a warning that says what to do
    assert "thal" in r.robustness["unseen_categories"]["crashes"]
    assert any("handle_unknown" in m for m in r.reasons) and r.verdict == "warn"


def test_pipeline_with_string_categories_and_lime(arrests):
    pipe, Xtr, Xte, ytr, yte = arrests
    r = check(pipe, Xte, yte, Xtr, ytr, sensitive="colour", **FAST)
    assert "colour" not in r.info["columns"] and set(r.explanations["shap"]["importance"]) == set(r.info["columns"])
    assert r.info["positive_class"] == "Yes" and not r.robustness["unseen_categories"]["crashes"]
    assert any(w[0].startswith(("sex=", "employed=", "citizen=")) for l in r.explanations["lime"] for w in l["weights"])


def test_mixed_dtypes_bool_category_and_gaps():
    from sklearn.ensemble import HistGradientBoostingClassifier
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n), "flag": rng.random(n) < 0.5,
                       "cat": pd.Categorical(rng.choice(["x", "y", "z"], n))})
    df.loc[rng.random(n) < 0.1, "a"] = np.nan
    y = np.where(df.a.fillna(0) + (df.cat == "x") > 0.3, "hi", "lo")
    hgb = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(df, y)
    r = check(hgb, df, y, sensitive=rng.choice(["u", "v", None], n), progress=False, lime_rows=1, shap_rows=20)
    assert r.verdict in ("pass", "warn") and set(r.explanations["shap"]["importance"]) == set(df.columns)
    assert "missing" in {row["group"] for row in r.fairness["attributes"]["sensitive"]["by_group"]}
    assert not r.robustness["missing"]["crashes"] and json.loads(r.to_json())["data"]["nulls"]["a"] > 0


# --- fairness equals fairlearn --------------------------------------------------------------------------------

def test_fairness_numbers_equal_fairlearn(arrests):
    pipe, Xtr, Xte, ytr, yte = arrests
    S = Xte[["colour", "sex"]].reset_index(drop=True)
    r = check(pipe, Xte, yte, Xtr, ytr, sensitive=S, progress=False, lime_rows=0, shap_rows=0)
    y01 = (yte.to_numpy() == "Yes").astype(int)
    p01 = (pipe.predict(Xte) == "Yes").astype(int)
    for name, sf in {"colour": S.colour, "sex": S.sex, "colour x sex": S}.items():
        a = r.fairness["attributes"][name]
        assert a["demographic_parity_difference"] == demographic_parity_difference(y01, p01, sensitive_features=sf)
        assert a["demographic_parity_ratio"] == demographic_parity_ratio(y01, p01, sensitive_features=sf)
        assert a["equalized_odds_difference"] == equalized_odds_difference(y01, p01, sensitive_features=sf)
    mf = MetricFrame(metrics=selection_rate, y_true=y01, y_pred=p01, sensitive_features=S.colour)
    got = {row["group"]: row["selection_rate"] for row in r.fairness["attributes"]["colour"]["by_group"]}
    assert got == pytest.approx(mf.by_group.to_dict())
    # the balanced model selects Black arrestees for release far less often: the four-fifths gate fails
    assert r.verdict == "fail" and any("demographic_parity_ratio for colour" in m for m in r.reasons)


def test_fairness_as_series_and_as_column_name_agree(arrests):
    pipe, Xtr, Xte, ytr, yte = arrests
    kw = dict(progress=False, lime_rows=0, shap_rows=0)
    a = check(pipe, Xte, yte, sensitive="colour", **kw).fairness["attributes"]["colour"]
    b = check(pipe, Xte, yte, sensitive=Xte["colour"].to_numpy(), **kw).fairness["attributes"]["sensitive"]
    assert a["demographic_parity_ratio"] == b["demographic_parity_ratio"]


# --- gates ----------------------------------------------------------------------------------------------------

def test_a_model_that_does_not_beat_the_baseline_fails(cancer):
    _, Xtr, Xte, ytr, yte = cancer
    r = check(DummyClassifier(strategy="most_frequent").fit(Xtr, ytr), Xte, yte, Xtr, ytr, **FAST)
    assert r.verdict == "fail" and any("baseline" in m for m in r.reasons)
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    flat = Ridge(alpha=1e9).fit(Xd[:300], yd[:300])
    assert check(flat, Xd[300:], yd[300:], Xd[:300], yd[:300], **FAST).verdict == "fail"


def test_thresholds_override_and_overfitting_warning(cancer):
    rf, Xtr, Xte, ytr, yte = cancer
    assert check(rf, Xte, yte, thresholds={"roc_auc": 0.9999}, **FAST).verdict == "fail"
    r = check(rf, Xte, yte, thresholds={"accuracy": {"warn": 0.999}}, **FAST)
    assert r.verdict == "warn" and r.reasons[0].startswith("accuracy")
    rng = np.random.default_rng(0)
    Xn = pd.DataFrame(rng.normal(size=(600, 5)), columns=list("abcde"))
    yn = ((Xn.a + rng.normal(scale=1.5, size=600)) > 0).astype(int)
    tree = DecisionTreeClassifier(random_state=0).fit(Xn[:400], yn[:400])
    r = check(tree, Xn[400:], yn[400:], Xn[:400], yn[:400], thresholds={"roc_auc": None}, **FAST)
    assert any("overfitting" in m for m in r.reasons), r.reasons


# --- bad input ------------------------------------------------------------------------------------------------

class NoPredict:
    def fit(self, X, y): return self


BAD = {
    "mismatched lengths": (lambda m, X, y: check(m, X, y[:-5]), ["X_test", "y_test"]),
    "sensitive of the wrong length": (lambda m, X, y: check(m, X, y, sensitive=np.zeros(len(X) - 1)),
                                      ["sensitive", "per test row"]),
    "sensitive column missing": (lambda m, X, y: check(m, X, y, sensitive="no_such_column"), ["not in X_test"]),
    "model without predict": (lambda m, X, y: check(NoPredict(), X, y), ["predict"]),
    "target with one class": (lambda m, X, y: check(m, X, pd.Series(np.ones(len(X), dtype=int))), ["one class"]),
    "NaN in y": (lambda m, X, y: check(m, X, y.astype(float).where(np.arange(len(y)) != 3)), ["missing value"]),
    "y_train without X_train": (lambda m, X, y: check(m, X, y, y_train=y), ["X_train"]),
    "train lengths": (lambda m, X, y: check(m, X, y, X_train=X, y_train=y[:10]), ["X_train", "y_train"]),
    "wrong columns": (lambda m, X, y: check(m, X.iloc[:, :5], y), ["lacks column"]),
    "bad threshold": (lambda m, X, y: check(m, X, y, thresholds={"roc_auc": "high"}), ["threshold"]),
    "lime row out of range": (lambda m, X, y: check(m, X, y, lime_rows=[10_000], shap_rows=0), ["lime_rows"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_an_nbdeploy_error_that_says_what_to_do(cancer, case):
    rf, _, Xte, _, yte = cancer
    f, words = BAD[case]
    with pytest.raises(InputError) as e: f(rf, Xte, yte)
    assert all(w in str(e.value) for w in words), str(e.value)


# --- the report -----------------------------------------------------------------------------------------------

def test_report_serialises_renders_and_summarises(cancer_report, tmp_path):
    r = cancer_report
    d = json.loads(r.to_json())
    assert d["verdict"] == r.verdict and "artifacts" not in d
    assert Report.from_dict(d).to_dict() == r.to_dict()
    h = r._repr_html_()
    assert "data:image/png;base64," in h and "PASS" in h and "<img" in h
    card = r.model_card()
    for s in ("# Model card", "## Intended use", "tests", "## Metrics", "## Limitations"): assert s in card
    s = r.summary()
    assert s["verdict"] == "pass" and s["task"] == "binary" and "roc_auc" in s["metrics"] and len(json.dumps(s)) < 2000
    for suf in ("json", "html", "md"): assert r.save(tmp_path / f"r.{suf}").stat().st_size > 500
    assert Report.load(tmp_path / "r.json").verdict == "pass"


def test_a_500_row_check_explains_a_bounded_sample():
    "SHAP explains at most its row budget, whatever the test set's size (its speed is in benchmarks/check.py)."
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    Xb = pd.concat([X] * 2, ignore_index=True)
    yb = pd.concat([y] * 2, ignore_index=True)
    rf = RandomForestClassifier(100, random_state=0).fit(Xb[500:], yb[500:])
    r = check(rf, Xb[:500], yb[:500], Xb[500:], yb[500:], progress=True)
    assert r.explanations["shap"]["rows"] == 200


# --- the command line -----------------------------------------------------------------------------------------

def run_cli(*args):
    code = "import sys; from nbdeploy.cli import main; sys.exit(main(['check', *sys.argv[1:]]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_exit_codes(arrests, tmp_path):
    pipe, Xtr, Xte, ytr, yte = arrests
    joblib.dump(pipe, tmp_path / "m.joblib")
    Xte.assign(released=yte).to_csv(tmp_path / "test.csv", index=False)
    Xtr.assign(released=ytr).to_csv(tmp_path / "train.csv", index=False)
    base = [tmp_path / "m.joblib", tmp_path / "test.csv", "--target", "released", "--quiet",
            "--lime-rows", "1", "--shap-rows", "30"]
    ok = run_cli(*base, "--train", tmp_path / "train.csv", "--out", tmp_path / "r.json", "--out", tmp_path / "r.html")
    assert ok.returncode == 0 and ok.stdout.startswith(("PASS", "WARN")), ok.stdout + ok.stderr
    assert json.loads((tmp_path / "r.json").read_text())["task"] == "binary" and (tmp_path / "r.html").exists()
    unfair = run_cli(*base, "--sensitive", "colour")
    assert unfair.returncode == 1 and unfair.stdout.startswith("FAIL") and "demographic_parity_ratio" in unfair.stdout
    (tmp_path / "th.yaml").write_text("demographic_parity_ratio: null\nequalized_odds_difference: null\n")
    assert run_cli(*base, "--sensitive", "colour", "--thresholds", tmp_path / "th.yaml").returncode == 0
    bad = run_cli(tmp_path / "m.joblib", tmp_path / "test.csv", "--target", "nope", "--quiet")
    assert bad.returncode == 2 and "no column 'nope'" in bad.stderr
    assert run_cli(tmp_path / "missing.joblib", tmp_path / "test.csv", "--target", "released").returncode == 2
    assert run_cli(tmp_path / "m.joblib").returncode == 2
