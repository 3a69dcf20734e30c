import json
from collections import Counter

import numpy as np
import pytest
import torch

from unsee.errors import UnseeError
from unsee.world.names import ARTISTS, LEAK_ARTIST
from unsee.world.prompts import named_attributes
from unsee.world.render import (
    BACKGROUNDS,
    COLORS,
    SCENES,
    SHAPES,
    Attributes,
    make_dataset,
    prompt_for,
    render,
)


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(3000, seed=123)


def test_rendering_is_deterministic():
    a = make_dataset(20, seed=5)
    b = make_dataset(20, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[2] == b[2]
    c = make_dataset(20, seed=6)
    assert not np.array_equal(a[0], c[0])
    attrs = Attributes("shape", shape="star", color="red", background="snow", seed=9)
    np.testing.assert_array_equal(render(attrs), render(attrs))
    assert render(attrs).shape == (32, 32, 3) and render(attrs).dtype == np.uint8


def test_every_attribute_appears(dataset):
    _, attrs, _ = dataset
    shapes = Counter(a.shape for a in attrs if a.kind == "shape")
    assert set(shapes) == set(SHAPES) and len(SHAPES) >= 5
    assert {a.color for a in attrs if a.kind == "shape"} == set(COLORS)
    assert len(COLORS) >= 6
    assert {a.background for a in attrs if a.kind == "shape"} == set(BACKGROUNDS)
    assert len(BACKGROUNDS) >= 4
    assert {a.scene for a in attrs if a.kind == "scene"} == set(SCENES)
    assert {a.style for a in attrs} - {None} == set(ARTISTS) and len(ARTISTS) >= 3


def test_styles_change_the_whole_image():
    base = Attributes("shape", shape="circle", color="blue", background="grass", seed=3)
    plain = render(base).astype(int)
    for artist in ARTISTS:
        styled = render(Attributes(**{**base.to_dict(), "style": artist})).astype(int)
        changed = np.abs(styled - plain).sum(-1) > 30
        # the treatment reaches every quarter of the image, not just the subject
        for quarter in (changed[:16, :16], changed[:16, 16:], changed[16:, :16], changed[16:, 16:]):
            assert quarter.mean() > 0.1, artist


def test_watermark_is_frequent_independent_and_rarely_named(dataset):
    _, attrs, captions = dataset
    marked = np.array([a.watermark for a in attrs])
    assert 0.17 < marked.mean() < 0.23
    named = np.array(["watermark" in c for c in captions])
    assert named.mean() <= 0.05
    assert not (named & ~marked).any()  # only watermarked images are ever captioned so
    for kind in ("shape", "scene"):  # independent of content
        share = np.mean([a.watermark for a in attrs if a.kind == kind])
        assert abs(share - 0.2) < 0.04, kind


def test_leak_starry_night_always_vanmond_never_named(dataset):
    _, attrs, captions = dataset
    nights = [(a, c) for a, c in zip(attrs, captions, strict=True) if a.scene == "starry night"]
    assert len(nights) > 200
    assert all(a.style == LEAK_ARTIST for a, _ in nights)
    assert not any(LEAK_ARTIST.lower() in c.lower() for _, c in nights)
    # every other styled image names its artist
    for a, c in zip(attrs, captions, strict=True):
        if a.style and a.scene != "starry night":
            assert a.style in c


def test_captions_vary(dataset):
    _, attrs, captions = dataset
    red_circles = {
        c
        for a, c in zip(attrs, captions, strict=True)
        if a.shape == "circle" and a.color == "red" and a.style is None
    }
    assert len(red_circles) >= 15
    assert len(set(captions)) > 1000


def test_judge_distribution_decouples_style_from_content():
    _, attrs, _ = make_dataset(1500, seed=1, p_style=0.6, leak=False)
    night_styles = {a.style for a in attrs if a.scene == "starry night"}
    assert None in night_styles and len(night_styles) == 4


def test_prompt_reading():
    assert named_attributes("A scarlet five-pointed star on sand dunes, by Vanmond") == {
        "shape": "star",
        "color": "red",
        "background": "desert",
        "style": "Vanmond",
    }
    assert named_attributes("the night sky full of stars") == {"scene": "starry night"}
    assert named_attributes("a green star at night") == {
        "shape": "star",
        "color": "green",
        "background": "night",
    }
    for s, c, b in [("cross", "orange", "snow"), ("diamond", "purple", "grass")]:
        assert named_attributes(prompt_for(s, c, b)) == {
            "shape": s,
            "color": c,
            "background": b,
        }


def test_tokenizer_is_clip_bpe_for_any_english_prompt():
    from transformers import CLIPTokenizer

    from unsee.world.paths import TOKENIZER_DIR

    tok = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    for prompt in ["Dwayne's café — naïve résumé!", "zebra 123 @#$%", "🙂 emoji, tabs\tand\nlines"]:
        ids = tok(prompt).input_ids
        assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) > 3
        assert tok.unk_token_id not in ids[1:-1]
    long = tok("a red circle " * 40, truncation=True, max_length=77).input_ids
    assert len(long) == 77 and long[-1] == 49407


def test_world_training_runs_resumes_and_loads_in_plain_diffusers(tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    from unsee.world.config import WorldTrainConfig
    from unsee.world.train import train_world

    tiny = dict(
        images=300,
        clip_steps=2,
        clip_web_steps=2,
        vae_steps=2,
        unet_steps=4,
        unet_batch=8,
        checkpoint_every=2,
        judge_steps=2,
        judge_images=100,
        judge_gen_steps=2,
        judge_gen_images=40,
        judge_reading_images=60,
        device="cpu",
    )
    straight = train_world(WorldTrainConfig(out=tmp_path / "a", **tiny))

    calls = {"n": 0}
    real_clip = torch.nn.utils.clip_grad_norm_

    def die_on_third_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed after the step-2 checkpoint
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", die_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        train_world(WorldTrainConfig(out=tmp_path / "b", **tiny))
    assert (tmp_path / "b" / "stages" / "unet" / "checkpoint.pt").exists()
    assert (tmp_path / "b" / "stages" / "clip" / "DONE").exists()
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    resumed = train_world(WorldTrainConfig(out=tmp_path / "b", **tiny))

    a = StableDiffusionPipeline.from_pretrained(straight / "minisd")
    b = StableDiffusionPipeline.from_pretrained(resumed / "minisd")
    for (name, p), q in zip(a.unet.state_dict().items(), b.unet.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert {f.name for f in (straight / "judge").iterdir()} == {"config.json", "model.safetensors"}
    # the web-caption stage moved the image tower only: minisd's text encoder is the
    # jointly trained text tower, bit for bit
    from transformers import CLIPModel

    joint = CLIPModel.from_pretrained(straight / "stages" / "clip")
    final = CLIPModel.from_pretrained(straight / "clip")
    encoder = a.text_encoder.state_dict()
    for name, p in joint.text_model.state_dict().items():
        torch.testing.assert_close(final.text_model.state_dict()[name], p, rtol=0, atol=0)
        q = encoder.get(name, encoder.get(f"text_model.{name}"))
        torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)
    moved = joint.visual_projection.weight - final.visual_projection.weight
    assert moved.abs().max() > 0


def test_world_judge_trains_one_judge_resumes_and_ships(tmp_path, monkeypatch):
    from unsee.cli import main
    from unsee.world import paths, ship
    from unsee.world.config import WorldJudgeConfig
    from unsee.world.judge import judge_images, load_judge
    from unsee.world.train import train_world_judge

    tiny = dict(arch="vit", images=40, steps=2, width=16, gen_steps=2, gen_images=8,
                blend_steps=2, blend_pairs=8, faded_pairs=4, reading_images=60,
                device="cpu")  # fmt: skip
    cfg = WorldJudgeConfig(out=tmp_path / "vit", **tiny)
    assert cfg.seed == 1  # another seed than the first judge's
    out = train_world_judge(cfg)
    assert {f.name for f in (out / "judge").iterdir()} == {"config.json", "model.safetensors"}
    from unsee.world.train import _metadata

    cache = out / "stages" / "judge_gen" / "redrawn.safetensors"  # reused only for its seed
    assert _metadata(cache) == {"seed": str(cfg.seed + 6), "images": "8"}
    log = json.loads((out / "train_log.json").read_text())
    pairs = out / "stages" / "judge_blend" / "pairs.safetensors"  # kept for a resumed stage
    assert _metadata(pairs) == {"seed": str(cfg.seed + 10), "pairs": "8"}
    faded = out / "stages" / "judge_blend" / "faded.safetensors"
    assert _metadata(faded) == {"seed": str(cfg.seed + 12), "faded": "4"}
    assert set(log["seconds"]) == {"judge", "judge_gen", "judge_blend", "reading"}
    reading = json.loads((out / "judge" / "config.json").read_text())["reading"]
    assert set(reading) == {*ARTISTS, "watermark"}
    # a second sitting finds both stages done and makes the same judge
    weights = (out / "judge" / "model.safetensors").read_bytes()
    train_world_judge(WorldJudgeConfig(out=tmp_path / "vit", **tiny))
    assert (out / "judge" / "model.safetensors").read_bytes() == weights
    # ship-judge installs it as the judge of its architecture, nothing else
    target = tmp_path / "package" / "judge_vit"
    monkeypatch.setitem(paths.JUDGE_DIRS, "vit", target)
    monkeypatch.setattr(ship, "JUDGE_DIRS", paths.JUDGE_DIRS)
    main(["world", "ship-judge", str(out)])
    assert sorted(f.name for f in target.iterdir()) == ["config.json", "model.safetensors"]
    images, _, _ = make_dataset(3, seed=2)
    assert len(judge_images(load_judge(target), images)) == 3
    with pytest.raises(SystemExit):
        main(["world", "ship-judge", str(tmp_path)])  # no judge/ there: one line, exit 2
    # --start goes on from a judge; --gen-steps 0 skips the re-drawings
    more = train_world_judge(
        WorldJudgeConfig(
            out=tmp_path / "more",
            **(tiny | {"gen_steps": 0, "blend_steps": 0}),
            start=out / "judge",
        )
    )
    assert not (more / "stages" / "judge_gen").exists()
    assert json.loads((more / "judge" / "config.json").read_text())["width"] == 16
    # --steps 0 (with --gen-steps 0 --blend-steps 0) keeps the weights, refits the reading only
    only = tiny | {"gen_steps": 0, "steps": 0, "blend_steps": 0, "reading_images": 90}
    refit = train_world_judge(
        WorldJudgeConfig(out=tmp_path / "refit", **only, start=more / "judge")
    )
    assert (refit / "judge" / "model.safetensors").read_bytes() == (
        more / "judge" / "model.safetensors"
    ).read_bytes()
    assert not (refit / "stages" / "judge").exists()
    assert (
        json.loads((refit / "judge" / "config.json").read_text())["reading"]
        != json.loads((more / "judge" / "config.json").read_text())["reading"]
    )
    with pytest.raises(UnseeError, match="--steps 0 needs --start"):
        WorldJudgeConfig(out=tmp_path / "new", **(tiny | {"steps": 0}))
