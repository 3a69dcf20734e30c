import json

import pytest

from unsee.bench.config import BenchSpeedConfig
from unsee.bench.speed import run_bench_speed
from unsee.errors import UnseeError


def test_bench_speed_times_both_modes_on_the_same_trajectories(tiny_sd, tmp_path):
    cfg = BenchSpeedConfig(out=tmp_path, model=str(tiny_sd), iterations=2, warmup=0, batch=2,
                           sample_steps=4, threads=1, device="cpu")  # fmt: skip
    report = run_bench_speed(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results == json.loads(json.dumps(report, default=str))
    for key in ("unit", "settings", "cpu_batched_its", "cpu_plain_its", "cpu_ratio",
                "cpu_batched_peak_rss_mib", "cpu_plain_peak_rss_mib"):  # fmt: skip
        assert key in results
    assert results["cpu_batched_its"] > 0 and results["cpu_plain_its"] > 0
    assert results["cpu_ratio"] == results["cpu_batched_its"] / results["cpu_plain_its"]
    batched, plain = results["runs"]["cpu"]["batched"], results["runs"]["cpu"]["plain"]
    # the same four trajectories: two steps of two, four steps of one
    assert (batched["steps"], batched["trajectories_per_step"]) == (2, 2)
    assert (plain["steps"], plain["trajectories_per_step"]) == (4, 1)
    assert batched["peak_rss_mib"] >= batched["rss_after_load_mib"] > 0
    assert results["settings"]["batch"] == 2 and results["settings"]["sample_steps"] == 4


def test_bench_speed_refuses_bad_settings(tmp_path):
    with pytest.raises(UnseeError, match="at least 1"):
        BenchSpeedConfig(out=tmp_path, iterations=0)
