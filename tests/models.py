"""Small real models and data the tests deploy."""
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler


def churn_frame(n=400, seed=0):
    "A churn-like frame with integer, float and two categorical columns, and its target."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(50, 10, n).round(2),
                       "plan": rng.choice(["basic", "pro", "max"], n), "region": rng.choice(["north", "south"], n)})
    y = ((df.age > 45) ^ (df.plan == "max")).astype(int)
    return df, y


def churn_pipeline(df, y, n_estimators=30):
    "A ColumnTransformer + GradientBoosting pipeline: `plan` is closed (ordinal), `region` open (one-hot, ignore)."
    ct = make_column_transformer((OrdinalEncoder(), ["plan"]), (OneHotEncoder(handle_unknown="ignore"), ["region"]),
                                 (StandardScaler(), ["age", "income"]))
    return make_pipeline(ct, GradientBoostingClassifier(n_estimators=n_estimators, random_state=0)).fit(df, y)


def cancer_forest(n_estimators=20):
    "A bare RandomForest on the breast-cancer numpy arrays, with the arrays."
    X, y = load_breast_cancer(return_X_y=True)
    return RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(X, y), X, y


class SlowModel:
    "A classifier whose `predict` sleeps for the largest `wait` (seconds) among the rows it is given."
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        import time
        time.sleep(float(X["wait"].max()))
        return np.zeros(len(X), dtype=int)
