"""Evidently 0.7's half of benchmarks/drift.py: run with an interpreter that has benchmarks/requirements-evidently.txt.

python benchmarks/evidently_drift.py [--rows 1000000] [--windows 200]; prints one JSON line (the last).
Same data as benchmarks/drift.py (its `frame` and `shifted`), `Report([DataDriftPreset()])` with defaults.
"""
import argparse
import json
import resource
import time
import tracemalloc
import warnings

import numpy as np

from drift import SIM_REF, WINDOW, frame, shifted  # benchmarks/drift.py: numpy and pandas only at import


def run(ref, cur) -> tuple[dict, bool]:
    "Evidently's per-column drift flags and its dataset verdict."
    from evidently import Report
    from evidently.presets import DataDriftPreset
    d = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).dict()
    flags, dataset = {}, False
    for m in d["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("DriftedColumnsCount"): dataset = m["value"]["share"] >= cfg["drift_share"]
        elif cfg["type"].endswith("ValueDrift"):
            v, th = m["value"], cfg["threshold"]
            flags[cfg["column"]] = (v <= th if "K-S" in cfg["method"] else v < th) if "p_value" in cfg["method"] \
                else v >= th
    return flags, dataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--windows", type=int, default=200)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    import evidently
    out = {"version": evidently.__version__, "rows": a.rows, "windows": a.windows}
    ref, cur = frame(a.rows, 0), frame(a.rows, 1)
    run(ref.iloc[:2000], cur.iloc[:1000])  # imports, once
    t = time.perf_counter()
    flags, _ = run(ref, cur)
    out["speed_s"] = time.perf_counter() - t
    out["big_n_flagged"] = int(sum(flags.values()))
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.rows <= 200_000:
        tracemalloc.start()
        run(ref, cur)
        out["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    del ref, cur
    sim = frame(SIM_REF, 0)
    out["power"] = float(np.mean([run(sim, shifted(WINDOW, 1000 + w))[0]["x0"] for w in range(a.windows)]))
    alarms = [run(sim, frame(WINDOW, 5000 + w)) for w in range(a.windows)]
    out["false_alarm_any"] = float(np.mean([any(f.values()) for f, _ in alarms]))
    out["false_alarm_dataset"] = float(np.mean([d for _, d in alarms]))
    out["false_alarm_feature"] = float(np.mean([np.mean(list(f.values())) for f, _ in alarms]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
