"""Drift: speed on 1M rows x 20 columns, detection power, false alarms and the big-n case; nbdeploy and Evidently.

Run by hand:  python benchmarks/drift.py [--rows 1000000] [--windows 200]
                  [--evidently-python /tmp/w/evvenv/bin/python] [--evidently-rows 1000000] [--out results.json]
The data: 16 numeric columns (normal at various scales, two lognormal, one integer count) and 4 categorical ones
(3 to 12 categories). The reference is `--rows` rows; nbdeploy compares against its `reference_of` sketch (and,
for speed, against the raw frame too). Evidently 0.7 does not import with pandas 3, so its half runs in a
separate interpreter (see benchmarks/requirements-evidently.txt) through benchmarks/evidently_drift.py, on the
same data (same generator, same seeds). The simulated figures use a 100,000-row reference for both tools, and
again a 1,000-row one (raw rows for both), where Evidently's default tests are p-values.
"""
import argparse
import json
import os
import platform
import subprocess
import time
import tracemalloc

import numpy as np
import pandas as pd

SHIFT = 0.25  # the mean shift, in standard deviations of the shifted column (x0)
WINDOW = 2000  # current rows per simulated window
SIM_REF = 100_000  # reference rows for the simulated figures
SMALL_REF = 1000  # a small reference, where Evidently switches to p-value tests (KS, chi-squared, Z)


def frame(n: int, seed: int) -> pd.DataFrame:
    "n rows of the benchmark's 20 columns, drawn with `seed`."
    rng = np.random.default_rng(seed)
    cols = {f"x{i}": rng.normal(10 * i, 1 + i, n) for i in range(13)}
    cols["x13"], cols["x14"] = rng.lognormal(0, 1, n), rng.lognormal(3, 0.5, n)
    cols["x15"] = rng.poisson(30, n).astype(float)
    for i, k in enumerate((3, 5, 8, 12)):
        p = np.arange(1, k + 1, dtype=float)
        cols[f"c{i}"] = rng.choice([f"v{j}" for j in range(k)], n, p=p / p.sum())
    return pd.DataFrame(cols)


def shifted(n: int, seed: int) -> pd.DataFrame:
    "A window where x0's mean moved by SHIFT standard deviations."
    df = frame(n, seed)
    df["x0"] += SHIFT * 1.0  # x0 ~ N(0, 1)
    return df


def peak_mb(f) -> tuple[float, object]:
    "Peak traced allocation (MB) while running f(), and its result."
    tracemalloc.start()
    out = f()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20, out


def ours(rows: int, windows: int) -> dict:
    "nbdeploy's figures."
    from nbdeploy import drift
    out = {}
    ref_df, cur = frame(rows, 0), frame(rows, 1)
    t = time.perf_counter()
    ref = drift.reference_of(ref_df)
    out["reference_of_s"] = time.perf_counter() - t
    out["reference_kb"] = len(json.dumps(ref)) / 1024
    drift.drift_table(ref, cur.iloc[:1000])  # scipy's import, once
    t = time.perf_counter()
    r = drift.drift_table(ref, cur)
    out["speed_s"] = time.perf_counter() - t
    out["peak_mb"] = peak_mb(lambda: drift.drift_table(ref, cur))[0]
    out["big_n_flagged"] = int(r.table["drifted"].sum())
    out["big_n_evidently_rule_flagged"] = int(r.table["evidently_drifted"].sum())
    t = time.perf_counter()
    raw = drift.drift_table(ref_df, cur)
    out["speed_raw_s"] = time.perf_counter() - t
    out["big_n_flagged_raw"] = int(raw.table["drifted"].sum())
    del ref_df, cur
    sim = drift.reference_of(frame(SIM_REF, 0))
    hits = [bool(drift.drift_table(sim, shifted(WINDOW, 1000 + w)).table.set_index("column").loc["x0", "drifted"])
            for w in range(windows)]
    out["power"] = float(np.mean(hits))
    alarms = [drift.drift_table(sim, frame(WINDOW, 5000 + w)) for w in range(windows)]
    out["false_alarm_any"] = float(np.mean([a.table["drifted"].any() for a in alarms]))
    out["false_alarm_dataset"] = float(np.mean([a.drifted for a in alarms]))
    out["false_alarm_feature"] = float(np.mean([a.table["drifted"].mean() for a in alarms]))
    small = frame(SMALL_REF, 0)  # the raw rows: with 1,000 of them Evidently's tests are p-values
    out["small_power"] = float(np.mean([
        bool(drift.drift_table(small, shifted(WINDOW, 1000 + w)).table.set_index("column").loc["x0", "drifted"])
        for w in range(windows)]))
    alarms = [drift.drift_table(small, frame(WINDOW, 5000 + w)) for w in range(windows)]
    out["small_false_alarm_any"] = float(np.mean([a.table["drifted"].any() for a in alarms]))
    out["small_false_alarm_dataset"] = float(np.mean([a.drifted for a in alarms]))
    out["small_evidently_rule_false_alarm_any"] = float(np.mean([a.table["evidently_drifted"].any() for a in alarms]))
    return out


def evidently(python: str, rows: int, windows: int, parts: str = "speed,sim,small") -> dict:
    "Evidently's figures, from benchmarks/evidently_drift.py run by `python`."
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [python, os.path.join(here, "evidently_drift.py"), "--rows", str(rows), "--windows", str(windows),
           "--parts", parts]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=here)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--evidently-python", default=None)
    ap.add_argument("--evidently-rows", type=int, default=None, help="Evidently's speed rows (default --rows)")
    ap.add_argument("--evidently-windows", type=int, default=None, help="Evidently's windows (default --windows)")
    ap.add_argument("--evidently-parts", default="speed,sim,small", help="which of Evidently's figures to run")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
           "rows": a.rows, "windows": a.windows, "nbdeploy": ours(a.rows, a.windows)}
    if a.evidently_python:
        res["evidently"] = evidently(a.evidently_python, a.evidently_rows or a.rows, a.evidently_windows or a.windows,
                                     a.evidently_parts)
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as f: json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
