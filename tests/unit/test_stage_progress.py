"""What each stage leaves in the run record for the progress of `mlcicd run`: its rows and its own peak memory."""

from __future__ import annotations

import numpy as np

from mlcicd import record
from mlcicd.boundary import run_dir, stage, working_on
from mlcicd.cli.run import stage_line
from mlcicd.settings import load


def test_a_stage_records_its_rows_and_its_own_peak_memory():
    run_id = "manual__progress-test"
    with stage(run_id, "heavy"):
        working_on(run_id, "heavy", 2_000_000)
        assert record.read(run_dir(load(), run_id))["stages"]["heavy"]["rows"] == 2_000_000  # while it runs
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        del block
    with stage(run_id, "light"):
        pass
    stages = record.read(run_dir(load(), run_id))["stages"]
    heavy, light = stages["heavy"], stages["light"]
    assert heavy["state"] == "success" and heavy["rows"] == 2_000_000 and "rows" not in light
    # The peak is reset at each stage's start: the light stage does not inherit the heavy one's.
    assert heavy["peak_memory_mb"] - light["peak_memory_mb"] > 250, (heavy, light)


def test_the_progress_line_says_rows_time_and_peak():
    assert stage_line("validate_data", {"state": "running", "rows": 10_000_000}) == (
        "  … validate_data        running (10,000,000 rows)"
    )
    done = {"state": "success", "seconds": 12.34, "rows": 2_000_000, "peak_memory_mb": 1945.6}
    assert stage_line("validate_data", done) == (
        "  ✓ validate_data        success (12.3 s, 2,000,000 rows, peak 1.9 GB)"
    )
    assert (
        stage_line("plan_search", {"state": "success", "seconds": 0.01})
        == "  ✓ plan_search          success (0.0 s)"
    )
