"""Tutorial 05 (batch scoring, local chunks and Spark), run for real by papermill in a fresh kernel, small."""
import shutil
from pathlib import Path

import papermill as pm
import psutil

from tests.conftest import ARTIFACTS

TUTORIALS = Path(__file__).parent.parent / "tutorials"


def _jvms() -> set:
    "PIDs of Java processes running now."
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "java"}


def test_batch_scoring_runs_end_to_end():
    before = _jvms()
    out = ARTIFACTS / "05_batch_scoring.out.ipynb"
    pm.execute_notebook(str(TUTORIALS / "05_batch_scoring.ipynb"), str(out), kernel_name="python3", cwd=str(TUTORIALS),
                        parameters={"n_rows": 30_000, "chunksize": 7_000, "use_spark": bool(shutil.which("java"))})
    text = out.read_text()
    assert "rows equal to model.predict: 30000 of 30000" in text
    if shutil.which("java"): assert "Spark predictions equal local ones: True; probabilities equal: True" in text
    assert "lacks column(s) ['plan']" in text and "neither .csv nor .parquet" in text
    assert _jvms() <= before  # the kernel's Spark JVM ended with the kernel
