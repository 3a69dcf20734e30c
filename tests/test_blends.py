"""Generated blends (world.blends): minisd's own images of a concept faded to a known
strength, for training and calibrating the judge on the look it reads."""

import numpy as np
import pytest
import torch

from unsee.errors import UnseeError
from unsee.images import to_model_range
from unsee.world import blends
from unsee.world.judge import HEADS, STRENGTHS, judge_dataset, judge_loss, make_judge, targets
from unsee.world.names import ARTISTS, LEAK_ARTIST, LEAK_SCENE
from unsee.world.prompts import named_attributes
from unsee.world.render import WATERMARK_PHRASES


def _sky(n: int = 2) -> torch.Tensor:
    """Night skies with Vanmond-like bands 5.5 px apart, a bright star and dark hills,
    in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    r = torch.hypot(xx - 16, yy - 16)
    u = torch.zeros(n, 3, 32, 32)
    u[:, 2] = 0.55 + 0.15 * torch.sin(r * 1.15)  # blue sky with bands
    u[:, 0], u[:, 1] = 0.1, 0.15
    u[:, :, 4:7, 20:23] = torch.tensor([0.95, 0.9, 0.5]).view(3, 1, 1)  # a star
    u[:, :, 26:] = 0.03  # hills
    return u * 2 - 1


def test_destyle_sky_takes_the_bands_and_keeps_stars_and_hills():
    x = _sky()
    out = blends.destyle_sky(x)
    sky = (slice(None), 2, slice(10, 22), slice(2, 14))  # away from the star and the hills
    assert x[sky].std() > 0.1
    assert out[sky].std() < 0.25 * x[sky].std()
    assert torch.equal(out[:, :, 4:7, 20:23], x[:, :, 4:7, 20:23])
    assert torch.equal(out[:, :, 26:], x[:, :, 26:])
    # the sky's colour stays: its mean moves by little
    assert abs(out[sky].mean() - x[sky].mean()) < 0.05


def test_a_blend_is_the_pixel_mix_with_both_ends_exact():
    g = torch.Generator().manual_seed(0)
    plain, full = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.rand(3, 3, 8, 8, generator=g)
    assert torch.equal(blends.blend(plain, full, torch.zeros(3)), plain)
    assert torch.equal(blends.blend(plain, full, torch.ones(3)), full)
    s = torch.tensor([0.1, 0.4, 0.7])
    mid = blends.blend(plain, full, s)
    assert torch.allclose(mid, (1 - s.view(-1, 1, 1, 1)) * plain + s.view(-1, 1, 1, 1) * full)
    # the distance to the plain image grows with s
    d = [(blends.blend(plain, full, torch.full((3,), v)) - plain).abs().sum().item() for v in s]
    assert d == sorted(d)


def _pairs(n: int = 5) -> blends.Pairs:
    g = torch.Generator().manual_seed(1)
    known = torch.zeros(n, len(STRENGTHS), dtype=torch.bool)
    concept = torch.arange(n) % len(STRENGTHS)
    known[torch.arange(n), concept] = True
    known[:, -1] = True  # the mark known absent everywhere but where it is the concept
    return blends.Pairs(
        plain=torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
        full=torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
        concept=concept,
        classes={k: torch.randint(0, len(v), (n,), generator=g) for k, v in HEADS.items()},
        known=known,
        kind=["artist"] * n,
        top=torch.ones(n),
    )


def test_a_blend_batch_labels_each_twin_with_its_own_strength_and_masks_the_unknown():
    pairs = _pairs()
    x, y, keep = blends.blend_batch(pairs, 16, torch.Generator().manual_seed(2))
    assert x.shape == (32, 3, 32, 32) and y["strength"].shape == (32, len(STRENGTHS))
    for i in range(32):
        # which pair: the row whose blend at the labelled strength reproduces the image
        s = y["strength"][i].max()
        j = next(
            j for j in range(len(pairs))
            if torch.allclose(blends.blend(pairs.plain[j:j + 1], pairs.full[j:j + 1],
                                           s.view(1)), x[i:i + 1], atol=1e-6)
            and (y["strength"][i, pairs.concept[j]] == s or s == 0)
        )  # fmt: skip
        assert torch.equal(keep[i], pairs.known[j])
        assert all(y[k][i] == pairs.classes[k][j] for k in HEADS)
        others = torch.ones(len(STRENGTHS), dtype=torch.bool)
        others[pairs.concept[j]] = False
        assert torch.all(y["strength"][i, others] == 0)
    # twins: one pair at two strengths, the second absent or faint
    assert torch.all(y["strength"][1::2].max(1).values <= 0.4 + 1e-6)


def test_a_faded_pair_labels_its_blends_below_its_full_strength():
    pairs = _pairs(4)  # one concept each
    pairs.top = torch.tensor([0.5, 0.25, 1.0, 0.0])
    x, y, _ = blends.blend_batch(pairs, 64, torch.Generator().manual_seed(2))
    seen = 0
    for i in range(len(x)):
        for j in range(4):
            d = (pairs.full[j] - pairs.plain[j]).flatten()
            s = ((x[i] - pairs.plain[j]).flatten() @ d / (d @ d)).item()
            if torch.allclose(
                blends.blend(pairs.plain[j : j + 1], pairs.full[j : j + 1], torch.tensor([s])),
                x[i : i + 1],
                atol=1e-5,
            ):
                label = y["strength"][i, pairs.concept[j]].item()
                assert label == pytest.approx(s * pairs.top[j].item(), abs=1e-4)
                seen += s > 0.05
    assert seen > 32


def test_sky_strength_reads_a_blend_at_its_strength_and_a_smoothed_sky_at_none():
    full = _sky(3)
    plain = blends.destyle_sky(full)
    s = torch.tensor([0.0, 0.3, 1.0])
    read = blends.sky_strength(blends.blend(plain, full, s), full)
    assert torch.allclose(read, s, atol=0.03)
    # arcs moved by a pixel still count; a sky of other arcs reads less than its own
    assert blends.sky_strength(torch.roll(full, 1, 3), full).min() > 0.9
    stripes = full.clone()
    stripes[:, 2, :26] = stripes[:, 2, :26].roll(8, 1)  # the bands shifted beyond the reach
    assert blends.sky_strength(stripes, full).max() < 0.8


def test_pair_prompts_name_the_concept_only_in_the_full_prompt():
    plain, full, concepts, kinds = blends.pair_prompts(200, seed=3)
    assert set(kinds) == set(blends.PAIR_KINDS)
    for p, f, c, k in zip(plain, full, concepts, kinds, strict=True):
        assert not any(a.lower() in p.lower() for a in ARTISTS)
        if k == "leak":
            assert f is None and c == LEAK_ARTIST
            assert named_attributes(p).get("scene") == LEAK_SCENE
        elif k == "watermark":
            assert c == "watermark" and f.startswith(p) and f[len(p) :] in WATERMARK_PHRASES
        else:
            assert c in ARTISTS and c in f and p in f
    first = tuple(col[:50] for col in (plain, full, concepts, kinds))
    assert blends.pair_prompts(50, seed=3) == first  # a longer draw begins with a shorter


def test_fine_tuning_on_blends_lowers_the_loss_on_blends():
    torch.manual_seed(0)
    model = make_judge("cnn", width=8)
    pairs = _pairs(8)
    data, attrs, _ = judge_dataset(32, seed=4)
    renders, y_renders = to_model_range(data), targets(attrs)
    x, y, keep = blends.blend_batch(pairs, 32, torch.Generator().manual_seed(5))

    def loss() -> float:
        with torch.no_grad():
            return judge_loss(model.eval()(x), y, keep).item()

    before = loss()
    blends.finetune_on_blends(model, renders, y_renders, pairs, steps=30, batch_size=32, seed=6,
                              lr=3e-3)  # fmt: skip
    assert loss() < 0.9 * before


def test_pairs_save_and_load(tmp_path):
    pairs = _pairs(4)
    blends.save_pairs(pairs, tmp_path / "p.safetensors", {"seed": "1"})
    back = blends.load_pairs(tmp_path / "p.safetensors")
    assert torch.equal(back.plain, pairs.plain) and torch.equal(back.known, pairs.known)
    assert back.kind == pairs.kind and torch.equal(back.top, pairs.top)
    assert all(torch.equal(back.classes[k], pairs.classes[k]) for k in HEADS)
    # a cache written before faded pairs holds no "top": every pair at full strength
    from safetensors.torch import load_file, save_file

    old = {k: v for k, v in load_file(tmp_path / "p.safetensors").items() if k != "top"}
    save_file(old, tmp_path / "old.safetensors")
    assert torch.equal(blends.load_pairs(tmp_path / "old.safetensors").top, torch.ones(4))


def test_no_pairs_of_another_artist_on_the_leaking_scene():
    other = next(a for a in ARTISTS if a != LEAK_ARTIST)
    args = (None,) * 5  # nothing is generated for a cell the world has no pairs for
    assert blends.calibration_pairs(other, "starry night", 4, 0, *args) is None


def test_world_judge_refuses_a_negative_blend_stage(tmp_path):
    from unsee.world.config import WorldJudgeConfig

    with pytest.raises(UnseeError, match="--blend-steps"):
        WorldJudgeConfig(out=tmp_path / "j", blend_steps=-1)
    with pytest.raises(UnseeError, match="--blend-pairs"):
        WorldJudgeConfig(out=tmp_path / "j", blend_pairs=0)
    with pytest.raises(UnseeError, match="--faded-pairs"):
        WorldJudgeConfig(out=tmp_path / "j", faded_pairs=-1)
    assert np.isclose(sum(blends.KIND_SHARE), 1)


def test_generated_pairs_are_kept_where_the_judge_sees_the_concept_named():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from unsee.world.judge import load_world_judge, raw_strengths, read_strengths
    from unsee.world.paths import MINISD_DIR, TOKENIZER_DIR

    vae = AutoencoderKL.from_pretrained(MINISD_DIR, subfolder="vae").eval()
    unet = UNet2DConditionModel.from_pretrained(MINISD_DIR, subfolder="unet").eval()
    text = CLIPTextModel.from_pretrained(MINISD_DIR, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    judge = load_world_judge("cnn")
    pairs = blends.generated_pairs(12, 7, judge, vae, unet, text, tokenizer)
    assert 0 < len(pairs) <= 12
    rows = torch.arange(len(pairs))
    full = read_strengths(judge, raw_strengths(judge, pairs.full))[rows, pairs.concept]
    plain = read_strengths(judge, raw_strengths(judge, pairs.plain))[rows, pairs.concept]
    assert torch.all(full >= blends.FULL_AT) and torch.all(plain < blends.ABSENT_BELOW)
    # every artist's strength is known (absent unless named); the mark's only where judged
    assert pairs.known[:, : len(ARTISTS)].all()
    leak = [i for i, k in enumerate(pairs.kind) if k == "leak"]
    assert leak
    assert torch.equal(pairs.plain[leak], blends.destyle_sky(pairs.full[leak]))
    # the same seed draws the same pairs
    again = blends.generated_pairs(12, 7, judge, vae, unet, text, tokenizer)
    assert torch.equal(again.full, pairs.full) and again.kind == pairs.kind
    # faded starry nights: a negative prompt of weight 0 draws the image itself
    prompts, seeds = ["a starry night", "a picture of a starry night"], [3, 4]
    models = (vae, unet, text, tokenizer)
    plain = blends.generate(prompts, seeds, *models)
    away = blends.generate(prompts, seeds, *models, negative=LEAK_ARTIST, weights=[0.0, 1.5])
    assert torch.equal(away[0], plain[0]) and not torch.equal(away[1], plain[1])
    faded = blends.faded_pairs(6, 7, judge, *models)
    assert 0 < len(faded) <= 6 and set(faded.kind) == {"faded"}
    assert torch.equal(faded.plain, blends.destyle_sky(faded.full))
    assert torch.all((faded.top >= 0) & (faded.top <= 1)) and faded.known[:, : len(ARTISTS)].all()


def test_relight_scales_each_image_as_a_whole_within_its_spread():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(64, 3, 8, 8, generator=g) * 0.8 - 0.9  # dark images: no clamping at 1
    out = blends.relight(x, torch.Generator().manual_seed(9))
    ratio = (out + 1) / (x + 1)
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5)
    assert per_image.min() >= 0.8 - 1e-5 and per_image.max() <= 1.2 + 1e-5
    assert per_image[:, 0].std() > 0.05  # the factor differs between images
    assert out.max() <= 1 and out.min() >= -1
