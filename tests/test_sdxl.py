"""SDXL through unsee's own code path, on a tiny SDXL built in code: loading (folders and
single-file checkpoints), `unsee generate` (size conditioning in the metadata, batch
invariance, resume, agreement with diffusers' own SDXL pipeline) and `unsee censor`
(guidance, --reject, --retry). Invert, --embedding, erase, evaluate and attack on SDXL:
tests/test_sdxl_erase.py."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pixels, read_metadata
from diffusers import DDIMScheduler, StableDiffusionXLPipeline

from unsee import imageset
from unsee.censor.config import CensorConfig, generate_config
from unsee.censor.reject import reject_sample
from unsee.censor.retry import retry_flagged
from unsee.censor.run import censor, make_censor
from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.models.load import is_conditional, is_sdxl, load_pipeline
from unsee.reward.cnn import CnnReward
from unsee.reward.model import RewardModel
from unsee.sampling.loop import decode

STEPS = 4
PROMPT = "a red circle on grass"


def config(model, out, **kw):
    kw.setdefault("prompt", PROMPT)
    return GenerateConfig(model=str(model), device="cpu", out=Path(out), steps=STEPS, **kw)


@pytest.fixture(scope="module")
def random_reward(tmp_path_factory) -> Path:
    """A cnn reward with random weights (as `unsee bench gpu` uses): guidance follows it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("reward") / "cnn"
    config = {"backbone": "cnn", "loss": "bce", "ensemble": 1, "image_size": 32}
    RewardModel(config, [CnnReward(32)]).save(path)
    return path


# ---------------------------------------------------------------- loading


def test_loads_a_local_sdxl_folder(tiny_sdxl):
    pipe = load_pipeline(str(tiny_sdxl), device="cpu")
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert is_conditional(pipe) and is_sdxl(pipe)
    assert pipe.unet.dtype == pipe.vae.dtype == torch.float32
    assert pipe.watermark is None


def test_fp16_sdxl_keeps_its_vae_in_fp32_and_decodes_fp16_latents(tiny_sdxl):
    pipe = load_pipeline(str(tiny_sdxl), device="cpu", dtype="fp16")
    assert pipe.unet.dtype == pipe.text_encoder_2.dtype == torch.float16
    assert pipe.vae.dtype == torch.float32  # force_upcast: SDXL's VAE overflows in fp16
    # latents large enough to overflow an fp16 VAE's activations still decode
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)).half() * 60
    images = decode(pipe.vae, z)
    assert images.dtype == torch.uint8 and images.shape == (1, 32, 32, 3)
    # bf16 has fp32's range: kept as asked
    assert load_pipeline(str(tiny_sdxl), device="cpu", dtype="bf16").vae.dtype == torch.bfloat16


def test_other_sdxl_pipelines_are_refused_naming_what_is_supported(tmp_path):
    folder = tmp_path / "refiner"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline"})
    )
    with pytest.raises(UnseeError, match=r"Img2Img.*supported:.*SDXL base"):
        load_pipeline(str(folder), device="cpu")


def _save_checkpoint(path: Path, keys: dict[str, tuple[int, ...]]) -> Path:
    state = {k: torch.zeros(shape) for k, shape in keys.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)
    return path


# the keys diffusers tells the kinds of single-file checkpoint apart by
SDXL_KEYS = {
    "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (4,),
    "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 1, 1),
}
SD1_KEYS = {
    "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (4, 4, 1, 1),
    "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (4, 768),
    "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 1, 1),
}


def test_single_file_sdxl_checkpoint_offline_says_which_configs_it_needs(tmp_path):
    """diffusers builds a single file's components from the hub repo of its kind's configs
    (JSON files); offline and not cached, unsee names the kind and the repo in one line."""
    path = _save_checkpoint(tmp_path / "sdxl.safetensors", SDXL_KEYS)
    with pytest.raises(
        UnseeError,
        match=r"single-file SDXL base checkpoint.*stabilityai/stable-diffusion-xl-base-1\.0"
        r".*HF_HUB_OFFLINE",
    ):
        load_pipeline(str(path), device="cpu")


def test_single_file_sdxl_checkpoint_with_cached_configs_loads_offline(tmp_path, monkeypatch):
    """With its kind's configs in the local cache, a single file goes to diffusers'
    from_single_file of the right class, with those configs and nothing downloaded. (The
    conversion itself is diffusers': it needs a checkpoint in the original layout, which
    nothing here can write, so from_single_file stands in with the tiny SDXL.)"""
    from huggingface_hub import constants

    from unsee.models.tiny import tiny_sdxl_pipeline

    repo = "stabilityai/stable-diffusion-xl-base-1.0"
    cache = tmp_path / "hub"
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    calls = []

    def from_single_file(cls, path, **kwargs):
        calls.append((cls, path, kwargs))
        return tiny_sdxl_pipeline().to(kwargs["dtype"])

    monkeypatch.setattr(
        StableDiffusionXLPipeline, "from_single_file", classmethod(from_single_file)
    )
    path = _save_checkpoint(tmp_path / "sdxl.safetensors", SDXL_KEYS)
    pipe = load_pipeline(str(path), device="cpu", dtype="fp16")
    [(cls, source, kwargs)] = calls
    assert cls is StableDiffusionXLPipeline and source == str(path)
    assert kwargs["config"] == repo and kwargs["local_files_only"] is True
    assert kwargs["dtype"] == torch.float16 and kwargs["add_watermarker"] is False
    assert pipe.unet.dtype == torch.float16 and pipe.vae.dtype == torch.float32


def test_single_file_sd_checkpoint_ckpt_offline(tmp_path):
    path = _save_checkpoint(tmp_path / "sd15.ckpt", SD1_KEYS)
    with pytest.raises(UnseeError, match=r"single-file Stable Diffusion 1\.x checkpoint.*v1-5"):
        load_pipeline(str(path), device="cpu")


def test_single_files_that_are_no_supported_checkpoint_are_refused(tmp_path):
    unknown = _save_checkpoint(tmp_path / "other.safetensors", {"some.weight": (2, 2)})
    with pytest.raises(UnseeError, match="not a checkpoint diffusers recognises"):
        load_pipeline(str(unknown), device="cpu")
    refiner = _save_checkpoint(
        tmp_path / "refiner.safetensors",
        {"conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": (4,)},
    )
    with pytest.raises(UnseeError, match=r"'xl_refiner' checkpoint.*SDXL base"):
        load_pipeline(str(refiner), device="cpu")
    garbage = tmp_path / "broken.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UnseeError, match="could not read checkpoint"):
        load_pipeline(str(garbage), device="cpu")
    other = tmp_path / "model.bin"
    other.write_bytes(b"\0")
    with pytest.raises(UnseeError, match="is a file"):
        load_pipeline(str(other), device="cpu")


# ---------------------------------------------------------------- generate


def test_generate_records_the_size_conditioning(tiny_sdxl, tmp_path):
    out = generate(config(tiny_sdxl, tmp_path / "set", n=2, seed=4, negative_prompt="blurry"))
    records = read_metadata(out)
    assert [r["seed"] for r in records] == [4, 5]
    for r in records:
        assert r["original_size"] == r["target_size"] == [32, 32]
        assert r["crops_coords_top_left"] == [0, 0]
        assert (r["height"], r["width"], r["negative_prompt"]) == (32, 32, "blurry")
    assert json.loads((out / "run.json").read_text())["complete"] is True
    images = pixels(out)
    assert all(im.shape == (32, 32, 3) for im in images.values())
    assert not np.array_equal(*images.values())
    # a non-square size is conditioned on as made
    wide = read_metadata(generate(config(tiny_sdxl, tmp_path / "wide", width=48)))
    assert wide[0]["original_size"] == wide[0]["target_size"] == [32, 48]


def test_generate_matches_diffusers_sdxl_pipeline(tiny_sdxl, tmp_path):
    """The same noise through diffusers' StableDiffusionXLPipeline (DDIM, guidance 7.5, the
    empty negative prompt as zeros): the same image, within a grey level."""
    out = generate(config(tiny_sdxl, tmp_path / "set", n=2, seed=7, batch_invariant="off"))
    ours = pixels(out)
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, add_watermarker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for k, name in enumerate(sorted(ours)):
        latents = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(7 + k))
        theirs = pipe(
            PROMPT, num_inference_steps=STEPS, guidance_scale=7.5, latents=latents,
            height=32, width=32, output_type="np",
        ).images[0]  # fmt: skip
        diff = np.abs(ours[name].astype(int) - (theirs * 255).round().astype(int))
        assert diff.max() <= 1, name


def test_same_prompt_and_seed_give_same_pixels_whatever_the_batch_size(tiny_sdxl, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square in the desert\n")
    kw = {"prompt": None, "prompts": prompts, "n": 3}
    one = pixels(generate(config(tiny_sdxl, tmp_path / "b1", batch_size=1, **kw)))
    four = pixels(generate(config(tiny_sdxl, tmp_path / "b4", batch_size=4, **kw)))
    assert one.keys() == four.keys() and len(one) == 6
    for name in one:
        np.testing.assert_array_equal(one[name], four[name], err_msg=name)
    assert not np.array_equal(one["images/000000.png"], one["images/000003.png"])


def test_resume_skips_finished_images_and_repairs_a_killed_run(tiny_sdxl, tmp_path):
    cfg = config(tiny_sdxl, tmp_path / "set", n=4)
    out = generate(cfg)
    before = pixels(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    # a kill mid-run: image 3's metadata line cut short, image 2 deleted, a temp file left
    lines = (out / "metadata.jsonl").read_text().splitlines(keepends=True)
    (out / "metadata.jsonl").write_text("".join(lines[:3]) + lines[3][:25])
    (out / "images" / "000002.png").unlink()
    (out / "images" / ".000001.png.abc.tmp").write_bytes(b"half")
    generate(cfg)
    after = pixels(out)
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    now = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir() if p.suffix == ".png"}
    assert now["000000.png"] == mtimes["000000.png"]
    assert now["000003.png"] != mtimes["000003.png"]
    assert not (out / "images" / ".000001.png.abc.tmp").exists()
    # resuming at another size (other size conditioning) is refused
    with pytest.raises(UnseeError, match="other settings"):
        generate(dataclasses.replace(cfg, height=48))


def test_interrupted_run_leaves_only_complete_entries(tiny_sdxl, tmp_path, monkeypatch):
    cfg = config(tiny_sdxl, tmp_path / "set", n=4, batch_size=1)
    real_save = imageset.save_png
    saved = []

    def save_then_die(image, path, info):
        if len(saved) == 2:
            raise KeyboardInterrupt
        real_save(image, path, info)
        saved.append(path)

    monkeypatch.setattr(imageset, "save_png", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg)
    assert [r["index"] for r in read_metadata(cfg.out)] == [0, 1]
    monkeypatch.setattr(imageset, "save_png", real_save)
    generate(cfg)
    assert [r["index"] for r in read_metadata(cfg.out)] == [0, 1, 2, 3]
    assert json.loads((cfg.out / "run.json").read_text())["complete"] is True


def test_negative_prompt_guidance_sld_and_sega_change_the_image(tiny_sdxl, tmp_path):
    def first(name, **kw):
        return pixels(generate(config(tiny_sdxl, tmp_path / name, **kw)))["images/000000.png"]

    base = first("base")
    for name, kw in {
        "neg": {"negative_prompt": "grass"},
        "off": {"guidance": 1.0},
        "sld": {"sld": "max", "sld_concept": "red"},
        "sega": {"sega_remove": ["red"]},
    }.items():
        assert not np.array_equal(base, first(name, **kw)), name


def test_sdxl_lora_weights_change_the_image(tiny_sdxl, tmp_path):
    """A U-Net LoRA in diffusers' SDXL layout loads through --lora."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from unsee.erase.params import select_parameters

    unet = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl).unet
    params = select_parameters(unet, "lora", lora_rank=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in params.values():  # lora_B starts at zero: make the adapter do something
            p.normal_(0, 0.5)
    lora = tmp_path / "lora"
    StableDiffusionXLPipeline.save_lora_weights(
        lora,
        unet_lora_layers=convert_state_dict_to_diffusers(
            get_peft_model_state_dict(unet, adapter_name="unsee")
        ),
    )
    plain = pixels(generate(config(tiny_sdxl, tmp_path / "plain")))["images/000000.png"]
    out = generate(config(tiny_sdxl, tmp_path / "l", lora=lora))
    assert not np.array_equal(pixels(out)["images/000000.png"], plain)
    assert read_metadata(out)[0]["lora"] == str(lora)


# ---------------------------------------------------------------- censor


def censor_config(model, out, reward, **kw):
    kw.setdefault("prompt", PROMPT)
    return CensorConfig(
        model=str(model), device="cpu", out=Path(out), steps=STEPS, reward=reward, **kw
    )


def test_censor_guides_sdxl_with_a_reward(tiny_sdxl, random_reward, tmp_path):
    cfg = censor_config(tiny_sdxl, tmp_path / "c", random_reward, n=3, scale=200.0)
    out = censor(cfg)
    guided = read_metadata(out)
    assert all("reward_prob" in r and r["original_size"] == [32, 32] for r in guided)
    plain_out = generate(dataclasses.replace(generate_config(cfg), out=tmp_path / "plain"))
    plain, ours = pixels(plain_out), pixels(out)
    assert plain.keys() == ours.keys()
    assert all(not np.array_equal(plain[k], ours[k]) for k in plain)
    # the reward likes the guided images more
    hook = make_censor(cfg, torch.device("cpu"))
    plain_probs = [
        s["reward_prob"] for s in hook.score(torch.from_numpy(np.stack(list(plain.values()))))
    ]
    assert np.mean([r["reward_prob"] for r in guided]) > np.mean(plain_probs)
    # a guided image is the same whatever the batch size
    again = censor(dataclasses.replace(cfg, out=tmp_path / "c1", batch_size=1, n=1))
    np.testing.assert_array_equal(pixels(again)["images/000000.png"], ours["images/000000.png"])


def test_censor_reject_and_retry_on_sdxl(tiny_sdxl, random_reward, tmp_path):
    from unsee.guidance.hook import reward_scores
    from unsee.imageset import load_images, read_image_set
    from unsee.reward.model import load_reward

    common = {"n": 4, "seed": 3}
    first = generate(config(tiny_sdxl, tmp_path / "first", **common))
    probs = [
        s["reward_prob"]
        for s in reward_scores(
            load_reward(random_reward).score_images(load_images(first, read_image_set(first), None))
        )
    ]
    threshold = float(np.median(probs))
    out = reject_sample(
        censor_config(
            tiny_sdxl, tmp_path / "r", random_reward, reject=True, threshold=threshold,
            budget=20, **common,
        )
    )  # fmt: skip
    records = read_metadata(out)
    assert [r["index"] for r in records] == list(range(4))
    assert all(r["reward_prob"] > threshold for r in records)
    assert json.loads((out / "run.json").read_text())["samples"] > 4

    cfg = censor_config(
        tiny_sdxl, tmp_path / "g", random_reward, scale=2.0, threshold=threshold, retry=2, **common
    )
    out = censor(cfg)
    after = read_metadata(out)
    run = json.loads((out / "run.json").read_text())
    assert run["retry"]["max_rounds"] == 2 and sorted(r["index"] for r in after) == list(range(4))
    assert all(r["original_size"] == [32, 32] for r in after)
    # the retry pass is resumable: a rerun changes nothing
    summary = run["retry"]
    assert retry_flagged(out, cfg, make_censor(cfg, torch.device("cpu"))) == summary
