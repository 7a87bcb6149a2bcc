"""Time nd.check on 100,000 test rows x 20 features (plus 100,000 training rows), for benchmarks/.

Run by hand:  python benchmarks/check.py [--rows 100000] [--out benchmarks/results/check.json]
Two models: a bare RandomForest (100 trees) on 20 numeric columns, and a Pipeline (ColumnTransformer with
one-hot categories + HistGradientBoosting) on 17 numeric and 3 string columns; both with a sensitive attribute.
"""
import argparse
import json
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from nbdeploy.checker import check


def frame(n, seed=0):
    X, y = make_classification(2 * n, 20, n_informative=8, random_state=seed)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)])
    for i, c in enumerate(["x17", "x18", "x19"]):
        df[c] = pd.cut(df[c], 5, labels=list("abcde")).astype(str)
    group = np.where(np.random.default_rng(seed).random(2 * n) < 0.3, "g1", "g0")
    return df, pd.Series(y), pd.Series(group, name="group")


def run(rows):
    warnings.filterwarnings("ignore")
    df, y, g = frame(rows)
    tr, te = slice(0, rows), slice(rows, 2 * rows)
    num = df.drop(columns=["x17", "x18", "x19"]).assign(x17=np.random.default_rng(1).normal(size=2 * rows),
                                                         x18=0.0, x19=np.random.default_rng(2).normal(size=2 * rows))
    out = {}
    t = time.perf_counter()
    rf = RandomForestClassifier(100, n_jobs=-1, random_state=0, min_samples_leaf=5).fit(num[tr], y[tr])
    fit_rf = time.perf_counter() - t
    cats = ["x17", "x18", "x19"]
    enc = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), cats), remainder="passthrough")
    pipe = make_pipeline(enc, HistGradientBoostingClassifier(random_state=0)).fit(df[tr], y[tr])
    for name, m, X in (("random_forest_numeric", rf, num), ("pipeline_hgb_categorical", pipe, df)):
        t = time.perf_counter()
        r = check(m, X[te].reset_index(drop=True), y[te].reset_index(drop=True), X[tr], y[tr],
                  sensitive=g[te].reset_index(drop=True), progress=False)
        out[name] = dict(seconds=round(time.perf_counter() - t, 2), timings=r.info["timings"], verdict=r.verdict,
                         explainer=r.explanations.get("shap", {}).get("explainer"), notes=r.notes)
    return dict(rows_test=rows, rows_train=rows, features=20, cores=os.cpu_count(), python=platform.python_version(),
                rf_fit_seconds=round(fit_rf, 2), results=out)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--out")
    a = p.parse_args()
    res = run(a.rows)
    print(json.dumps(res, indent=1))
    if a.out: open(a.out, "w").write(json.dumps(res, indent=1))
