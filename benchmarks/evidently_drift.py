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

from drift import SIM_REF, SMALL_REF, WINDOW, frame, shifted  # benchmarks/drift.py: numpy and pandas only at import


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
    ap.add_argument("--parts", default="speed,sim,small")
    a = ap.parse_args()
    parts = a.parts.split(",")
    warnings.filterwarnings("ignore")
    import evidently
    out = {"version": evidently.__version__, "rows": a.rows, "windows": a.windows}
    run(frame(2000, 0), frame(1000, 1))  # imports, once
    if "speed" in parts: out.update(speed(a.rows))
    if "sim" in parts: out.update(simulate(frame(SIM_REF, 0), a.windows))
    if "small" in parts: out.update({f"small_{k}": v for k, v in simulate(frame(SMALL_REF, 0), a.windows).items()})
    print(json.dumps(out))


def speed(rows: int) -> dict:
    "Time (and memory) of one Report on `rows` current rows against `rows` reference rows."
    out = {}
    ref, cur = frame(rows, 0), frame(rows, 1)
    t = time.perf_counter()
    flags, _ = run(ref, cur)
    out["speed_s"] = time.perf_counter() - t
    out["big_n_flagged"] = int(sum(flags.values()))
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if rows <= 200_000:
        tracemalloc.start()
        run(ref, cur)
        out["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out


def simulate(ref, windows: int) -> dict:
    "Detection power of the shift in x0 and false alarms, over `windows` windows each."
    out = {"power": float(np.mean([run(ref, shifted(WINDOW, 1000 + w))[0]["x0"] for w in range(windows)]))}
    alarms = [run(ref, frame(WINDOW, 5000 + w)) for w in range(windows)]
    out["false_alarm_any"] = float(np.mean([any(f.values()) for f, _ in alarms]))
    out["false_alarm_dataset"] = float(np.mean([d for _, d in alarms]))
    out["false_alarm_feature"] = float(np.mean([np.mean(list(f.values())) for f, _ in alarms]))
    return out


if __name__ == "__main__":
    main()
