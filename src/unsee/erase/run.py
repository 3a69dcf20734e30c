"""`unsee erase`: remove concepts from a model's weights with SDD, ESD, neg or UCE.

SDD (Kim et al. 2023; docs/methods.md, SDD), per step, for B trajectories at once:
  1. z_T ~ N(0, I); each trajectory stops after k_b DDIM steps (Beta(3, 3) or uniform)
  2. the EMA teacher samples z_t with CFG on the joined concepts c_p (no gradient)
  3. t inside the DDPM interval of the stop step
  4. loss = mean((eps(z_t, t, "") - eps(z_t, t, c_s))^2), c_s one concept per trajectory
  5. AdamW on the chosen parameters, grad-norm clip 1, EMA update; the EMA is saved
With --preserve, B prompts to keep ride along in step 4: their student estimates at the
same z_t, t are pulled to the frozen original's (weight --preserve-weight), for SDD and ESD.
ESD (Gandikota et al. 2023; docs/methods.md, ESD): z_t from the student with CFG on c, and
  eps_student(z_t, t, c) -> eps_orig(z_t, t) - eta (eps_orig(z_t, t, c) - eps_orig(z_t, t))
with the frozen original as teacher; the student itself is saved.
Distilled negative prompt (neg.py): z_t from the original with CFG on an anchor prompt p,
  eps_student(z_t, t, p) -> eps_orig(z_t, t, p) - eta (eps_orig(z_t, t, c) - eps_orig(z_t, t))
  eps_student(z_t, t)    -> eps_orig(z_t, t)
with the frozen original as teacher; the student itself is saved.

UCE (Gandikota et al. 2024; uce.py): no training loop; the cross-attention key and value
projections are solved for in closed form, in place, and saved the same way.

SDXL: every U-Net call (the teacher's walks, the student, the frozen original, the half
precision copies) gets SDXL's added conditioning with the text: each text's pooled
embedding and the size conditioning of an uncropped image of the U-Net's native size
(1024 x 1024 for SDXL base). c_0 is the model's unconditional input as it is sampled, zeros
for SDXL base (force_zeros_for_empty_prompt); UCE's targets and kept texts are encoded
texts ("" included), their 2048 concatenated dimensions read by attn2.to_k / to_v. LoRA
weights are saved in the pipeline's own layout (StableDiffusionXLPipeline.save_lora_weights).

Runs under `accelerate launch` (each process its own trajectories, gradients averaged);
checkpoints every N steps, and `--resume` continues to the same result as an unbroken run.
"""

import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from unsee import __version__
from unsee.erase.config import TRAINED_ONLY, UCE_ONLY, EraseConfig
from unsee.erase.esd import esd_target
from unsee.erase.feedback import feedback_plan
from unsee.erase.neg import neg_loss, neg_target, without_concept
from unsee.erase.params import select_parameters
from unsee.erase.precision import half_call, half_student
from unsee.erase.sdd import (
    ema_update,
    preservation_loss,
    sdd_loss,
    stop_steps,
    teacher_latents,
    train_timesteps,
)
from unsee.erase.uce import edited_rows, uce_edit
from unsee.errors import UnseeError
from unsee.generate.prompts import read_prompts
from unsee.imageset import atomic_file, atomic_write_text
from unsee.models.load import (
    is_conditional,
    load_embeddings,
    load_pipeline,
    pick_device,
    process_state,
)
from unsee.models.text import encode_text, native_micro, unconditional
from unsee.sampling.conditioning import (
    Cond,
    MicroCond,
    TextCond,
    as_cond,
    cat_conds,
    check_time_ids,
    with_time_ids,
)
from unsee.sampling.loop import to_device

CHECKPOINT = "checkpoint.pt"
TEXT_PARTS = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))


# steps between reads of the losses (each read waits for the GPU; erase.json's timeline
# records the time at each)
READ_EVERY = 25


def _mixed_precision(cfg: EraseConfig) -> str:
    if cfg.dtype == "fp16":
        return "fp16"
    if cfg.dtype == "bf16" or (cfg.dtype == "auto" and torch.cuda.is_available()):
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def load_concepts(pipe, cfg: EraseConfig) -> list[str]:
    """The texts to remove: --concept texts, then the tokens of each --embedding file."""
    return list(cfg.concept) + load_embeddings(pipe, cfg.embedding)


def encode_conds(pipe, texts: list[str], device, micro: MicroCond | None = None) -> TextCond:
    """The U-Net's conditioning of n texts, one prompt at a time (as each is used alone):
    text states (n, L, D); SDXL also the pooled embeddings (n, P) and, with micro, the
    size conditioning (n, 6)."""
    with torch.no_grad():
        return with_time_ids(cat_conds([encode_text(pipe, t, device) for t in texts]), micro)


def encode_texts(pipe, texts: list[str], device) -> torch.Tensor:
    """Text states (n, L, D) of n texts, one prompt at a time (as each is used alone)."""
    return encode_conds(pipe, texts, device).hidden


def _text_parts(pipe) -> dict:
    """Copies of the tokenizers and text encoders (SDXL: both pairs), to put back after
    --embedding tokens were loaded into them: the saved model keeps its own."""
    names = [name for pair in TEXT_PARTS for name in pair]
    return {n: copy.deepcopy(getattr(pipe, n)) for n in names if getattr(pipe, n, None) is not None}


def _micro(pipe, model: str) -> MicroCond | None:
    """SDXL's size conditioning of the trajectories (the U-Net's native size), checked
    against its added embedding; None for Stable Diffusion."""
    micro = native_micro(pipe)
    if micro is not None:
        try:
            check_time_ids(pipe.unet, pipe.text_encoder_2.config.projection_dim)
        except ValueError as e:
            raise UnseeError(f"model {model!r}: {e}") from None
    return micro


def ema_teacher(unet: torch.nn.Module, names: list[str]) -> tuple[torch.nn.Module, list]:
    """SDD's teacher: a frozen copy of the student, and its parameters `names`, which
    follow the student's trained ones by EMA."""
    teacher = copy.deepcopy(unet).requires_grad_(False).eval()
    teacher_params = dict(teacher.named_parameters())
    return teacher, [teacher_params[n] for n in names]


def optimizer(params: dict, lr: float) -> torch.optim.Optimizer:
    """The optimiser of every trained method: AdamW on the chosen parameters."""
    return torch.optim.AdamW(params.values(), lr=lr, weight_decay=1e-4)


def erase(cfg: EraseConfig) -> Path:
    if cfg.feedback is not None:
        return erase(feedback_plan(cfg))
    if cfg.method == "uce":
        return erase_uce(cfg)

    cpu = process_state(cfg.device).device.type == "cpu"
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg), cpu=cpu)
    device = accelerator.device
    pipe = load_pipeline(cfg.model, str(device), "fp32")  # fp32 master weights
    if not is_conditional(pipe):
        raise UnseeError(f"{cfg.model!r} takes no text: erasing needs a text-to-image model")
    micro = _micro(pipe, cfg.model)
    out = cfg.out
    ckpt = out / CHECKPOINT
    if not cfg.resume and (out / "erase.json").exists():
        raise UnseeError(f"{out} already holds an erased model; use another --out")
    if cfg.resume and not ckpt.exists():
        raise UnseeError(f"nothing to resume in {out} (no {CHECKPOINT})")

    # 1. texts: c_0 = the unconditional input ("", SDXL: zeros), c_p = the joined concepts,
    # c_s = each concept (SDXL: each with its pooled embedding and size conditioning)
    text_parts = _text_parts(pipe) if cfg.embedding else {}
    concepts = load_concepts(pipe, cfg)
    c0 = unconditional(pipe, device, micro)  # (1, L, D)
    cp = encode_conds(pipe, [", ".join(concepts)], device, micro)
    cs = encode_conds(pipe, concepts, device, micro)  # (n, L, D)
    keep = anchors = bases = None
    if cfg.preserve is not None:
        kept = _prompts(cfg.preserve)
        overlap = [c for c in concepts if c in kept]
        if overlap:
            raise UnseeError(f"--preserve lists what is to be removed: {', '.join(overlap)}")
        keep = encode_conds(pipe, kept, device, micro)  # (m, L, D)
    if cfg.method == "neg":
        # repeats kept: a prompt listed k times is drawn k times as often (--leak-repeat)
        anchor_texts = [row.prompt for row in read_prompts(cfg.anchors)]
        anchors = encode_conds(pipe, anchor_texts, device, micro)  # (a, L, D)
        bases = anchors  # where each anchor's target starts (neg.py)
        if cfg.strip_concept:
            stripped = [_strip(p, cfg.concept) for p in anchor_texts]
            if stripped != anchor_texts:
                bases = encode_conds(pipe, stripped, device, micro)
    out.mkdir(parents=True, exist_ok=True)  # only once every input is read and accepted

    # 2. student, teacher, optimiser; on a GPU the networks that only run without
    # gradients (the frozen original, the copy that walks the trajectories) are in half
    # precision instead of being cast op by op under autocast
    mixed = _mixed_precision(cfg)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed)
    unet = pipe.unet
    sdd = cfg.method == "sdd"
    original = None
    if not sdd or keep is not None:
        # ESD's teacher, and the target of the prompts to keep
        original = copy.deepcopy(unet).requires_grad_(False).eval().to(half or torch.float32)
    params = select_parameters(unet, cfg.params, cfg.lora_rank)
    names = list(params)
    ema = None
    if sdd:
        teacher, ema = ema_teacher(unet, names)
    # the network whose CFG trajectories give z_t: the frozen original (neg), the EMA (SDD),
    # the student itself (ESD, set once prepared); on a GPU a half-precision copy of the EMA
    # or student instead, refreshed from `sources` before each walk
    walker, sources = (original if cfg.method == "neg" else teacher if sdd else None), None
    if cfg.method != "neg" and half is not None:
        walker = copy.deepcopy(teacher if sdd else unet).requires_grad_(False).eval().to(half)
        sources = ema if sdd else list(params.values())
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    opt = optimizer(params, cfg.lr)
    unet.train()
    unet, opt = accelerator.prepare(unet, opt)
    if walker is None:
        walker = unet  # ESD in full precision: the student walks its own trajectories
    walker_params = None if sources is None else [dict(walker.named_parameters())[n] for n in names]
    # on one GPU in bf16: half compute throughout, fp32 masters of the trained weights
    # (precision.py); else autocast (fp16 needs its loss scaling, several GPUs their wrapper)
    student, teacher_call, original_call = unet, walker, original
    if half is torch.bfloat16 and cfg.mixed == "pure" and accelerator.num_processes == 1:
        base = accelerator.unwrap_model(unet)
        student = half_student(base, params, half, cfg.gradient_checkpointing)
        teacher_call = half_call(walker)
        original_call = None if original is None else half_call(original)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(cfg.sample_steps, device=device)
    train_steps = scheduler.config.num_train_timesteps
    config = accelerator.unwrap_model(unet).config
    shape = (cfg.batch, config.in_channels, config.sample_size, config.sample_size)
    g = torch.Generator().manual_seed(cfg.seed + accelerator.process_index)

    def walk(z_T: torch.Tensor, stops: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """2. the teacher's CFG trajectories from z_T (b, C, h, w) to their stops (b,) or
        (b, K): on the joined concepts (SDD), the concept of each row (ESD), the anchor of
        each row (neg)."""
        if walker_params is not None:
            with torch.no_grad():
                torch._foreach_copy_(walker_params, [p.detach() for p in sources])
        if cfg.method == "sdd":
            cond = cp.expand(len(z_T))
        elif cfg.method == "neg":
            cond = anchors[rows]
        else:
            cond = cs[rows]
        with accelerator.autocast():
            return teacher_latents(
                teacher_call, scheduler, cond, c0.expand(len(z_T)), stops, cfg.cfg_scale, z_T
            )

    start, losses, pool = 0, [], None
    if cfg.resume:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state["params"][n])
            if sdd:
                for n, p in zip(names, ema, strict=True):
                    p.copy_(state["ema"][n])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generators"][accelerator.process_index])
        start, losses = state["step"], state["losses"]
        pools = state.get("pools") or [None] * accelerator.num_processes
        pool = _pool_to(pools[accelerator.process_index], device)

    # 3. the loop
    grid = scheduler.timesteps.cpu()  # the DDIM grid on the host
    pending: list[torch.Tensor] = []  # this stretch's losses, still on the device
    timeline: list[list[float]] = []  # (steps done, seconds) at each read of the losses
    started = time.time()
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="erase",
               disable=not accelerator.is_main_process, dynamic_ncols=True)  # fmt: skip
    for step in bar:
        which = torch.tensor([(step * cfg.batch + b) % len(concepts) for b in range(cfg.batch)])
        c_s = cs[to_device(which, device)]
        c_0 = c0.expand(cfg.batch)
        if cfg.reuse == 1:
            # B fresh trajectories, each giving one sample (the draws in the order of old)
            z_T = to_device(torch.randn(shape, generator=g), device)
            stops = stop_steps(cfg.batch, cfg.sample_steps, cfg.timesteps, tuple(cfg.beta), g)
            rows = to_device(which, device)
        else:
            if pool is None or len(pool["stops"]) == 0:
                pool = _fill_pool(walk, cfg, shape, len(concepts), anchors, step, g, device)
            z, stops, rows = (pool[k][: cfg.batch] for k in ("z", "stops", "rows"))
            pool = {k: v[cfg.batch :] for k, v in pool.items()}
        t = to_device(train_timesteps(grid, stops, train_steps, g), device)
        preserve = None
        if keep is not None:
            picks = torch.randint(0, len(keep), (cfg.batch,), generator=g)
            preserve = (keep[to_device(picks, device)], original_call, cfg.preserve_weight)
        if cfg.method == "neg" and cfg.reuse == 1:
            rows = to_device(torch.randint(0, len(anchors), (cfg.batch,), generator=g), device)
        if cfg.reuse == 1:
            z = walk(z_T, stops, rows)
        if cfg.method == "neg":
            texts = (c_0, anchors[rows], c_s, None if bases is anchors else bases[rows])
            loss = neg_step(accelerator, student, original_call, params, opt, texts, z, t,
                            cfg.eta, preserve)  # fmt: skip
        elif sdd:
            loss = sdd_step(accelerator, student, ema, params, opt, (c_0, c_s), z, t, cfg.ema,
                            preserve)  # fmt: skip
        else:
            loss = esd_step(accelerator, student, original_call, params, opt, (c_0, cs[rows]),
                            z, t, cfg.eta, preserve)  # fmt: skip
        pending.append(loss.detach())
        done = step + 1
        checkpoint = cfg.checkpoint_every and done % cfg.checkpoint_every == 0
        if checkpoint or done % READ_EVERY == 0 or done == cfg.iterations:
            # reading a loss waits for the GPU: every READ_EVERY steps, not every step
            losses += [round(v, 6) for v in torch.stack(pending).tolist()]
            pending = []
            timeline.append([done, round(time.time() - started, 3)])
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if checkpoint and done < cfg.iterations:
            _checkpoint(accelerator, ckpt, params, names, ema, opt, g, done, losses, pool)
    bar.close()

    # 4. the result: the EMA (SDD) or the student (ESD), in the original text encoder
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(unet)
        if sdd:
            with torch.no_grad():
                for n, p in zip(names, ema, strict=True):
                    params[n].copy_(p)
        pipe.unet = final.eval()
        for name, part in text_parts.items():
            setattr(pipe, name, part)
        info = {
            "unsee_version": __version__,
            "method": cfg.method,
            "concepts": concepts,
            "settings": settings_of(cfg),
            "seconds": round(time.time() - started, 2),
            "timeline": timeline,
            "processes": accelerator.num_processes,
            "loss_first": losses[:10],
            "loss_last": losses[-10:],
        }
        _save(pipe, final, cfg, out, info)
        ckpt.unlink(missing_ok=True)
    return out


def erase_uce(cfg: EraseConfig) -> Path:
    """--method uce: encode the concepts, their targets and the texts to keep, edit every
    attn2.to_k / attn2.to_v in closed form (uce.py), save as the trained methods do.
    Under `accelerate launch` the main process does it all; the others wait."""
    state = process_state(cfg.device)
    out = cfg.out
    if not state.is_main_process:
        state.wait_for_everyone()
        return out
    device = pick_device(cfg.device)
    pipe = load_pipeline(cfg.model, str(device), "fp32")
    if not is_conditional(pipe):
        raise UnseeError(f"{cfg.model!r} takes no text: erasing needs a text-to-image model")
    if (out / "erase.json").exists():
        raise UnseeError(f"{out} already holds an erased model; use another --out")

    # 1. texts: the concepts (--concept, then --embedding tokens), a target for each, and
    # the texts to keep: the empty prompt, then the --preserve prompts
    text_parts = _text_parts(pipe) if cfg.embedding else {}
    concepts = load_concepts(pipe, cfg)
    targets = list(cfg.uce_target) or [""]
    targets = targets * len(concepts) if len(targets) == 1 else targets
    kept = _prompts(cfg.preserve) if cfg.preserve is not None else []
    overlap = [c for c in concepts if c in kept]
    if overlap:
        raise UnseeError(f"--preserve lists what is to be removed: {', '.join(overlap)}")
    kept = list(dict.fromkeys(["", *kept]))
    preserve_scale = cfg.uce_preserve_scale
    if preserve_scale is None:
        preserve_scale = max(0.1, 1 / len(kept))  # UCE's code
    out.mkdir(parents=True, exist_ok=True)  # only once every input is read and accepted

    # 2. token vectors: each concept from its last content token on, aligned with its
    # target's (uce.py); every position of the texts to keep
    started = time.time()
    cs = encode_texts(pipe, concepts, device)  # (n, L, D)
    ts = encode_texts(pipe, targets, device)  # (n, L, D)
    ks = encode_texts(pipe, kept, device)  # (m, L, D)
    pairs = [
        edited_rows(cs[i], _n_tokens(pipe, concepts[i]), ts[i], _n_tokens(pipe, targets[i]))
        for i in range(len(concepts))
    ]
    erase_rows = torch.cat([c for c, _ in pairs])  # (sum of L - k_i, D)
    target_rows = torch.cat([t for _, t in pairs])
    keep_rows = ks.flatten(0, 1)  # (m L, D)

    # 3. the closed-form edit, in place
    solve_started = time.perf_counter()
    edited = uce_edit(pipe.unet, erase_rows, target_rows, keep_rows,
                      cfg.uce_erase_scale, preserve_scale, cfg.uce_lambda)  # fmt: skip
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    edit_seconds = time.perf_counter() - solve_started
    seconds = time.time() - started

    # 4. the result, in the original text encoder
    for name, part in text_parts.items():
        setattr(pipe, name, part)
    info = {
        "unsee_version": __version__,
        "method": cfg.method,
        "concepts": concepts,
        "settings": settings_of(cfg),
        "seconds": round(seconds, 4),
        "edit_seconds": round(edit_seconds, 4),
        "processes": state.num_processes,
        "uce": {
            "targets": targets,
            "preserved_texts": len(kept),
            "erase_scale": cfg.uce_erase_scale,
            "preserve_scale": preserve_scale,
            "lambda": cfg.uce_lambda,
            "erased_token_vectors": len(erase_rows),
            "preserved_token_vectors": len(keep_rows),
            "edited": edited,
        },
    }
    _save(pipe, pipe.unet, cfg, out, info)
    state.wait_for_everyone()
    return out


def settings_of(cfg: EraseConfig) -> dict:
    """The settings as JSON, without the options the method has no use for."""
    unused = TRAINED_ONLY if cfg.method == "uce" else UCE_ONLY
    if cfg.feedback is None:  # (the feedback's own record: OUT/feedback/plan.json)
        feedback_only = ("feedback", "reward", "init", "token", "invert_steps", "leak_repeat")
        unused = (*unused, *feedback_only)
    settings = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return {k: v for k, v in settings.items() if k not in unused}


def _n_tokens(pipe, text: str) -> int:
    """How many tokens the pipeline's encoder reads for `text`, start and end included
    (a multi-vector learned token expanded, as encode_prompt does)."""
    text = pipe.maybe_convert_prompt(text, pipe.tokenizer)
    ids = pipe.tokenizer(text, truncation=True, max_length=pipe.tokenizer.model_max_length)
    return len(ids.input_ids)


def sdd_step(
    accelerator: Accelerator,
    unet: torch.nn.Module,
    ema: list[torch.Tensor],
    params: dict[str, torch.nn.Parameter],
    opt: torch.optim.Optimizer,
    texts: tuple[Cond, Cond],
    z: torch.Tensor,
    t: torch.Tensor,
    momentum: float,
    preserve: tuple | None = None,
) -> torch.Tensor:
    """One SDD step (module docstring, 4 and 5) on B teacher latents; returns the loss.

    texts: c_0, c_s, each B rows ((B, L, D) text states, or SDXL's TextCond); z (B, C, h, w)
    from the EMA teacher (step 2); t (B,); preserve: (c_k (B rows), the frozen original,
    weight) or None."""
    c_0, c_s = texts
    with accelerator.autocast():
        # 4. eps(z_t, t, "") is the target of eps(z_t, t, c_s)
        with torch.no_grad():
            e_0 = _eps(unet, z, t, c_0)
        e_s, e_k = _student(unet, z, t, c_s, preserve)
        loss = sdd_loss(e_0.float(), e_s.float())
        if preserve is not None:
            loss = loss + _preserve_term(z, t, e_k, preserve)
    # 5. AdamW, clipped, then the EMA
    _optimise(accelerator, loss, params, opt)
    ema_update(ema, list(params.values()), momentum)
    return loss


def esd_step(
    accelerator: Accelerator,
    unet: torch.nn.Module,
    original: torch.nn.Module,
    params: dict[str, torch.nn.Parameter],
    opt: torch.optim.Optimizer,
    texts: tuple[Cond, Cond],
    z: torch.Tensor,
    t: torch.Tensor,
    eta: float,
    preserve: tuple | None = None,
) -> torch.Tensor:
    """One ESD step on B latents of the student's own CFG trajectories on the concept;
    returns the loss. texts: c_0, c_s."""
    c_0, c_s = texts
    with accelerator.autocast():
        with torch.no_grad():
            o_0, o_c = _eps(
                original, torch.cat([z, z]), torch.cat([t, t]), cat_conds([c_0, c_s])
            ).chunk(2)
            target = esd_target(o_0, o_c, eta)
        e_s, e_k = _student(unet, z, t, c_s, preserve)
        loss = F.mse_loss(e_s.float(), target.float())
        if preserve is not None:
            loss = loss + _preserve_term(z, t, e_k, preserve)
    _optimise(accelerator, loss, params, opt)
    return loss


def neg_step(
    accelerator: Accelerator,
    unet: torch.nn.Module,
    original: torch.nn.Module,
    params: dict[str, torch.nn.Parameter],
    opt: torch.optim.Optimizer,
    texts: tuple[Cond, Cond, Cond, Cond | None],
    z: torch.Tensor,
    t: torch.Tensor,
    eta: float,
    preserve: tuple | None = None,
) -> torch.Tensor:
    """One distilled-negative-prompt step on B latents of the original's trajectories on
    the anchor prompts (where the concept shows); returns the loss.

    texts: c_0, the anchors c_a, the concepts c_s and (--strip-concept) the anchors without
    the concept c_b, or None where the target starts from the anchors, each (B, L, D)."""
    c_0, c_a, c_s, c_b = texts
    with accelerator.autocast():
        with torch.no_grad():
            base = c_a if c_b is None else c_b
            o_0, o_b, o_c = _eps(
                original, torch.cat([z, z, z]), torch.cat([t, t, t]), cat_conds([c_0, base, c_s])
            ).chunk(3)
            target = neg_target(o_0, o_b, o_c, eta)
        rows = [c_a, c_0] + ([preserve[0]] if preserve is not None else [])
        out = _eps(
            unet, torch.cat([z] * len(rows)), torch.cat([t] * len(rows)), cat_conds(rows)
        ).chunk(len(rows))
        loss = neg_loss(out[0].float(), out[1].float(), target.float(), o_0.float())
        if preserve is not None:
            loss = loss + _preserve_term(z, t, out[2], preserve)
    _optimise(accelerator, loss, params, opt)
    return loss


def _strip(prompt: str, concepts: list[str]) -> str:
    for concept in concepts:
        prompt = without_concept(prompt, concept)
    return prompt


def _prompts(path: Path) -> list[str]:
    return list(dict.fromkeys(row.prompt for row in read_prompts(path)))


def _eps(unet, z: torch.Tensor, t: torch.Tensor, c: Cond) -> torch.Tensor:
    """A U-Net's noise estimate for text conditioning c (SDXL: with its added conditioning)."""
    return unet(z, t, **as_cond(c).unet_kwargs()).sample


def _student(unet, z, t, c_s, preserve):
    """The student's estimates for the concepts and, with --preserve, for the prompts to
    keep at the same latents: one forward of 2B rows."""
    if preserve is None:
        return _eps(unet, z, t, c_s), None
    both = _eps(unet, torch.cat([z, z]), torch.cat([t, t]), cat_conds([c_s, preserve[0]]))
    return both.chunk(2)


def _preserve_term(z, t, e_k, preserve) -> torch.Tensor:
    c_k, original, weight = preserve
    with torch.no_grad():
        o_k = _eps(original, z, t, c_k)
    return weight * preservation_loss(e_k.float(), o_k.float())


def _optimise(accelerator: Accelerator, loss: torch.Tensor, params: dict, opt) -> None:
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(list(params.values()), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def _fill_pool(walk, cfg: EraseConfig, shape, n_concepts: int, anchors, step: int, g, device):
    """--reuse K: B trajectories, K stops on each (drawn from the stop distribution, so
    every sample's stop keeps its law), walked once; the B K samples in a random order."""
    z_T = to_device(torch.randn(shape, generator=g), device)
    b = cfg.batch
    stops = stop_steps(b * cfg.reuse, cfg.sample_steps, cfg.timesteps, tuple(cfg.beta), g)
    stops = stops.view(b, cfg.reuse)
    if cfg.method == "neg":
        rows = torch.randint(0, len(anchors), (b,), generator=g)
    else:  # ESD: the concepts in turn, as SDD's c_s
        rows = torch.tensor([(step * b + i) % n_concepts for i in range(b)])
    z = walk(z_T, stops, rows.to(device)).flatten(0, 1)  # (B K, C, h, w)
    order = torch.randperm(b * cfg.reuse, generator=g)
    return {
        "z": z[order.to(device)],
        "stops": stops.flatten()[order],
        "rows": rows.repeat_interleave(cfg.reuse)[order].to(device),
    }


def _pool_to(pool: dict | None, device) -> dict | None:
    if pool is None:
        return None
    return {k: (v if k == "stops" else v.to(device)) for k, v in pool.items()}


def _checkpoint(accelerator, path, params, names, ema, opt, g, step, losses, pool) -> None:
    generators = accelerator.gather_for_metrics([g.get_state()], use_gather_object=True)
    mine = None if pool is None else {k: v.cpu() for k, v in pool.items()}
    pools = accelerator.gather_for_metrics([mine], use_gather_object=True)
    if not accelerator.is_main_process:
        return
    state = {
        "pools": pools,
        "step": step,
        "params": {n: p.detach().cpu() for n, p in params.items()},
        "ema": None if ema is None else {n: p.cpu() for n, p in zip(names, ema, strict=True)},
        "optimizer": opt.state_dict(),
        "generators": generators,
        "losses": losses,
    }
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


MODEL_CARD = """---
library_name: diffusers
tags: [unsee, concept-erasure, {method}]
---
# {name}

`{model}` with {what} removed by unsee {version} ({how}).

Load it with plain diffusers:

    {load}

Settings:

```json
{settings}
```
"""


def _save(pipe, unet, cfg: EraseConfig, out: Path, info: dict) -> None:
    what = ", ".join(f"`{c}`" for c in info["concepts"])
    kind = type(pipe).__name__  # StableDiffusionPipeline, StableDiffusionXLPipeline
    if cfg.save == "lora":
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        state = get_peft_model_state_dict(unet, adapter_name="unsee")
        layers = convert_state_dict_to_diffusers(state)
        type(pipe).save_lora_weights(out, unet_lora_layers=layers)  # the pipeline's layout
        load = f'pipe.load_lora_weights("{out}")  # on the {kind} of {cfg.model}'
    else:
        pipe.save_pretrained(out, safe_serialization=True)
        load = f'pipe = {kind}.from_pretrained("{out}")'
    if cfg.method == "uce":
        how = f"uce, a closed-form edit of {len(info['uce']['edited'])} projections"
    else:
        how = f"{cfg.method}, {cfg.iterations} steps"
    card = MODEL_CARD.format(
        name=out.name, model=cfg.model, what=what, version=__version__, method=cfg.method,
        how=how, load=load, settings=json.dumps(info["settings"], indent=2),
    )  # fmt: skip
    atomic_write_text(out / "README.md", card)
    atomic_write_text(out / "erase.json", json.dumps(info, indent=2) + "\n")
    took = f"{info['seconds']:.0f}" if info["seconds"] >= 10 else f"{info['seconds']:.2f}"
    print(f"erased {what} in {took} s: {out}")
