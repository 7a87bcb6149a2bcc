"""nd.batch: local chunks (CSV, Parquet) and Apache Spark (pyspark, local mode) predict as the model does."""
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from nbdeploy.scorer import batch
from nbdeploy.errors import InputError
from nbdeploy.packager import package
from nbdeploy.progress import progress_style


def _data(n=3000, seed=0):
    "A frame with numbers, a category and an id the model never sees."
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"size": rng.normal(size=n), "weight": rng.normal(size=n) * 3,
                      "colour": pd.Categorical(rng.choice(["red", "green", "blue"], size=n))})
    y = ((X["size"] > 0) ^ (X["colour"] == "red")).astype(int)
    return X, y


@pytest.fixture(scope="module")
def scored():
    "A fitted pipeline with a categorical column, its Bento, and an input table with ids."
    X, y = _data()
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])], remainder="passthrough")
    model = make_pipeline(pre, RandomForestClassifier(n_estimators=20, random_state=0)).fit(X, y)
    bento = package(model, name="batch-demo", sample=X.head(200))
    table = X.assign(id=np.arange(len(X)), colour=X["colour"].astype(str))[["id", "size", "weight", "colour"]]
    return model, bento, X, table


@pytest.fixture(scope="module")
def spark():
    "One local Spark session for the module; stopped at the end (its JVM by the PID pyspark recorded)."
    pytest.importorskip("pyspark")
    if not shutil.which("java"): pytest.skip("Spark needs a Java runtime: apt-get install -y openjdk-17-jre-headless")
    from nbdeploy.scorer import spark_session, stop_spark
    s = spark_session("local[2]")
    yield s
    stop_spark(s)


def test_local_csv_and_parquet_in_chunks(scored, tmp_path, capsys):
    model, bento, X, table = scored
    table.to_csv(tmp_path/"in.csv", index=False)
    table.to_parquet(tmp_path/"in.parquet", index=False)
    with progress_style("tqdm"):  # as on a terminal
        r = batch(bento, tmp_path/"in.csv", tmp_path/"out.csv", chunksize=700, proba=True)
    assert r["rows"] == len(table) and r["engine"] == "local"
    assert "scoring in.csv" in capsys.readouterr().err  # the progress bar
    out = pd.read_csv(tmp_path/"out.csv")
    assert list(out["id"]) == list(table["id"])
    assert (out["prediction"].to_numpy() == model.predict(X)).all()
    assert np.allclose(out[["proba_0", "proba_1"]].to_numpy(), model.predict_proba(X))
    r = batch(bento, tmp_path/"in.parquet", tmp_path/"out.parquet", chunksize=1000)
    assert "\r" not in capsys.readouterr().err  # into a pipe or a log, no bar is drawn
    out2 = pd.read_parquet(tmp_path/"out.parquet")
    assert r["rows"] == len(table) and (out2["prediction"] == out["prediction"]).all()
    # a bare model works too, from its feature_names_in_
    r = batch(model, tmp_path/"in.parquet", tmp_path/"bare.csv")
    assert (pd.read_csv(tmp_path/"bare.csv")["prediction"] == out["prediction"]).all()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_spark_equals_local(scored, spark, tmp_path, fmt):
    model, bento, X, table = scored
    src = tmp_path/f"in.{fmt}"
    (table.to_parquet if fmt == "parquet" else table.to_csv)(src, index=False)
    local = batch(bento, src, tmp_path/f"local.{fmt}", chunksize=500, proba=True)
    dist = batch(bento, src, tmp_path/f"spark.{fmt}", engine="spark", proba=True)
    assert local["rows"] == dist["rows"] == len(table) and dist["engine"] == "spark"
    read = pd.read_parquet if fmt == "parquet" else (
        lambda p: pd.concat(pd.read_csv(f) for f in sorted(p.glob("part-*.csv"))) if p.is_dir() else pd.read_csv(p))
    a = read(tmp_path/f"local.{fmt}").sort_values("id").reset_index(drop=True)
    b = read(tmp_path/f"spark.{fmt}").sort_values("id").reset_index(drop=True)
    assert list(a["id"]) == list(b["id"]) == list(range(len(table)))
    assert (a["prediction"].to_numpy() == b["prediction"].to_numpy()).all()
    assert np.allclose(a[["proba_0", "proba_1"]].to_numpy(), b[["proba_0", "proba_1"]].to_numpy())


def test_bad_input_says_what_to_do(scored, tmp_path):
    model, bento, X, table = scored
    table.drop(columns=["weight"]).to_csv(tmp_path/"short.csv", index=False)
    with pytest.raises(InputError, match=r"lacks column\(s\) \['weight'\]"):
        batch(bento, tmp_path/"short.csv", tmp_path/"o.csv")
    table.to_csv(tmp_path/"in.csv", index=False)
    with pytest.raises(InputError, match="engine must be"):
        batch(bento, tmp_path/"in.csv", tmp_path/"o.csv", engine="dask")
    bare = RandomForestClassifier().fit(X[["size"]].to_numpy(), [0, 1] * 1500)
    with pytest.raises(InputError, match="features="): batch(bare, tmp_path/"in.csv", tmp_path/"o.csv")
