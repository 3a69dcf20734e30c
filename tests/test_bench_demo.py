import json

from conftest import read_metadata

from unsee.bench.config import BenchGenerateConfig
from unsee.bench.generate import run_bench_generate
from unsee.demo import DemoConfig, run_demo


def test_bench_generate_writes_results(tmp_path):
    run_bench_generate(BenchGenerateConfig(out=tmp_path, n=4, steps=2, batch_size=2))
    results = json.loads((tmp_path / "results.json").read_text())
    for mode in ("batch_invariant_on", "batch_invariant_off"):
        assert results["results"][mode]["images"] == 4
        assert results["results"][mode]["seconds"] > 0
    assert results["settings"]["steps"] == 2


def test_demo_runs_what_exists_and_says_what_does_not(tmp_path, capsys):
    run_demo(DemoConfig(out=tmp_path))
    text = capsys.readouterr().out
    assert "not in this release yet" in text
    assert len(read_metadata(tmp_path / "images")) == 12
