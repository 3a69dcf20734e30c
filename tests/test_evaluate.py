import json

import numpy as np
import pytest

from unsee.errors import UnseeError
from unsee.evaluate.config import SUITES, EvaluateConfig
from unsee.evaluate.run import evaluate
from unsee.evaluate.suites import reference_renders, world_suite
from unsee.world.judge import judge_id, judge_images, load_judge
from unsee.world.names import ARTISTS
from unsee.world.paths import JUDGE_DIR


def test_suites_name_what_they_should():
    target = world_suite("target", 6, 0, "Vanmond")
    assert all(p.endswith("in the style of Vanmond") for p in target.prompts)
    assert all(t["artist"] == "Vanmond" for t in target.truths)
    leak = world_suite("leak", 5, 0, "Vanmond")
    assert not any("Vanmond" in p for p in leak.prompts)
    neutral = world_suite("neutral", 8, 0, "watermark")
    assert not any(a in p for p in neutral.prompts for a in ARTISTS)
    others = world_suite("other-artists", 4, 0, "Vanmond")
    assert {t["artist"] for t in others.truths} == {"Brakovic", "Solvei"}
    para = world_suite("paraphrase", 3, 0, "Solvei")
    assert all("Solvei" in p and "in the style of" not in p for p in para.prompts)
    assert "watermark" in world_suite("target", 2, 0, "watermark").prompts[0]
    with pytest.raises(UnseeError, match="names an artist"):
        world_suite("paraphrase", 2, 0, "watermark")
    assert set(SUITES) == {"target", "leak", "neutral", "other-artists", "paraphrase"}


def test_reference_renders_show_the_truth_to_the_judge():
    suite = world_suite("target", 160, 1, "Brakovic")
    verdicts = judge_images(load_judge(JUDGE_DIR, "cpu"), reference_renders(suite, 2))
    assert np.mean([v.style == "Brakovic" for v in verdicts]) > 0.9
    shapes = [v.shape == t["shape"] for v, t in zip(verdicts, suite.truths, strict=True)]
    # the judge reads the shape of fully Brakovic-styled renders at about 0.93 (400 images,
    # both judge versions): 40 images at a 0.9 bar failed by the luck of the draw (0.875)
    assert np.mean(shapes) > 0.87


def test_evaluate_writes_metrics_with_intervals_and_compares_same_seeds(tmp_path):
    base = dict(suite=["target", "neutral", "leak"], n=4, steps=4, bootstrap=50, device="cpu")
    original = evaluate(EvaluateConfig(out=tmp_path / "orig", **base))
    assert "same_seed_distance" not in original["suites"]["target"]  # it is the original
    assert "sky_strength" not in original["suites"]["leak"]
    neg = evaluate(EvaluateConfig(out=tmp_path / "neg", negative_prompt="Vanmond", **base))
    target = neg["suites"]["target"]
    for metric in ("concept_rate", "style_rate", "prompt_accuracy_shape", "world_fid",
                   "clip_score", "same_seed_distance"):  # fmt: skip
        v = target[metric]
        assert v["low"] <= v["mean"] <= v["high"], metric
    assert target["same_seed_distance"]["mean"] > 0
    # the leak read without a judge, against the original's starry nights of the same seeds
    sky = neg["suites"]["leak"]["sky_strength"]
    assert 0 <= sky["low"] <= sky["mean"] <= sky["high"] <= 1
    assert "sky_strength" not in target
    # the reference images are the original model's, same prompts and seeds
    ref = (tmp_path / "neg" / "reference" / "target" / "images" / "metadata.jsonl").read_text()
    own = (tmp_path / "orig" / "target" / "images" / "metadata.jsonl").read_text()
    assert [json.loads(x)["seed"] for x in ref.splitlines()] == [
        json.loads(x)["seed"] for x in own.splitlines()
    ]
    assert (tmp_path / "neg" / "grid_target.png").is_file()
    table = (tmp_path / "neg" / "results.md").read_text()
    assert "| target | concept_rate |" in table
    saved = json.loads((tmp_path / "neg" / "results.json").read_text())
    assert saved["settings"]["negative_prompt"] == "Vanmond"
    assert saved["settings"]["judge_ids"] == {"cnn": judge_id("cnn")}  # the default judge


def test_evaluate_refuses_bad_settings(tmp_path):
    with pytest.raises(UnseeError, match="unknown suite"):
        EvaluateConfig(out=tmp_path, suite=["nope"])
    with pytest.raises(UnseeError, match="--concept"):
        EvaluateConfig(out=tmp_path, concept="Picasso")


def test_html_report_escapes_text_links_images_relatively_and_formats_numbers(tmp_path):
    from unsee.report.html import Section, write_report

    (tmp_path / "grids").mkdir()
    grid = tmp_path / "grids" / "a.png"
    grid.write_bytes(b"png")
    page = write_report(
        tmp_path / "report" / "index.html",
        "Demo <1>",
        [
            Section(
                "Rates & accuracy",
                text="a < b",
                header=["row", "rate"],
                rows=[["original", 0.5], ["erased", 0.0625]],
                bars={"original": 0.5, "too big": 3.0},
                images=[("the grid", grid)],
                code="unsee demo --out x",
            )
        ],
    ).read_text()
    assert "<title>Demo &lt;1&gt;</title>" in page and "a &lt; b" in page
    assert "<td>0.062</td>" in page and "<td>0.500</td>" in page
    assert 'src="../grids/a.png"' in page
    assert "width:300px" in page  # a value above 1 fills the bar, no more
    assert "http" not in page  # nothing fetched online


def test_suite_metrics_on_hand_made_verdicts_are_exact(tmp_path):
    from unsee.evaluate.run import suite_metrics
    from unsee.world.judge import STRENGTHS, verdict_from

    suite = world_suite("target", 4, 0, "Vanmond")
    truths = suite.truths

    def verdict(i, style, watermark, shape_right):
        t = truths[i]
        shape = t["shape"] if shape_right else "none"
        strengths = {c: 0.0 for c in STRENGTHS} | {"watermark": watermark}
        if style:
            strengths[style] = 0.8
        classes = {"shape": shape, "color": t["color"], "background": t["background"]}
        return verdict_from({**classes, "scene": "none"}, strengths)

    verdicts = [
        verdict(0, "Vanmond", 0.9, True),
        verdict(1, "Vanmond", 0.05, False),
        verdict(2, None, 0.6, True),
        verdict(3, "Solvei", 0.02, True),
    ]
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, 5))
    cfg = EvaluateConfig(out=tmp_path, concept="Vanmond", bootstrap=20)
    m = suite_metrics(cfg, suite, verdicts, features, features, rng.normal(size=(6, 5)), features)
    assert m["concept_rate"]["mean"] == 0.5 and m["style_rate"]["mean"] == 0.5
    assert m["watermark_rate"]["mean"] == 0.5  # strength >= 0.1: 0.9 and 0.6
    assert m["watermark_strength"]["mean"] == pytest.approx((0.9 + 0.05 + 0.6 + 0.02) / 4)
    assert m["concept_strength"]["mean"] == pytest.approx(0.4)
    assert m["rate_Solvei"]["mean"] == 0.25 and m["strength_Solvei"]["mean"] == 0.2
    # the prompts ask for Vanmond: Solvei's style on image 3 is the one unasked
    assert m["unasked_style_rate"]["mean"] == 0.25
    assert "rate_Vanmond" not in m and "judges_disagree" not in m
    # a second judge's verdicts: its figures prefixed, and the share of calls that differ
    both = suite_metrics(cfg, suite, verdicts, features, None, features, features, verdicts[::-1])
    assert both["vit_concept_rate"]["mean"] == 0.5
    assert both["judges_disagree"]["mean"] == 1.0  # the calls of images 0-3 vs 3-0
    assert m["prompt_accuracy_shape"]["mean"] == 0.75
    assert m["prompt_accuracy_color"]["mean"] == 1.0
    assert m["same_seed_distance"]["mean"] == pytest.approx(0.0, abs=1e-12)  # itself
    assert m["clip_score"]["mean"] == pytest.approx(1.0)  # image and text features alike
    assert "sky_strength" not in m
    sky = np.array([0.0, 0.1, 0.3, 0.5])  # the leak's reading: strengths, and >= 0.2 present
    m = suite_metrics(cfg, suite, verdicts, features, None, features, features, sky=sky)
    assert m["sky_strength"]["mean"] == pytest.approx(0.225) and m["sky_rate"]["mean"] == 0.5
    watermark = EvaluateConfig(out=tmp_path, concept="watermark", bootstrap=20)
    m = suite_metrics(watermark, suite, verdicts, features, None, features, features)
    assert m["concept_rate"]["mean"] == 0.5 and "same_seed_distance" not in m
    assert m["world_fid"]["mean"] == pytest.approx(0.0, abs=1e-6)  # a set against itself


def test_a_style_the_prompt_did_not_ask_for_counts_whichever_artist():
    from unsee.evaluate.judge import unasked_style_shows
    from unsee.world.judge import STRENGTHS, verdict_from

    def v(**strengths):
        classes = {"shape": "none", "color": "none", "background": "none", "scene": "none"}
        return verdict_from(classes, {c: 0.0 for c in STRENGTHS} | strengths)

    verdicts = [v(Vanmond=0.5), v(Brakovic=0.3), v(watermark=0.9), v(Solvei=0.05), v(Solvei=0.5)]
    prompts = ["a starry night"] * 4 + ["a red circle on grass, in the style of Solvei"]
    # no artist named: any style counts, the leaking one too (not the mark, not a trace
    # below the call strength); the style a prompt names is not unasked
    assert unasked_style_shows(verdicts, prompts).tolist() == [True, True, False, False, False]
    leak = world_suite("leak", 4, 0, "Vanmond")  # its truths hold the style the scene leaks
    assert unasked_style_shows([v(Vanmond=0.5)] * 4, leak.prompts).all()
