"""nbdeploy.drift beyond the notebook's cells: the Bento copy imports alone, and the sketch tracks the raw numbers."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbdeploy import drift

SRC = Path(drift.__file__)


def test_copy_imports_without_nbdeploy(tmp_path):
    "As `nbdeploy_drift.py` beside a service, with nbdeploy unimportable, the module loads and works."
    shutil.copy(SRC, tmp_path / "nbdeploy_drift.py")
    code = ("import sys; sys.modules['nbdeploy'] = None\n"
            "import numpy as np, pandas as pd, nbdeploy_drift as d\n"
            "X = pd.DataFrame({'x': np.arange(3000.0), 'c': ['a', 'b', 'c'] * 1000})\n"
            "cur = X.sample(900, random_state=0)\n"
            "r = d.drift_table(d.reference_of(X, predictions=X['c']), cur, predictions=cur['c'])\n"
            "print(r.to_dict()['drifted'], 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sketch_tracks_raw(seed):
    "Over shapes and shifts, the sketch's KS, Wasserstein and Jensen-Shannon stay close to the raw ones."
    rng = np.random.default_rng(seed)
    n, m = 30_000, 1500
    X = pd.DataFrame({"n": rng.normal(size=n), "t": rng.standard_t(3, n), "e": rng.exponential(size=n),
                      "k": rng.integers(0, 40, n), "c": rng.choice(list("abcdef"), n)})
    cur = pd.DataFrame({"n": rng.normal(0.15 * seed, 1, m), "t": rng.standard_t(3, m) * (1 + 0.1 * seed),
                        "e": rng.exponential(1 + 0.1 * seed, m), "k": rng.integers(0, 40 + seed, m),
                        "c": rng.choice(list("abcdef"), m)})
    ref = json.loads(json.dumps(drift.reference_of(X)))  # through JSON, as it travels in a Bento
    sk, raw = drift.drift_table(ref, cur).table, drift.drift_table(X, cur).table
    assert (sk["test"] == raw["test"]).all()
    assert np.allclose(sk["effect"], raw["effect"], atol=0.004), (sk["effect"], raw["effect"])
    ks = raw["kind"] == "numeric"
    assert np.allclose(np.log10(sk["p_value"][ks] + 1e-300), np.log10(raw["p_value"][ks] + 1e-300), atol=0.5)
    assert (sk["drifted"] == raw["drifted"]).all()


def test_new_category_and_nulls():
    "An unseen category drifts (chi-squared's p is 0); nulls and infinities are dropped on both sides."
    X = pd.DataFrame({"c": ["a", "b"] * 2000, "x": np.r_[np.arange(3999.0), np.inf]})
    cur = pd.DataFrame({"c": ["a", "b", "z", None] * 100, "x": [np.nan, 1.0, 2.0, 3.0] * 100})
    for ref in (X, drift.reference_of(X)):
        t = drift.drift_table(ref, cur).table.set_index("column")
        assert t.loc["c", "p_value"] == 0 and t.loc["c", "drifted"]
        assert t.loc["x", "n_reference"] == 3999 and t.loc["x", "n_current"] == 300
