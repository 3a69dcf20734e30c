import json

import numpy as np
import pytest

from unsee.bench.config import TABLE_ROWS, BenchTableConfig, BenchWorldConfig, parse_methods
from unsee.bench.table import (
    CONCEPTS,
    METRICS,
    aggregate,
    check_settings,
    results_markdown,
    run_bench_table,
    table_metrics,
    wall_seconds,
    write_index,
)
from unsee.bench.world import run_bench_world
from unsee.errors import UnseeError
from unsee.evaluate.config import EvaluateConfig
from unsee.evaluate.run import evaluate


def test_methods_expand_and_the_original_always_comes_first(tmp_path):
    assert parse_methods(["all"]) == list(TABLE_ROWS)
    assert parse_methods(["hfi_sdd", "neg_text"]) == ["original", "neg_text", "hfi_sdd"]
    with pytest.raises(UnseeError, match="unknown --methods nope"):
        parse_methods(["nope", "sega"])
    # `unsee bench table`, and `unsee bench world --methods` as before it was a command
    for config in (BenchTableConfig, BenchWorldConfig):
        with pytest.raises(UnseeError, match="unknown --methods"):
            config(out=tmp_path, methods=["sdd"])
        with pytest.raises(UnseeError, match="--window"):
            config(out=tmp_path, methods=["all"], censor_window=[0.8, 0.2])
    assert BenchTableConfig(out=tmp_path).methods == ["all"]
    assert BenchWorldConfig(out=tmp_path).methods == []  # the world bench itself
    with pytest.raises(UnseeError, match="--n 2"):
        BenchTableConfig(out=tmp_path, table_n=1)
    with pytest.raises(UnseeError, match="--table-n 2"):
        BenchWorldConfig(out=tmp_path, table_n=1)


def _ci(mean):
    return {"mean": mean, "low": mean, "high": mean}


def _rated(rate, strength, vit_rate):
    return {
        "concept_rate": _ci(rate),
        "concept_strength": _ci(strength),
        "vit_concept_rate": _ci(vit_rate),
    }


def test_table_metrics_come_from_the_named_suites():
    suites = {
        "target": _rated(0.25, 0.2, 0.3),
        "leak": _rated(0.5, 0.4, 0.375)
        | {"unasked_style_rate": _ci(0.625), "sky_strength": _ci(0.3)},
        "paraphrase": _rated(0.75, 0.6, 0.75),
        "other-artists": {
            "style_rate": _ci(0.96),
            "prompt_accuracy_shape": _ci(0.7),
            "prompt_accuracy_color": _ci(0.8),
            "prompt_accuracy_background": _ci(0.9),
        },
        "neutral": {
            "watermark_rate": _ci(0.1),
            "prompt_accuracy_shape": _ci(0.9),
            "prompt_accuracy_color": _ci(1.0),
            "prompt_accuracy_background": _ci(0.8),
            "world_fid": _ci(3.0),
            "clip_score": _ci(0.7),
            "same_seed_distance": _ci(0.2),
        },
    }
    m = table_metrics(suites, "artist")
    assert m["concept_rate_target"] == 0.25 and m["concept_rate_leak"] == 0.5
    assert m["concept_strength_target"] == 0.2 and m["concept_strength_leak"] == 0.4
    assert m["concept_rate_paraphrase"] == 0.75 and m["unasked_style_leak"] == 0.625
    assert m["leak_sky_strength"] == 0.3
    no_sky = suites | {"leak": {k: v for k, v in suites["leak"].items() if k != "sky_strength"}}
    assert table_metrics(no_sky, "artist")["leak_sky_strength"] is None  # read before it existed
    plain = no_sky | {"neutral": {k: v for k, v in suites["neutral"].items()
                                  if k != "same_seed_distance"}}  # fmt: skip
    assert table_metrics(plain, "artist")["leak_sky_strength"] == 1.0  # the original
    assert m["other_artists_accuracy"] == pytest.approx(0.8) and m["other_artists_rate"] == 0.96
    assert m["judges_gap"] == 0.125  # the larger of target's 0.05 and leak's 0.125
    assert m["attack_prefix_asr"] is None  # filled by the attack, on the attacked seeds
    assert m["prompt_accuracy"] == pytest.approx(0.9)
    assert (m["watermark_rate"], m["world_fid"], m["clip_score"]) == (0.1, 3.0, 0.7)
    assert m["same_seed_distance"] == 0.2
    del suites["leak"], suites["paraphrase"]
    del suites["neutral"]["same_seed_distance"]  # the watermark's original
    m = table_metrics(suites, "watermark")
    assert m["concept_rate_leak"] is None and m["same_seed_distance"] == 0.0
    assert m["unasked_style_leak"] is None and m["leak_sky_strength"] is None
    assert m["concept_rate_paraphrase"] is None and m["judges_gap"] == pytest.approx(0.05)
    assert list(m) == list(METRICS)


def test_aggregate_gives_mean_and_sample_std_over_seeds():
    seeds = [dict.fromkeys(METRICS, 0.0) | {"world_fid": v} for v in (1.0, 2.0, 4.0)]
    seeds[0]["concept_rate_leak"] = None
    table = aggregate(seeds)
    assert table["world_fid"]["mean"] == pytest.approx(7 / 3)
    assert table["world_fid"]["std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert table["concept_rate_leak"] is None  # does not apply to one seed: not to the row
    assert aggregate(seeds[1:2])["world_fid"] == {"mean": 2.0, "std": 0.0}
    # the attack columns: the mean over the seeds that were attacked
    for seed, value in zip(seeds, (0.5, None, None), strict=True):
        seed["attack_prefix_asr"] = value
    assert aggregate(seeds)["attack_prefix_asr"] == {"mean": 0.5, "std": 0.0}
    assert aggregate(seeds[1:])["attack_prefix_asr"] is None


def test_a_table_folder_refuses_other_settings_but_takes_more_seeds(tmp_path):
    path = tmp_path / "settings.json"
    check_settings(path, {"steps": 25, "seeds": 1, "methods": ["original"]})
    check_settings(path, {"steps": 25, "seeds": 3, "methods": ["original", "sega"]})
    with pytest.raises(UnseeError, match=r"other settings \(steps\)"):
        check_settings(path, {"steps": 10, "seeds": 3, "methods": ["original"]})
    assert json.loads(path.read_text())["seeds"] == 3


def test_a_table_is_read_by_one_pair_of_judges(tmp_path, monkeypatch):
    from unsee.world import judge
    from unsee.world.paths import JUDGE_DIRS

    ids = {name: judge.judge_id(name) for name in JUDGE_DIRS}
    assert len(set(ids.values())) == len(ids) and all(len(i) == 12 for i in ids.values())
    path = tmp_path / "settings.json"
    check_settings(path, {"steps": 25, "judges": ids})
    # a judge trained on (here: the cnn's folder holding a copy with another reading)
    other = tmp_path / "cnn"
    other.mkdir()
    weights = (JUDGE_DIRS["cnn"] / "model.safetensors").read_bytes()
    (other / "model.safetensors").write_bytes(weights)
    (other / "config.json").write_text("{}")
    monkeypatch.setitem(JUDGE_DIRS, "cnn", other)
    changed = {name: judge.judge_id(name) for name in JUDGE_DIRS}
    assert changed["cnn"] != ids["cnn"] and changed["vit"] == ids["vit"]
    with pytest.raises(UnseeError, match=r"\(judges\) \(the shipped judges changed"):
        check_settings(path, {"steps": 25, "judges": changed})


def test_markdown_and_index_show_every_row(tmp_path):
    cell = {"mean": 0.5, "std": 0.25}
    row = dict.fromkeys(METRICS, cell) | {"concept_rate_leak": None}
    results = {
        "settings": {"seeds": 2, "images_per_suite": 8, "steps": 25, "guidance": 7.5},
        "tables": {"artist": {"original": row, "hfi_sdd": row}, "watermark": {"sega": row}},
    }
    md = results_markdown(results)
    assert "| hfi_sdd | 0.500 ± 0.250 | 0.500 ± 0.250 | – |" in md and "### watermark" in md
    cfg = BenchTableConfig(out=tmp_path, seeds=2)
    page = write_index(cfg, results).read_text()
    assert page.count("<tr><td>hfi_sdd</td>") == 2  # the table and the bar chart
    assert "0.500 ± 0.250" in page and "http" not in page


def test_markdown_sums_the_row_time_over_rows_and_seeds():
    row = {key: {"mean": 0.5, "std": 0.0} for key in METRICS}
    settings = {"seeds": 2, "images_per_suite": 8, "steps": 25, "guidance": 7.5}
    seconds = {"artist": {"original": 600.0, "hfi_sdd": 1200.0}, "watermark": {"sega": 1800.0}}
    results = {
        "settings": settings | {"seconds": seconds, "machine": "2 CPU cores (x)"},
        "tables": {"artist": {"original": row}, "watermark": {"sega": row}},
    }
    assert "Time: 60 minutes summed over rows, on 2 CPU cores (x)" in results_markdown(results)
    results["settings"]["wall_seconds"] = 1500.0
    line = "Time: 25 minutes of wall time, 60 minutes summed over rows, on 2 CPU cores (x)"
    assert line in results_markdown(results)


def test_the_table_end_to_end_small_resumes_and_reuses_the_original(tmp_path, monkeypatch):
    import unsee.attack.run as attack_run
    from unsee.attack import config as attack_config

    # the attacks at a few steps (their own tests check what they find)
    small = {"iterations": 2, "check_every": 1, "attack_batch": 2, "inversion_steps": 2}
    for key, value in small.items():
        monkeypatch.setitem(attack_config.WORLD_DEFAULTS, key, value)
    inverted = []  # the rows whose inversion token was learned, not taken from the original
    real_invert = attack_run.invert_concept
    monkeypatch.setattr(
        attack_run,
        "invert_concept",
        lambda pipe, *a, **k: inverted.append(1) or real_invert(pipe, *a, **k),
    )
    cfg = dict(
        out=tmp_path, methods=["sega"], seeds=1, table_n=3, steps=3, bootstrap=20,
        device="cpu", attack_seeds=1, attack_n=2,
    )  # fmt: skip
    results = run_bench_world(BenchWorldConfig(**cfg))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["tables"] == results["tables"]
    assert set(saved["tables"]) == {"artist", "watermark"}
    for concept, table in saved["tables"].items():
        assert list(table) == ["original", "sega"]
        for row, metrics in table.items():
            assert list(metrics) == list(METRICS)
            leak = metrics["concept_rate_leak"]
            assert (leak is None) == (concept == "watermark"), (concept, row)
            paraphrase = metrics["concept_rate_paraphrase"]
            assert (paraphrase is None) == (concept == "watermark"), (concept, row)
            for attack in ("attack_prefix_asr", "attack_inversion_rate"):
                assert 0 <= metrics[attack]["mean"] <= 1 and metrics[attack]["std"] == 0
            assert 0 <= metrics["judges_gap"]["mean"] <= 1
            for metric, cell in metrics.items():
                if cell is not None:
                    assert cell["std"] >= 0, (concept, row, metric)
        assert table["original"]["same_seed_distance"] == {"mean": 0.0, "std": 0.0}
        assert table["sega"]["same_seed_distance"]["mean"] > 0
    assert (tmp_path / "results.md").is_file() and (tmp_path / "index.html").is_file()
    assert (tmp_path / "eval" / "seed0" / "artist" / "sega" / "grid_leak.png").is_file()
    attacked = tmp_path / "eval" / "seed0" / "artist" / "sega" / "attack_prefix" / "results.json"
    assert json.loads(attacked.read_text())["settings"]["sega_remove"] == ["Vanmond"]
    assert "ran on the first 1 seed(s) only" in (tmp_path / "results.md").read_text()
    # sega samples minisd's own weights: its inversion token is the original row's
    assert len(inverted) == 2  # once per concept
    for concept in CONCEPTS:
        seed0 = tmp_path / "eval" / "seed0" / concept
        token = "attack_inversion/learned_embeds.safetensors"
        assert (seed0 / "sega" / token).read_bytes() == (seed0 / "original" / token).read_bytes()
    # a rerun keeps every finished row
    row = tmp_path / "eval" / "seed0" / "watermark" / "sega" / "row.json"
    before = row.stat().st_mtime_ns
    assert run_bench_world(BenchWorldConfig(**cfg))["tables"] == results["tables"]
    assert row.stat().st_mtime_ns == before
    # the rows' same-seed reference is the original row's images, checked to match
    with pytest.raises(UnseeError, match="not this suite's prompts and seeds"):
        evaluate(
            EvaluateConfig(
                out=tmp_path / "other", suite=["neutral"], n=3, steps=3, seed=5, bootstrap=5,
                negative_prompt="watermark", concept="watermark", device="cpu",
                reference_dir=tmp_path / "eval" / "seed0" / "watermark" / "original",
            )
        )  # fmt: skip


def test_the_feedback_erase_row_runs_erase_feedback_on_the_rows_labels_and_reward(
    tmp_path, monkeypatch
):
    from unsee.bench import table

    seen = {}
    monkeypatch.setattr(table, "feedback", lambda tcfg, concept: tmp_path / "Vanmond")
    monkeypatch.setattr(table, "erase_config", lambda tcfg, out, **what: seen.update(what) or out)

    def fake_erase(out):
        out.mkdir(parents=True)
        (out / "erase.json").write_text("{}")

    monkeypatch.setattr(table, "erase", fake_erase)
    cfg = BenchTableConfig(out=tmp_path / "table", methods=["feedback_erase"], seeds=1)
    given = table.row_settings("feedback_erase", "artist", table.train_config(cfg, 0), cfg)
    assert given["model"].endswith("models/feedback_erase_artist")
    assert seen["feedback"] == tmp_path / "Vanmond" / "pool" / "images"
    assert seen["reward"] == tmp_path / "Vanmond" / "reward"
    assert seen["concept"] == ["Vanmond"] and seen["init"] == "painting"
    assert "method" not in seen  # the command's own default objective
    seen.clear()
    assert table.row_settings("feedback_erase", "artist", table.train_config(cfg, 0), cfg) == given
    assert not seen  # made once: a rerun keeps the erased model


def test_wall_time_is_the_union_of_the_rows_spans():
    assert wall_seconds([[0.0, 10.0], [5.0, 15.0], [20.0, 30.0], 7.0]) == 32.0
    assert wall_seconds([[0.0, 10.0], [2.0, 3.0]]) == 10.0  # one inside another
    assert wall_seconds([]) == 0.0


@pytest.mark.slow
def test_workers_make_blocks_side_by_side_and_a_rerun_reads_them_back(tmp_path):
    cfg = dict(
        out=tmp_path, methods=["neg_text"], seeds=2, table_n=3, steps=2, bootstrap=5,
        device="cpu", attack_seeds=0, workers=2,
    )  # fmt: skip
    results = run_bench_table(BenchTableConfig(**cfg))  # four blocks: seeds x concepts
    rows = sorted(tmp_path.glob("eval/seed*/*/*/row.json"))
    assert len(rows) == 2 * 2 * 2  # seeds x concepts x (original, neg_text)
    assert results["settings"]["evaluation_seeds"][1] != results["settings"]["evaluation_seeds"][0]
    assert not list(tmp_path.glob("eval/*/*/*/attack_*"))  # --attack-seeds 0: no attack
    made = [json.loads(r.read_text()) for r in rows]
    summed = sum(sum(m["seconds"].values()) for m in made)
    wall = results["settings"]["wall_seconds"]
    assert 0 < wall < summed  # two blocks at a time: their rows' time counted once
    assert wall == pytest.approx(wall_seconds([m["span"] for m in made]), abs=0.1)
    assert "minutes of wall time" in (tmp_path / "results.md").read_text()
    # one worker now: every row is read back, none made again
    stamps = {r: r.stat().st_mtime_ns for r in rows}
    again = run_bench_table(BenchTableConfig(**cfg | {"workers": 1}))
    assert again["tables"] == results["tables"]
    assert all(r.stat().st_mtime_ns == t for r, t in stamps.items())
    with pytest.raises(UnseeError, match="--workers"):
        BenchTableConfig(**cfg | {"workers": 0})
