"""`unsee world train`: train minisd and the judge on the procedural world, from one seed.

Stages, each resumable (a finished stage is kept; the U-Net stage also checkpoints):
  1. data   render the training set (images, attributes, captions)
  2. clip   a mini CLIP (transformers CLIPModel), contrastive on image-caption pairs
     clip_web  its image tower goes on learning from web-like captions (watermarks named far
            more often, as in real alt text) with the text tower frozen, so the U-Net's
            text encoder is unchanged while the image embeddings see the watermark
  3. vae    an AutoencoderKL, 32x32 RGB <-> 8x8x4 latents
  4. unet   a UNet2DConditionModel on VAE latents and frozen CLIP text states, 10% caption
            dropout (for classifier-free guidance), min-SNR-5 loss weights, EMA weights
  5. judge  the attribute classifier and strength reader (the first judge, a CNN), on its
            own rendered data, each concept drawn at a random strength (see judge.py)
     judge_gen  the judge goes on training with its renders re-drawn by the world model
            (SDEdit), so it reads the model's rendering of each style (see judge.py)
The second judge (a small vision transformer) is trained by `unsee world judge --arch vit`,
which runs stages 5 alone against the shipped minisd (train_world_judge).
  6. save   a diffusers StableDiffusionPipeline folder (DDIM scheduler), the CLIP model, the
            judge, and train_log.json with the timings
"""

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.training_utils import EMAModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPTokenizer

from unsee.errors import UnseeError
from unsee.images import to_model_range
from unsee.models.load import pick_device
from unsee.world import blends
from unsee.world import judge as world_judge
from unsee.world import render as world
from unsee.world.config import WorldJudgeConfig, WorldTrainConfig
from unsee.world.paths import MINISD_DIR, TOKENIZER_DIR

# Architecture of minisd: Stable Diffusion's layout, shrunk for 32x32 images on a CPU.
TEXT_DIM = 64
CLIP_CONFIG = {
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": TEXT_DIM,
        "intermediate_size": 4 * TEXT_DIM,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407,
        "projection_dim": 64,
    },
    "vision_config": {
        "image_size": world.SIZE,
        "patch_size": 4,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "projection_dim": 64,
    },
    "projection_dim": 64,
}
VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "sample_size": world.SIZE,
}
UNET_CONFIG = {
    "sample_size": world.SIZE // 4,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (64, 128, 128),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": TEXT_DIM,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
# Stable Diffusion's noise schedule.
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}
CAPTION_DROPOUT = 0.1


def _done(stage: Path) -> bool:
    return (stage / "DONE").exists()


def _finish(stage: Path, info: dict) -> None:
    (stage / "DONE").write_text(json.dumps(info) + "\n")


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup)))


# ---------------------------------------------------------------- 1. data


def stage_data(cfg: WorldTrainConfig, stage: Path) -> dict:
    if not _done(stage):
        stage.mkdir(parents=True, exist_ok=True)
        images, attrs, captions = world.make_dataset(cfg.images, cfg.seed)
        np.save(stage / "images.npy", images)
        (stage / "captions.json").write_text(json.dumps(captions))
        (stage / "attributes.json").write_text(json.dumps([a.to_dict() for a in attrs]))
        _finish(stage, {"images": cfg.images})
    return {
        "images": np.load(stage / "images.npy"),
        "captions": json.loads((stage / "captions.json").read_text()),
    }


# ---------------------------------------------------------------- 2. mini CLIP


def _tokens(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    return tokenizer(
        texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids


def stage_clip(cfg, stage: Path, data: dict, tokenizer, device) -> CLIPModel:
    if _done(stage):
        return CLIPModel.from_pretrained(stage).to(device)
    torch.manual_seed(cfg.seed + 1)
    model = CLIPModel(CLIPConfig(**CLIP_CONFIG)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    images, captions = data["images"], data["captions"]
    rng = np.random.default_rng(cfg.seed + 1)
    batch = 256
    for step in tqdm(range(cfg.clip_steps), desc="clip", dynamic_ncols=True):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _cosine(step, cfg.clip_steps, 50)
        idx = rng.integers(0, len(images), batch)
        out = model(
            input_ids=_tokens(tokenizer, [captions[i] for i in idx]).to(device),
            pixel_values=to_model_range(images[idx]).to(device),
            return_loss=True,
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    model.save_pretrained(stage)
    _finish(stage, {"steps": cfg.clip_steps, "last_loss": out.loss.item()})
    return model


def stage_clip_web(cfg, stage: Path, clip: CLIPModel, data_stage: Path, tokenizer, device):
    """Continue the image tower (and its projection) on web-like captions, text tower and
    temperature frozen: the text embeddings the U-Net reads do not move."""
    if _done(stage):
        return CLIPModel.from_pretrained(stage).to(device)
    torch.manual_seed(cfg.seed + 5)
    rng = np.random.default_rng(cfg.seed + 5)
    stored = json.loads((data_stage / "attributes.json").read_text())
    attrs = [world.Attributes(**a) for a in stored]
    captions = [world.caption(a, rng, world.P_WATERMARK_NAMED_WEB) for a in attrs]
    images = np.load(data_stage / "images.npy")
    clip.requires_grad_(False)
    trained = [*clip.vision_model.parameters(), *clip.visual_projection.parameters()]
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trained, lr=3e-4, weight_decay=0.05)
    batch = 256
    for step in tqdm(range(cfg.clip_web_steps), desc="clip_web", dynamic_ncols=True):
        for group in opt.param_groups:
            group["lr"] = 3e-4 * _cosine(step, cfg.clip_web_steps, 20)
        idx = rng.integers(0, len(images), batch)
        out = clip(
            input_ids=_tokens(tokenizer, [captions[i] for i in idx]).to(device),
            pixel_values=to_model_range(images[idx]).to(device),
            return_loss=True,
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    clip.requires_grad_(False)
    clip.save_pretrained(stage)
    _finish(stage, {"steps": cfg.clip_web_steps, "last_loss": out.loss.item()})
    return clip


@torch.no_grad()
def sdedit(
    images: torch.Tensor,
    captions: list[str],
    vae,
    unet,
    text_model,
    tokenizer,
    strength: float,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = 0,
) -> torch.Tensor:
    """Re-draw images (B, 3, H, W) in [-1, 1] with the world model: encode, noise to
    `strength` of the DDIM trajectory, denoise with classifier-free guidance on the caption."""
    device = unet.device
    sched = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    sched.set_timesteps(steps)
    start = steps - round(steps * strength)
    g = torch.Generator().manual_seed(seed)
    z = vae.encode(images.to(device)).latent_dist.mean * vae.config.scaling_factor
    t0 = sched.timesteps[start]
    z = sched.add_noise(z, torch.randn(z.shape, generator=g).to(device), t0.reshape(1))
    cond = text_model(_tokens(tokenizer, captions).to(device))[0]
    uncond = text_model(_tokens(tokenizer, [""] * len(captions)).to(device))[0]
    for t in sched.timesteps[start:]:
        e_u, e_c = unet(
            torch.cat([z, z]), t, encoder_hidden_states=torch.cat([uncond, cond])
        ).sample.chunk(2)
        z = sched.step(e_u + guidance * (e_c - e_u), t, z).prev_sample
    return vae.decode(z / vae.config.scaling_factor).sample.clamp(-1, 1).cpu()


def stage_judge_gen(
    stage: Path, judge_dir: Path, n: int, steps: int, seed: int, vae, unet, text_model, tokenizer,
    device,
):  # fmt: skip
    """Render the judge's own fresh images at full strength, re-draw each with the world
    model at a random SDEdit strength in [0.25, 0.5], and fine-tune the judge on them beside
    fresh renders at mixed strengths (a third of them VAE round trips, a third plain round
    trips; world_judge.finetune_judge).
    """
    data, attrs, captions = world_judge.judge_dataset(n, seed, mixed=False)
    cache = stage / "redrawn.safetensors"  # the re-drawings, kept for a resumed stage
    made_for = {"seed": str(seed), "images": str(n)}
    if cache.exists() and _metadata(cache) == made_for:
        redrawn = load_file(cache)["redrawn"]
    else:
        rng = np.random.default_rng(seed)
        renders = to_model_range(data)
        redrawn = torch.cat(_redraw(seed, renders, captions, rng, vae, unet, text_model, tokenizer))
        stage.mkdir(parents=True, exist_ok=True)
        save_file({"redrawn": redrawn.contiguous()}, cache, metadata=made_for)
    mixed, mixed_attrs, _ = world_judge.judge_dataset(n, seed + 1)
    g = torch.Generator().manual_seed(seed + 1)
    x = world_judge.three_views(to_model_range(mixed), vae, g)
    return world_judge.finetune_judge(
        judge_dir,
        stage,
        x,
        world_judge.targets(mixed_attrs),
        redrawn,
        world_judge.targets(attrs),
        steps,
        128,
        seed,
        device,
    )


def stage_judge_blend(
    stage: Path, judge_dir: Path, n: int, steps: int, seed: int, vae, unet, text_model, tokenizer,
    device, faded: int = 0,
):  # fmt: skip
    """Generate n pairs (world.blends: one subject plain and with a concept, from one seed)
    and `faded` faded starry nights (blends.faded_pairs), and fine-tune the judge on their
    blends at known strengths beside 2n fresh renders in three views
    (blends.finetune_on_blends). The pairs are chosen and labelled by the shipped first
    judge (the cnn), whatever judge is trained, as the calibration's generated view is: a
    judge early in its training would keep none. They are cached for a resumed stage (and
    for another judge trained from the same seed and counts)."""
    model = world_judge.load_judge(judge_dir, device)
    models = (vae, unet.eval(), text_model, tokenizer)
    pairs = _cached_pairs(stage / "pairs.safetensors", {"seed": str(seed), "pairs": str(n)},
                          lambda chooser: blends.generated_pairs(n, seed, chooser, *models),
                          device)  # fmt: skip
    if faded:
        made_for = {"seed": str(seed + 2), "faded": str(faded)}
        more = _cached_pairs(stage / "faded.safetensors", made_for,
                             lambda chooser: blends.faded_pairs(faded, seed + 2, chooser, *models),
                             device)  # fmt: skip
        pairs = blends.concat_pairs([pairs, more])
    if not len(pairs):
        raise UnseeError(
            f"none of {n} generated pairs showed its concept to the judge; give more --blend-pairs"
        )
    mixed, mixed_attrs, _ = world_judge.judge_dataset(2 * n, seed + 1)  # renders beside them
    x = world_judge.three_views(to_model_range(mixed), vae, torch.Generator().manual_seed(seed + 1))
    model = blends.finetune_on_blends(
        model, x, world_judge.targets(mixed_attrs), pairs, steps, 128, seed
    )
    world_judge.save_judge(model, stage)
    return stage


def _cached_pairs(cache: Path, made_for: dict, make, device) -> blends.Pairs:
    """The pairs in `cache` where it was made for these settings, else make(chooser) with
    the shipped first judge as the chooser, saved there."""
    if cache.exists() and _metadata(cache) == made_for:
        return blends.load_pairs(cache)
    pairs = make(world_judge.load_world_judge("cnn", device))
    cache.parent.mkdir(parents=True, exist_ok=True)
    blends.save_pairs(pairs, cache, made_for)
    return pairs


def _metadata(path: Path) -> dict:
    with safe_open(path, "pt") as f:
        return f.metadata() or {}


def _redraw(seed, renders, captions, rng, vae, unet, text_model, tokenizer) -> list[torch.Tensor]:
    redrawn = []
    chunk = 500
    for i, start in enumerate(tqdm(range(0, len(renders), chunk), desc="judge_gen redraw")):
        redrawn.append(
            sdedit(
                renders[start : start + chunk],
                captions[start : start + chunk],
                vae,
                unet.eval(),
                text_model,
                tokenizer,
                strength=float(rng.uniform(0.25, 0.5)),
                seed=seed + i,
            )
        )
    return redrawn


# ---------------------------------------------------------------- 3. VAE


def stage_vae(cfg, stage: Path, data: dict, device) -> AutoencoderKL:
    if _done(stage):
        return AutoencoderKL.from_pretrained(stage).to(device)
    torch.manual_seed(cfg.seed + 2)
    vae = AutoencoderKL(**VAE_CONFIG).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=1e-5)
    images = data["images"]
    rng = np.random.default_rng(cfg.seed + 2)
    for step in tqdm(range(cfg.vae_steps), desc="vae", dynamic_ncols=True):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _cosine(step, cfg.vae_steps, 50)
        x = to_model_range(images[rng.integers(0, len(images), 32)]).to(device)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    # scaling_factor: unit variance latents for the U-Net, as in Stable Diffusion
    with torch.no_grad():
        sample = to_model_range(images[:2048]).to(device)
        std = float(torch.cat([vae.encode(c).latent_dist.mean for c in sample.split(256)]).std())
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(stage)
    _finish(stage, {"steps": cfg.vae_steps, "last_loss": loss.item(), "latent_std": std})
    return vae


# ---------------------------------------------------------------- 4. U-Net


@torch.no_grad()
def _encode_all(vae, text_encoder, tokenizer, data: dict, device) -> dict:
    """Latent posteriors of every image and text states of every distinct caption, once."""
    means, stds = [], []
    for chunk in np.array_split(data["images"], max(1, len(data["images"]) // 512)):
        dist = vae.encode(to_model_range(chunk).to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    unique = sorted(set(data["captions"]) | {""})
    index = {c: i for i, c in enumerate(unique)}
    states = torch.cat(
        [
            text_encoder(_tokens(tokenizer, unique[i : i + 512]).to(device))[0].cpu()
            for i in range(0, len(unique), 512)
        ]
    )
    return {
        "mean": torch.cat(means),
        "std": torch.cat(stds),
        "states": states,  # (captions, 77, TEXT_DIM)
        "caption_ids": torch.tensor([index[c] for c in data["captions"]]),
        "empty_id": index[""],
    }


def stage_unet(cfg, stage: Path, vae, text_encoder, tokenizer, data: dict, device):
    if _done(stage):
        return UNet2DConditionModel.from_pretrained(stage).to(device)
    stage.mkdir(parents=True, exist_ok=True)
    cache = _encode_all(vae, text_encoder, tokenizer, data, device)
    scale = vae.config.scaling_factor
    torch.manual_seed(cfg.seed + 3)
    unet = UNet2DConditionModel(**UNET_CONFIG).to(device)
    ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True, power=2 / 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=1e-4)
    noise_sched = DDPMScheduler(**SCHEDULE)
    abar = noise_sched.alphas_cumprod.to(device)
    start = 0
    ckpt = stage / "checkpoint.pt"
    if ckpt.exists():  # resume
        state = torch.load(ckpt, map_location=device, weights_only=False)
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    n = len(cache["caption_ids"])
    bar = tqdm(
        range(start, cfg.unet_steps),
        desc="unet",
        dynamic_ncols=True,
        initial=start,
        total=cfg.unet_steps,
    )
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _cosine(step, cfg.unet_steps, 100)
        # every step's randomness comes from (seed, step): a resumed run matches
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (cfg.unet_batch,), generator=g)
        eps0 = torch.randn(cache["mean"][idx].shape, generator=g)
        z0 = (cache["mean"][idx] + cache["std"][idx] * eps0) * scale
        ids = cache["caption_ids"][idx].clone()
        ids[torch.rand(len(ids), generator=g) < CAPTION_DROPOUT] = cache["empty_id"]
        context = cache["states"][ids]
        t = torch.randint(0, SCHEDULE["num_train_timesteps"], (len(idx),), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        z0, context, t, noise = z0.to(device), context.to(device), t.to(device), noise.to(device)
        z_t = noise_sched.add_noise(z0, noise, t)
        pred = unet(z_t, t, encoder_hidden_states=context).sample
        # min-SNR-5 weighting (Hang et al. 2023) for eps prediction: min(snr, 5) / snr
        snr = abar[t] / (1 - abar[t])
        weight = torch.clamp(snr, max=5.0) / snr
        loss = (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.unet_steps:
            tmp = stage / "checkpoint.tmp"
            torch.save(
                {
                    "unet": unet.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step + 1,
                },
                tmp,
            )
            tmp.replace(ckpt)
    ema.copy_to(unet.parameters())
    unet.save_pretrained(stage)
    ckpt.unlink(missing_ok=True)
    _finish(stage, {"steps": cfg.unet_steps, "last_loss": loss.item()})
    return unet


# ---------------------------------------------------------------- 6. save


def save_world(out: Path, clip: CLIPModel, vae, unet, tokenizer) -> None:
    """Write minisd/ (a plain diffusers pipeline folder) and clip/ under `out`."""
    text_encoder = CLIPTextModel(clip.config.text_config)  # CLIP's text tower, on its own
    text_encoder.load_state_dict(clip.text_model.state_dict())
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae.cpu(),
        text_encoder=text_encoder.cpu(),
        tokenizer=tokenizer,
        unet=unet.cpu(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out / "minisd.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    shutil.rmtree(out / "minisd", ignore_errors=True)
    tmp.replace(out / "minisd")
    clip.cpu().save_pretrained(out / "clip")
    # how the mini CLIP reads images: 32x32, [0, 1] -> [-1, 1] (mean 0.5, std 0.5)
    processor = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": world.SIZE},
        "do_center_crop": True,
        "crop_size": {"height": world.SIZE, "width": world.SIZE},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (out / "clip" / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))


def train_world(cfg: WorldTrainConfig) -> Path:
    """Run (or resume) every stage; return the folder holding minisd/, clip/ and judge/."""
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    stages = out / "stages"
    stages.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    timings = {}

    def timed(name, fn, *args):
        start = time.time()
        result = fn(*args)
        timings[name] = round(time.time() - start, 1)
        return result

    data = timed("data", stage_data, cfg, stages / "data")
    clip = timed("clip", stage_clip, cfg, stages / "clip", data, tokenizer, device).eval()
    vae = timed("vae", stage_vae, cfg, stages / "vae", data, device).eval()
    unet = timed(
        "unet", stage_unet, cfg, stages / "unet", vae, clip.text_model, tokenizer, data, device
    )
    clip = timed(
        "clip_web",
        stage_clip_web,
        cfg,
        stages / "clip_web",
        clip,
        stages / "data",
        tokenizer,
        device,
    ).eval()
    judge_dir = stages / "judge"
    if not _done(judge_dir):
        timed(
            "judge",
            world_judge.train_judge,
            judge_dir,
            cfg.seed + 4,
            cfg.judge_images,
            cfg.judge_steps,
            128,
            device,
            vae,
            cfg.judge_width,
        )
        _finish(judge_dir, {"steps": cfg.judge_steps, "width": cfg.judge_width})
    gen_dir = stages / "judge_gen"
    if not _done(gen_dir):
        timed("judge_gen", stage_judge_gen, gen_dir, judge_dir, cfg.judge_gen_images,
              cfg.judge_gen_steps, cfg.seed + 6, vae, unet, clip.text_model, tokenizer,
              device)  # fmt: skip
        _finish(gen_dir, {"steps": cfg.judge_gen_steps})
    save_world(out, clip, vae, unet, tokenizer)
    timed("reading", finish_judge, gen_dir, out / "judge", vae, cfg.judge_reading_images,
          cfg.seed + 8, device)  # fmt: skip
    log = {"seconds": timings, "device": str(device), "config": asdict(cfg)}
    (out / "train_log.json").write_text(json.dumps(log, default=str, indent=2) + "\n")
    print(f"minisd, clip and judge in {out}; seconds per stage: {timings}")
    return out


def finish_judge(trained: Path, out: Path, vae, n: int, seed: int, device) -> Path:
    """The finished judge in out: the trained stage's weights with its strength reading
    fitted on n fresh images (none when n is 0; world_judge.reading_for)."""
    model = world_judge.load_judge(trained, device)
    model.reading = world_judge.reading_for(model, vae, n, seed) if n else None
    world_judge.save_judge(model, out)  # weights and config.json, not the stage's caches
    return out


def train_world_judge(cfg: WorldJudgeConfig) -> Path:
    """`unsee world judge`: train one judge (cnn or vit) the way `unsee world train` trains
    the first, against the shipped minisd (its VAE for the round trips, the whole model for
    the re-drawings): stages judge and judge_gen, each resumable, then OUT/judge/."""
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    stages = out / "stages"
    stages.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2) + "\n")
    vae = AutoencoderKL.from_pretrained(MINISD_DIR, subfolder="vae", torch_dtype=torch.float32)
    vae = vae.to(device).eval()
    timings = {}
    start = time.time()
    judge_dir = stages / "judge" if cfg.steps else Path(cfg.start)  # --steps 0: as it is
    if cfg.steps and not _done(judge_dir):
        world_judge.train_judge(judge_dir, cfg.seed + 4, cfg.images, cfg.steps, 128, device, vae,
                                cfg.width, cfg.arch, start=cfg.start,
                                rank_weight=cfg.rank_weight)  # fmt: skip
        _finish(judge_dir, {"steps": cfg.steps, "architecture": cfg.arch})
    timings["judge"] = round(time.time() - start, 1)
    gen_dir = stages / "judge_gen"
    start = time.time()
    if cfg.gen_steps and not _done(gen_dir):  # --gen-steps 0: no re-drawings, no fine-tuning
        unet, text_model, tokenizer = blends.load_world_model(device)
        stage_judge_gen(gen_dir, judge_dir, cfg.gen_images, cfg.gen_steps, cfg.seed + 6, vae,
                        unet, text_model, tokenizer, device)  # fmt: skip
        _finish(gen_dir, {"steps": cfg.gen_steps})
    timings["judge_gen"] = round(time.time() - start, 1)
    trained = gen_dir if cfg.gen_steps else judge_dir
    blend_dir = stages / "judge_blend"
    start = time.time()
    if cfg.blend_steps and not _done(blend_dir):  # --blend-steps 0: no generated blends
        unet, text_model, tokenizer = blends.load_world_model(device)
        stage_judge_blend(blend_dir, trained, cfg.blend_pairs, cfg.blend_steps, cfg.seed + 10,
                          vae, unet, text_model, tokenizer, device, cfg.faded_pairs)  # fmt: skip
        _finish(blend_dir, {"steps": cfg.blend_steps, "pairs": cfg.blend_pairs,
                            "faded": cfg.faded_pairs})  # fmt: skip
    timings["judge_blend"] = round(time.time() - start, 1)
    start = time.time()
    if cfg.blend_steps:
        trained = blend_dir
    finish_judge(trained, out / "judge", vae, cfg.reading_images, cfg.seed + 8, device)
    timings["reading"] = round(time.time() - start, 1)
    log = {"seconds": timings, "device": str(device), "config": asdict(cfg)}
    (out / "train_log.json").write_text(json.dumps(log, default=str, indent=2) + "\n")
    print(f"the {cfg.arch} judge in {out / 'judge'}; seconds per stage: {timings}")
    return out
