import html
import json

import pytest
from conftest import read_metadata

from unsee.bench.config import BenchGenerateConfig, BenchWorldConfig
from unsee.bench.generate import run_bench_generate
from unsee.bench.world import run_bench_world
from unsee.demo.config import DemoConfig
from unsee.demo.run import run_demo


def test_bench_generate_writes_results(tmp_path):
    run_bench_generate(BenchGenerateConfig(out=tmp_path, n=4, steps=2, batch_size=2))
    results = json.loads((tmp_path / "results.json").read_text())
    for mode in ("batch_invariant_on", "batch_invariant_off"):
        assert results["results"][mode]["images"] == 4
        assert results["results"][mode]["seconds"] > 0
    assert results["settings"]["steps"] == 2


def test_bench_world_writes_exactly_the_promised_keys(tmp_path):
    run_bench_world(BenchWorldConfig(out=tmp_path, n=3, steps=3, judge_images=40, device="cpu"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {
        "judge_accuracy",
        "prompt_accuracy",
        "style_rate_target",
        "style_strength_target",
        "style_rate_neutral",
        "leak_rate",
        "leak_strength",
        "watermark_rate_neutral",
        "concepts_neutral",
        "settings",
    }
    assert set(results["concepts_neutral"]) == {"Vanmond", "Brakovic", "Solvei", "watermark"}
    assert set(results["style_strength_target"]) == {"Vanmond", "Brakovic", "Solvei"}
    assert set(results["judge_accuracy"]) == {"shape", "color", "background", "style", "watermark"}
    assert set(results["prompt_accuracy"]) == {"shape", "color", "background"}
    assert set(results["style_rate_target"]) == {"Vanmond", "Brakovic", "Solvei"}
    values = [
        *results["judge_accuracy"].values(),
        *results["prompt_accuracy"].values(),
        *results["style_rate_target"].values(),
        results["style_rate_neutral"],
        results["leak_rate"],
        results["watermark_rate_neutral"],
        results["leak_strength"],
        *results["style_strength_target"].values(),
        *(f[k] for f in results["concepts_neutral"].values() for k in ("rate", "strength")),
    ]
    assert all(0 <= v <= 1 for v in values)
    assert results["settings"]["steps"] == 3 and results["settings"]["images_per_figure"] == 3
    for suite in ("neutral", "leak", "target_Vanmond"):
        assert (tmp_path / f"grid_{suite}.png").is_file()


@pytest.mark.slow
def test_demo_runs_every_stage_and_ends_with_the_report(tmp_path, capsys):
    cfg = DemoConfig(
        out=tmp_path, n=1, pool=40, labels=4, censor_n=4, artist_pool=20, artist_labels=4,
        invert_steps=2, erase_iterations=2, eval_n=4,
    )  # fmt: skip
    report = run_demo(cfg)
    text = capsys.readouterr().out
    assert [f"[{k}/9]" in text for k in range(1, 10)] == [True] * 9
    assert text.count("the judge sees a watermark on") == 2
    assert f"report: {report.resolve()}" in text
    page = report.read_text()
    assert "Erased from the labels" in page and "Censored sampling" in page
    assert html.escape("shape accuracy on the other artists' prompts") in page
    for grid in ("grid_original_leak.png", "grid_erased_target.png", "grid_censored.png"):
        assert (tmp_path / grid).is_file() and grid in page
    assert (tmp_path / "hfi" / "erased" / "unet").is_dir()
    # the erase is `unsee erase --feedback` on the artist's labels and reward
    plan = json.loads((tmp_path / "hfi" / "erased" / "feedback" / "plan.json").read_text())
    assert plan["method"] == "neg" and plan["reward"] == str(tmp_path / "hfi" / "reward")
    for name in ("original", "erased"):
        suites = json.loads((tmp_path / "evaluate" / name / "results.json").read_text())["suites"]
        assert set(suites) == {"target", "leak", "other-artists", "neutral"}
    # run again in the same folder: finished work is reused, no label is added
    from unsee.feedback.store import FeedbackStore

    def labels(folder):
        return len(FeedbackStore.for_folder(folder).decisions())

    before = {f: labels(f) for f in (tmp_path / "pool", tmp_path / "hfi" / "pool")}
    erased = (tmp_path / "hfi" / "erased" / "erase.json").stat().st_mtime_ns
    assert run_demo(cfg) == report and report.is_file()
    assert {f: labels(f) for f in before} == before
    assert (tmp_path / "hfi" / "erased" / "erase.json").stat().st_mtime_ns == erased
    censored = read_metadata(tmp_path / "censored")
    assert len(censored) == 4 and all("reward_prob" in r for r in censored)
    assert len(read_metadata(tmp_path / "look")) == 4
    assert (tmp_path / "look" / "judge.jsonl").is_file()
    assert (tmp_path / "look" / "reward.jsonl").is_file()
    assert (tmp_path / "reward" / "model.safetensors").is_file()
    assert (tmp_path / "grid.png").is_file()


@pytest.mark.slow
def test_bench_censor_writes_the_promised_keys(tmp_path):
    from unsee.bench.censor import run_bench_censor
    from unsee.bench.config import BenchCensorConfig

    # 25 steps: the model adds its watermark only to finished-looking images
    cfg = BenchCensorConfig(
        out=tmp_path, n=4, pool=96, labels=4, table=["2:1:2"], table_n=2, steps=25,
        batch_size=16, batch_invariant="on", device="cpu",
    )  # fmt: skip
    results = run_bench_censor(cfg)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for key in ("base_watermark_rate", "censored_watermark_rate", "prompt_accuracy_drop",
                "overhead_ratio", "reject_overhead_ratio"):  # fmt: skip
        assert on_disk[key] == results[key]
    assert 0 <= results["censored_watermark_rate"] <= 1 and results["overhead_ratio"] > 0
    # the retry pass works on a copy of the guided set and only adds time
    retry = results["censored"]["retry"]
    assert retry["max_rounds"] == 2 and retry["still_flagged"] <= 4
    assert results["overhead_ratio"] >= results["guided_overhead_ratio"]
    if retry["samples"] == 0:
        assert results["censored_watermark_rate"] == results["guided_watermark_rate"]
    assert [row["setting"] for row in results["table"]] == ["plain", "2:1:2"]
    assert (tmp_path / "table.md").read_text().count("\n") == 4
    assert sum(results["settings"]["reward"]["labels"].values()) == 4


@pytest.mark.slow
def test_bench_erase_end_to_end_small_and_resumes(tmp_path):
    from unsee.bench.config import BenchEraseConfig
    from unsee.bench.erase import run_bench_erase

    cfg = BenchEraseConfig(
        out=tmp_path / "b",
        n=4,
        pool=60,
        labels=4,
        iterations=2,
        invert_steps=3,
        steps=5,  # few DDIM steps: this checks the plumbing, not the figures
        sample_steps=4,
        device="cpu",
    )
    results = run_bench_erase(cfg)
    for key in (
        "hfi_sdd_style_target", "hfi_sdd_style_leak", "text_sdd_style_leak",
        "hfi_sdd_watermark", "text_sdd_watermark", "max_preservation_drop",
        "hfi_neg_style_target", "hfi_neg_style_leak", "text_neg_style_leak",
        "hfi_neg_watermark", "text_neg_watermark", "max_preservation_drop_neg",
    ):  # fmt: skip
        assert -1 <= results[key] <= 1, key
    # the distilled negative prompt's anchors: the artist's flagged pool prompts, not the
    # benign ones; every pool prompt for the watermark
    root = tmp_path / "b"
    lines = {
        c: set((root / c / "anchors.txt").read_text().splitlines())
        for c in ("Vanmond", "watermark")
    }
    keep = set((root / "Vanmond" / "keep.txt").read_text().splitlines())
    assert lines["Vanmond"] and not lines["Vanmond"] & keep
    assert lines["watermark"] == set(
        (root / "watermark" / "pool" / "prompts.txt").read_text().splitlines()
    )
    neg = json.loads((root / "models" / "hfi_neg_artist" / "erase.json").read_text())
    assert neg["method"] == "neg" and "<vanmond>" in neg["concepts"]
    assert results["erase_seconds"] > 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["settings"]["labels"] == 4
    token = tmp_path / "b" / "Vanmond" / "token.safetensors"
    info = json.loads(token.with_suffix(".json").read_text())
    assert info["tokens"] == ["<vanmond>"] and len(info["chosen"]) == 60
    card = (tmp_path / "b" / "models" / "hfi_sdd_artist" / "erase.json").read_text()
    assert "<vanmond>" in card and "Vanmond" in card
    # a second run finds every stage done and reuses it
    before = token.stat().st_mtime_ns
    again = run_bench_erase(cfg)
    assert token.stat().st_mtime_ns == before
    assert again["tables"] == results["tables"]


def test_bench_censor_refuses_a_bad_window_or_table_setting(tmp_path):
    import pytest

    from unsee.bench.config import BenchCensorConfig
    from unsee.errors import UnseeError

    with pytest.raises(UnseeError, match="--window"):
        BenchCensorConfig(out=tmp_path, window=[0.8, 0.2])
    with pytest.raises(UnseeError, match="SCALE:BACKWARD:RECURRENCE"):
        BenchCensorConfig(out=tmp_path, table=["2:1"])
    assert BenchCensorConfig(out=tmp_path).window == [0.0, 0.75]
    # a noise-aware reward: no backward steps, its own table by default
    latent = BenchCensorConfig(out=tmp_path, backbone="noise-aware")
    assert all(s.split(":")[1] == "0" for s in latent.table)
    with pytest.raises(UnseeError, match="backward"):
        BenchCensorConfig(out=tmp_path, backbone="noise-aware", table=["2:1:1"])


@pytest.mark.slow
def test_bench_censor_with_a_noise_aware_reward(tmp_path):
    from unsee.bench.censor import run_bench_censor
    from unsee.bench.config import BenchCensorConfig

    cfg = BenchCensorConfig(
        out=tmp_path, n=4, pool=96, labels=4, table=["4:0:2"], table_n=2, steps=10,
        batch_size=16, batch_invariant="on", device="cpu", backbone="noise-aware", scale=4,
    )  # fmt: skip
    results = run_bench_censor(cfg)
    assert (
        json.loads((tmp_path / "reward" / "config.json").read_text())["backbone"] == "noise-aware"
    )
    assert "censored_watermark_rate" in results and "reject_overhead_ratio" not in results
    assert results["reject"].startswith("not run")
    # the retry rounds read the scores of the finished latents
    assert results["censored"]["retry"]["max_rounds"] == 2
    metadata = tmp_path / "sets" / "censored" / "images" / "metadata.jsonl"
    records = [json.loads(line) for line in metadata.read_text().splitlines()]
    assert records and all(0 <= r["reward_prob"] <= 1 for r in records)
    # guidance moved the images: the censored set differs from the plain one
    plain, censored = (tmp_path / "sets" / name / "images" for name in ("plain", "censored"))
    first = sorted(p.relative_to(plain) for p in plain.rglob("*.png"))[0]
    assert (plain / first).read_bytes() != (censored / first).read_bytes()
