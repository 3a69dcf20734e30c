"""`unsee invert`: Human Feedback Inversion, feedback -> learned_embeds.safetensors.

1. score every image of the feedback folder with the reward: p(concept) per image
2. keep the top K, weight each by p(concept) (invert/hfi.py)
3. encode them to latents with the VAE, once
4. add the token (diffusers' textual-inversion loader, initialised from --init) and learn
   only its vectors v: they are spliced into the embedding lookup, so no other row of the
   embedding table can change (checked before saving). SDXL: one token, a vector in each
   of its two text encoders' tables (each started from its own row of --init), learned
   together through the U-Net's conditioning (both encoders' token states, the second's
   pooled embedding, and the images' size conditioning)
5. per step: images drawn from the chosen ones, z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps,
   loss = mean_b w_b ||eps - eps_theta(z_t, t, caption_b(v))||^2, Adam on v
6. write {token: v (num_vectors, dim)}, loadable by `pipe.load_textual_inversion(F)`,
   and the settings beside it (F with .json). SDXL: diffusers' SDXL layout, {"clip_l":
   v_1 (n, D1), "clip_g": v_2 (n, D2)}, the token in the file's metadata; plain diffusers
   loads it with load_textual_inversion(state["clip_l"], token=..., text_encoder=
   pipe.text_encoder, tokenizer=pipe.tokenizer), and the same with clip_g, text_encoder_2
   and tokenizer_2
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from safetensors.torch import save
from tqdm.auto import tqdm

from unsee import __version__
from unsee.errors import UnseeError
from unsee.images import to_model_range
from unsee.imageset import atomic_file, atomic_write_text, load_images, read_image_set
from unsee.invert.config import InvertConfig
from unsee.invert.hfi import inversion_weights, weighted_denoising_loss
from unsee.models.load import is_conditional, is_sdxl, load_pipeline, pick_device
from unsee.models.text import SDXL_KEYS, encode_ids, text_encoders, tokenize
from unsee.reward.model import load_reward, p_bad
from unsee.sampling.conditioning import MicroCond, TextCond


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, device, batch_size: int = 64) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, C, h, w) latents as the U-Net sees them (the posterior
    mean, times the VAE's scaling factor)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_range(images[start : start + batch_size]).to(device, vae.dtype)
        out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out).float()


def add_token(pipe, token: str, init: str, num_vectors: int) -> list[list[int]]:
    """Add `token` (and token_1 ... for several vectors, diffusers' convention) to every text
    encoder (SDXL: both), each row initialised from that encoder's embedding of the one-token
    word `init`; return the new rows' ids, encoder by encoder."""
    pairs = text_encoders(pipe)
    for tokenizer, _ in pairs:
        if token in tokenizer.get_vocab():
            raise UnseeError(f"the tokenizer already has {token!r}; choose another --token")
    ids = []
    for tokenizer, encoder in pairs:
        init_ids = tokenizer(init, add_special_tokens=False).input_ids
        if len(init_ids) != 1:
            raise UnseeError(
                f"--init {init!r} is {len(init_ids)} tokens; give a word that is one token"
            )
        table = encoder.get_input_embeddings().weight
        start = table[init_ids[0]].detach().float().cpu().repeat(num_vectors, 1)  # (n, D)
        pipe.load_textual_inversion(start, token=token, tokenizer=tokenizer, text_encoder=encoder)
        names = [token] + [f"{token}_{i}" for i in range(1, num_vectors)]
        ids.append(tokenizer.convert_tokens_to_ids(names))
    return ids


def splice_vectors(embedding: torch.nn.Embedding, ids: list[int], v: torch.Tensor):
    """Make the embedding lookup return v[j] for token ids[j] and the table for the rest;
    returns the hook handle. Only v receives gradients."""
    slot = torch.full((embedding.num_embeddings,), -1, dtype=torch.long)
    slot[ids] = torch.arange(len(ids))

    def hook(module, args, out):  # out: (B, L, D)
        s = slot.to(out.device)[args[0]]  # (B, L): index into v, -1 elsewhere
        return torch.where((s >= 0)[..., None], v[s.clamp(min=0)].to(out.dtype), out)

    return embedding.register_forward_hook(hook)


def splice_token(pipe, ids: list[list[int]]) -> tuple[list[torch.nn.Parameter], list]:
    """The token's trainable vectors, one (n, D_i) per text encoder, started from its rows
    and spliced into each encoder's embedding lookup; and the hooks' handles."""
    vectors, handles = [], []
    for (_, encoder), rows in zip(text_encoders(pipe), ids, strict=True):
        embedding = encoder.get_input_embeddings()
        v = torch.nn.Parameter(embedding.weight[rows].detach().float().clone())
        vectors.append(v)
        handles.append(splice_vectors(embedding, rows, v))
    return vectors, handles


def token_file_bytes(token: str, vectors: list[torch.Tensor]) -> bytes:
    """A textual-inversion file: diffusers' layout {token: (n, D)} for one text encoder, its
    SDXL layout {"clip_l": (n, D1), "clip_g": (n, D2)} for two (the token in the metadata,
    where models.load.load_embeddings reads it)."""
    vectors = [v.detach().float().cpu().contiguous() for v in vectors]
    metadata = {"unsee_version": __version__}
    if len(vectors) == 1:
        return save({token: vectors[0]}, metadata=metadata)
    return save(dict(zip(SDXL_KEYS, vectors, strict=True)), metadata=metadata | {"token": token})


def captions(records: list[dict], template: str, token: str) -> list[str]:
    """The caption of each image."""
    return [template.format(token=token, prompt=r["prompt"]) for r in records]


def learn_vectors(
    pipe, vectors: list[torch.nn.Parameter], tok: list[torch.Tensor], latents: torch.Tensor,
    weights: torch.Tensor, steps: int, batch: int, lr: float, seed: int, desc: str = "invert",
    micro: MicroCond | None = None,
) -> list[float]:  # fmt: skip
    """Textual inversion's loop (step 5 above): learn the spliced vectors (one per text
    encoder) so that image b, captioned by its token ids tok[e][b] (N, L) for each encoder
    e, is denoised well; latents (N, C, h, w), weights (N,); micro: SDXL's size conditioning
    of the images. Only the vectors move; the networks are frozen. Returns the per-step
    losses."""
    device = pipe.device
    pipe.unet.requires_grad_(False)
    for _, encoder in text_encoders(pipe):
        encoder.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    opt = torch.optim.Adam(vectors, lr=lr)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = scheduler.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise UnseeError(f"inversion supports epsilon and v_prediction models, not {prediction}")
    w = weights.to(device)
    time_ids = None
    if micro is not None:  # (batch, 6), the same for every image
        time_ids = torch.tensor([micro.time_ids()], device=device).float().expand(batch, -1)
    g = torch.Generator().manual_seed(seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    losses = []
    bar = tqdm(range(steps), desc=desc, dynamic_ncols=True)
    for _ in bar:
        b = torch.randint(0, len(latents), (batch,), generator=g)
        z0 = latents[b]
        noise = torch.randn(z0.shape, generator=g).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=g)
        t = t.to(device)
        z_t = scheduler.add_noise(z0, noise, t)
        target = noise if prediction == "epsilon" else scheduler.get_velocity(z0, noise, t)
        with autocast:
            cond = encode_ids(pipe, [ids[b] for ids in tok])  # (B, L, D), v spliced in
            cond = TextCond(cond.hidden, cond.pooled, time_ids)
            pred = pipe.unet(z_t.to(pipe.unet.dtype), t, **cond.unet_kwargs()).sample
        loss = weighted_denoising_loss(pred, target, w[b.to(device)])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 6))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    return losses


def token_ids(pipe, texts: list[str], ids: list[list[int]]) -> list[torch.Tensor]:
    """Each encoder's (N, L) token ids of texts; refuses a text whose token falls past the
    text encoder's limit."""
    tok = tokenize(pipe, texts)
    for rows, first in zip(tok, ids, strict=True):
        for text, row in zip(texts, rows, strict=True):
            if first[0] not in row:
                raise UnseeError(f"the token falls past the text encoder's limit in {text[:80]!r}")
    return tok


def invert(cfg: InvertConfig) -> Path:
    device = pick_device(cfg.device)
    pipe = load_pipeline(cfg.model, str(device), "fp32")  # fp32: v is learned in fp32
    if not is_conditional(pipe):
        raise UnseeError(f"{cfg.model!r} takes no text: inversion needs a text-to-image model")
    cfg.out.parent.mkdir(parents=True, exist_ok=True)

    # 1-2. the images, how much each shows the concept, and which ones the inversion sees
    records = read_image_set(cfg.feedback)
    reward = load_reward(cfg.reward, device)
    if reward.backbone == "noise-aware":
        raise UnseeError("inversion weighs finished images: use a clip or cnn reward")
    images = load_images(cfg.feedback, records, None)
    p_concept = p_bad(reward.score_images(images))  # (N,)
    del reward
    chosen, weights = inversion_weights(p_concept, cfg.top_k, cfg.weighting)
    chosen_records = [records[i] for i in chosen]

    # 3. latents, once
    latents = encode_latents(pipe.vae, images[chosen], device)  # (M, C, h, w)

    # 4. the token and its trainable vectors, one per text encoder
    ids = add_token(pipe, cfg.token, cfg.init, cfg.num_vectors)
    encoders = text_encoders(pipe)
    tables_before = [e.get_input_embeddings().weight.detach().clone() for _, e in encoders]
    vectors, handles = splice_token(pipe, ids)
    tok = token_ids(pipe, captions(chosen_records, cfg.template, cfg.token), ids)
    micro = MicroCond.uncropped(*images.shape[1:3]) if is_sdxl(pipe) else None
    started = time.time()
    losses = learn_vectors(
        pipe, vectors, tok, latents, torch.as_tensor(weights, dtype=torch.float32), cfg.steps,
        cfg.batch, cfg.lr, cfg.seed, micro=micro,
    )  # fmt: skip
    for handle in handles:
        handle.remove()

    # 6. check that nothing but the vectors moved, and save
    for (_, encoder), before, rows in zip(encoders, tables_before, ids, strict=True):
        others = torch.ones(len(before), dtype=torch.bool)
        others[rows] = False
        if not torch.equal(encoder.get_input_embeddings().weight[others], before[others]):
            raise RuntimeError("an embedding row other than the token's changed during inversion")
    with atomic_file(cfg.out, "wb") as f:
        f.write(token_file_bytes(cfg.token, vectors))
    info = {
        "unsee_version": __version__,
        "token": cfg.token,
        "tokens": pipe.tokenizer.convert_ids_to_tokens(ids[0]),
        "keys": list(SDXL_KEYS) if len(ids) > 1 else [cfg.token],  # the file's
        "settings": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "images": len(records),
        "chosen": [
            {"file_name": r["file_name"], "p_concept": round(float(p_concept[i]), 5)}
            for r, i in zip(chosen_records, chosen, strict=True)
        ],
        "mean_p_concept": round(float(p_concept.mean()), 5),
        "seconds": round(time.time() - started, 2),
        "loss_first": losses[:10],
        "loss_last": losses[-10:],
    }
    atomic_write_text(cfg.out.with_suffix(".json"), json.dumps(info, indent=2) + "\n")
    print(f"learned {cfg.token} from {len(chosen)} images in {info['seconds']:.0f} s: {cfg.out}")
    return cfg.out
