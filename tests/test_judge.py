import json
from pathlib import Path

import numpy as np
import pytest

from unsee.errors import UnseeError
from unsee.evaluate.config import JudgeConfig
from unsee.evaluate.judge import judge_folder, summarize
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.world import render as world
from unsee.world.judge import Verdict, judge_images, load_judge
from unsee.world.paths import JUDGE_DIR

KEYS = {"file_name", "shape", "color", "background", "scene", "style", "style_probs", "watermark"}


@pytest.fixture(scope="module")
def minisd_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("judge") / "set"
    prompts = out.parent / "p.txt"
    prompts.write_text("a red circle on grass\na starry night\n")
    return generate(GenerateConfig(prompts=prompts, n=2, steps=5, device="cpu", out=out))


def test_judge_file_format(minisd_set):
    summary = judge_folder(JudgeConfig(dir=minisd_set, device="cpu"))
    lines = [json.loads(x) for x in (minisd_set / "judge.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for line in lines:
        assert set(line) == KEYS
        assert set(line["style_probs"]) == set(world.ARTISTS)
        assert all(0 <= p <= 1 for p in line["style_probs"].values())
        assert 0 <= line["watermark"] <= 1
        assert line["style"] in (None, *world.ARTISTS)
        assert line["shape"] in (None, *world.SHAPES)
    saved = json.loads((minisd_set / "judge_summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert set(saved["style_rates"]) == {"none", *world.ARTISTS}
    assert abs(sum(saved["style_rates"].values()) - 1) < 1e-9
    assert set(saved["prompt_agreement"]) == {"shape", "color", "background", "scene"}


def test_shipped_judge_reads_rendered_images():
    images, attrs, _ = world.make_dataset(300, seed=777, p_style=0.6, p_watermark=0.5, leak=False)
    verdicts = judge_images(load_judge(JUDGE_DIR), images)
    for head in ("shape", "color", "background", "scene", "style"):
        acc = np.mean(
            [getattr(v, head) == getattr(a, head) for v, a in zip(verdicts, attrs, strict=True)]
        )
        # a floor that catches a broken judge; the 0.98 bar is `unsee bench world`'s to measure
        assert acc > 0.85, head
    wm = np.mean([(v.watermark > 0.5) == a.watermark for v, a in zip(verdicts, attrs, strict=True)])
    assert wm > 0.95


def test_summary_counts_agreement_per_named_attribute():
    def verdict(**kw):
        base = dict(
            shape=None,
            color=None,
            background=None,
            scene=None,
            style=None,
            style_probs={},
            watermark=0.0,
        )
        return Verdict(**{**base, **kw})

    records = [{"prompt": "a red circle on grass"}, {"prompt": "a blue circle, by Solvei"}]
    verdicts = [
        verdict(shape="circle", color="red", background="snow", watermark=0.9),
        verdict(shape="square", color="blue", style="Solvei"),
    ]
    s = summarize(records, verdicts)
    assert s["prompt_agreement"] == {"background": 0.0, "color": 1.0, "shape": 0.5, "style": 1.0}
    assert s["watermark_rate"] == 0.5
    assert s["style_rates"]["Solvei"] == 0.5


def test_judge_refuses_bad_folders(minisd_set, tmp_path, tiny_uncond):
    with pytest.raises(UnseeError, match=r"no metadata\.jsonl"):
        judge_folder(JudgeConfig(dir=tmp_path, device="cpu"))
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(minisd_set, broken)
    (broken / "images" / "000001.png").write_bytes(b"not a png")
    with pytest.raises(UnseeError, match=r"000001\.png is not a readable image"):
        judge_folder(JudgeConfig(dir=broken, device="cpu"))
    small = generate(
        GenerateConfig(model=str(tiny_uncond), device="cpu", steps=2, out=tmp_path / "small")
    )
    with pytest.raises(UnseeError, match="is 16x16; the world judge reads 32x32"):
        judge_folder(JudgeConfig(dir=small, device="cpu"))


def test_a_judge_of_another_width_saves_and_reloads_at_that_width(tmp_path):
    from unsee.world.config import WorldTrainConfig
    from unsee.world.judge import Judge, save_judge, train_judge

    with pytest.raises(UnseeError, match="multiple of 8"):
        WorldTrainConfig(out=tmp_path, judge_width=30)

    train_judge(tmp_path / "j", seed=3, images=64, steps=1, batch_size=8, device="cpu", width=8)
    assert json.loads((tmp_path / "j" / "config.json").read_text())["width"] == 8
    judge = load_judge(tmp_path / "j")
    assert judge.width == 8 and judge.features[0][0].out_channels == 8
    images, _, _ = world.make_dataset(4, seed=5)
    assert len(judge_images(judge, images)) == 4
    # the shipped judge records its width; a judge saved before the width was recorded
    # (no "width" in its config) reloads at the old fixed width, 48
    assert (
        load_judge(JUDGE_DIR).width == json.loads((JUDGE_DIR / "config.json").read_text())["width"]
    )
    legacy = tmp_path / "legacy"
    save_judge(Judge(48), legacy)
    config = json.loads((legacy / "config.json").read_text())
    del config["width"]
    (legacy / "config.json").write_text(json.dumps(config))
    assert load_judge(legacy).width == 48
