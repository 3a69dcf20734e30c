"""Inference-time baselines of `unsee generate`: learned tokens, LoRA, SLD and SEGA."""

import json
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pixels, read_metadata
from safetensors.torch import save_file

from unsee.cli import main
from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.guidance import sld as sld_module
from unsee.guidance.sega import SEGASettings, sega_guidance
from unsee.guidance.sld import PRESETS, SLDPreset, sld_guidance

STEPS = 3
PROMPT = "a red circle on grass"
FIRST = "images/000000.png"


def config(model, out, **kw):
    kw.setdefault("prompt", PROMPT)
    return GenerateConfig(model=str(model), device="cpu", out=Path(out), steps=STEPS, **kw)


@pytest.fixture(scope="module")
def plain(tiny_sd, tmp_path_factory) -> np.ndarray:
    """Image 0 of plain generation (classifier-free guidance only)."""
    return pixels(generate(config(tiny_sd, tmp_path_factory.mktemp("plain"))))[FIRST]


# --- SLD math on hand-made tensors ---------------------------------------------------


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values).reshape(1, 1, 1, -1)  # (B=1, C=1, h=1, w)


def test_sld_threshold_zeroes_and_the_scale_is_clamped_at_one():
    p = SLDPreset(warmup_steps=0, guidance_scale=10.0, threshold=0.05, momentum_scale=0.0,
                  mom_beta=0.0)  # fmt: skip
    eps_u = _t(0.0, 0.0, 0.0)
    eps_s = _t(1.0, 1.0, 1.0)
    # eps_c - eps_s: 0.1 >= threshold (zeroed), -0.5 (10 * 0.5 clamped to 1), 0.02 (scale 0.2)
    eps_c = _t(1.1, 0.5, 1.02)
    guidance, momentum = sld_guidance(eps_u, eps_c, eps_s, torch.zeros_like(eps_u), 0, p)
    g_s = _t(0.0, 1.0, 0.2)  # mu (eps_s - eps_u), eps_s - eps_u = 1
    torch.testing.assert_close(guidance, eps_c - eps_u - g_s)
    torch.testing.assert_close(momentum, g_s)  # beta_m = 0: nu is this step's gamma


def test_sld_momentum_recurrence_and_warm_up():
    p = SLDPreset(warmup_steps=2, guidance_scale=1e6, threshold=10.0, momentum_scale=0.5,
                  mom_beta=0.7)  # fmt: skip
    eps_u, eps_c, eps_s = _t(0.0), _t(2.0), _t(1.0)  # mu = 1, so mu (eps_s - eps_u) = 1
    nu = torch.zeros_like(eps_u)
    want_nu = 0.0
    for step in range(4):
        guidance, nu = sld_guidance(eps_u, eps_c, eps_s, nu, step, p)
        g_s = 1.0 + 0.5 * want_nu  # eq. 7
        want_nu = 0.7 * want_nu + 0.3 * g_s  # eq. 8
        torch.testing.assert_close(nu, _t(want_nu))
        # eq. 3: gamma acts only from the warm-up on; the momentum builds up before it
        want = 2.0 - g_s if step >= 2 else 2.0
        torch.testing.assert_close(guidance, _t(want))


def test_sld_presets_scale_their_warm_up_to_the_steps():
    assert set(typing.get_args(typing.get_type_hints(GenerateConfig)["sld"])) == {"off", *PRESETS}
    assert PRESETS["medium"].for_steps(50) == PRESETS["medium"]
    assert PRESETS["medium"].for_steps(25).warmup_steps == 5
    assert PRESETS["weak"].for_steps(25).warmup_steps == 8  # 7.5, to the even number
    assert PRESETS["strong"].for_steps(100).warmup_steps == 14
    assert PRESETS["max"].for_steps(10).warmup_steps == 0


# --- SEGA math on hand-made tensors --------------------------------------------------


def test_sega_keeps_the_top_quantile_per_sample_and_channel_reversed():
    s = SEGASettings(scale=2.0, threshold=0.5, momentum_scale=0.0, mom_beta=0.4)
    eps_u = torch.zeros(2, 2, 2, 5)  # (B, C, h, w)
    ramp = torch.arange(1.0, 11.0).reshape(2, 5)  # |psi| 1..10 over the spatial positions
    eps_e = torch.stack([ramp, -10 * ramp]).expand(2, 2, 2, 5).clone()[None]  # (E=1, B, C, h, w)
    eps_e[0, 1] *= torch.tensor([1.0, 0.0])[:, None, None]  # sample 1, channel 1: all zero
    gamma, momentum = sega_guidance(eps_u, eps_e, torch.zeros_like(eps_u), s)
    # median of 1..10 is 5.5: only the five largest entries per (sample, channel) survive,
    # with the sign reversed (away from the concept) and the edit scale applied
    keep = ramp >= 5.5
    torch.testing.assert_close(gamma[0, 0], torch.where(keep, -2 * ramp, 0.0))
    torch.testing.assert_close(gamma[0, 1], torch.where(keep, 20 * ramp, 0.0))
    torch.testing.assert_close(gamma[1, 0], gamma[0, 0])
    # an all-zero direction has quantile 0, so everything "survives" as zeros
    torch.testing.assert_close(gamma[1, 1], torch.zeros(2, 5))
    torch.testing.assert_close(momentum, 0.6 * gamma)


def test_sega_sums_the_concepts_and_adds_momentum():
    s = SEGASettings(scale=1.0, threshold=0.0, momentum_scale=0.1, mom_beta=0.4)
    eps_u = torch.ones(1, 1, 1, 3)
    eps_e = torch.stack([torch.full((1, 1, 1, 3), 2.0), torch.full((1, 1, 1, 3), 4.0)])
    nu = torch.full((1, 1, 1, 3), 10.0)
    gamma, new_nu = sega_guidance(eps_u, eps_e, nu, s)
    torch.testing.assert_close(gamma, torch.full((1, 1, 1, 3), -(1.0 + 3.0) + 0.1 * 10))
    torch.testing.assert_close(new_nu, 0.4 * nu + 0.6 * gamma)


# --- end to end ----------------------------------------------------------------------


def test_sld_changes_the_image_and_is_recorded_and_checked_on_resume(tiny_sd, tmp_path, plain):
    out = generate(config(tiny_sd, tmp_path / "sld", sld="max", sld_concept="grass"))
    assert not np.array_equal(pixels(out)[FIRST], plain)
    record = read_metadata(out)[0]
    assert record["sld"] == {"preset": "max", "concept": "grass", "warmup_steps": 0,
                             "guidance_scale": 5000.0, "threshold": 1.0,
                             "momentum_scale": 0.5, "mom_beta": 0.7}  # fmt: skip
    run = json.loads((out / "run.json").read_text())
    assert run["sld"] == record["sld"] and run["settings"]["sld"] == "max"
    with pytest.raises(UnseeError, match=r"other settings.*sld"):
        generate(config(tiny_sd, out, sld="strong", sld_concept="grass"))


def test_sld_before_its_warm_up_is_plain_guidance(tiny_sd, tmp_path, plain, monkeypatch):
    long = SLDPreset(100, 5000.0, 1.0, 0.5, 0.7)  # warm-up 100 of 50: never acts
    monkeypatch.setitem(sld_module.PRESETS, "max", long)
    out = generate(config(tiny_sd, tmp_path / "warm", sld="max", sld_concept="grass"))
    np.testing.assert_array_equal(pixels(out)[FIRST], plain)


def test_sld_pixels_do_not_depend_on_the_batch_size(tiny_sd, tmp_path):
    kw = dict(n=3, sld="strong", sld_concept="grass")
    one = pixels(generate(config(tiny_sd, tmp_path / "b1", batch_size=1, **kw)))
    three = pixels(generate(config(tiny_sd, tmp_path / "b3", batch_size=3, **kw)))
    assert one.keys() == three.keys() and len(one) == 3
    for name in one:
        np.testing.assert_array_equal(one[name], three[name], err_msg=name)


def test_sega_changes_the_image(tiny_sd, tmp_path, plain):
    out = generate(config(tiny_sd, tmp_path / "sega", sega_remove=["grass", "red"]))
    assert not np.array_equal(pixels(out)[FIRST], plain)
    assert read_metadata(out)[0]["sega"] == {"remove": ["grass", "red"], "scale": 5.0,
                                             "warmup_steps": 1, "threshold": 0.9,
                                             "momentum_scale": 0.1, "mom_beta": 0.4}  # fmt: skip


def _embedding_file(path: Path, token: str = "<tok>", dim: int = 32) -> Path:
    save_file({token: torch.randn(2, dim, generator=torch.Generator().manual_seed(0))}, path)
    return path


def test_learned_token_works_in_prompt_and_negative_prompt(tiny_sd, tmp_path, plain):
    emb = _embedding_file(tmp_path / "learned_embeds.safetensors")
    prompt = "a <tok> on grass"
    learned = generate(config(tiny_sd, tmp_path / "a", prompt=prompt, embedding=[emb]))
    as_text = generate(config(tiny_sd, tmp_path / "b", prompt=prompt))
    assert not np.array_equal(pixels(learned)[FIRST], pixels(as_text)[FIRST])
    assert read_metadata(learned)[0]["embedding"] == [str(emb)]
    negative = generate(config(tiny_sd, tmp_path / "c", negative_prompt="<tok>", embedding=[emb]))
    assert not np.array_equal(pixels(negative)[FIRST], plain)


def test_a_token_already_in_the_tokenizer_is_refused(tiny_sd, tmp_path):
    emb = _embedding_file(tmp_path / "learned_embeds.safetensors")
    with pytest.raises(UnseeError, match="already in the tokenizer"):
        generate(config(tiny_sd, tmp_path / "x", embedding=[emb, emb]))
    wide = _embedding_file(tmp_path / "wide.safetensors", "<wide>", dim=768)
    with pytest.raises(UnseeError, match="takes 32"):
        generate(config(tiny_sd, tmp_path / "y", embedding=[wide]))


def test_lora_changes_the_image(tiny_sd, tmp_path, plain):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from unsee.erase.params import select_parameters

    unet = StableDiffusionPipeline.from_pretrained(tiny_sd).unet
    params = select_parameters(unet, "lora", lora_rank=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in params.values():  # lora_B starts at zero: make the adapter do something
            p.normal_(0, 0.5)
    state = get_peft_model_state_dict(unet, adapter_name="unsee")
    lora = tmp_path / "lora"
    StableDiffusionPipeline.save_lora_weights(
        lora, unet_lora_layers=convert_state_dict_to_diffusers(state)
    )
    out = generate(config(tiny_sd, tmp_path / "l", lora=lora))
    assert not np.array_equal(pixels(out)[FIRST], plain)
    assert read_metadata(out)[0]["lora"] == str(lora)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--embedding", "missing.safetensors"], "embedding file missing.safetensors does not"),
        (["--lora", "missing-lora"], "LoRA weights missing-lora do not exist"),
        (["--sld", "max"], "--sld max needs --sld-concept"),
        (["--sld", "max", "--sld-concept", "x", "--sega-remove", "y"], "not both"),
    ],
    ids=["embedding", "lora", "sld-concept", "sld-and-sega"],
)
def test_bad_baseline_options_exit_2_with_one_line(tiny_sd, tmp_path, capsys, flags, message):
    argv = ["generate", "--model", str(tiny_sd), "--prompt", "x", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--device", "cpu", "--steps", "1", *flags])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("unsee: error: ") and message in err, err


def test_baselines_do_not_mix_with_reward_guidance(tiny_sd, tmp_path):
    cfg = config(tiny_sd, tmp_path / "x", sega_remove=["grass"])
    with pytest.raises(UnseeError, match="`unsee censor` takes neither"):
        generate(cfg, censor=object())  # refused before the censor is used
